"""The toy world's vocabulary: objects, their attributes, and the prompt grammar.

A scene is one or two objects on a plain background. Every object has a colour, a shape,
a size and a motion; a prompt names the colour, shape and motion of every object, and
optionally its size and the background. Attributes a prompt leaves out are drawn at
random when the scene is rendered, and are not checked by the metrics.

Grammar (one line of it per object, joined by "and")::

    object := "a" [size] colour shape ("moving" direction | "staying still")
    prompt := object ["and" object] ["on a" background "background"]

Two objects in one prompt must differ in colour (the metrics find objects by colour).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np

# Colours in [0, 1] RGB. Chosen far apart so that the nearest palette colour of a pixel
# identifies the object.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.15, 0.25, 1.0),
    "yellow": (1.0, 0.95, 0.1),
    "cyan": (0.1, 0.95, 1.0),
    "magenta": (1.0, 0.1, 0.95),
}
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.45, 0.45, 0.45),
    "white": (1.0, 1.0, 1.0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "big")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
DEFAULT_BACKGROUND = "black"

#: Word-level vocabulary; index 0 is padding. Fixed order: token ids must never change
#: once a model is trained on them.
VOCAB: tuple[str, ...] = (
    "<pad>", "a", "and", "on", "background", "moving", "staying",
    *SIZES, *COLOURS, *SHAPES, *MOTIONS, *BACKGROUNDS,
)
#: Longest prompt the grammar allows, in words.
MAX_PROMPT_WORDS = 20


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a prompt. ``size=None``: the prompt leaves the size open."""

    colour: str
    shape: str
    motion: str
    size: str | None = None

    def __post_init__(self):
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("motion", self.motion, MOTIONS)
        if self.size is not None:
            _check_choice("size", self.size, SIZES)

    def words(self) -> list[str]:
        size = [self.size] if self.size else []
        motion = ["staying", "still"] if self.motion == "still" else ["moving", self.motion]
        return ["a", *size, self.colour, self.shape, *motion]


@dataclass(frozen=True)
class PromptSpec:
    """A whole prompt: one or two objects and an optional background."""

    objects: tuple[ObjectSpec, ...]
    background: str | None = None  # None: not named in the prompt (rendered black)

    def __post_init__(self):
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a prompt has 1 or 2 objects, got {len(self.objects)}")
        if len(self.objects) == 2 and self.objects[0].colour == self.objects[1].colour:
            raise ValueError(
                f"the two objects of a prompt must differ in colour, both are {self.objects[0].colour!r}"
            )
        if self.background is not None:
            _check_choice("background", self.background, BACKGROUNDS)

    @property
    def text(self) -> str:
        words = list(self.objects[0].words())
        for obj in self.objects[1:]:
            words += ["and", *obj.words()]
        if self.background is not None:
            words += ["on", "a", self.background, "background"]
        return " ".join(words)

    def __str__(self) -> str:
        return self.text


