"""Text subtitle tracks inside a video file, read with PyAV as timed cues (weak captions for training).

Only text codecs are read: SubRip, ASS/SSA, WebVTT and MP4's mov_text (plain ``text`` too); bitmap subtitles
(DVD, PGS) would need OCR. FFmpeg hands every text codec's cue to us as an ASS dialogue line, whose markup
:func:`~videoseek.subtitle_text.clean_cue_text` removes. This runs inside the decode sandbox (it demuxes the
untrusted file), after the frames are sampled; a track that fails to read costs its cues, never the video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream

from videoseek.settings import IngestSettings
from videoseek.subtitle_text import DEFAULT_CUE_S, MAX_CUES_PER_VIDEO, SubtitleCue, clean_cue_text
from videoseek.video.probe import open_media

# Decoder names (what PyAV's codec context reports) of the text subtitle codecs.
TEXT_SUBTITLE_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})


def text_subtitle_streams(container: InputContainer) -> list[Stream]:
    return [
        stream
        for stream in container.streams.subtitles
        if stream.codec_context is not None and stream.codec_context.name in TEXT_SUBTITLE_CODECS
    ]


def _track_name(stream: Stream) -> str:
    language = (stream.metadata or {}).get("language")
    return f"subtitle track {stream.index}" + (f" ({language})" if language and language != "und" else "")


def _cue(packet: Packet[Any], origin_s: float, source: str) -> SubtitleCue | None:
    """The cue one packet carries (None: an empty one, as mov_text writes between cues, or no timestamp)."""
    if packet.pts is None or packet.time_base is None or packet.size == 0:
        return None
    words = " ".join(
        clean_cue_text(bytes(getattr(sub, "dialogue", b"") or b"").decode("utf-8", "replace"))
        for sub in packet.decode()
    ).strip()
    if not words:
        return None
    start = max(float(packet.pts * packet.time_base) - origin_s, 0.0)
    length = float(packet.duration * packet.time_base) if packet.duration else DEFAULT_CUE_S
    return SubtitleCue(start, start + (length if length > 0 else DEFAULT_CUE_S), words, source)


def read_subtitles(path: Path, limits: IngestSettings) -> tuple[list[SubtitleCue], list[str]]:
    """The cues of every text subtitle track of ``path`` (in file order) and, in words, what could not be read."""
    problems: list[str] = []
    with open_media(path, limits) as (container, _log):
        streams = text_subtitle_streams(container)
        if not streams:
            return [], problems
        names = {stream.index: _track_name(stream) for stream in streams}
        origin_s = container.start_time / av.time_base if container.start_time is not None else 0.0
        cues: list[SubtitleCue] = []
        failed = 0
        try:
            for packet in container.demux(*streams):
                try:
                    cue = _cue(packet, origin_s, names[packet.stream.index])
                except av.FFmpegError:
                    failed += 1
                    continue
                if cue is not None:
                    cues.append(cue)
                if len(cues) >= MAX_CUES_PER_VIDEO:
                    problems.append(f"subtitles: only the first {MAX_CUES_PER_VIDEO} cues were kept")
                    break
        except av.FFmpegError as exc:  # damaged data: what was read counts
            problems.append(f"subtitles: reading stopped early ({exc})")
        if failed:
            problems.append(f"subtitles: {failed} cue(s) could not be decoded and were skipped")
    return cues, problems
