"""Video quality metrics for the study command: a small registry, one class per metric.

Every metric takes one video as ``frames`` ``(F, H, W, 3)`` float in [0, 1] (what a diffusers
video pipeline returns for ``output_type="np"``) and its prompt, and returns named columns:

- ``toybench``: the toy world's own benchmark (:mod:`anse_lib.toyworld.toybench`), toy models only;
- ``clip``: ``clip_score``, the mean over frames of the cosine similarity of CLIP's image and text
  embeddings (CLIPScore, Hessel et al. 2021, without its ``2.5 max(., 0)`` rescaling), from a
  local ``transformers`` ``CLIPModel`` folder;
- ``subject_consistency``: VBench's definition (Huang et al. 2024): for frames ``i >= 1`` the mean
  of ``max(0, cos(f_{i-1}, f_i))`` and ``max(0, cos(f_0, f_i))``, averaged over frames, on a DINO
  ViT's class-token features (VBench uses DINO ViT-B/16) or CLIP's image features;
- ``temporal_flickering``: VBench's weight-free definition, ``(255 - MAE) / 255`` with MAE the mean
  absolute difference of consecutive 8-bit frames (VBench scores it on static-scene prompts).

The numbers follow the definitions, not VBench's pipeline bit for bit: VBench reads the
H.264-decoded mp4 (compression smooths frame-to-frame noise), and its DINO is torch.hub's, whose
position-embedding interpolation for non-square frames differs from ``transformers``'. CLIPScore's
"A photo depicts" text prefix is not added (the prompt is used as it is).

Weights come from one local folder (``--metric-models DIR``): ``DIR/clip`` (a ``CLIPModel`` with its
tokenizer, and optionally its ``preprocessor_config.json``) and ``DIR/dino`` (a ``ViTModel``, e.g.
``facebook/dino-vitb16`` saved with ``save_pretrained``). Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: ImageNet normalisation (DINO's, as VBench's ``dino_transform``) and OpenAI CLIP's
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _tensor(frames) -> torch.Tensor:
    """``(F, H, W, 3)`` in [0, 1] -> ``(F, 3, H, W)`` float32."""
    v = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    if v.dim() != 4 or v.shape[-1] != 3:
        raise ValueError(f"a video must be (F, H, W, 3) in [0, 1], got shape {tuple(v.shape)}")
    return v.permute(0, 3, 1, 2)


def _resize_crop(x: torch.Tensor, size: int, crop: bool, mode: str = "bicubic", antialias: bool = True
                 ) -> torch.Tensor:
    """Resize the shorter side to ``size``, then centre-crop to ``size`` x ``size`` if ``crop``.

    CLIP's image processor: bicubic with antialiasing (PIL's resize), then the crop. VBench's
    ``dino_transform``: bilinear on tensors without antialiasing, no crop.
    """
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode=mode,
                      align_corners=False, antialias=antialias).clamp(0, 1)
    if crop:
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top : top + size, left : left + size]
    return x


def _normalise(x: torch.Tensor, mean_std) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in mean_std)
    return (x - mean) / std


def consecutive_and_first(features: torch.Tensor) -> float:
    """VBench's subject-consistency average for frame features ``(F, D)`` (F >= 2)."""
    f = F.normalize(features.float(), dim=-1)
    prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0)
    first = (f[1:] * f[:1]).sum(-1).clamp(min=0)
    return float(((prev + first) / 2).mean())


class VideoMetric:
    """One metric: ``columns`` it writes, the weights subfolder it needs (``None``: none)."""

    name: str = ""
    columns: tuple[str, ...] = ()
    weights: str | None = None
    toy_only: bool = False

    def __call__(self, frames, prompt: str) -> dict[str, float]:
        raise NotImplementedError


class ToyBenchMetric(VideoMetric):
    """The toy world's ToyBench (every check and the two aggregates), prefixed ``toybench_``."""

    name, toy_only = "toybench", True
    columns = tuple(f"toybench_{c}" for c in (
        "colour", "shape", "size", "count", "motion", "semantic", "subject_consistency", "background_consistency",
        "temporal_flickering", "motion_smoothness", "imaging_quality", "quality"))

    def __call__(self, frames, prompt):
        from .toyworld import toybench

        return {f"toybench_{k}": float(v) for k, v in toybench.toybench(np.asarray(frames), prompt).as_dict().items()}


class TemporalFlickering(VideoMetric):
    """VBench's temporal flickering: ``(255 - mean |frame_{i+1} - frame_i|) / 255`` on 8-bit frames.

    Examples:
        >>> import numpy as np
        >>> from anse_lib.metrics import TemporalFlickering
        >>> TemporalFlickering()(np.full((4, 8, 8, 3), 0.5), "a still video")
        {'temporal_flickering': 1.0}
    """

    name, columns = "temporal_flickering", ("temporal_flickering",)

    def __call__(self, frames, prompt):
        v = np.round(np.clip(np.asarray(frames, dtype=np.float64), 0, 1) * 255)
        if len(v) < 2:
            raise ValueError("temporal_flickering needs at least 2 frames")
        mae = np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3)).mean()
        return {"temporal_flickering": float((255 - mae) / 255)}


