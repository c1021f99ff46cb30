"""Evaluation: perplexity and bits per byte on the test split, lm-eval benchmark scores, scaling fits."""
