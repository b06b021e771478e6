"""Pretrained open_clip weights: where they are cached, how they are downloaded, and how a file is verified.

open_clip names the weights of each ``NAME:TAG`` as a Hugging Face hub repository and file in its pretrained
config (``hf_hub``), preferring a ``.safetensors`` twin of a ``.bin``. videoseek looks for the same files in
the same cache (huggingface_hub's: ``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``) and downloads
them through huggingface_hub into it, so weights fetched by open_clip, by another program or by ``videoseek
models pull`` are one copy. huggingface_hub's own variables apply (``HF_ENDPOINT`` for a mirror, ``HF_TOKEN``,
``HF_HUB_OFFLINE``, ``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``).

Why not open_clip's own download: it retries a hub that does not answer for minutes, without saying why, and
hides its progress bar whenever stderr is not a terminal (a container's log). Here one short request first
finds the file (an unreachable hub fails within ``HF_HUB_ETAG_TIMEOUT`` seconds, 10 by default), the download
shows its progress on a terminal and as a line every few seconds in a log, and the file is checked against the
checksum the hub gave for it before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from videoseek.model_errors import WeightsNotFound

log = logging.getLogger(__name__)

DownloadPolicy = Literal["auto", "never"]

_SHA256 = re.compile(r"[0-9a-f]{64}")  # the ETag of a file stored with Git LFS (every weights file)
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")  # the ETag of a small file stored in git itself
_HASH_CHUNK = 1 << 20
_LOG_PROGRESS_EVERY_S = 10.0  # a progress line this often when stderr is a log, not a terminal
# open_clip's names for a repository's weights (open_clip.pretrained.HF_WEIGHTS_NAME and its safetensors twin).
_DEFAULT_FILENAME = "open_clip_pytorch_model.bin"


@dataclass(frozen=True)
class HubWeights:
    """Where open_clip gets one ``NAME:TAG``'s weights: a hub repository (files in order of preference) and,
    for OpenAI's models, the URL whose download open_clip keeps in ``~/.cache/clip``."""

    spec: str
    repo_id: str | None
    filenames: tuple[str, ...]
    url: str | None = None

    @classmethod
    def from_pretrained_cfg(cls, name: str, tag: str, cfg: dict[str, Any]) -> HubWeights:
        """The files of open_clip's pretrained config ``cfg`` of ``name:tag``, found as open_clip finds them."""
        import open_clip

        hub = str(cfg.get("hf_hub") or "")
        repo_id: str | None = None
        filenames: tuple[str, ...] = ()
        if hub:
            # 'org/repo/' names the repository's default file; 'org/repo/file.bin' one file of it.
            repo_id, filename = os.path.split(hub)
            filename = filename or getattr(open_clip.pretrained, "HF_WEIGHTS_NAME", _DEFAULT_FILENAME)
            filenames = (*open_clip.pretrained._get_safe_alternatives(filename), filename)
        return cls(
            spec=f"{name}:{tag}", repo_id=repo_id or None, filenames=filenames, url=cfg.get("url") or None
        )

    @property
    def clip_cache_file(self) -> Path | None:
        """Where open_clip keeps its download of ``url`` (OpenAI's TorchScript archives): ``~/.cache/clip``."""
        if not self.url:
            return None
        return Path("~/.cache/clip").expanduser() / self.url.rsplit("/", 1)[-1]


