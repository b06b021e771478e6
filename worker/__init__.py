"""The ingest worker: videos in, clips with embeddings out (Celery on Redis, or in-process when embedded)."""
