"""anse_lib: the helper library of the ANSE/BANSA workbook.

Modules, one idea each: ``bansa`` (the score), ``metrics`` (ToyBench), ``provenance``
(atomic writes, manifests), ``viz`` (pictures).
"""
__version__ = "0.1.0"
