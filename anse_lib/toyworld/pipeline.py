"""``ToyVideoPipeline``: the toy model as a diffusers ``DiffusionPipeline``.

Its ``__call__`` follows ``CogVideoXPipeline``: latents of shape ``(B, F, C, H, W)``
drawn with ``randn_tensor(generator=...)``, classifier-free guidance by batching
``[uncond, cond]``, ``prompt_embeds`` / ``negative_prompt_embeds``, ``latents=`` to start
from a given noise, ``attention_kwargs`` passed through to the attention processors.
``guidance_rescale`` is diffusers' ``rescale_noise_cfg`` as in its Stable Diffusion
pipelines: Lin et al. 2023 (sec. 3.4) for CFG on a zero-terminal-SNR schedule, which the
toy model uses. The defaults (guidance 2, rescale 0.7) are the best semantic score of the
guidance sweep in ``benchmarks/toy_model_quality.py`` (cached in ``data/sweeps/``), the
rule fixed before the sweep was first run, applied to each shipped model in turn (the
first, 32x32 one: guidance 2, no rescale; the 3,500-step 16x16 one: guidance 3, rescale 0.7).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..provenance import verify_manifest
from .model import rotary_embeddings

#: Where the shipped, trained toy model lives.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "data" / "toy_model"
DEFAULT_STEPS = 25
#: The shipped model's guidance defaults, and every toy model's unless its folder has a
#: ``guidance.json`` (:data:`GUIDANCE_NAME`) chosen by the same sweep rule for that model.
DEFAULT_GUIDANCE = 2.0
DEFAULT_GUIDANCE_RESCALE = 0.7
#: A model folder's own guidance defaults, written by the sweep that chose them (outside the
#: weights' manifest, so the sweep's cache, tied to the model hash, stays valid).
GUIDANCE_NAME = "guidance.json"


@dataclass
class ToyVideoPipelineOutput(BaseOutput):
    """frames: ``np`` (B, F, H, W, 3) in [0, 1]; ``pt`` (B, F, 3, H, W) in [0, 1]; ``latent`` raw (B, F, 3, H, W)."""

    frames: np.ndarray | torch.Tensor


class ToyVideoPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, tokenizer, text_encoder, transformer, scheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                              scheduler=scheduler)
        #: ``{"guidance_scale", "guidance_rescale"}`` used when a call gives none (``load_toy_pipeline``
        #: reads a folder's ``guidance.json`` into it)
        self.guidance_defaults = {"guidance_scale": DEFAULT_GUIDANCE, "guidance_rescale": DEFAULT_GUIDANCE_RESCALE}

    # --- shapes --------------------------------------------------------------------------
    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """(F, C, H, W) of one video in latent (= pixel) space."""
        c = self.transformer.config
        return (c.sample_frames, c.in_channels, c.sample_height, c.sample_width)

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    # --- conditioning ------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text embeddings ``(B * num_videos_per_prompt, L, D)`` for the prompt and, with CFG, the negative one."""
        device = self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            ids = self.tokenizer(prompts)["input_ids"].to(device)
            prompt_embeds = self.text_encoder(ids)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            n = prompt_embeds.shape[0] // num_videos_per_prompt
            neg = negative_prompt or ""
            negs = [neg] * n if isinstance(neg, str) else list(neg)
            ids = self.tokenizer(negs)["input_ids"].to(device)
            negative_prompt_embeds = self.text_encoder(ids)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        return prompt_embeds, negative_prompt_embeds

    def prepare_latents(self, batch_size, dtype, device, generator=None, latents=None) -> torch.Tensor:
        """Initial noise ``(batch_size, F, C, H, W)``; exactly what ``__call__`` draws for ``generator``."""
        shape = (batch_size, *self.video_shape)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} videos")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    # --- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
        callback_on_step_end=None,
    ):
        if guidance_scale is None:
            guidance_scale = self.guidance_defaults["guidance_scale"]
        if guidance_rescale is None:
            guidance_rescale = self.guidance_defaults["guidance_rescale"]
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"output_type must be 'np', 'pt' or 'latent', got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if prompt is None and prompt_embeds is None:
            raise ValueError("pass either prompt or prompt_embeds")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be in [0, 1], got {guidance_rescale!r}")
        self._guidance_scale = guidance_scale
        device = self._execution_device

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, self.do_classifier_free_guidance, num_videos_per_prompt,
            prompt_embeds, negative_prompt_embeds,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        batch_size = prompt_embeds.shape[0] // (2 if self.do_classifier_free_guidance else 1)
        dtype = self.transformer.dtype
        prompt_embeds = prompt_embeds.to(dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(batch_size, dtype, device, generator, latents)
        extra = {"eta": 0.0, "generator": generator} if not isinstance(generator, list) else {"eta": 0.0}
        image_rotary_emb = rotary_embeddings(self.transformer, device)

        for i, t in enumerate(self.progress_bar(timesteps)):
            latent_in = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            latent_in = self.scheduler.scale_model_input(latent_in, t)
            timestep = t.expand(latent_in.shape[0])
            noise_pred = self.transformer(
                hidden_states=latent_in,
                encoder_hidden_states=prompt_embeds,
                timestep=timestep,
                image_rotary_emb=image_rotary_emb,
                attention_kwargs=attention_kwargs,
                return_dict=False,
            )[0].float()
            if self.do_classifier_free_guidance:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
                if guidance_rescale > 0:
                    # Lin et al. 2023, sec. 3.4: CFG on a zero-terminal-SNR schedule over-exposes
                    noise_pred = rescale_noise_cfg(noise_pred, cond, guidance_rescale)
            latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0].to(dtype)
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": latents})

        if output_type == "latent":
            frames = latents
        else:
            frames = ((latents.float() + 1) / 2).clamp(0, 1)
            if output_type == "np":
                frames = frames.permute(0, 1, 3, 4, 2).cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return ToyVideoPipelineOutput(frames=frames)


