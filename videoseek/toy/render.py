"""Drawing scenes into RGB frames with PIL and numpy.

Rendering is split in three steps so tests can check frames against the scene description:
``layout_at`` says which objects are visible (and in what colour and place) during a 1-second segment,
``place`` turns that into pixel geometry using the item's nuisance (jitter, tints), and ``draw`` paints it.
Shapes are drawn at ``SUPERSAMPLE`` times the output size and box-filtered down, so edges are anti-aliased.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from videoseek.toy.scene import BACKGROUNDS, COLOURS, POSITIONS, SIZES, Scene, Thing

SUPERSAMPLE = 4
# Pixel noise added to every domain B frame (std, 0-255 scale); domain A is clean.
B_FRAME_NOISE_STD = 6.0


@dataclass(frozen=True)
class Visible:
    """One object as it appears during a segment (canonical names, before nuisance)."""

    thing_index: int
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Placed:
    """One object in pixel space (output resolution)."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    extent: float


@dataclass(frozen=True)
class Nuisance:
    """Per-item randomness that captions never mention; fixed for all frames of a video."""

    offsets: tuple[tuple[float, float], ...]  # per thing, fraction of the frame side
    scales: tuple[float, ...]  # per thing
    tints: tuple[tuple[int, int, int], ...]  # per thing, added to the colour
    background_tint: tuple[int, int, int]
    phase: int  # which half of the event cycle comes first
    texture_period: float  # fraction of the frame side
    texture_orientation: int  # 0 horizontal, 1 vertical, 2 diagonal
    texture_contrast: int
    specks: tuple[tuple[float, float, int], ...]  # clutter: (x, y, grey level)


def sample_nuisance(rng: np.random.Generator, scene: Scene) -> Nuisance:
    n = len(scene.things)
    jitter = 0.035
    # Clutter goes with B's look: every B video, and the textured stills of a richer pre-training.
    cluttered = scene.domain == "B" or scene.texture != "plain"
    return Nuisance(
        offsets=tuple(
            (float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter))) for _ in range(n)
        ),
        scales=tuple(float(rng.uniform(0.9, 1.1)) for _ in range(n)),
        tints=tuple(tuple(int(v) for v in rng.integers(-14, 15, size=3)) for _ in range(n)),  # type: ignore[misc]
        background_tint=tuple(int(v) for v in rng.integers(-8, 9, size=3)),  # type: ignore[arg-type]
        phase=int(rng.integers(2)),
        texture_period=float(rng.uniform(0.09, 0.15)),
        texture_orientation=int(rng.integers(3)),
        texture_contrast=int(rng.integers(35, 60)),
        specks=tuple(
            (float(rng.uniform(0.03, 0.97)), float(rng.uniform(0.03, 0.97)), int(rng.integers(60, 200)))
            for _ in range(int(rng.integers(6, 15)) if cluttered else 0)
        ),
    )


def layout_at(scene: Scene, segment: int, phase: int = 0) -> tuple[Visible, ...]:
    """What is visible during 1-second segment ``segment``; every event has a 2-segment cycle."""
    first_half = (segment + phase) % 2 == 0
    t0 = scene.things[0]
    if scene.event == "blink":
        return (_visible(0, t0),) if first_half else ()
    if scene.event == "colour_swap":
        assert scene.alt_colour is not None
        return (_visible(0, t0, colour=t0.colour if first_half else scene.alt_colour),)
    if scene.event == "jump":
        assert scene.alt_position is not None
        return (_visible(0, t0, position=t0.position if first_half else scene.alt_position),)
    if scene.event == "take_turns":
        index = 0 if first_half else 1
        return (_visible(index, scene.things[index]),)
    return tuple(_visible(i, t) for i, t in enumerate(scene.things))


def _visible(index: int, thing: Thing, colour: str | None = None, position: str | None = None) -> Visible:
    return Visible(index, thing.shape, colour or thing.colour, thing.size, position or thing.position)


def place(visible: tuple[Visible, ...], nuisance: Nuisance, size: int) -> tuple[Placed, ...]:
    placed = []
    for v in visible:
        ax, ay = POSITIONS[v.position]
        dx, dy = nuisance.offsets[v.thing_index]
        tint = nuisance.tints[v.thing_index]
        rgb = tuple(int(np.clip(c + t, 0, 255)) for c, t in zip(COLOURS[v.colour], tint, strict=True))
        extent = SIZES[v.size] * nuisance.scales[v.thing_index] * size
        placed.append(Placed(v.shape, v.colour, rgb, (ax + dx) * size, (ay + dy) * size, extent))  # type: ignore[arg-type]
    return tuple(placed)


def background_rgb(scene: Scene, nuisance: Nuisance) -> tuple[int, int, int]:
    base = BACKGROUNDS[scene.background]
    return tuple(int(np.clip(c + t, 0, 255)) for c, t in zip(base, nuisance.background_tint, strict=True))  # type: ignore[return-value]


