"""Captions from a small grammar: templates, paraphrases and synonyms, chosen by the item's own random stream.

Domain A and domain B name the same concepts with (mostly) different words, so a CLIP pre-trained on A has
never seen most of B's vocabulary: B mentions a concept with one of A's words only ``B_KNOWN_WORD_RATE`` of the
time. B's event phrases ("blinking", "taking turns", ...) never occur in A at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from videoseek.toy.scene import Scene, Thing

WordTable = Mapping[str, Sequence[str]]

A_COLOURS: WordTable = {
    c: (c,) for c in ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "brown")
}
A_SHAPES: WordTable = {s: (s,) for s in ("circle", "square", "triangle", "star", "cross", "diamond")}
A_SIZES: WordTable = {
    "small": ("small", "little"),
    "medium": ("medium", "mid-sized"),
    "large": ("large", "big"),
}
A_BACKGROUNDS: WordTable = {b: (b,) for b in ("white", "black", "gray", "beige", "lavender")}
A_POSITIONS: WordTable = {
    "top left": ("in the top left", "in the upper left corner"),
    "top": ("at the top", "along the top edge"),
    "top right": ("in the top right", "in the upper right corner"),
    "left": ("on the left", "at the left side"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "at the right side"),
    "bottom left": ("in the bottom left", "in the lower left corner"),
    "bottom": ("at the bottom", "along the bottom edge"),
    "bottom right": ("in the bottom right", "in the lower right corner"),
}

B_COLOURS: WordTable = {
    "red": ("crimson",),
    "green": ("emerald",),
    "blue": ("azure",),
    "yellow": ("golden",),
    "orange": ("amber",),
    "purple": ("violet",),
    "cyan": ("turquoise",),
    "brown": ("chocolate",),
}
B_SHAPES: WordTable = {
    "circle": ("disc",),
    "square": ("block",),
    "triangle": ("wedge",),
    "star": ("starburst",),
    "cross": ("plus sign",),
    "diamond": ("rhombus",),
}
B_SIZES: WordTable = {"small": ("tiny",), "medium": ("moderate",), "large": ("giant",)}
B_BACKGROUNDS: WordTable = {
    "white": ("ivory",),
    "black": ("ebony",),
    "gray": ("grey",),
    "beige": ("sand",),
    "lavender": ("lilac",),
}
B_TEXTURES: WordTable = {
    "plain": ("plain",),
    "striped": ("striped",),
    "checkered": ("checkered",),
    "grainy": ("grainy",),
}
# How often a domain B caption names a concept with domain A's word instead of its own.
B_KNOWN_WORD_RATE = 0.35

A_TEMPLATES: tuple[str, ...] = (
    "{a_obj} {pos} on a {bg} background",
    "a photo of {a_obj} {pos} on a {bg} background",
    "a {bg} background with {a_obj} {pos}",
    "there is {a_obj} {pos}, on {bg}",
    "an image of {a_obj} {pos} against a {bg} backdrop",
)
B_EVENT_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "still": ("a motionless {obj} {bgp}", "{a_obj} that stays put {bgp}"),
    "blink": ("{a_obj} blinking {bgp}", "{a_obj} that flashes on and off {bgp}"),
    "colour_swap": (
        "{a_sized_shape} alternating between {c1} and {c2} {bgp}",
        "{a_sized_shape} switching colours, {c1} and {c2}, {bgp}",
    ),
    "jump": ("{a_obj} hopping around {bgp}", "{a_obj} that jumps between two spots {bgp}"),
    "take_turns": (
        "{a_obj} and {a_obj2} taking turns {bgp}",
        "{a_obj} and {a_obj2} appearing one at a time {bgp}",
    ),
    "pair": ("{a_obj} and {a_obj2} side by side {bgp}", "{a_obj} next to {a_obj2} {bgp}"),
}
B_BACKGROUND_PHRASES: tuple[str, ...] = (
    "on a {tex} {bg} background",
    "over a {tex} {bg} backdrop",
    "against {tex} {bg}",
)
B_PREFIXES: tuple[str, ...] = ("", "video of ", "footage of ", "a clip showing ")

# Every word or phrase that names an event in B; none of them occurs in A's grammar.
B_EVENT_PHRASES: Mapping[str, tuple[str, ...]] = {
    "still": ("motionless", "stays put"),
    "blink": ("blinking", "flashes on and off"),
    "colour_swap": ("alternating between", "switching colours"),
    "jump": ("hopping around", "jumps between two spots"),
    "take_turns": ("taking turns", "appearing one at a time"),
    "pair": ("side by side", "next to"),
}


def _choose(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption_a(scene: Scene, rng: np.random.Generator) -> str:
    """A domain A caption: every fact of the scene, in A's words (a texture other than plain before the
    background's colour, in B's word for it: "on a striped gray background")."""
    (thing,) = scene.things
    obj = f"{_choose(rng, A_SIZES[thing.size])} {thing.colour} {thing.shape}"
    template = _choose(rng, A_TEMPLATES)
    background = scene.background
    if scene.texture != "plain":
        background = f"{_choose(rng, B_TEXTURES[scene.texture])} {background}"
    return template.format(
        a_obj=with_article(obj), pos=_choose(rng, A_POSITIONS[thing.position]), bg=background
    )


class _BWords:
    """Picks B's word for a concept, falling back to A's word ``known_word_rate`` of the time."""

    def __init__(self, rng: np.random.Generator, known_word_rate: float) -> None:
        self._rng = rng
        self._known_word_rate = known_word_rate

    def pick(self, b_table: WordTable, a_table: WordTable, concept: str) -> str:
        table = a_table if self._rng.random() < self._known_word_rate else b_table
        return _choose(self._rng, table[concept])

    def obj(self, thing: Thing) -> str:
        size = self.pick(B_SIZES, A_SIZES, thing.size)
        return f"{size} {self.pick(B_COLOURS, A_COLOURS, thing.colour)} {self.pick(B_SHAPES, A_SHAPES, thing.shape)}"


def caption_b(scene: Scene, rng: np.random.Generator, known_word_rate: float = B_KNOWN_WORD_RATE) -> str:
    """A domain B caption: objects, event and background, mostly in B's own words; never positions.

    ``known_word_rate`` is how often a concept is named with A's (pre-training) word: 1.0 keeps every word the
    toy CLIP knows, like MSR-VTT's for a web-trained CLIP, and leaves the shift in visuals, grammar and events.
    """
    if not 0.0 <= known_word_rate <= 1.0:
        raise ValueError(f"known_word_rate must be in [0, 1], got {known_word_rate}")
    words = _BWords(rng, known_word_rate)
    first = scene.things[0]
    obj = words.obj(first)
    fields = {
        "obj": obj,
        "a_obj": with_article(obj),
        "bgp": _choose(rng, B_BACKGROUND_PHRASES).format(
            tex=_choose(rng, B_TEXTURES[scene.texture]),
            bg=words.pick(B_BACKGROUNDS, A_BACKGROUNDS, scene.background),
        ),
    }
    if len(scene.things) == 2:
        # The set of frames has no order, so neither has the pair: either object may be named first.
        things = list(scene.things)
        if rng.random() < 0.5:
            things.reverse()
        fields["a_obj"] = with_article(words.obj(things[0]))
        fields["a_obj2"] = with_article(words.obj(things[1]))
    if scene.event == "colour_swap":
        assert scene.alt_colour is not None
        colours = [first.colour, scene.alt_colour]
        if rng.random() < 0.5:
            colours.reverse()
        fields["c1"], fields["c2"] = (words.pick(B_COLOURS, A_COLOURS, c) for c in colours)
        fields["a_sized_shape"] = with_article(
            f"{words.pick(B_SIZES, A_SIZES, first.size)} {words.pick(B_SHAPES, A_SHAPES, first.shape)}"
        )
    text = _choose(rng, B_EVENT_TEMPLATES[scene.event]).format(**fields)
    return _choose(rng, B_PREFIXES) + text


def caption(scene: Scene, rng: np.random.Generator, known_word_rate: float = B_KNOWN_WORD_RATE) -> str:
    """The caption for a scene of either domain (``known_word_rate``: see :func:`caption_b`)."""
    return caption_a(scene, rng) if scene.domain == "A" else caption_b(scene, rng, known_word_rate)


def mentioned_concepts(text: str, table: WordTable) -> set[str]:
    """Concepts of ``table`` whose words occur in ``text`` as whole words (used to check captions)."""
    return {
        concept
        for concept, words in table.items()
        if any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text) for w in words)
    }
