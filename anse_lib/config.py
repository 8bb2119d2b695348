"""What ANSE computes, as two frozen, validated configs: :class:`BansaConfig` and :class:`AnseConfig`.

``BansaConfig`` is the score (K masks, their drop probability and seed, an optional row
subsample); ``AnseConfig`` is the selection around it (M candidates, which layers, which
attention, rows and CFG branch, which denoising step) plus memory knobs that never change a
score. Both are checked once, when made, and an error names the bad value and what is
allowed. ``AnseConfig.save_pretrained(folder)`` writes ``anse_config.json`` (diffusers'
convention), so a calibrated depth can travel with a model folder;
``AnseConfig.from_pretrained(folder)`` reads it back.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

#: the file :meth:`AnseConfig.save_pretrained` writes into a folder
CONFIG_NAME = "anse_config.json"
ROW_CHOICES = ("all", "video", "text")
BRANCHES = ("cond", "uncond")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value, low: int, allowed: str):
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class BansaConfig:
    """The BANSA score: K Bernoulli-masked copies of each attention row (paper's defaults).

    Args:
        num_masks: K, masks per attention row (>= 2: with one mask every score is 0).
        drop_prob: probability of *dropping* an attention entry, in (0, 1) (the paper's p = 0.2,
            read as the drop probability).
        mask_seed: seed of the masks; every candidate gets the same masks (common random numbers).
        row_sample: score a fixed random subset of this many query rows per layer, the same for
            every candidate (``None``: every row, as in the paper).

    Examples:
        >>> from anse_lib import BansaConfig
        >>> BansaConfig(num_masks=4).drop_prob
        0.2
        >>> BansaConfig(num_masks=1)
        Traceback (most recent call last):
        ...
        ValueError: num_masks (K) must be an integer >= 2 (with one mask every score is 0), got 1
    """

    num_masks: int = 10
    drop_prob: float = 0.2
    mask_seed: int = 0
    row_sample: int | None = None

    def __post_init__(self):
        _check_int("num_masks (K)", self.num_masks, 2, "an integer >= 2 (with one mask every score is 0)")
        if isinstance(self.drop_prob, bool) or not isinstance(self.drop_prob, (int, float)) \
                or not 0 < self.drop_prob < 1:
            raise ValueError(f"drop_prob must be a probability in (0, 1) (of dropping an entry), "
                             f"got {self.drop_prob!r}")
        _check_int("mask_seed", self.mask_seed, 0, "an integer >= 0")
        if self.row_sample is not None:
            _check_int("row_sample", self.row_sample, 1, "an integer >= 1 or None (every row)")


@dataclass(frozen=True)
class AnseConfig:
    """ANSE's selection: M candidate noises scored by BANSA at one denoising step; the lowest wins.

    Args:
        num_candidates: M, how many noises to score (>= 1; the paper's 10). Seeds given to
            :func:`~anse_lib.select.select_noise` set M instead.
        depth: score layers 1..d (the paper's d*, e.g. 14 of 30 for CogVideoX-2B). Give
            ``depth`` or ``layers``, not both; neither: every layer.
        layers: explicit 0-based layer indices to score, instead of a depth.
        attention: which attention kind to probe (``None``: the model family's default; see
            :class:`~anse_lib.probe.AttentionProbe`).
        rows: ``"all"``, ``"video"`` or ``"text"`` query rows of joint text+video attention.
        branch: which classifier-free-guidance branch is scored, ``"cond"`` or ``"uncond"``.
        score_step: which denoising step's model call is scored, 0-based (0, the paper's, is
            the first; steps before it run in full).
        batch_size: candidates per forward pass (``None``: all at once). Memory only: it never
            changes a score.
        block_rows: query rows per block of the chunked scorer (``None``: from its memory
            budget). Memory only.
        bansa: the score, a :class:`BansaConfig`.

    Examples:
        >>> from anse_lib import AnseConfig, BansaConfig
        >>> cfg = AnseConfig(num_candidates=4, depth=3, bansa=BansaConfig(num_masks=10))
        >>> cfg.depth, cfg.bansa.drop_prob
        (3, 0.2)
        >>> AnseConfig(depth=3, layers=(0, 1))
        Traceback (most recent call last):
        ...
        ValueError: give depth (layers 1..d) or layers (explicit indices), not both: got depth=3, layers=(0, 1)
    """

    num_candidates: int = 10
    depth: int | None = None
    layers: tuple[int, ...] | None = None
    attention: str | None = None
    rows: str = "all"
    branch: str = "cond"
    score_step: int = 0
    batch_size: int | None = None
    block_rows: int | None = None
    bansa: BansaConfig = field(default_factory=BansaConfig)

    def __post_init__(self):
        _check_int("num_candidates (M)", self.num_candidates, 1, "an integer >= 1")
        if self.depth is not None and self.layers is not None:
            raise ValueError(f"give depth (layers 1..d) or layers (explicit indices), not both: "
                             f"got depth={self.depth!r}, layers={self.layers!r}")
        if self.depth is not None:
            _check_int("depth", self.depth, 1, "an integer >= 1 (score layers 1..d) or None")
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                raise ValueError(f"layers must be a sequence of layer indices (for a depth use depth=), "
                                 f"got {self.layers!r}")
            layers = tuple(self.layers)
            if not layers or not all(_is_int(i) and i >= 0 for i in layers):
                raise ValueError(f"layers must be a non-empty sequence of integer indices >= 0, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(sorted(set(layers))))
        if self.rows not in ROW_CHOICES:
            raise ValueError(f"rows must be one of {', '.join(ROW_CHOICES)}, got {self.rows!r}")
        if self.branch not in BRANCHES:
            raise ValueError(f"branch must be one of {', '.join(BRANCHES)}, got {self.branch!r}")
        _check_int("score_step", self.score_step, 0, "an integer step index >= 0 (0 is the first denoising step)")
        for name in ("batch_size", "block_rows"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, "an integer >= 1 or None")
        if isinstance(self.bansa, dict):
            object.__setattr__(self, "bansa", BansaConfig(**self.bansa))
        if not isinstance(self.bansa, BansaConfig):
            raise ValueError(f"bansa must be a BansaConfig, got {type(self.bansa).__name__}")

    def replace(self, **changes) -> "AnseConfig":
        """A copy with ``changes`` (validated again); BANSA fields may be given by name too.

        ``cfg.replace(depth=None, num_masks=4)`` sets the depth and the BansaConfig's K.
        """
        bansa_fields = {f.name for f in dataclasses.fields(BansaConfig)}
        inner = {k: changes.pop(k) for k in list(changes) if k in bansa_fields}
        if inner:
            changes["bansa"] = dataclasses.replace(changes.get("bansa", self.bansa), **inner)
        return dataclasses.replace(self, **changes)

    # --- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (the nested BansaConfig as a dict, layers as a list)."""
        out = dataclasses.asdict(self)
        if out["layers"] is not None:
            out["layers"] = list(out["layers"])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "AnseConfig":
        """The inverse of :meth:`to_dict`; an unknown key is an error naming the known ones (keys
        starting with ``_`` are notes, e.g. ``_source``, and are skipped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in set(data) - known if not k.startswith("_"))
        if unknown:
            raise ValueError(f"unknown AnseConfig keys {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("bansa"), dict):
            bad = sorted(set(values["bansa"]) - {f.name for f in dataclasses.fields(BansaConfig)})
            if bad:
                raise ValueError(f"unknown BansaConfig keys {bad}")
            values["bansa"] = BansaConfig(**values["bansa"])
        if values.get("layers") is not None:
            values["layers"] = tuple(values["layers"])
        return cls(**values)

    def save_pretrained(self, folder: str | os.PathLike, source: str | None = None, **notes) -> Path:
        """Write ``folder/anse_config.json`` atomically and return its path.

        ``source``: where the settings come from, e.g. the calibration that chose the depth (kept
        as ``_source``); ``notes``: more provenance, kept as ``_name`` keys (e.g.
        ``model_hash=...``). :meth:`from_pretrained` skips them."""
        from .provenance import atomic_write_text

        data = {"_class_name": type(self).__name__, **self.to_dict()}
        if source is not None:
            data["_source"] = source
        data.update({f"_{k}": v for k, v in notes.items()})
        path = Path(folder) / CONFIG_NAME
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "AnseConfig":
        """Read ``folder/anse_config.json`` (a model folder or any folder); a missing file is a
        ``FileNotFoundError`` naming it."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {folder}; write one with AnseConfig(...).save_pretrained")
        return cls.from_dict(json.loads(path.read_text()))

