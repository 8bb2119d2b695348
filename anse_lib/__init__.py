"""anse_lib: the helper library of the ANSE/BANSA workbook.

The method, small and on its own: ``bansa`` (the score), ``kernel`` (its per-row
arithmetic compiled), ``probe`` (BANSA inside diffusers attention processors), ``select``
(ANSE: choose the noise, generate). Around it: ``toyworld`` (a world whose truth we know,
with ToyBench in ``toyworld.toybench``), ``studies`` (helpers that measure the method for
one notebook each), ``sweeps`` and ``provenance`` (cached tables, atomic writes,
manifests), ``viz`` (pictures), ``tiny_pipelines`` (tiny random diffusers pipelines).
"""
__version__ = "0.1.0"

# Convenience re-exports (diffusers itself records the full module path of these
# components in model_index.json).
from .toyworld.model import ToyTextEncoder, WordTokenizer  # noqa: E402
from .toyworld.pipeline import ToyVideoPipeline  # noqa: E402

__all__ = ["ToyTextEncoder", "WordTokenizer", "ToyVideoPipeline", "__version__"]
