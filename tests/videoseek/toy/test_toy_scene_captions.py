"""Scenes and captions: sampling is deterministic, captions state exactly the scene's facts, domains differ."""

from __future__ import annotations

import re

import numpy as np
import open_clip
import pytest

from videoseek.toy import captions as C  # noqa: N812 - read as a namespace of word tables
from videoseek.toy.model import toy_model_config
from videoseek.toy.scene import (
    EVENTS,
    Scene,
    SceneError,
    Thing,
    all_domain_a_scenes,
    sample_distinct_scenes,
    sample_scene,
)


def _merged(*tables: C.WordTable) -> dict[str, tuple[str, ...]]:
    merged: dict[str, tuple[str, ...]] = {}
    for table in tables:
        for concept, words in table.items():
            merged[concept] = merged.get(concept, ()) + tuple(words)
    return merged


COLOUR_WORDS = _merged(C.A_COLOURS, C.B_COLOURS)
SHAPE_WORDS = _merged(C.A_SHAPES, C.B_SHAPES)
SIZE_WORDS = _merged(C.A_SIZES, C.B_SIZES)
BACKGROUND_WORDS = _merged(C.A_BACKGROUNDS, C.B_BACKGROUNDS)


def test_same_seed_gives_same_scenes_and_captions() -> None:
    def draw(seed: int) -> list[tuple[str, str]]:
        rng = np.random.default_rng(seed)
        return [(s.key, C.caption(s, rng)) for s in (sample_scene(rng, d) for d in "AB" * 50)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_distinct_scenes_have_distinct_keys_and_requested_split() -> None:
    scenes = sample_distinct_scenes(np.random.default_rng(0), "B", 300, split="test")
    assert len({s.key for s in scenes}) == 300
    assert {s.split for s in scenes} == {"test"}


def test_asking_for_more_distinct_scenes_than_exist_fails_clearly() -> None:
    available = sum(s.split == "test" for s in all_domain_a_scenes())
    with pytest.raises(SceneError, match="distinct"):
        sample_distinct_scenes(np.random.default_rng(0), "A", available + 1, split="test")


def test_split_depends_only_on_what_the_caption_states() -> None:
    a = Scene("B", (Thing("star", "red", "small", "left"),), "gray", "striped", "blink")
    moved = Scene("B", (Thing("star", "red", "small", "top right"),), "gray", "striped", "blink")
    assert a.key == moved.key and a.split == moved.split


def test_mirrored_colour_swaps_share_key_and_split() -> None:
    # Captions name a colour swap's two colours in either order and which shows first is nuisance, so
    # red->blue and blue->red are the same described scene and must never straddle the train/test split.
    red_first = Scene("B", (Thing("star", "red", "small", "left"),), "gray", "striped", "colour_swap", "blue")
    blue_first = Scene(
        "B", (Thing("star", "blue", "small", "left"),), "gray", "striped", "colour_swap", "red"
    )
    assert red_first.key == blue_first.key and red_first.split == blue_first.split
    other = Scene("B", (Thing("star", "red", "small", "left"),), "gray", "striped", "colour_swap", "green")
    assert other.key != red_first.key


def test_domain_a_captions_state_exactly_the_scene_facts() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        scene = sample_scene(rng, "A")
        text = C.caption(scene, rng)
        (thing,) = scene.things
        assert C.mentioned_concepts(text, COLOUR_WORDS) == {thing.colour}, text
        assert C.mentioned_concepts(text, SHAPE_WORDS) == {thing.shape}, text
        assert C.mentioned_concepts(text, SIZE_WORDS) == {thing.size}, text
        assert C.mentioned_concepts(text, C.A_POSITIONS) == {thing.position}, text
        assert C.mentioned_concepts(text, BACKGROUND_WORDS) == {scene.background}, text


def test_domain_b_captions_state_objects_event_and_background_but_no_position() -> None:
    rng = np.random.default_rng(8)
    seen_events = set()
    for _ in range(600):
        scene = sample_scene(rng, "B")
        text = C.caption(scene, rng)
        colours = {t.colour for t in scene.things} | ({scene.alt_colour} if scene.alt_colour else set())
        assert C.mentioned_concepts(text, COLOUR_WORDS) == colours, text
        assert C.mentioned_concepts(text, SHAPE_WORDS) == {t.shape for t in scene.things}, text
        assert C.mentioned_concepts(text, SIZE_WORDS) == {t.size for t in scene.things}, text
        assert C.mentioned_concepts(text, BACKGROUND_WORDS) == {scene.background}, text
        assert C.mentioned_concepts(text, C.B_TEXTURES) == {scene.texture}, text
        assert C.mentioned_concepts(text, C.B_EVENT_PHRASES) == {scene.event}, text
        assert C.mentioned_concepts(text, C.A_POSITIONS) == set(), text
        seen_events.add(scene.event)
    assert seen_events == set(EVENTS)


def test_known_word_rate_one_names_every_concept_with_a_pretraining_word() -> None:
    b_words = _merged(C.B_COLOURS, C.B_SHAPES, C.B_SIZES, C.B_BACKGROUNDS)
    a_words = _merged(C.A_COLOURS, C.A_SHAPES, C.A_SIZES, C.A_BACKGROUNDS)
    rng = np.random.default_rng(10)
    default_b_concepts = 0
    for _ in range(300):
        scene = sample_scene(rng, "B")
        known = C.caption(scene, rng, known_word_rate=1.0)
        assert C.mentioned_concepts(known, b_words) == set(), known
        facts = {t.colour for t in scene.things} | {t.shape for t in scene.things} | {scene.background}
        assert facts <= C.mentioned_concepts(known, a_words), known
        assert C.mentioned_concepts(known, C.B_EVENT_PHRASES) == {scene.event}, known  # events stay B's
        default_b_concepts += len(C.mentioned_concepts(C.caption(scene, rng), b_words))
    assert default_b_concepts > 300  # the default rate does use B's words
    with pytest.raises(ValueError, match=r"known_word_rate must be in \[0, 1\]"):
        C.caption(sample_scene(rng, "B"), rng, known_word_rate=1.5)


def test_domain_b_words_never_occur_in_domain_a_captions() -> None:
    b_only = {
        w
        for table in (C.B_COLOURS, C.B_SHAPES, C.B_SIZES, C.B_BACKGROUNDS)
        for ws in table.values()
        for w in ws
    }
    b_only |= {p for ps in C.B_EVENT_PHRASES.values() for p in ps} | {
        w for ws in C.B_TEXTURES.values() for w in ws
    }
    rng = np.random.default_rng(9)
    a_text = " | ".join(C.caption(sample_scene(rng, "A"), rng) for _ in range(2000))
    leaked = {w for w in b_only if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", a_text)}
    assert leaked == set()


def test_captions_fit_the_text_context_without_truncation() -> None:
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the same BPE the toy model uses
    context = toy_model_config()["text_cfg"]["context_length"]
    rng = np.random.default_rng(10)
    longest = max(len(tokenizer.encode(C.caption(sample_scene(rng, d), rng))) for d in "AB" * 1500)
    assert longest + 2 <= context  # start and end tokens


def test_inconsistent_scenes_are_rejected() -> None:
    red_star = Thing("star", "red", "small", "left")
    with pytest.raises(SceneError, match="alt_colour"):
        Scene("B", (red_star,), "gray", "plain", "colour_swap")
    with pytest.raises(SceneError, match="2 object"):
        Scene("B", (red_star,), "gray", "plain", "pair")
    with pytest.raises(SceneError, match="unknown colour"):
        Thing("star", "magenta", "small", "left")
    with pytest.raises(SceneError, match="domain A"):
        Scene("A", (red_star,), "gray", "plain", "blink")


def test_a_textured_still_has_its_own_key_and_plain_ones_keep_theirs() -> None:
    red_star = Thing("star", "red", "small", "left")
    plain = Scene("A", (red_star,), "gray")
    striped = Scene("A", (red_star,), "gray", "striped")
    # the keys (so the splits) of the plain stills the committed checkpoint was pre-trained on never moved
    assert plain.key == "A|small/red/star|left|gray"
    assert striped.key == "A|small/red/star|left|striped/gray"
    rng = np.random.default_rng(3)
    assert all(" striped gray" in C.caption_a(striped, rng) for _ in range(10))
    assert not any(C.mentioned_concepts(C.caption_a(plain, rng), C.B_TEXTURES) for _ in range(10))


def test_scene_dict_roundtrip() -> None:
    rng = np.random.default_rng(11)
    for domain in "AB" * 20:
        scene = sample_scene(rng, domain)  # type: ignore[arg-type]
        assert Scene.from_dict(scene.to_dict()) == scene
