"""What a toy scene is: the facts a caption may state, and how scenes are sampled from a seed.

A scene is a small, validated, frozen description (objects, background, texture, event). Everything random
that a caption does NOT state (exact pixel offsets, colour tints, noise) is nuisance and lives in the renderer,
drawn from the item's own seed. Two domains share the concepts but not their distribution:

* domain A (still images, pre-training): one object with shape, colour, size and position on a plain
  background (or, for a richer pre-training, a textured one: ``PretrainConfig.textured_fraction``); every
  fact is in the caption.
* domain B (short videos, adaptation): one or two objects on a textured background with an *event* that only a
  set of frames reveals (blinking, colour swapping, jumping, two objects taking turns). Positions are drawn but
  never captioned.

Each scene has a canonical ``key`` (exactly the facts its caption states) and a deterministic ``split`` from
that key, so generating with any seed never puts the same described scene in both train and test.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

Domain = Literal["A", "B"]
Split = Literal["train", "test"]

# Object colours (RGB). Names here are the canonical concept names; captions pick surface words for them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 220),
    "yellow": (240, 215, 30),
    "orange": (245, 135, 20),
    "purple": (135, 45, 180),
    "cyan": (30, 200, 215),
    "brown": (120, 70, 30),
}
# Backgrounds are pale or neutral so they never read as an object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (242, 242, 242),
    "black": (22, 22, 22),
    "gray": (128, 128, 128),
    "beige": (222, 205, 165),
    "lavender": (205, 195, 235),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
# Object extent as a fraction of the frame side.
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.27, "large": 0.38}
# A 3x3 grid of anchor points (fractions of the frame side), named as captions say them.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.26, 0.26),
    "top": (0.5, 0.26),
    "top right": (0.74, 0.26),
    "left": (0.26, 0.5),
    "center": (0.5, 0.5),
    "right": (0.74, 0.5),
    "bottom left": (0.26, 0.74),
    "bottom": (0.5, 0.74),
    "bottom right": (0.74, 0.74),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "grainy")
# Domain B events. All are visible in an unordered SET of frames sampled at >= 1 fps (1-second segments).
EVENTS: tuple[str, ...] = ("still", "blink", "colour_swap", "jump", "take_turns", "pair")
SINGLE_OBJECT_EVENTS = frozenset({"still", "blink", "colour_swap", "jump"})
_EVENT_WEIGHTS = {
    "still": 0.2,
    "blink": 0.16,
    "colour_swap": 0.2,
    "jump": 0.14,
    "take_turns": 0.15,
    "pair": 0.15,
}

TEST_FRACTION_PERCENT = 20


class SceneError(ValueError):
    """A scene description that is inconsistent (unknown word, wrong object count for its event, ...)."""


@dataclass(frozen=True)
class Thing:
    """One drawn object."""

    shape: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        _check_member("shape", self.shape, SHAPES)
        _check_member("colour", self.colour, COLOURS)
        _check_member("size", self.size, SIZES)
        _check_member("position", self.position, POSITIONS)


@dataclass(frozen=True)
class Scene:
    """A domain A image or domain B video, as far as captions are concerned (plus undescribed positions)."""

    domain: Domain
    things: tuple[Thing, ...]
    background: str
    texture: str = "plain"
    event: str = "still"
    alt_colour: str | None = None  # colour_swap: the second colour
    alt_position: str | None = None  # jump: the second place

    def __post_init__(self) -> None:
        _check_member("domain", self.domain, ("A", "B"))
        _check_member("background", self.background, BACKGROUNDS)
        _check_member("texture", self.texture, TEXTURES)
        _check_member("event", self.event, EVENTS)
        expected = 1 if self.event in SINGLE_OBJECT_EVENTS else 2
        if len(self.things) != expected:
            raise SceneError(f"event {self.event!r} needs {expected} object(s), got {len(self.things)}")
        if self.domain == "A" and self.event != "still":
            raise SceneError("domain A scenes are still images: event 'still' only")
        if (self.event == "colour_swap") != (self.alt_colour is not None):
            raise SceneError("alt_colour is set exactly when the event is colour_swap")
        if self.alt_colour is not None:
            _check_member("alt_colour", self.alt_colour, COLOURS)
            if self.alt_colour == self.things[0].colour:
                raise SceneError("colour_swap needs two different colours")
        if (self.event == "jump") != (self.alt_position is not None):
            raise SceneError("alt_position is set exactly when the event is jump")
        if self.alt_position is not None:
            _check_member("alt_position", self.alt_position, POSITIONS)
            if self.alt_position == self.things[0].position:
                raise SceneError("jump needs two different positions")
        if len(self.things) == 2 and self.things[0].position == self.things[1].position:
            raise SceneError("two objects must not share a position")
        if len(self.things) == 2 and _object_facts(self.things[0]) == _object_facts(self.things[1]):
            raise SceneError("two objects in one scene must differ in shape, colour or size")

    @property
    def key(self) -> str:
        """Canonical text of exactly the facts a caption states; equal keys mean indistinguishable captions."""
        if self.domain == "A":
            (thing,) = self.things
            # A plain background adds nothing, so plain scenes keep the keys (and splits) they always had.
            texture = "" if self.texture == "plain" else f"{self.texture}/"
            return f"A|{'/'.join(_object_facts(thing))}|{thing.position}|{texture}{self.background}"
        if self.alt_colour is not None:  # colour_swap: captions name both colours in either order
            (thing,) = self.things
            colours = "+".join(sorted((thing.colour, self.alt_colour)))
            objects = [f"{thing.size}/{colours}/{thing.shape}"]
        else:
            objects = sorted("/".join(_object_facts(t)) for t in self.things)
        return f"B|{self.event}|{'+'.join(objects)}|{self.texture}/{self.background}"

    @property
    def split(self) -> Split:
        return split_of_key(self.key)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["things"] = [asdict(t) for t in self.things]
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Scene:
        fields = dict(payload)
        fields["things"] = tuple(Thing(**t) for t in fields["things"])
        return cls(**fields)


def split_of_key(key: str) -> Split:
    """Deterministic train/test assignment from the scene key (about TEST_FRACTION_PERCENT% test)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100
    return "test" if bucket < TEST_FRACTION_PERCENT else "train"


