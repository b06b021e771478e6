"""The names every side of distributed mode agrees on: Celery queues and tasks, and how long results live.

The API sends tasks by these names (it never imports the tasks), the workers register them.
"""

from __future__ import annotations

QUEUE_INGEST = "ingest"  # probe + decode + frame cache + thumbnails (CPU)
QUEUE_EMBED = "embed"  # image tower + upsert (GPU when there is one)
QUEUE_TRAIN = "train"  # adapter training and re-indexing, consumed by training workers
QUEUES = (QUEUE_INGEST, QUEUE_EMBED, QUEUE_TRAIN)

TASK_DECODE = "videoseek.ingest.decode"
TASK_EMBED = "videoseek.ingest.embed"
TASK_PLAYBACK = "videoseek.ingest.playback"  # a browser-playable copy, after indexing (CPU: the ingest queue)
# Routed to the ``train`` queue by the "videoseek.train.*" route (celery_app.py).
TASK_REINDEX = "videoseek.train.reindex"
TASK_RETRAIN = "videoseek.train.retrain"
TASK_ROLLBACK = "videoseek.train.rollback"

RESULT_EXPIRES_S = 24 * 3600  # how long the result backend keeps a task's state and result
