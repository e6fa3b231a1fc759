"""GGUF files: validate, read, write, compare."""
