"""Tokens: the SentencePiece tokenizer, and the corpus as .npy shards of token ids."""
