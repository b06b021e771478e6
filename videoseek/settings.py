"""Process settings, read from ``VIDEOSEEK_*`` environment variables.

Nested keys use ``__``: ``VIDEOSEEK_INGEST__SAMPLE_FPS=2``. Nothing is read at import time: call
:func:`get_settings` (cached) where a value is needed, so tests and CLIs can set the environment first.
A ``VIDEOSEEK_*`` variable that is no setting (a typo) is an error, unless listed in ``NON_SETTING_VARIABLES``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlparse, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from videoseek.layout import DataLayout
from videoseek.model_spec import ModelSpec
from videoseek.pooling_defaults import POOLING_TAU, Pooling

ENV_PREFIX = "VIDEOSEEK_"

# VIDEOSEEK_* variables the project reads that are not settings, so load_settings must not reject them as
# misspelled settings. Add one here when a script or test harness starts reading a new one.
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    {
        "VIDEOSEEK_TESTS_NO_SKIP",  # tests/conftest.py, set by .ci/run: a skipped test fails instead
        "VIDEOSEEK_API_KEY",  # the key `videoseek ingest --api` sends (a client's, not this server's keys)
    }
)

# What SecretStr shows in place of a secret; URL passwords are masked the same way.
SECRET_MASK = "**********"
# Query parameters of a URL that carry credentials (redis://host?password=..., http://qdrant?api_key=...).
_SECRET_QUERY_KEY = re.compile(r"pass|key|token|secret", re.IGNORECASE)

Scope = Literal["search", "ingest", "admin"]
# How frames are chosen for the sampling ticks (see videoseek/video/packet_plan.py).
SampleMode = Literal["exact", "keyframes"]


class SettingsError(RuntimeError):
    """Settings could not be loaded; the message names the variable and the fix."""


class QdrantSettings(BaseModel):
    """Where clips are stored: Qdrant Edge on disk (default) or a Qdrant server."""

    url: str | None = Field(
        default=None, description="Qdrant server URL, e.g. http://qdrant:6333. Unset: embedded Qdrant Edge."
    )
    path: Path | None = Field(
        default=None, description="Embedded store directory (default: DATA_DIR/qdrant)."
    )
    api_key: SecretStr | None = None
    # How the server store lays out each collection it creates on a Qdrant cluster (docs/deploy.md, scale.md).
    # Unset: the server's own defaults. Collections that exist keep their layout; a re-index makes new ones.
    shard_number: int | None = Field(
        default=None, ge=1, le=1024, description="Shards of each new collection (e.g. 2 per cluster node)."
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Copies of each shard (2: a node can fail without losing data).",
    )
    write_consistency_factor: int | None = Field(
        default=None, ge=1, le=16, description="Replicas that must confirm a write (at most the replication)."
    )
    on_disk_payload: bool = Field(
        default=True, description="Keep payloads on disk (the scale layout); false holds them in RAM."
    )

    @model_validator(mode="after")
    def _consistency_within_replication(self) -> QdrantSettings:
        if self.write_consistency_factor is not None and self.write_consistency_factor > (
            self.replication_factor or 1
        ):
            raise ValueError(
                f"write_consistency_factor {self.write_consistency_factor} exceeds replication_factor "
                f"{self.replication_factor or 1}: a write could never be confirmed; lower it or raise the replication"
            )
        return self

    def collection_layout(self) -> dict[str, int | bool]:
        """The ``create_collection`` arguments these settings set (the unset ones left to the server)."""
        layout: dict[str, int | bool] = {"on_disk_payload": self.on_disk_payload}
        for key in ("shard_number", "replication_factor", "write_consistency_factor"):
            if (value := getattr(self, key)) is not None:
                layout[key] = value
        return layout

    @field_validator("path", mode="before")
    @classmethod
    def _path_not_empty(cls, value: object) -> object:
        return _reject_empty_path(value, "unset it for the default DATA_DIR/qdrant")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"expected an http(s) URL such as http://localhost:6333, got {value!r}")
        try:
            parsed.port  # noqa: B018 - parsing the port validates it
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}: {exc}") from exc
        return value.rstrip("/")


def _reject_empty_path(value: object, fix: str) -> object:
    # Path("") is Path("."): an empty variable would silently put the data in the working directory.
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"must not be empty; {fix}, or name a directory")
    return value


def _default_scopes() -> list[Scope]:
    return ["search"]


class ApiKey(BaseModel):
    """One API key with its scopes, optionally limited to named collections."""

    key: SecretStr
    scopes: list[Scope] = Field(default_factory=_default_scopes)
    collections: list[str] | None = Field(default=None, description="None: every collection.")


class IngestSettings(BaseModel):
    """Limits and sampling for turning videos into clips."""

    max_file_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_duration_s: float = Field(default=4 * 3600.0, gt=0)
    max_pixels: int = Field(default=4096 * 2160, gt=0, description="Largest width x height decoded.")
    sample_fps: float = Field(default=1.0, gt=0, le=30)
    sample_mode: SampleMode = Field(
        default="exact",
        description="exact: the first frame at or after each 1/sample_fps tick; keyframes: the nearest keyframe "
        "when one is within keyframe_tolerance of the tick (far fewer frames decoded), else the exact frame.",
    )
    keyframe_tolerance: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="sample_mode=keyframes: how far a keyframe may be from its tick, as a fraction of the tick "
        "interval (1.0 at 1 fps: 1 s either side).",
    )
    clip_window_s: float = Field(default=10.0, gt=0)
    clip_stride_s: float = Field(default=5.0, gt=0)
    max_frames_per_clip: int = Field(default=12, ge=1, le=64)
    decode_timeout_s: float = Field(default=600.0, gt=0)
    max_side_px: int = Field(default=8192, gt=0, description="Longest frame side decoded (refuses 65534x64).")
    decode_memory_bytes: int = Field(
        default=8 * 1024**3, ge=0, description="Address-space cap of the sandboxed decoder process; 0: none."
    )
    # 448 = 2 x ViT-B's 224 px input, what training decodes at: CLIP's own resize + centre crop then sees the
    # same pixels at ingest as in training (a 256 px cap would upscale 16:9 frames to 224 and blur them).
    frame_max_side: int = Field(default=448, ge=16, le=4096, description="Sampled frames' longest side.")
    thumbnail_max_side: int = Field(default=320, ge=16, le=4096)
    clip_mode: Literal["window", "shots"] = "window"
    shot_threshold: float = Field(
        default=0.45, gt=0, le=1, description="Histogram distance that starts a new shot (clip_mode=shots)."
    )
    playback_copies: bool = Field(
        default=True,
        description="Write a browser-playable copy (H.264 in MP4) of each upload browsers cannot play (AVI, "
        "MPEG-TS, HEVC, 10-bit...), after it is indexed; off: such videos only download.",
    )
    playback_max_side: int = Field(
        default=1280, ge=64, le=8192, description="Longest side of a playback copy (never upscaled)."
    )
    playback_crf: int = Field(
        default=23, ge=0, le=51, description="x264 quality of a playback copy (lower: better)."
    )
    playback_timeout_s: float = Field(
        default=1800.0, gt=0, description="Hard time limit of writing one playback copy (sandboxed FFmpeg)."
    )
    url_connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="POST /ingest with a URL: longest wait to connect (and for each read).",
    )
    url_timeout_s: float = Field(
        default=600.0, gt=0, description="POST /ingest with a URL: longest time the whole download may take."
    )
    allow_private_urls: bool = Field(
        default=False,
        description="POST /ingest with a URL may fetch from loopback, private and link-local addresses (off: "
        "refused, so the API cannot be used to reach the server's own network).",
    )
    server_root: Path | None = Field(
        default=None,
        description="POST /ingest with a path may ingest files under this directory (symlinks resolved); "
        "unset: path ingest is refused.",
    )

    @field_validator("server_root", mode="before")
    @classmethod
    def _server_root_not_empty(cls, value: object) -> object:
        return _reject_empty_path(value, "unset it to refuse path ingest")


class WorkerSettings(BaseModel):
    """The ingest worker: Celery on Redis (distributed) or the in-process runner (embedded)."""

    redis_prefix: str = Field(
        default="videoseek:", description="Prefix of every Redis key (jobs and Celery)."
    )
    redis_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for one Redis reply in workers and CLI commands (they retry what fails).",
    )
    api_redis_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for one Redis reply in the API: a request that needed it gets 503 + "
        "Retry-After instead, so a hung Redis never holds requests for long.",
    )
    visibility_timeout_s: int = Field(
        default=300,
        ge=1,
        description="A dead worker's tasks go back to their queue this long after it last renewed them. A live "
        "worker renews the messages it holds 5 times per timeout, so tasks may run longer than this; lower "
        "means a killed worker's task is retried sooner, but a worker stalled for most of it (swapping, a "
        "paused VM) has its tasks run a second time (harmless, wasted work).",
    )
    unacked_restore_interval_s: int = Field(
        default=10, ge=1, description="How often each worker looks for tasks of dead workers to put back."
    )
    task_soft_time_limit_s: int = Field(default=3300, ge=1)
    task_time_limit_s: int = Field(default=3600, ge=1)
    max_retries: int = Field(default=5, ge=0, description="Retries of transient errors (store unavailable).")
    retry_backoff_max_s: int = Field(default=300, ge=1)
    embed_batch_size: int = Field(default=64, ge=1, description="Frames per forward pass of the image tower.")
    embed_batch_videos: int = Field(
        default=8,
        ge=1,
        description="Decoded videos one embedding step takes together (any collections; their frames share "
        "forward passes); a Celery task adds others only while they fit in 4 x embed_batch_size frames.",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        description="Jobs waiting to be decoded (embedded runner queue, or the Celery ingest queue) before "
        "new uploads are refused with 429 + Retry-After.",
    )


class SearchSettings(BaseModel):
    """Query-side knobs."""

    text_context_length: int = Field(default=32, ge=4, le=77)
    oversample: int = Field(default=4, ge=1, description="ANN candidates per result, re-ranked exactly.")
    min_candidates: int = Field(
        default=160,
        ge=0,
        le=4096,
        description="Without a MaxSim stage (maxsim_prefetch 0, or a collection whose frames cannot MaxSim): "
        "fewest pooled ANN candidates re-ranked per query, whatever the limit: text-conditioned pooling lifts "
        "clips that mean pooling ranks far down (bench/ranking_recall.py).",
    )
    maxsim_prefetch: int = Field(
        default=640,
        ge=0,
        le=16384,
        description="Pooled ANN candidates the store re-scores by MaxSim over their frame vectors (the best "
        "single frame) before the best maxsim_candidates go to the exact re-ranking; 0: no MaxSim stage, "
        "min_candidates pooled candidates instead (bench/ranking_recall.py, docs/benchmarks.md).",
    )
    maxsim_candidates: int = Field(
        default=40,
        ge=1,
        le=4096,
        description="With the MaxSim stage: fewest of its best clips re-ranked exactly per query, whatever "
        "the limit (the role min_candidates has without it).",
    )
    pooling: Pooling = Field(
        default="text_conditioned",
        description="How a clip's frames are pooled against the query, for the exact re-ranking, retraining "
        "and the retrain guard alike, in versions whose retrain chose none (adapters.choose_pooling): "
        "text_conditioned (the paper's default) or mean (each clip's average frame; "
        "ranked by the vector the pooled ANN walks, so no MaxSim stage and no candidate floor). On the toy "
        "demo, mean ranks the right video first for 33.6% of captions against 19.8% (docs/benchmarks.md).",
    )
    pooling_tau: float = Field(default=POOLING_TAU, gt=0)
    query_cache_size: int = Field(default=4096, ge=0)
    frame_cache_mb: int = Field(default=256, ge=0, description="RAM for frame vectors of recent candidates.")
    encoder_workers: int = Field(
        default=1, ge=1, le=16, description="Parallel query encoders (CPU: ~1 per core, 1 torch thread)."
    )


class AdapterSettings(BaseModel):
    """A collection's adapter over time: retraining, the guard that may refuse a candidate, rollback."""

    versions_kept: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Earlier versions of a collection kept after a switch (rollback puts one back at once). "
        "Each costs the disk of the collection's vectors.",
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of a collection's videos held out to validate a retrain (and to judge the guard).",
    )
    choose_pooling: bool = Field(
        default=True,
        description="A retrain picks the pooling (search.pooling's choices) its adapter ranks the collection's "
        "dev pairs best with, when the other one beats search.pooling there beyond noise; the version's "
        "searches then use it (rollback puts it back with the vectors). false: every version uses "
        "search.pooling.",
    )


