"""fakequant: decide, with evidence, whether a fake-quantization experiment on a GGUF model may go on."""

__version__ = "0.1.0"
