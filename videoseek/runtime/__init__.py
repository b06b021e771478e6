"""Where background work runs: threads of this process, or Celery workers."""
