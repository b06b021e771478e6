"""Offline training and evaluation of per-collection adapters. Never imported by core, service or worker.

``config`` the validated settings of a run; ``data`` captioned-clip datasets (captions.jsonl, MSR-VTT);
``frame_cache`` frames decoded once and kept on disk; ``batching`` batches and per-frame features;
``similarity`` score matrices; ``methods`` what each compared method trains; ``loop`` the training loop;
``checkpoint`` what a run saves to resume from; ``metrics`` and ``evaluate`` retrieval metrics; ``memory``
peak-memory measurement; ``report`` report.json, plots and the compare table; ``run`` the train / eval /
compare runs the CLI offers.
"""
