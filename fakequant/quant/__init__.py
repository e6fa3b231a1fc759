"""Formats, ggml's quantizer, tensor selection and the candidate build."""
