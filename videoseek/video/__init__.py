"""Video decoding for ingest: probe, sample frames (optionally in a sandboxed process), plan clips, cache
frames, write thumbnails. Every refusal is a :class:`MediaRejected` with a stable ``code`` and a ``reason``."""

from videoseek.video.clips import (
    ClipPlan,
    detect_shot_boundaries,
    plan_clips,
    plan_shot_clips,
    plan_video_clips,
)
from videoseek.video.decode import SampledVideo, sample_frames
from videoseek.video.errors import (
    DecodeFailed,
    DecoderCrashed,
    DecodeTimeout,
    EncryptedContent,
    MediaRejected,
    NotMedia,
    NoVideoStream,
    TooLarge,
    TooLong,
    TooManyPixels,
    UnsupportedCodec,
)
from videoseek.video.frame_cache import FrameCache, FrameCacheMiss
from videoseek.video.identity import video_id_for_file
from videoseek.video.probe import StreamInfo, VideoInfo, probe
from videoseek.video.sandbox import run_in_sandbox, sample_frames_sandboxed
from videoseek.video.thumbnails import write_thumbnail

__all__ = [
    "ClipPlan",
    "DecodeFailed",
    "DecodeTimeout",
    "DecoderCrashed",
    "EncryptedContent",
    "FrameCache",
    "FrameCacheMiss",
    "MediaRejected",
    "NoVideoStream",
    "NotMedia",
    "SampledVideo",
    "StreamInfo",
    "TooLarge",
    "TooLong",
    "TooManyPixels",
    "UnsupportedCodec",
    "VideoInfo",
    "detect_shot_boundaries",
    "plan_clips",
    "plan_shot_clips",
    "plan_video_clips",
    "probe",
    "run_in_sandbox",
    "sample_frames",
    "sample_frames_sandboxed",
    "video_id_for_file",
    "write_thumbnail",
]