def draw_background(scene: Scene, nuisance: Nuisance, size: int, rng: np.random.Generator) -> np.ndarray:
    """The background (texture and clutter included) at output resolution, float32 HxWx3."""
    base = np.array(background_rgb(scene, nuisance), dtype=np.float32)
    canvas = np.broadcast_to(base, (size, size, 3)).copy()
    # Textures shift the background towards mid-grey-ish by a fixed contrast, so they never look like an object.
    shift = np.float32(nuisance.texture_contrast if base.mean() < 128 else -nuisance.texture_contrast)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if scene.texture == "striped":
        coord = (yy, xx, (xx + yy) / math.sqrt(2))[nuisance.texture_orientation]
        canvas += (np.floor(coord / nuisance.texture_period) % 2)[..., None] * shift
    elif scene.texture == "checkered":
        cells = (np.floor(xx / nuisance.texture_period) + np.floor(yy / nuisance.texture_period)) % 2
        canvas += cells[..., None] * shift
    elif scene.texture == "grainy":
        canvas += rng.normal(0.0, abs(float(shift)) * 0.5, size=(size, size, 1)).astype(np.float32)
    radius = max(1.0, 0.012 * size)
    for sx, sy, grey in nuisance.specks:
        mask = (xx * size - sx * size) ** 2 + (yy * size - sy * size) ** 2 <= radius**2
        canvas[mask] = grey
    return np.clip(canvas, 0, 255)


def draw(placed: tuple[Placed, ...], background: np.ndarray) -> np.ndarray:
    """Objects composited over a background; returns uint8 HxWx3."""
    size = background.shape[0]
    big = size * SUPERSAMPLE
    out = background.copy()
    for obj in placed:
        mask_img = Image.new("L", (big, big), 0)
        _draw_shape(ImageDraw.Draw(mask_img), obj, SUPERSAMPLE)
        alpha = (
            np.asarray(mask_img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255
        )
        out = out * (1 - alpha) + np.array(obj.rgb, dtype=np.float32) * alpha
    frame: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return frame


def _draw_shape(d: ImageDraw.ImageDraw, obj: Placed, scale: int) -> None:
    cx, cy, half = obj.cx * scale, obj.cy * scale, obj.extent * scale / 2
    if obj.shape == "circle":
        d.ellipse((cx - half, cy - half, cx + half, cy + half), fill=255)
    elif obj.shape == "square":
        s = half * 0.85
        d.rectangle((cx - s, cy - s, cx + s, cy + s), fill=255)
    elif obj.shape == "triangle":
        d.polygon([(cx, cy - half), (cx + half, cy + half * 0.8), (cx - half, cy + half * 0.8)], fill=255)
    elif obj.shape == "star":
        points = []
        for k in range(10):
            r = half if k % 2 == 0 else half * 0.42
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
        d.polygon(points, fill=255)
    elif obj.shape == "cross":
        t = half * 0.36
        d.rectangle((cx - half, cy - t, cx + half, cy + t), fill=255)
        d.rectangle((cx - t, cy - half, cx + t, cy + half), fill=255)
    elif obj.shape == "diamond":
        d.polygon(
            [(cx, cy - half), (cx + half * 0.72, cy), (cx, cy + half), (cx - half * 0.72, cy)], fill=255
        )
    else:  # pragma: no cover - Scene validation rejects unknown shapes first
        raise ValueError(f"unknown shape {obj.shape!r}")


def render_image(scene: Scene, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A still image (uint8 HxWx3) of a scene's first segment; domain A's pre-training and eval images."""
    nuisance = sample_nuisance(rng, scene)
    background = draw_background(scene, nuisance, size, rng)
    return draw(place(layout_at(scene, 0, nuisance.phase), nuisance, size), background)


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to draw a video's frames, kept so tests can compare frames with the description."""

    scene: Scene
    nuisance: Nuisance
    size: int
    fps: int
    n_frames: int

    def segment_of(self, frame_index: int) -> int:
        return frame_index // self.fps

    def placed_at(self, frame_index: int) -> tuple[Placed, ...]:
        visible = layout_at(self.scene, self.segment_of(frame_index), self.nuisance.phase)
        return place(visible, self.nuisance, self.size)


def plan_video(scene: Scene, rng: np.random.Generator, size: int, fps: int, duration_s: int) -> VideoPlan:
    if duration_s < 2:
        raise ValueError("videos need at least 2 seconds so every event shows both of its states")
    return VideoPlan(scene, sample_nuisance(rng, scene), size, fps, fps * duration_s)


def render_video(plan: VideoPlan, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Frames (uint8 HxWx3) of a planned video; domain B frames get fresh sensor noise each frame."""
    background = draw_background(plan.scene, plan.nuisance, plan.size, rng)
    by_segment_state: dict[tuple[Placed, ...], np.ndarray] = {}
    noise_std = B_FRAME_NOISE_STD if plan.scene.domain == "B" else 0.0
    for index in range(plan.n_frames):
        placed = plan.placed_at(index)
        if placed not in by_segment_state:
            by_segment_state[placed] = draw(placed, background)
        frame = by_segment_state[placed]
        if noise_std:
            noisy = frame.astype(np.float32) + rng.normal(0.0, noise_std, size=frame.shape).astype(np.float32)
            frame = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        yield frame
