"""How a clip's frames are pooled against a query, and the text-conditioned pooling's temperature, defined once
for search, training and evaluation.

A clip's frames are weighted by ``softmax_j(<t, f_j> / tau)`` against the query's text vector ``t``; the
reference method uses ``tau = 5`` (frame and text vectors projected, not normalised). This module imports
only ``typing``, so settings can name the defaults without loading torch.
"""

from typing import Literal

# "mean": the average of the frames (CLIP4Clip's meanP); "text_conditioned": the paper's default, below
Pooling = Literal["mean", "text_conditioned"]
POOLINGS: tuple[Pooling, ...] = ("text_conditioned", "mean")
POOLING_TAU = 5.0
