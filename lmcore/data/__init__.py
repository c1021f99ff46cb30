"""Data stages: download, ingest, clean, dedup."""