def hub_cache_dir() -> Path:
    """huggingface_hub's cache of hub files, as this process sees it (``HF_HUB_CACHE``, ``HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_repo_cache_dir(repo_id: str) -> Path:
    """The folder of one model repository inside :func:`hub_cache_dir` (what to copy to another machine)."""
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def find_cached(weights: HubWeights) -> Path | None:
    """The weights file if it is on disk already (hub cache first, then open_clip's ``~/.cache/clip``)."""
    from huggingface_hub import try_to_load_from_cache

    if weights.repo_id is not None:
        for filename in weights.filenames:
            found = try_to_load_from_cache(weights.repo_id, filename, cache_dir=hub_cache_dir())
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    archive = weights.clip_cache_file
    return archive if archive is not None and archive.is_file() else None


def looked_in(weights: HubWeights) -> list[str]:
    """Where :func:`find_cached` looked, in words, for an error message."""
    places = []
    if weights.repo_id is not None:
        places.append(
            f"the Hugging Face cache {hub_cache_dir()} (repo {weights.repo_id}, file "
            f"{' or '.join(weights.filenames)})"
        )
    archive = weights.clip_cache_file
    if archive is not None:
        places.append(f"{archive} (the download of {weights.url})")
    return places


def how_to_get(weights: HubWeights, copy_hint: str) -> str:
    """The three ways to weights that are not here: pull them, copy a file by hand, or use the toy model."""
    ways = []
    if weights.repo_id is not None:
        folder = hub_repo_cache_dir(weights.repo_id)
        ways.append(
            f"run `videoseek models pull {weights.spec}` (it downloads into {folder}; a machine without "
            "internet can get that folder copied from one that ran it, or point HF_HUB_CACHE at a copy)"
        )
    source = f"{weights.repo_id}/{weights.filenames[-1]}" if weights.repo_id else weights.url
    ways.append(f"copy the weights file ({source}) by hand to any path and {copy_hint}")
    ways.append("try videoseek without downloading anything: VIDEOSEEK_MODEL=toy (the small CLIP it ships)")
    return "To get them: " + "; or ".join(ways) + "."


class _DownloadProgress(tqdm):
    """huggingface_hub's progress bar, also where stderr is a log (a container's), as a line every 10 s.

    huggingface_hub hides its bar when stderr is not a terminal; a 600 MB download would then look hung.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from huggingface_hub import constants

        kwargs.setdefault("file", sys.stderr)
        self._as_lines = not _is_terminal(kwargs["file"])
        if self._as_lines:
            kwargs.update(mininterval=_LOG_PROGRESS_EVERY_S, ascii=True)
        kwargs["disable"] = bool(constants.HF_HUB_DISABLE_PROGRESS_BARS)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool | None:
        if not self._as_lines:
            return super().display(msg, pos)  # type: ignore[no-any-return]
        self.fp.write((msg or self.__str__()) + "\n")
        self.fp.flush()
        return True


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def download_weights(weights: HubWeights, copy_hint: str) -> Path:
    """Download the weights into the hub cache (with progress), verify them, and return the file.

    Raises :class:`WeightsNotFound` naming the hub, the reason and :func:`how_to_get` when the hub is offline,
    unreachable, answers with an error or has none of the files; nothing half-downloaded is left to be used.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    def failed(reason: str) -> WeightsNotFound:
        return WeightsNotFound(
            f"could not download the weights of {weights.spec} from {constants.ENDPOINT}: {reason}. "
            + how_to_get(weights, copy_hint)
        )

    if weights.repo_id is None:
        raise failed("open_clip names no Hugging Face repository for them")
    if constants.is_offline_mode():
        raise failed("HF_HUB_OFFLINE is set (huggingface_hub's offline mode)")
    timeout_s = float(constants.HF_HUB_ETAG_TIMEOUT)
    for filename in weights.filenames:
        url = hf_hub_url(weights.repo_id, filename)
        try:
            # One request without retries: huggingface_hub's own download retries a silent hub for minutes.
            metadata = get_hf_file_metadata(url, timeout=timeout_s)
        except Exception as exc:
            if _is_missing_file(exc):
                continue  # the .safetensors twin is optional: try the next name
            raise failed(_network_reason(exc, timeout_s)) from exc
        return _fetch(weights, filename, metadata, timeout_s, failed)
    raise failed(f"the repository {weights.repo_id} has none of {', '.join(weights.filenames)}")


def _fetch(weights: HubWeights, filename: str, metadata: Any, timeout_s: float, failed: Any) -> Path:
    import open_clip
    from huggingface_hub import constants, hf_hub_download

    assert weights.repo_id is not None
    size = f"{metadata.size / 1e6:.0f} MB" if metadata.size else "size unknown"
    log.warning(
        "downloading the weights of %s (%s/%s, %s) from %s into %s; once, then they load from there "
        "(VIDEOSEEK_MODEL_DOWNLOAD=never turns downloads off)",
        weights.spec,
        weights.repo_id,
        filename,
        size,
        constants.ENDPOINT,
        hub_cache_dir(),
    )
    try:
        path = Path(
            hf_hub_download(
                weights.repo_id,
                filename,
                cache_dir=hub_cache_dir(),
                etag_timeout=timeout_s,
                tqdm_class=_DownloadProgress,
                library_name="open_clip",
                library_version=open_clip.__version__,
            )
        )
    except Exception as exc:
        raise failed(_network_reason(exc, timeout_s)) from exc
    try:
        verify_cached_file(path, expected=metadata.etag)
    except WeightsNotFound as exc:
        _forget(path)
        raise failed(f"{exc}; the file was removed, so running the command again downloads it anew") from exc
    return path


def _is_missing_file(exc: Exception) -> bool:
    from huggingface_hub.errors import RemoteEntryNotFoundError

    return isinstance(exc, RemoteEntryNotFoundError)


def _network_reason(exc: Exception, timeout_s: float) -> str:
    """What went wrong talking to the hub, in one line (the status and the hub's own message if it answered)."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = " (a gated or private repository needs HF_TOKEN)" if status in (401, 403) else ""
        return f"it answered {status}{hint}: {first_line}"
    if "timeout" in type(exc).__name__.lower() or isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT)"
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc}" + (f" ({cause})" if cause is not None and str(cause) not in str(exc) else "")
    return f"cannot reach it ({type(exc).__name__}: {detail})"


def verify_cached_file(path: Path, expected: str | None = None) -> str:
    """Check a hub cache file against its checksum; its sha256.

    The checksum is the hub's ETag (``expected``), or else the name of the blob the cache entry links to, which
    huggingface_hub names after that ETag: the sha256 of a Git LFS file, or git's SHA-1 of a small one. Raises
    :class:`WeightsNotFound` on a mismatch (a truncated or altered file).
    """
    resolved = path.resolve()
    checksum = (expected or (resolved.name if resolved != path else "")).strip('"').lower()
    sha256, git_sha1, size = _digests(resolved)
    if _SHA256.fullmatch(checksum) and checksum != sha256:
        raise WeightsNotFound(
            f"{path} ({size} bytes) has sha256 {sha256}, but the hub's checksum is {checksum}"
        )
    if _GIT_SHA1.fullmatch(checksum) and checksum != git_sha1:
        raise WeightsNotFound(f"{path} ({size} bytes) has git SHA-1 {git_sha1}, but the hub's is {checksum}")
    return sha256


def _digests(path: Path) -> tuple[str, str, int]:
    size = path.stat().st_size
    sha256, git_sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return sha256.hexdigest(), git_sha1.hexdigest(), size


def _forget(path: Path) -> None:
    """Remove a bad download from the cache: the blob and the snapshot entry that links to it."""
    blob = path.resolve()
    for entry in {path, blob}:
        entry.unlink(missing_ok=True)