def _check_choice(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def split_words(text: str) -> list[str]:
    """Lower-case word list of a prompt; every word must be in :data:`VOCAB`."""
    words = text.lower().replace(",", " ").split()
    for w in words:
        if w not in VOCAB or w == "<pad>":
            raise ValueError(
                f"unknown word {w!r} in prompt {text!r}; the vocabulary is: {' '.join(VOCAB[1:])}"
            )
    if len(words) > MAX_PROMPT_WORDS:
        raise ValueError(f"prompt has {len(words)} words, at most {MAX_PROMPT_WORDS} allowed: {text!r}")
    return words


def parse_prompt(text: str) -> PromptSpec:
    """Parse a prompt of the grammar above into a :class:`PromptSpec`.

    Raises ``ValueError`` naming an unknown word (and listing the vocabulary) or the place
    where the prompt leaves the grammar.
    """
    words = split_words(text)
    pos = 0

    def expect(allowed, what):
        nonlocal pos
        if pos >= len(words) or words[pos] not in allowed:
            got = words[pos] if pos < len(words) else "end of prompt"
            raise ValueError(
                f"prompt {text!r}: expected {what} at word {pos + 1}, got {got!r}; allowed: {', '.join(allowed)}"
            )
        pos += 1
        return words[pos - 1]

    objects = []
    background = None
    while True:
        expect(("a",), "'a'")
        size = None
        if pos < len(words) and words[pos] in SIZES:
            size = words[pos]
            pos += 1
        colour = expect(tuple(COLOURS), "a colour")
        shape = expect(SHAPES, "a shape")
        verb = expect(("moving", "staying"), "'moving' or 'staying'")
        if verb == "moving":
            motion = expect(tuple(m for m in MOTIONS if m != "still"), "a direction")
        else:
            motion = expect(("still",), "'still'")
        objects.append(ObjectSpec(colour=colour, shape=shape, motion=motion, size=size))
        if pos < len(words) and words[pos] == "and":
            pos += 1
            continue
        break
    if pos < len(words):
        expect(("on",), "'on', 'and' or the end")
        expect(("a",), "'a'")
        background = expect(tuple(BACKGROUNDS), "a background colour")
        expect(("background",), "'background'")
    if pos != len(words):
        raise ValueError(f"prompt {text!r}: unexpected words after word {pos}: {' '.join(words[pos:])!r}")
    return PromptSpec(objects=tuple(objects), background=background)


# ----------------------------------------------------------------------------------------
# Train / held-out split of attribute combinations
# ----------------------------------------------------------------------------------------
@dataclass
class WorldSplit:
    """Which (colour, shape, motion) triples the model never sees during training.

    A prompt is held out when any of its objects is a held-out triple.
    """

    held_out: frozenset = field(default_factory=frozenset)
    seed: int = 0

    def is_held_out(self, spec: PromptSpec) -> bool:
        return any((o.colour, o.shape, o.motion) in self.held_out for o in spec.objects)

    def to_json(self) -> str:
        return json.dumps(
            {"seed": self.seed, "held_out": sorted(list(t) for t in self.held_out)}, indent=1
        )

    @classmethod
    def from_json(cls, text: str) -> "WorldSplit":
        d = json.loads(text)
        return cls(held_out=frozenset(tuple(t) for t in d["held_out"]), seed=d["seed"])


def make_split(held_out_fraction: float = 0.2, seed: int = 0) -> WorldSplit:
    """Hold out a fraction of all (colour, shape, motion) triples, never a whole attribute value."""
    triples = list(itertools.product(COLOURS, SHAPES, MOTIONS))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(triples))
    n_held = int(round(held_out_fraction * len(triples)))
    return WorldSplit(held_out=frozenset(triples[i] for i in order[:n_held]), seed=seed)


def sample_prompts(
    n: int,
    rng: np.random.Generator,
    split: WorldSplit | None = None,
    held_out: bool = False,
    two_object_prob: float = 0.35,
    size_named_prob: float = 0.7,
    background_named_prob: float = 0.3,
) -> list[PromptSpec]:
    """Draw ``n`` random prompts; with ``split`` only training (or only held-out) prompts."""
    out = []
    while len(out) < n:
        n_obj = 2 if rng.random() < two_object_prob else 1
        colours = rng.choice(len(COLOURS), size=n_obj, replace=False)
        objs = tuple(
            ObjectSpec(
                colour=list(COLOURS)[c],
                shape=SHAPES[rng.integers(len(SHAPES))],
                motion=MOTIONS[rng.integers(len(MOTIONS))],
                size=SIZES[rng.integers(len(SIZES))] if rng.random() < size_named_prob else None,
            )
            for c in colours
        )
        bg = None
        if rng.random() < background_named_prob:
            bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        spec = PromptSpec(objects=objs, background=bg)
        if split is None or split.is_held_out(spec) == held_out:
            out.append(spec)
    return out


def distinct_prompt_texts(n: int, rng: np.random.Generator, split: WorldSplit | None = None, held_out: bool = False,
                          draw: int | None = None, **sample_kwargs) -> list[str]:
    """``n`` distinct prompt texts in a fixed order: :func:`sample_prompts` draws of ``draw``
    prompts (default ``n``) until ``n`` different texts are in, repeats skipped.

    ``split``, ``held_out`` and ``sample_kwargs`` are passed to :func:`sample_prompts`.
    """
    texts: list[str] = []
    while len(texts) < n:
        for p in sample_prompts(draw or n, rng, split, held_out=held_out, **sample_kwargs):
            if p.text not in texts and len(texts) < n:
                texts.append(p.text)
    return texts
