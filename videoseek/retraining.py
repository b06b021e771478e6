"""What an admin's retrain asks for (:class:`RetrainRequest`) and why one cannot run (:class:`RetrainError`).

The API checks a request and queues it; the work itself (train, install, re-index) is the training package's
``training/retrain.py``, which the library and the API never import: a runtime is handed it as its
:class:`~videoseek.runtime.base.AdminWork`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# The methods that make an adapter (zero-shot makes nothing; full fine-tuning changes the shared backbone).
ADAPTER_METHODS = ("cma", "cma-noshare", "vision", "text")


class RetrainError(ValueError):
    """The retrain request cannot run as given: its method, or its manifest (unreadable, bad entries, too few)."""


@dataclass(frozen=True)
class RetrainRequest:
    """What to train. ``data`` None: the collection's own pairs (captions, feedback, subtitles). ``epochs``,
    ``lr`` and ``batch_size`` None: the recipe's for the number of pairs and the backbone
    (``training/recipe.py``). ``force``: install the new adapter even if the guard would keep the old one."""

    data: str | None = None
    method: str = "cma"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    allow_missing: bool = False  # re-index without videos that have no cached frames
    from_current: bool = False  # continue the collection's adapter (its method, rank and width) instead
    force: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields not at their defaults: a worker one release older still reads a request that uses
        nothing new (the task message of a rolling upgrade)."""
        defaults = {f.name: f.default for f in fields(self)}
        return {key: value for key, value in asdict(self).items() if value != defaults[key]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetrainRequest:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise RetrainError(
                f"this worker does not know the retrain settings {unknown}: it is older than the API that "
                "sent them; upgrade it"
            )
        return cls(**values)
