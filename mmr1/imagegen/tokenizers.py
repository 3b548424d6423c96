"""Image tokenizer protocol and built-in tokenizers."""
