"""Why the frozen CLIP could not be had: raised by :mod:`videoseek.clip` and :mod:`videoseek.pretrained_weights`.

Apart from both so that the download module can raise them without importing the model code (and torch).
"""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The CLIP could not be loaded; the message names the model and what to provide or change."""


class WeightsNotFound(ModelLoadError):
    """The weights file a spec needs is not on disk and could not (or may not) be downloaded."""
