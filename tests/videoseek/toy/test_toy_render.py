"""Rendering: the pixels show what the scene description says, and events show in any 1 fps frame set."""

from __future__ import annotations

import numpy as np
import pytest

from videoseek.toy.render import (
    Placed,
    VideoPlan,
    background_rgb,
    layout_at,
    place,
    plan_video,
    render_image,
    render_video,
    sample_nuisance,
)
from videoseek.toy.scene import (
    BACKGROUNDS,
    COLOURS,
    EVENTS,
    Scene,
    Thing,
    sample_distinct_scenes,
    sample_scene,
)

PALETTE = {**{f"obj:{k}": v for k, v in COLOURS.items()}, **{f"bg:{k}": v for k, v in BACKGROUNDS.items()}}


def _nearest_palette_name(pixel: np.ndarray) -> str:
    return min(PALETTE, key=lambda k: float(np.sum((pixel.astype(float) - np.array(PALETTE[k])) ** 2)))


def _centre_pixel(frame: np.ndarray, obj: Placed) -> np.ndarray:
    return frame[round(obj.cy), round(obj.cx)]


def test_image_shows_the_object_colour_at_its_place_and_the_background_elsewhere() -> None:
    for scene in sample_distinct_scenes(np.random.default_rng(0), "A", 60):
        (thing,) = scene.things
        # render_image draws its nuisance first from the stream, so the same seed gives the same placement.
        nuisance = sample_nuisance(np.random.default_rng(1), scene)
        image = render_image(scene, np.random.default_rng(1), 64)
        (placed,) = place(layout_at(scene, 0, nuisance.phase), nuisance, 64)
        assert _nearest_palette_name(_centre_pixel(image, placed)) == f"obj:{thing.colour}"
        # The corner farthest from the object is background.
        corner = (0 if placed.cy > 32 else 63, 0 if placed.cx > 32 else 63)
        assert _nearest_palette_name(image[corner]) == f"bg:{scene.background}"


def test_objects_stay_inside_the_frame() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        scene = sample_scene(rng, "B")
        plan = plan_video(scene, rng, 128, 8, 4)
        for index in range(0, plan.n_frames, plan.fps):
            for obj in plan.placed_at(index):
                half = obj.extent / 2
                assert half <= obj.cx <= 128 - half and half <= obj.cy <= 128 - half


def _one_fps_indices(plan: VideoPlan) -> list[int]:
    return [int((k + 0.5) * plan.fps) for k in range(plan.n_frames // plan.fps)]


@pytest.mark.parametrize("event", EVENTS)
def test_each_event_is_visible_in_an_unordered_set_of_1fps_frames(event: str) -> None:
    rng = np.random.default_rng(3)
    scene = next(s for s in (sample_scene(rng, "B") for _ in range(500)) if s.event == event)
    plan = plan_video(scene, rng, 128, 8, 4)
    states = {plan.placed_at(i) for i in _one_fps_indices(plan)}
    colours = {p.colour for state in states for p in state}
    centres = {(p.shape, round(p.cx), round(p.cy)) for state in states for p in state}
    shapes_per_frame = {len(state) for state in states}
    things = scene.things
    if event == "still":
        assert len(states) == 1 and shapes_per_frame == {1}
    elif event == "blink":
        assert shapes_per_frame == {0, 1}
    elif event == "colour_swap":
        assert colours == {things[0].colour, scene.alt_colour} and shapes_per_frame == {1}
    elif event == "jump":
        assert len(centres) == 2 and shapes_per_frame == {1}
    elif event == "take_turns":
        assert shapes_per_frame == {1} and {p.shape + p.colour for s in states for p in s} == {
            t.shape + t.colour for t in things
        }
    elif event == "pair":
        assert shapes_per_frame == {2}


def test_blinking_object_pixels_come_and_go_with_the_layout() -> None:
    scene = Scene("B", (Thing("square", "red", "large", "left"),), "white", "plain", "blink")
    rng = np.random.default_rng(4)
    plan = plan_video(scene, rng, 128, 8, 4)
    frames = list(render_video(plan, rng))
    assert len(frames) == plan.n_frames == 32
    on = next(p for i in range(plan.n_frames) for p in plan.placed_at(i))
    bg = np.array(background_rgb(scene, plan.nuisance), dtype=float)
    for index, frame in enumerate(frames):
        pixel = _centre_pixel(frame, on).astype(float)
        visible = bool(plan.placed_at(index))
        assert (np.abs(pixel - np.array(on.rgb)).max() < 30) == visible
        assert (np.abs(pixel - bg).max() < 30) == (not visible)
