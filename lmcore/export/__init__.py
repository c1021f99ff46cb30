"""Exports: the Hugging Face architectures a model maps to, the weight layouts, HF folders, GGUF files."""
