"""anse_lib: the helper library of the ANSE/BANSA workbook.

The front door::

    from anse_lib import AnseConfig, BansaConfig, select_noise, generate_with_anse, calibrate_depth

    out = generate_with_anse(pipe, "a panda playing guitar", AnseConfig(depth=14), num_inference_steps=50)
    out.frames, out.selection.scores, out.selection.winner_seed

The method, small and on its own: ``bansa`` (the score), ``kernel`` (its per-row
arithmetic compiled), ``probe`` (BANSA inside diffusers attention processors), ``select``
(ANSE: choose the noise, generate). Around it: ``toyworld`` (a world whose truth we know,
with ToyBench in ``toyworld.toybench``), ``studies`` (helpers that measure the method for
one notebook each), ``sweeps`` and ``provenance`` (cached tables, atomic writes,
manifests), ``viz`` (pictures), ``tiny_pipelines`` (tiny random diffusers pipelines).
"""
__version__ = "0.1.0"

# The method's front door.
from .calibrate import calibrate_depth  # noqa: E402
from .config import AnseConfig, BansaConfig  # noqa: E402
from .probe import AttentionProbe  # noqa: E402
from .select import AnseGenerationOutput, AnseSelectionOutput, generate_with_anse, select_noise  # noqa: E402

# Convenience re-exports (diffusers itself records the full module path of these
# components in model_index.json).
from .toyworld.model import ToyTextEncoder, WordTokenizer  # noqa: E402
from .toyworld.pipeline import ToyVideoPipeline  # noqa: E402

__all__ = ["AnseConfig", "BansaConfig", "AttentionProbe", "AnseSelectionOutput", "AnseGenerationOutput",
           "select_noise", "generate_with_anse", "calibrate_depth",
           "ToyTextEncoder", "WordTokenizer", "ToyVideoPipeline", "__version__"]