class Settings(BaseSettings):
    """Every setting of every videoseek process. Built by :func:`get_settings`, never at import."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Path("./videoseek-data")
    # NoDecode: the spec is plain text in the environment, not JSON.
    model: Annotated[ModelSpec, NoDecode] = Field(
        default=ModelSpec.parse("ViT-B-32:openai"),
        description="open_clip NAME:TAG, NAME:/path/to/checkpoint, local-dir:/path, NAME:random, or toy.",
    )
    model_download: Literal["auto", "never"] = Field(
        default="auto",
        description="auto: pretrained weights missing from the local caches are downloaded from the Hugging "
        "Face hub once, as the process starts (with progress); never: only weights already on disk load "
        "(air-gapped machines: `videoseek models pull` elsewhere, then copy the cache).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    redis_url: str | None = Field(default=None, description="redis://host:6379/0. Unset: embedded mode.")
    api_keys: list[ApiKey] = Field(default_factory=list)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    adapters: AdapterSettings = Field(default_factory=AdapterSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_not_empty(cls, value: object) -> object:
        return _reject_empty_path(value, "unset it for the default ./videoseek-data")

    @field_validator("model", mode="before")
    @classmethod
    def _parse_model(cls, value: object) -> object:
        return ModelSpec.parse(value) if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("redis", "rediss", "unix") or (
            parsed.scheme != "unix" and not parsed.hostname
        ):
            raise ValueError(f"expected redis://host:port/db, got {value!r}")
        return value

    @property
    def qdrant_path(self) -> Path:
        return self.qdrant.path or DataLayout(self.data_dir).qdrant_dir

    def for_api(self) -> Settings:
        """These settings as the API process uses them: every Redis call waits at most
        ``worker.api_redis_timeout_s`` (it is the ``worker.redis_timeout_s`` of the copy)."""
        worker = self.worker.model_copy(update={"redis_timeout_s": self.worker.api_redis_timeout_s})
        return self.model_copy(update={"worker": worker})


def _variable_paths(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every field path pydantic-settings reads from the environment: a nested model is one JSON variable
    and also one variable per field (``QDRANT`` and ``QDRANT__URL``); lists and plain-text fields are leaves."""
    for name, field in model.model_fields.items():
        field_path = (*path, name)
        yield field_path
        annotation = field.annotation
        plain_text = any(meta is NoDecode or isinstance(meta, NoDecode) for meta in field.metadata)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and not plain_text:
            yield from _variable_paths(annotation, field_path)


