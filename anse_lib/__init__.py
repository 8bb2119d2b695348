"""anse_lib: the helper library of the ANSE/BANSA workbook.

Modules, one idea each: ``bansa`` (the score), ``toyworld`` (a world whose truth we know),
``metrics`` (ToyBench), ``provenance`` (atomic writes, manifests), ``viz`` (pictures).
"""
__version__ = "0.1.0"

# Custom pipeline components must be importable from the top-level package:
# diffusers' from_pretrained looks them up as getattr(anse_lib, class_name).
from .toyworld.model import ToyTextEncoder, WordTokenizer  # noqa: E402
from .toyworld.pipeline import ToyVideoPipeline  # noqa: E402

__all__ = ["ToyTextEncoder", "WordTokenizer", "ToyVideoPipeline", "__version__"]
