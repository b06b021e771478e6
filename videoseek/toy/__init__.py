"""A procedurally generated video world and a small CLIP trained on it, for offline tests and the demo."""