def describe_model(path: str | Path = DEFAULT_MODEL_DIR) -> str:
    """One line naming a saved toy model: where it is, its training steps and its model hash.

    The notebooks print it, so every page says which model its outputs come from.

    Args:
        path: an exported toy model folder (default: the shipped model).

    Returns:
        ``"toy model FOLDER: N training steps, model hash H"``: FOLDER relative to the
        repository root when inside it, H the first 12 hex digits of the manifest's hash.

    Examples:
        >>> describe_model()  # doctest: +ELLIPSIS
        'toy model data/toy_model: ... training steps, model hash ...'
    """
    from ..provenance import model_hash, read_manifest, repo_relative

    steps = read_manifest(path).get("trained_steps")
    if not isinstance(steps, int):
        raise ValueError(f"the manifest of {path} records no trained_steps (got {steps!r}); "
                         "is it a toy model exported by anse_lib.toyworld.train?")
    return f"toy model {repo_relative(path)}: {steps:,} training steps, model hash {model_hash(path)[:12]}"


def load_toy_pipeline(path: str | Path = DEFAULT_MODEL_DIR, verify: bool = True) -> ToyVideoPipeline:
    """Load the shipped toy model (or another saved ``ToyVideoPipeline``), checking SHA-256s first.

    Args:
        path: an exported toy model folder: ``data/toy_model`` (the shipped, zero-terminal-SNR
            model) or ``data/toy_model_sd_schedule`` (its twin on Stable Diffusion 1.5's schedule).
        verify: check every file against the folder's manifest.

    Returns:
        The pipeline; its ``guidance_defaults`` come from the folder's ``guidance.json`` when it
        has one (the twin), else the shipped model's.

    Raises :class:`anse_lib.provenance.ChecksumError` if any file differs from its manifest.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"no toy model at {path}. The trained model ships in data/toy_model; "
            "train one with `python -m anse_lib.toyworld.train` and export it with `--export`."
        )
    if verify:
        verify_manifest(path)
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # no "install accelerate" advice for a 3 M-parameter model
    diffusers_logging.disable_progress_bar()
    try:
        pipe = ToyVideoPipeline.from_pretrained(path)
    finally:
        diffusers_logging.set_verbosity(verbosity)
        diffusers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    pipe.guidance_defaults.update(guidance_defaults(path))
    return pipe


def guidance_defaults(path: str | Path) -> dict:
    """The guidance settings saved in a model folder's ``guidance.json`` (``{}`` if none)."""
    import json

    file = Path(path) / GUIDANCE_NAME
    if not file.is_file():
        return {}
    saved = json.loads(file.read_text())
    return {k: float(saved[k]) for k in ("guidance_scale", "guidance_rescale")}
