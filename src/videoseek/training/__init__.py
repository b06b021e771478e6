"""Offline training and evaluation of per-collection adapters. Never imported by core, service or worker."""
