"""The query side of the model: the shared frozen CLIP plus the adapter bank, loaded lazily, once.

Loading happens in a background thread started by the app's lifespan (so the port opens at once and
``/readyz`` reports when the model is in), or on the first query, whichever comes first.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from service.errors import Unavailable
from videoseek.settings import Settings

if TYPE_CHECKING:
    from videoseek.clip import LoadedClip

log = logging.getLogger("service")

# Adapters are ~2 MB each; this keeps a few hundred collections' adapters resident.
ADAPTER_BANK_BYTES = 512 * 1024**2


class QueryModel:
    """Text encoder for queries: CLIP text tower with per-collection adapters, mixed in one batch.

    One adapter bank per encoder worker (``search.encoder_workers``): a bank runs one forward at a time, so
    parallel forwards need their own banks; they share the frozen CLIP.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clip: LoadedClip | None = None
        self._banks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loaded = False
        self.error: str | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def fingerprint(self) -> str | None:
        return self._clip.identity.fingerprint if self._clip is not None else None

    def load(self) -> None:
        """Load CLIP and build the adapter bank (idempotent, thread-safe); failures are kept for /readyz."""
        with self._lock:
            if self._loaded:
                return
            from videoseek.adapter import AdapterBank
            from videoseek.clip import ModelLoadError, get_clip
            from videoseek.layout import DataLayout

            try:
                clip = get_clip(self.settings.model, self.settings.device)
            except (ModelLoadError, ValueError, OSError) as exc:
                self.error = str(exc)
                log.error("model %s could not be loaded: %s", self.settings.model, exc)
                raise Unavailable(f"the model is not available: {exc}", retry_after_s=30) from exc
            self._clip = clip
            adapters_dir = DataLayout(self.settings.data_dir).adapters_dir
            workers = self.settings.search.encoder_workers
            for _ in range(workers):
                budget = ADAPTER_BANK_BYTES // workers
                self._banks.put(AdapterBank.from_directory(clip, adapters_dir, max_bytes=budget))
            self._loaded = True
            self.error = None

    def loaded_fingerprint(self) -> str:
        """The base model fingerprint, loading the model first if needed (blocking)."""
        self.load()
        assert self._clip is not None
        return self._clip.identity.fingerprint

    def start_loading(self) -> threading.Thread:
        def run() -> None:
            try:
                self.load()
            except Unavailable:
                pass  # recorded in self.error; /readyz reports it
            except Exception as exc:  # a bug must show in /readyz, not only in a thread's traceback
                self.error = f"model loading failed: {exc!r}"
                log.exception("model loading failed")

        thread = threading.Thread(target=run, name="model-loader", daemon=True)
        thread.start()
        return thread

    def encode(self, texts: list[str], adapter_versions: list[str | None]) -> np.ndarray:
        """``[B, D]`` projected, unnormalised text features; one forward pass for the whole batch."""
        self.load()
        bank = self._banks.get()  # never waits: there are as many banks as encoder workers
        try:
            with torch.inference_mode():
                features = bank.encode_text(
                    texts, adapter_versions, context_length=self.settings.search.text_context_length
                )
        finally:
            self._banks.put(bank)
        matrix: np.ndarray = features.float().cpu().numpy()
        return matrix
