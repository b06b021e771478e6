"""Why a file was refused. Every refusal carries a stable ``code`` (for APIs and metrics) and a ``reason``
a user can act on (shown as is in job status and CLI output)."""

from __future__ import annotations

from typing import ClassVar


class MediaRejected(Exception):
    """A file that will not become clips. Subclasses fix ``code``; ``reason`` says what to do about it."""

    code: ClassVar[str] = "rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class NotMedia(MediaRejected):
    """Empty, random or otherwise unrecognised bytes, or a container format we do not read."""

    code = "not_media"


class NoVideoStream(MediaRejected):
    """A media file without a real video stream (audio only, no streams, only cover art)."""

    code = "no_video_stream"


class UnsupportedCodec(MediaRejected):
    """A video stream whose codec this FFmpeg build cannot decode."""

    code = "unsupported_codec"


class EncryptedContent(MediaRejected):
    """A video track under encryption (CENC/CBCS DRM, WebM encryption): without the key it decodes to noise."""

    code = "encrypted"


class TooLarge(MediaRejected):
    code = "too_large"


class TooLong(MediaRejected):
    code = "too_long"


class TooManyPixels(MediaRejected):
    """Frame size over the configured limit (checked from headers, before any frame is allocated)."""

    code = "too_many_pixels"


class DecodeFailed(MediaRejected):
    """The file opened but not a single frame decoded."""

    code = "decode_failed"


class DecodeTimeout(MediaRejected):
    """Decoding ran past ``decode_timeout_s`` and was killed."""

    code = "timeout"


class DecoderCrashed(MediaRejected):
    """The decoding process died (e.g. a segfault in FFmpeg); only this file is affected."""

    code = "decoder_crashed"


REJECTION_TYPES: dict[str, type[MediaRejected]] = {
    cls.code: cls
    for cls in (
        NotMedia,
        NoVideoStream,
        UnsupportedCodec,
        EncryptedContent,
        TooLarge,
        TooLong,
        TooManyPixels,
        DecodeFailed,
        DecodeTimeout,
        DecoderCrashed,
    )
}


def rejection(code: str, reason: str) -> MediaRejected:
    """Rebuild a rejection from its code and reason (e.g. as reported by a sandboxed decoder process)."""
    return REJECTION_TYPES.get(code, MediaRejected)(reason)
