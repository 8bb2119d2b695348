"""Tiny, randomly initialised diffusers video pipelines, for tests and benchmarks.

Nothing can be downloaded here, so these are real diffusers classes (``CogVideoXPipeline``,
``WanPipeline``, ``LTXPipeline``, ``AnimateDiffPipeline``, ``HunyuanVideoPipeline``) built from small configs with no
tokenizer, text encoder or VAE: they are driven with ``prompt_embeds`` and produce
latents (``output_type="latent"``). A user with a real checkpoint calls the same
``anse_lib`` functions on ``XPipeline.from_pretrained(local_path)`` instead.

Each builder returns ``(pipe, call_kwargs)``: the keyword arguments (embeddings, sizes,
steps) that make a valid call.
"""
from __future__ import annotations

import torch


def _embeds(generator, batch, length, dim):
    return torch.randn(batch, length, dim, generator=generator)


def tiny_cogvideox_pipeline(seed: int = 0, num_layers: int = 2, frames: int = 9, height: int = 32, width: int = 32,
                            heads: int = 2, head_dim: int = 16, rotary: bool = True, text_len: int = 8,
                            vae: bool = False):
    """CogVideoX (joint text+video attention; RoPE as in CogVideoX-5B when ``rotary``).

    ``vae=True`` adds a tiny random ``AutoencoderKLCogVideoX`` (spatial factor 8, temporal
    4, as the real one) so that videos are decoded to pixels; otherwise use
    ``output_type="latent"``.
    Video tokens: ``((frames - 1) // 4 + 1) * (height // 16) * (width // 16)`` (VAE factor 8, patch 2).
    """
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=4, out_channels=4, time_embed_dim=32,
        text_embed_dim=32, num_layers=num_layers, sample_width=width // 8, sample_height=height // 8,
        sample_frames=frames, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=text_len,
        use_rotary_positional_embeddings=rotary,
    ).eval()
    autoencoder = None
    if vae:
        from diffusers import AutoencoderKLCogVideoX

        autoencoder = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
            layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
        ).eval()
    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=autoencoder, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(timestep_spacing="trailing"))
    g = torch.Generator().manual_seed(seed + 1)
    kwargs = dict(prompt_embeds=_embeds(g, 1, text_len, 32), negative_prompt_embeds=_embeds(g, 1, text_len, 32),
                  height=height, width=width, num_frames=frames, num_inference_steps=2, guidance_scale=6.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def tiny_wan_pipeline(seed: int = 0, num_layers: int = 2, text_len: int = 8):
    """Wan 2.1 (self and cross attention; CFG as two transformer calls, cond then uncond)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=num_layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    g = torch.Generator().manual_seed(seed + 1)
    kwargs = dict(prompt_embeds=_embeds(g, 1, text_len, 32), negative_prompt_embeds=_embeds(g, 1, text_len, 32),
                  height=32, width=32, num_frames=5, num_inference_steps=2, guidance_scale=5.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def tiny_ltx_pipeline(seed: int = 0, num_layers: int = 2, text_len: int = 8):
    """LTX-Video (self and cross attention; text attention mask)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, num_layers=num_layers, caption_channels=32,
    ).eval()
    pipe = LTXPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler())
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, text_len, dtype=torch.long)
    mask[:, -2:] = 0  # two padding tokens
    kwargs = dict(prompt_embeds=_embeds(g, 1, text_len, 32), negative_prompt_embeds=_embeds(g, 1, text_len, 32),
                  prompt_attention_mask=mask, negative_prompt_attention_mask=mask.clone(),
                  height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=3.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def tiny_hunyuan_video_pipeline(seed: int = 0, num_layers: int = 1, num_single_layers: int = 1, text_len: int = 8,
                                true_cfg: bool = False):
    """HunyuanVideo (dual-stream then single-stream blocks, joint [video, text] attention with a
    text attention mask; guidance embedded in the model, ``true_cfg_scale`` for real CFG as a
    second, unconditional call).

    ``true_cfg=True`` adds negative embeddings and ``true_cfg_scale=4``; otherwise each step is
    one conditional call, as with the released checkpoint's defaults.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=num_layers,
        num_single_layers=num_single_layers, num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=32,
        pooled_projection_dim=16, rope_axes_dim=(4, 6, 6), guidance_embeds=True,
    ).eval()
    pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=transformer, vae=None,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None,
                                tokenizer_2=None)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, text_len, dtype=torch.long)
    mask[:, -2:] = 0  # two padding tokens
    kwargs = dict(prompt_embeds=_embeds(g, 1, text_len, 32), pooled_prompt_embeds=torch.randn(1, 16, generator=g),
                  prompt_attention_mask=mask, height=64, width=64, num_frames=5, num_inference_steps=2,
                  guidance_scale=6.0)
    if true_cfg:
        kwargs.update(negative_prompt_embeds=_embeds(g, 1, text_len, 32),
                      negative_pooled_prompt_embeds=torch.randn(1, 16, generator=g),
                      negative_prompt_attention_mask=mask.clone(), true_cfg_scale=4.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def tiny_unet2d(seed: int = 0, cross_attention_dim: int = 32):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, norm_num_groups=4, attention_head_dim=4,
    )


def tiny_animatediff_pipeline(seed: int = 0, text_len: int = 8):
    """AnimateDiff (a UNetMotionModel; text cross attention scored by default)."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    unet = tiny_unet2d(seed)
    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=4,
                            motion_num_attention_heads=2, motion_max_seq_length=16)
    pipe = AnimateDiffPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet, motion_adapter=adapter,
                               scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False))
    pipe.unet.eval()
    g = torch.Generator().manual_seed(seed + 1)
    kwargs = dict(prompt_embeds=_embeds(g, 1, text_len, 32), negative_prompt_embeds=_embeds(g, 1, text_len, 32),
                  height=64, width=64, num_frames=4, num_inference_steps=2, guidance_scale=7.5)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def tiny_unet3d(seed: int = 0):
    """A ModelScope-style ``UNet3DConditionModel`` (probe-level support; its pipeline is deprecated)."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=8,
    ).eval()


PIPELINES = {
    "cogvideox": tiny_cogvideox_pipeline,
    "wan": tiny_wan_pipeline,
    "ltx": tiny_ltx_pipeline,
    "animatediff": tiny_animatediff_pipeline,
    "hunyuan": tiny_hunyuan_video_pipeline,
}


def tiny_text_encoder(words: list[str], d_model: int = 32, seed: int = 0):
    """A random one-layer ``T5EncoderModel`` and a word-level fast tokenizer for ``words`` (no files, no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(sorted(set(words)))}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    encoder = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=64, num_layers=1,
                                      num_heads=2)).eval()
    return tokenizer, encoder


def save_tiny_cogvideox(folder, words: list[str], seed: int = 0) -> dict:
    """Save a tiny random CogVideoX pipeline with a text encoder and a VAE to ``folder`` (a real
    checkpoint's layout: ``DiffusionPipeline.from_pretrained(folder)`` loads it); returns the pipeline
    arguments that keep it small (32 x 32, 9 frames, 2 steps)."""
    from diffusers import CogVideoXPipeline

    pipe, kwargs = tiny_cogvideox_pipeline(seed=seed, text_len=226, vae=True)  # 226: the pipeline's default length
    tokenizer, encoder = tiny_text_encoder(words, seed=seed)
    full = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=pipe.vae, transformer=pipe.transformer,
                             scheduler=pipe.scheduler)
    full.save_pretrained(folder)
    return {k: kwargs[k] for k in ("height", "width", "num_frames", "num_inference_steps")}