class ClipScore(VideoMetric):
    """CLIPScore's cosine (Hessel et al. 2021), averaged over frames: ``mean_i cos(E_image(f_i), E_text(prompt))``."""

    name, columns, weights = "clip", ("clip_score",), "clip"

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from transformers import AutoTokenizer, CLIPModel

        self.folder, self.device = Path(folder), device
        self.model = CLIPModel.from_pretrained(self.folder, local_files_only=True).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.size = int(self.model.config.vision_config.image_size)
        self.mean_std = _preprocessor_mean_std(self.folder, OPENAI_CLIP)

    @torch.no_grad()
    def embeddings(self, frames, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image embeddings ``(F, D)`` and the unit text embedding ``(1, D)``."""
        pixels = _normalise(_resize_crop(_tensor(frames), self.size, crop=True), self.mean_std).to(self.device)
        tokens = self.tokenizer([prompt], padding=True, truncation=True,
                                max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt")
        image = _features(self.model.get_image_features(pixel_values=pixels))
        text = _features(self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()}))
        return F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)

    def __call__(self, frames, prompt):
        image, text = self.embeddings(frames, prompt)
        return {"clip_score": float((image @ text.T).mean())}


class SubjectConsistency(VideoMetric):
    """VBench's subject consistency on DINO ViT class tokens (``DIR/dino``) or CLIP image features (``DIR/clip``)."""

    name, columns, weights = "subject_consistency", ("subject_consistency",), "dino"

    def __init__(self, folder: str | Path, device: str = "cpu"):
        self.folder, self.device = Path(folder), device
        if self.folder.name == "clip":
            from transformers import CLIPModel

            self.model = CLIPModel.from_pretrained(self.folder, local_files_only=True).to(device).eval()
            self.size, self.kind = int(self.model.config.vision_config.image_size), "clip"
            self.mean_std = _preprocessor_mean_std(self.folder, OPENAI_CLIP)
        else:
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).to(device).eval()
            self.size, self.kind = int(self.model.config.image_size), "vit"
            self.mean_std = _preprocessor_mean_std(self.folder, IMAGENET)

    @torch.no_grad()
    def features(self, frames) -> torch.Tensor:
        # CLIP: its processor's resize and crop; DINO: as VBench's dino_transform (the shorter side to the model's
        # image size, 224 for ViT-B/16, bilinear, no antialiasing, no crop), on frames not passed through mp4
        clip = self.kind == "clip"
        pixels = _normalise(_resize_crop(_tensor(frames), self.size, crop=clip, mode="bicubic" if clip else "bilinear",
                                         antialias=clip), self.mean_std)
        pixels = pixels.to(self.device)
        if self.kind == "clip":
            return _features(self.model.get_image_features(pixel_values=pixels))
        return self.model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state[:, 0]

    def __call__(self, frames, prompt):
        return {"subject_consistency": consecutive_and_first(self.features(frames))}


def _features(out) -> torch.Tensor:
    """transformers 5 may return a model output instead of a tensor from ``get_*_features``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _preprocessor_mean_std(folder: Path, default):
    path = folder / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        if "image_mean" in cfg and "image_std" in cfg:
            return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    return default


#: the registry: name -> class
METRICS = {m.name: m for m in (ToyBenchMetric, ClipScore, SubjectConsistency, TemporalFlickering)}


def check_metrics(names: list[str], metric_models: str | Path | None, toy: bool) -> dict[str, Path | None]:
    """Validate metric names against the model and the weights folder; returns each metric's weights folder.

    Raises ``ValueError`` naming the bad value and what is allowed: an unknown metric, ``toybench``
    on a model that is not a toy model, or a metric whose weights folder is not given or missing.
    """
    if not names:
        raise ValueError(f"no metrics given; choose from {', '.join(METRICS)}")
    folders = {}
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        cls = METRICS[name]
        if cls.toy_only and not toy:
            raise ValueError(f"metric {name!r} scores toy-world prompts only; for this model use "
                             f"{', '.join(m for m in METRICS if not METRICS[m].toy_only)}")
        if cls.weights is None:
            folders[name] = None
            continue
        if metric_models is None:
            raise ValueError(f"metric {name!r} needs weights: give --metric-models DIR with DIR/{cls.weights}/ "
                             "(a model saved with save_pretrained)")
        root = Path(metric_models)
        options = [root / cls.weights] + ([root / "clip"] if name == "subject_consistency" else [])
        found = [p for p in options if (p / "config.json").is_file()]
        if not found:
            raise ValueError(f"metric {name!r} needs {' or '.join(str(p) for p in options)} with a config.json; "
                             f"not found under --metric-models {metric_models}")
        folders[name] = found[0]
    return folders


def build_metrics(folders: dict[str, Path | None], device: str = "cpu") -> list[VideoMetric]:
    """The metric objects for :func:`check_metrics`' result (weights load here)."""
    return [METRICS[name]() if folder is None else METRICS[name](folder, device) for name, folder in folders.items()]
