"""The miniature CogVideoX: diffusers' real transformer plus a tiny jointly trained text encoder.

The tokenizer and text encoder are diffusers ``ModelMixin`` / ``ConfigMixin`` classes so
that ``DiffusionPipeline.save_pretrained`` / ``from_pretrained`` handle them like any
other component (a pipeline component must subclass a loadable base class).
"""
from __future__ import annotations

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from torch import nn

from .render import NUM_FRAMES, RESOLUTION
from .world import MAX_PROMPT_WORDS, VOCAB, split_words


class WordTokenizer(ModelMixin, ConfigMixin):
    """Word-level tokenizer over the toy world's vocabulary (no parameters).

    ``tokenizer(prompts)`` -> ``input_ids`` of shape ``(B, max_length)``, padded with 0.
    An empty prompt is all padding (the unconditional prompt). Unknown words raise
    ``ValueError`` naming the word and listing the vocabulary.
    """

    @register_to_config
    def __init__(self, vocab: tuple = VOCAB, max_length: int = MAX_PROMPT_WORDS):
        super().__init__()
        self.word_to_id = {w: i for i, w in enumerate(vocab)}
        # a buffer, so that save/load has a weight file to write and a device to report
        self.register_buffer("token_ids", torch.arange(len(vocab)), persistent=True)

    def __call__(self, prompts: str | list[str]) -> dict[str, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = torch.zeros(len(prompts), self.config.max_length, dtype=torch.long)
        for i, p in enumerate(prompts):
            words = split_words(p) if p.strip() else []
            if len(words) > self.config.max_length:
                raise ValueError(f"prompt has {len(words)} words, at most {self.config.max_length}: {p!r}")
            ids[i, : len(words)] = torch.tensor([self.word_to_id[w] for w in words], dtype=torch.long)
        return {"input_ids": ids}

    @property
    def vocab_size(self) -> int:
        return len(self.config.vocab)


class ToyTextEncoder(ModelMixin, ConfigMixin):
    """Token embeddings + learned positions + a small pre-norm transformer encoder.

    input_ids: (B, L) -> embeddings (B, L, embed_dim). With ``num_layers=0`` there is no
    encoder: each output token is its word's embedding plus its position's, normalised, so
    no word's information reaches another word's token.
    """

    @register_to_config
    def __init__(self, vocab_size: int = len(VOCAB), max_length: int = MAX_PROMPT_WORDS, embed_dim: int = 128,
                 num_layers: int = 2, num_heads: int = 4):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Parameter(torch.zeros(1, max_length, embed_dim))
        nn.init.normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            embed_dim, num_heads, dim_feedforward=2 * embed_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = (nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers
                        else nn.Identity())
        self.final_norm = nn.LayerNorm(embed_dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(input_ids) + self.position_embedding[:, : input_ids.shape[1]]
        return self.final_norm(self.encoder(x))


def rotary_embeddings(transformer: CogVideoXTransformer3DModel,
                      device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``image_rotary_emb`` a CogVideoX transformer's forward needs, or ``None``.

    ``None`` unless the config has ``use_rotary_positional_embeddings`` (CogVideoX-5B's 3D
    RoPE); then ``(cos, sin)``, each ``(F * H/p * W/p, attention_head_dim)``, computed as
    ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` does for CogVideoX 1.0 with
    the pixel-space toy model's VAE scale factor of 1.
    """
    c = transformer.config
    if not c.use_rotary_positional_embeddings:
        return None
    grid = (c.sample_height // c.patch_size, c.sample_width // c.patch_size)
    crops = get_resize_crop_region_for_grid(grid, grid[1], grid[0])
    return get_3d_rotary_pos_embed(embed_dim=c.attention_head_dim, crops_coords=crops, grid_size=grid,
                                   temporal_size=c.sample_frames, device=device)


def denoiser_output(transformer: CogVideoXTransformer3DModel, text_encoder, tokenizer, noisy: torch.Tensor,
                    t: torch.Tensor, prompts: list[str], image_rotary_emb=None) -> torch.Tensor:
    """The transformer's raw output for ``noisy`` ``(B, F, C, H, W)`` at timesteps ``t`` ``(B,)``, one prompt each.

    One conditioned forward, no guidance: the prompts are tokenized and encoded, then the
    transformer runs with ``image_rotary_emb`` (from :func:`rotary_embeddings`; ``None``
    without RoPE). The output has the shape of ``noisy``; what it predicts (velocity, noise
    or sample) is the scheduler's ``prediction_type``. Training, the fixed-data loss and the
    clean-video prediction all call this, so the three see one model input.
    """
    if len(prompts) != noisy.shape[0]:
        raise ValueError(f"one prompt per video: got {len(prompts)} prompts for {noisy.shape[0]} videos")
    emb = text_encoder(tokenizer(prompts)["input_ids"])
    return transformer(hidden_states=noisy, encoder_hidden_states=emb, timestep=t,
                       image_rotary_emb=image_rotary_emb, return_dict=False)[0]


#: The default architecture (the first shipped model's; the shipped one's is in its
#: folder's config). 8 frames of 32x32 RGB, patch 4 -> 512 video tokens, plus 20 text
#: tokens = 532 tokens of joint attention, as in CogVideoX-2B (sin-cos positions, no RoPE).
#: The shipped model is 16x16, patch 2, 4 layers: also 512 + 20 tokens.
TRANSFORMER_CONFIG = dict(
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=3,
    out_channels=3,
    time_embed_dim=128,
    text_embed_dim=128,
    num_layers=6,
    sample_width=RESOLUTION,
    sample_height=RESOLUTION,
    sample_frames=NUM_FRAMES,
    patch_size=4,
    temporal_compression_ratio=1,
    max_text_seq_length=MAX_PROMPT_WORDS,
    spatial_interpolation_scale=1.0,
    temporal_interpolation_scale=1.0,
)
TEXT_ENCODER_CONFIG = dict(embed_dim=128, num_layers=2, num_heads=4)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    clip_sample=False,
    set_alpha_to_one=True,
    snr_shift_scale=1.0,
)
#: The noise schedules a toy model can be trained on. ``"zero_snr"`` is CogVideoX's (the
#: shipped model's): v-prediction, betas rescaled to zero terminal SNR (alpha_bar at t = 999
#: is exactly 0, so the first step sees pure noise), trailing spacing. ``"sd"`` is Stable
#: Diffusion 1.5's, AnimateDiff's base: the same scaled-linear betas 0.00085-0.012 without the
#: rescale (alpha_bar at t = 999 is about 0.0047: a faint copy of the clean video stays in the
#: starting noise), epsilon prediction, ``leading`` spacing with ``steps_offset=1`` and
#: ``set_alpha_to_one=False`` (SD 1.5's published DDIM settings).
SCHEDULES = {
    "zero_snr": SCHEDULER_CONFIG,
    "sd": dict(SCHEDULER_CONFIG, prediction_type="epsilon", rescale_betas_zero_snr=False,
               timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False),
}


def build_components(seed: int = 0, transformer_config: dict | None = None,
                     text_encoder_config: dict | None = None, schedule: str = "zero_snr") -> dict:
    """Fresh, randomly initialised components in eval mode (deterministic given ``seed``).

    ``transformer_config`` / ``text_encoder_config`` override entries of
    ``TRANSFORMER_CONFIG`` / ``TEXT_ENCODER_CONFIG``; ``schedule`` names one of
    :data:`SCHEDULES` for the scheduler.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    torch.manual_seed(seed)
    cfg = dict(TRANSFORMER_CONFIG, **(transformer_config or {}))
    text_cfg = {**TEXT_ENCODER_CONFIG, **(text_encoder_config or {}), "embed_dim": cfg["text_embed_dim"]}
    return dict(
        transformer=CogVideoXTransformer3DModel(**cfg).eval(),
        text_encoder=ToyTextEncoder(**text_cfg).eval(),
        tokenizer=WordTokenizer(),
        scheduler=CogVideoXDDIMScheduler(**SCHEDULES[schedule]),
    )
