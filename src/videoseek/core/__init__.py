"""What the service, the worker and training share: settings, CLIP + adapters, video decoding, the store."""
