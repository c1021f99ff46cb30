"""Data stages: download, the readers of each format, ingest, text views, cleaning rules, dedup, splits."""
