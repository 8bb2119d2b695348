"""The toy world: a renderer, a prompt grammar, a miniature CogVideoX and its training."""
from .model import ToyTextEncoder, WordTokenizer, build_components
from .pipeline import DEFAULT_MODEL_DIR, ToyVideoPipeline, ToyVideoPipelineOutput, describe_model, load_toy_pipeline
from .render import RenderedBatch, render
from .world import ObjectSpec, PromptSpec, WorldSplit, make_split, parse_prompt, sample_prompts

__all__ = [
    "ToyTextEncoder", "WordTokenizer", "build_components", "DEFAULT_MODEL_DIR", "ToyVideoPipeline",
    "ToyVideoPipelineOutput", "describe_model", "load_toy_pipeline", "RenderedBatch", "render", "ObjectSpec",
    "PromptSpec", "WorldSplit", "make_split", "parse_prompt", "sample_prompts",
]
