"""Whether browsers can play a file as it is, decided from its probe (headers only, nothing decoded).

A ``<video>`` element plays MP4/MOV with H.264 (8-bit 4:2:0), VP9 or AV1 video, and WebM with VP8/VP9/AV1 and
Opus or Vorbis: what Chromium, Firefox and Safari have in common without hardware decoders. Everything else
ingest accepts (AVI, MPEG-TS/PS, FLV, Ogg Theora, Matroska with H.264 or MPEG-2, HEVC, H.264 High 4:4:4, 10-bit
H.264, animated GIF, raw streams...) shows a grey box or a black frame, so ingest writes a copy for browsers
(``transcode.py``). The rules lean to making a copy: a needless one costs some CPU, a missing one a dead player.
"""

from __future__ import annotations

from videoseek.video.probe import VideoInfo

_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
_MATROSKA = "matroska,webm"
_MP4_VIDEO = frozenset({"h264", "vp9", "av1", "libdav1d", "libaom-av1"})
_WEBM_VIDEO = frozenset({"vp8", "vp9", "av1", "libdav1d", "libaom-av1", "libvpx", "libvpx-vp9"})
_MP4_AUDIO = frozenset({"aac", "mp3", "mp3float", "opus", "flac"})
_WEBM_AUDIO = frozenset({"opus", "vorbis"})
_8BIT_420 = frozenset({"yuv420p", "yuvj420p"})
_ANY_420 = _8BIT_420 | {"yuv420p10le"}
# Above this, software decoders in browsers give up on some machines (an 8192x4320 H.264 is level 6.x).
BROWSER_MAX_SIDE = 4096


def playback_copy_reason(info: VideoInfo) -> str | None:
    """Why browsers cannot play this file as it is (a short phrase), or None when they can."""
    container, codec, pix_fmt = info.container_format, info.codec, info.pix_fmt or "unknown"
    if container == _MP4_FAMILY:
        video_ok, audio_ok = _MP4_VIDEO, _MP4_AUDIO
    elif container == _MATROSKA and codec in _WEBM_VIDEO:
        video_ok, audio_ok = _WEBM_VIDEO, _WEBM_AUDIO  # a WebM (Matroska with WebM's codecs)
    else:
        return f"browsers do not play the {_container_name(container)} container"
    if codec not in video_ok:
        return f"browsers do not play {codec} video in this container"
    allowed_pixels = _8BIT_420 if codec == "h264" else _ANY_420
    if pix_fmt not in allowed_pixels:
        return f"browsers do not play {codec} video in the {pix_fmt} pixel format"
    audio = sorted({s.codec or "unknown" for s in info.streams if s.type == "audio"} - audio_ok)
    if audio:
        return f"browsers do not play {', '.join(audio)} audio"
    first_video = next((s for s in info.streams if s.type == "video" and not s.attached_pic), None)
    if first_video is not None and first_video.index != info.video_stream_index:
        return "the indexed video track is not the one browsers play (the file's first)"
    if max(info.width, info.height) > BROWSER_MAX_SIDE:
        return f"{info.width}x{info.height} is over what browsers decode reliably"
    return None


def _container_name(demuxer: str) -> str:
    names = {_MATROSKA: "Matroska", "mpegts": "MPEG-TS", "mpeg": "MPEG-PS", "avi": "AVI", "flv": "FLV"}
    return names.get(demuxer, demuxer.split(",")[0].upper())