def _variable_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path)


@lru_cache(maxsize=1)
def known_variables() -> frozenset[str]:
    """The upper-case name of every environment variable that sets a setting."""
    return frozenset(_variable_name(path) for path in _variable_paths(Settings))


def _unknown_variable_problems(environ: Mapping[str, str]) -> list[str]:
    # pydantic-settings ignores names it does not know (extra="ignore"), so a typo such as
    # VIDEOSEEK_QDRANT_URL would quietly give embedded mode: every VIDEOSEEK_ name must be a setting here.
    known = known_variables()
    problems = []
    for name in sorted(environ):
        upper = name.upper()  # case-insensitive, as pydantic-settings reads them
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NON_SETTING_VARIABLES:
            continue
        problems.append(f"unknown setting {name}; {_suggestion(upper, known)}")
    return problems


def _suggestion(upper: str, known: frozenset[str]) -> str:
    # Compare without the shared prefix: it would make every name look close to every other.
    suffixes = {name[len(ENV_PREFIX) :]: name for name in known}
    close = difflib.get_close_matches(upper[len(ENV_PREFIX) :], list(suffixes), n=1, cutoff=0.6)
    if close:
        return f"did you mean {suffixes[close[0]]}?"
    return "unset it, or spell a setting as `videoseek config` prints it (nested keys joined by __)"


