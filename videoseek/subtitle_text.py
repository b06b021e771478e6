"""Timed subtitle cues as plain text: SubRip (``.srt``) and WebVTT (``.vtt``) files, and ASS dialogue text.

Sidecar files given with an upload are parsed here, in Python, rather than by FFmpeg: they are small text
files, and nothing an uploader writes into one then reaches a C parser in the API process. Subtitle tracks
inside a video are read by PyAV during decoding (``videoseek/video/subtitles.py``) and their text cleaned by
:func:`clean_cue_text` too. Markup goes (``<i>``, ``<font>``, WebVTT's ``<v Name>`` and ``<c.class>``, ASS
override blocks such as ``{\\i1}``, ``\\N`` line breaks); what is left is the words, one line.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import PurePath

SIDECAR_SUFFIXES = (".srt", ".vtt")
MAX_SIDECAR_BYTES = 2 * 1024 * 1024  # a two-hour film's subtitles are ~100 KB
MAX_CUES_PER_VIDEO = 10_000  # every track and sidecar of one video together
DEFAULT_CUE_S = 3.0  # how long a cue without an end time is shown

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")
_ASS_BREAK = re.compile(r"\\[Nnh]")
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


class SubtitleFileError(ValueError):
    """A sidecar subtitle file that cannot be read as SubRip or WebVTT; says which file and why."""


@dataclass(frozen=True)
class SubtitleCue:
    """One cue: shown from ``start_s`` to ``end_s`` (seconds from the video's start); ``source`` names the
    track or file it came from."""

    start_s: float
    end_s: float
    text: str
    source: str


def clean_cue_text(text: str) -> str:
    """The words of a cue: markup and ASS override blocks removed, entities decoded, lines joined."""
    text = _ASS_OVERRIDE.sub("", text)
    text = _ASS_BREAK.sub(" ", text)
    text = html.unescape(_TAG.sub("", text))
    return _SPACES.sub(" ", text).strip()


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # older .srt files are mostly Windows-1252


def parse_cues(text: str, source: str) -> list[SubtitleCue]:
    """The cues of SubRip or WebVTT text (the two share their cue layout: a timing line, then text lines).

    Blocks without a timing line (SubRip's numbers stand on their own line; WebVTT's header, NOTE, STYLE and
    REGION blocks) are skipped; a cue that ends before it starts is shown for :data:`DEFAULT_CUE_S`.
    """
    cues: list[SubtitleCue] = []
    for block in re.split(r"\r?\n\s*\r?\n", text.replace("\r\n", "\n")):
        lines = block.strip("\n").split("\n")
        for number, line in enumerate(lines):
            match = _TIMING.match(line)
            if match is None:
                continue
            start = _seconds(*match.groups()[:4])
            end = _seconds(*match.groups()[4:])
            words = clean_cue_text(" ".join(lines[number + 1 :]))
            if words and math.isfinite(start):
                cues.append(SubtitleCue(start, end if end > start else start + DEFAULT_CUE_S, words, source))
            break
    return cues


def parse_sidecar(filename: str, data: bytes) -> list[SubtitleCue]:
    """The cues of a sidecar ``.srt`` or ``.vtt`` file; ``SubtitleFileError`` naming the file when it is
    not one (wrong suffix, too large, no cue in it)."""
    name = PurePath(filename or "").name or "subtitles"
    suffix = PurePath(name).suffix.lower()
    if suffix not in SIDECAR_SUFFIXES:
        raise SubtitleFileError(
            f"subtitle file {name!r}: only {' and '.join(SIDECAR_SUFFIXES)} files are read (convert others, "
            "e.g. `ffmpeg -i subs.ass subs.srt`)"
        )
    if len(data) > MAX_SIDECAR_BYTES:
        raise SubtitleFileError(f"subtitle file {name!r} is over {MAX_SIDECAR_BYTES // 2**20} MiB")
    text = _decode(data)
    if suffix == ".vtt" and not text.lstrip("\ufeff").startswith("WEBVTT"):
        raise SubtitleFileError(f"subtitle file {name!r} does not start with WEBVTT: it is not a WebVTT file")
    cues = parse_cues(text, f"sidecar {name}")
    if not cues:
        raise SubtitleFileError(
            f"subtitle file {name!r} holds no cue (a line like '00:00:01,000 --> 00:00:03,500' followed by text)"
        )
    return cues
