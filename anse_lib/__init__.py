"""anse_lib: the helper library of the ANSE/BANSA workbook.

Modules, one idea each: ``bansa`` (the score), ``probe`` (BANSA inside diffusers attention
processors), ``select`` (ANSE: choose the noise, generate), ``toyworld`` (a world whose
truth we know), ``metrics`` (ToyBench), ``provenance`` (atomic writes, manifests),
``viz`` (pictures).
"""
__version__ = "0.1.0"

# Convenience re-exports (diffusers itself records the full module path of these
# components in model_index.json).
from .toyworld.model import ToyTextEncoder, WordTokenizer  # noqa: E402
from .toyworld.pipeline import ToyVideoPipeline  # noqa: E402

__all__ = ["ToyTextEncoder", "WordTokenizer", "ToyVideoPipeline", "__version__"]
