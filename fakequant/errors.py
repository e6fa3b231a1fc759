"""One exception family for every mistake a user can make.

The message is one line that names the file (or key) and what is wrong, e.g.
``model.gguf: not a GGUF file (magic b'PK\\x03\\x04', expected b'GGUF')``. The CLI prints it and exits 2;
inside pytest the affected experiment errors with it.
"""


class FakequantError(Exception):
    """A user-facing error: ``str(err)`` is the one line to show."""


class GGUFFormatError(FakequantError):
    """A model file is missing, unreadable, or not a well-formed GGUF."""


class RecipeError(FakequantError):
    """A fake-quantization recipe is invalid: format, selection, group size, epsilon, storage dtype."""


class CriteriaError(FakequantError):
    """criteria.toml (or a command-line override of it) is invalid."""


class CorpusError(FakequantError):
    """The perplexity corpus is missing, empty, not UTF-8 or too short."""


class ModelRuntimeError(FakequantError):
    """llama.cpp could not load or run a model."""


class AssetError(FakequantError):
    """A default asset (model, corpus, reference tool) could not be fetched or verified."""