def _env_name(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str:
    """The variable behind a validation error's location, and where inside its value the error is.

    A list or a nested model can come as one JSON variable (VIDEOSEEK_API_KEYS='[...]'), so the location
    ('api_keys', 0, 'scopes', 0) is VIDEOSEEK_API_KEYS (item 0, scopes[0]), not a variable per part."""
    names = tuple(_leading_names(loc))
    known, present = known_variables(), {name.upper() for name in environ}
    candidates = [n for n in range(len(names), 0, -1) if _variable_name(names[:n]) in known]
    # The longest known name that is set; else the longest known one; else the whole path.
    depth = next((n for n in candidates if _variable_name(names[:n]) in present), None)
    depth = depth or (candidates[0] if candidates else len(names))
    inner = _describe_inner(loc[depth:])
    return _variable_name(names[:depth]) + (f" ({inner})" if inner else "")


def _leading_names(loc: tuple[int | str, ...]) -> Iterator[str]:
    for part in loc:
        if not isinstance(part, str):
            return
        yield part


def _describe_inner(parts: tuple[int | str, ...]) -> str:
    segments: list[str] = []
    for part in parts:
        if isinstance(part, int) and segments:
            segments[-1] += f"[{part}]"
        else:
            segments.append(f"item {part}" if isinstance(part, int) else part)
    return ", ".join(segments)


def _build(overrides: dict[str, object]) -> tuple[Settings | None, list[str]]:
    try:
        return Settings(**overrides), []  # type: ignore[arg-type]
    except ValidationError as exc:
        return None, [f"{_env_name(err['loc'], os.environ)}: {err['msg']}" for err in exc.errors()]
    except SourceError as exc:  # a complex value (list, dict) that is not valid JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        name = ENV_PREFIX + field.group(1).upper() if field else "a VIDEOSEEK_ variable"
        return None, [f"{name}: not valid JSON ({exc.__cause__})"]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning every problem (unknown variable, invalid value) into one
    readable message."""
    problems = _unknown_variable_problems(os.environ)
    settings, invalid = _build(overrides)
    problems += invalid
    if settings is None or problems:
        raise SettingsError(
            "invalid videoseek settings (fix or unset these environment variables):\n  "
            + "\n  ".join(problems)
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use. Tests call ``get_settings.cache_clear()``."""
    return load_settings()


def mask_url(url: str) -> str:
    """``url`` with its password and credential query parameters masked: ``redis://:**********@host``."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{SECRET_MASK}@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_SECRET_QUERY_KEY.search(key) for key, _ in pairs):
        masked = [(key, SECRET_MASK if _SECRET_QUERY_KEY.search(key) else value) for key, value in pairs]
        query = urlencode(masked, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # untouched: urlunsplit would normalise it (a trailing "?" or "#" disappears)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def settings_env_snapshot() -> dict[str, str]:
    """The VIDEOSEEK_* variables this process sees (for diagnostics; keys and URL passwords are masked)."""
    return {
        k: (SECRET_MASK if "KEY" in k else mask_url(v) if "://" in v else v)
        for k, v in sorted(os.environ.items())
        if k.startswith(ENV_PREFIX)
    }