def _object_facts(thing: Thing) -> tuple[str, str, str]:
    return (thing.size, thing.colour, thing.shape)


def _check_member(what: str, value: object, allowed: Any) -> None:
    if value not in allowed:
        raise SceneError(f"unknown {what} {value!r}; expected one of {sorted(allowed)}")


def _pick(rng: np.random.Generator, options: Any) -> Any:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def sample_scene(rng: np.random.Generator, domain: Domain) -> Scene:
    """One random scene of a domain (not necessarily unique: see :func:`sample_distinct_scenes`)."""
    if domain == "A":
        thing = Thing(_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, SIZES), _pick(rng, POSITIONS))
        return Scene("A", (thing,), _pick(rng, BACKGROUNDS))
    return _sample_b_scene(rng)


def _sample_b_scene(rng: np.random.Generator) -> Scene:
    events = list(_EVENT_WEIGHTS)
    weights = np.array([_EVENT_WEIGHTS[e] for e in events])
    event = events[int(rng.choice(len(events), p=weights / weights.sum()))]
    background, texture = _pick(rng, BACKGROUNDS), _pick(rng, TEXTURES)
    positions = list(POSITIONS)
    # Two places far enough apart that objects never overlap: opposite cells of the grid.
    first = _pick(rng, [p for p in positions if p != "center"])
    second = _opposite(first)
    if event in SINGLE_OBJECT_EVENTS:
        thing = Thing(_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, SIZES), first)
        alt_colour = _pick(rng, [c for c in COLOURS if c != thing.colour]) if event == "colour_swap" else None
        alt_position = second if event == "jump" else None
        return Scene("B", (thing,), background, texture, event, alt_colour, alt_position)
    while True:
        # Sizes up to medium so two objects fit side by side.
        a = Thing(_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, ("small", "medium")), first)
        b = Thing(_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, ("small", "medium")), second)
        if _object_facts(a) != _object_facts(b):
            return Scene("B", (a, b), background, texture, event)


def _opposite(position: str) -> str:
    x, y = POSITIONS[position]
    target = (1.0 - x, 1.0 - y)
    return next(name for name, xy in POSITIONS.items() if np.allclose(xy, target))


def sample_distinct_scenes(
    rng: np.random.Generator, domain: Domain, n: int, split: Split | None = None
) -> list[Scene]:
    """``n`` scenes with pairwise different keys (so every caption matches exactly one item), optionally all
    from one split. Fails clearly when the domain does not hold that many distinct scenes."""
    if domain == "A":
        # Small enough to enumerate: a permutation is exact and fast, even for every scene of a split.
        pool = [s for s in all_domain_a_scenes() if split is None or s.split == split]
        if n > len(pool):
            raise SceneError(
                f"domain A has only {len(pool)} distinct scenes{f' in split {split!r}' if split else ''}; "
                f"ask for fewer (n={n})"
            )
        return [pool[int(i)] for i in rng.permutation(len(pool))[:n]]
    scenes: list[Scene] = []
    seen: set[str] = set()
    attempts = 0
    max_attempts = 50 * n + 1000
    while len(scenes) < n:
        attempts += 1
        if attempts > max_attempts:
            raise SceneError(
                f"could only find {len(scenes)} distinct domain {domain} scenes"
                f"{f' in split {split!r}' if split else ''}; ask for fewer (n={n})"
            )
        scene = sample_scene(rng, domain)
        if scene.key in seen or (split is not None and scene.split != split):
            continue
        seen.add(scene.key)
        scenes.append(scene)
    return scenes


def domain_a_neighbours(scene: Scene) -> list[Scene]:
    """Every domain A scene that differs from ``scene`` in exactly one fact (the hardest negatives)."""
    (thing,) = scene.things
    out = [Scene("A", scene.things, b) for b in BACKGROUNDS if b != scene.background]
    for name, options in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES), ("position", POSITIONS)):
        for value in options:
            if value != getattr(thing, name):
                out.append(Scene("A", (replace(thing, **{name: value}),), scene.background))
    return out


def all_domain_a_scenes() -> list[Scene]:
    """Every domain A scene (the space is small enough to enumerate), in a fixed order."""
    return [
        Scene("A", (Thing(shape, colour, size, position),), background)
        for shape in SHAPES
        for colour in COLOURS
        for size in SIZES
        for position in POSITIONS
        for background in BACKGROUNDS
    ]
