"""Tiny real videos generated with PyAV for the decoding tests (helpers; fixtures are in conftest.py).

Every generated frame carries its own index: the top half is a flat grey of level ``16 * (i % 16)``, which
survives lossy codecs well enough to tell which source frame a sampled frame came from. The bottom half is
red on the left and blue on the right, with a green block in the top-left corner, so orientation is visible.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48
LEVEL_STEP = 16


def frame_pattern(i: int, width: int = W, height: int = H) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = LEVEL_STEP * (i % 16)
    image[height // 2 :, : width // 2] = (230, 20, 20)
    image[height // 2 :, width // 2 :] = (20, 20, 230)
    image[: height // 4, : width // 4] = (20, 230, 20)
    return image


def frame_index_of(frame: np.ndarray) -> int:
    """The source index (mod 16) encoded by :func:`frame_pattern`, read from the grey top-right area."""
    h, w = frame.shape[:2]
    level = float(frame[h // 8 : h * 3 // 8, w // 2 : w * 7 // 8].mean())
    return round(level / LEVEL_STEP) % 16


def write_video(
    path: Path,
    codec: str = "libx264",
    n: int = 30,
    rate: int = 10,
    size: tuple[int, int] = (W, H),
    pix_fmt: str = "yuv420p",
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    container_options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    audio: bool = False,
    fmt: str | None = None,
) -> Path:
    """Encode ``n`` pattern frames; ``times`` (seconds) gives explicit, possibly irregular, timestamps."""
    width, height = size
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if times is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = out.add_stream("aac", rate=8000) if audio else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="rgb24")
            if times is not None:
                frame.pts = round(times[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio_stream is not None:
            _write_silence(out, audio_stream, seconds=n / rate)
    return path


def _write_silence(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    samples = 1024
    for k in range(int(seconds * 8000) // samples + 1):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        frame.pts = k * samples
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        _write_silence(out, stream, seconds)
    return path


def patch_gif_screen(src: Path, dst: Path, width: int, height: int) -> Path:
    """Copy a GIF claiming a logical screen of ``width`` x ``height`` (bytes 6-9 of the header)."""
    data = bytearray(src.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    dst.write_bytes(bytes(data))
    return dst


def patch_mpeg1_sequence_header(src: Path, dst: Path, width: int, height: int) -> Path:
    """Copy an MPEG-1 file whose sequence header claims ``width`` x ``height`` (12 bits each)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"\x00\x00\x01\xb3")
    assert at >= 0, "no MPEG-1 sequence header"
    data[at + 4 : at + 7] = bytes([width >> 4, ((width & 15) << 4) | (height >> 8), height & 255])
    dst.write_bytes(bytes(data))
    return dst


def remux_with_edit_list(src: Path, dst: Path, cut_s: float) -> Path:
    """Copy ``src``'s video packets into an MP4 whose edit list starts playback ``cut_s`` into the media.

    What a stream copy cut at a non-keyframe gives (``ffmpeg -ss 1.5 -c copy``): the packets from the GOP
    start stay in the file (they are needed to decode the first shown frame) with negative times, and the
    muxer writes an edit list with a non-zero media time so players start at the cut.
    """
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mp4") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        assert video.time_base is not None
        offset = round(cut_s / video.time_base)
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            assert packet.pts is not None
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = stream
            out.mux(packet)
    return dst


def mp4_edit_media_time(path: Path) -> tuple[int, int]:
    """(media time of the first edit, the track's timescale) read from the first ``elst``/``mdhd`` boxes."""
    data = path.read_bytes()
    elst = data.find(b"elst")
    assert elst >= 0, "no edit list"
    version = data[elst + 4]
    entry = elst + 12  # after type, version + flags, entry count
    media_time = (
        struct.unpack(">q", data[entry + 8 : entry + 16])[0]
        if version == 1
        else struct.unpack(">i", data[entry + 4 : entry + 8])[0]
    )
    mdhd = data.find(b"mdhd")
    offset = mdhd + 4 + 4 + (16 if data[mdhd + 4] == 1 else 8)  # skip version/flags and the two dates
    return media_time, struct.unpack(">I", data[offset : offset + 4])[0]


def cut_transport_stream_head(src: Path, dst: Path, fraction: float) -> Path:
    """Copy an MPEG-TS without its first ``fraction`` of bytes, cut on a 188-byte packet boundary: the
    stream then starts mid-GOP, as a capture joined late or a file whose beginning was lost does."""
    data = src.read_bytes()
    cut = int(len(data) * fraction) // 188 * 188
    dst.write_bytes(data[cut:])
    return dst
