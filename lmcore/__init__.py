"""lmcore: the library behind the pipeline, importable and testable without Snakemake."""

__version__ = "0.1.0"
