"""The text-conditioned pooling's temperature, defined once for search, training and evaluation.

A clip's frames are weighted by ``softmax_j(<t, f_j> / tau)`` against the query's text vector ``t``; the
reference method uses ``tau = 5`` (frame and text vectors projected, not normalised). This module imports
nothing, so settings can name the default without loading torch.
"""

POOLING_TAU = 5.0
