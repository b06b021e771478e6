"""videoseek: self-hosted text-to-video search with per-collection Cross-Modal Adapters on one frozen CLIP."""

__version__ = "0.1.0"
