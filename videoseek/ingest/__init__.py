"""The ingest pipeline: submit a file, decode it, embed and index its clips."""
