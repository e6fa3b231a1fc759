"""The original model's results, computed once and reused by every experiment and every later run.

An entry is keyed by everything that could change it: the model's and the corpus's sha256, the runtime settings,
llama.cpp's build, and whatever the caller adds (chunks, prompts, sampling). The key is hashed into the file name
and stored beside the value; any change of any key field is a different file, i.e. a miss. Entries are written
atomically under a file lock, so concurrent pytest-xdist workers compute a baseline once and nobody reads half of
one. A sweep over 20 layers therefore computes the baseline once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fakequant.runtime.settings import RuntimeSettings
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash, write_json


def baseline_key(model: Path, corpus: Path | None, settings: RuntimeSettings, **extra: Any) -> dict[str, Any]:
    """The standard key: model and corpus by content, settings, llama.cpp build, plus ``extra`` (JSON-able)."""
    from fakequant.runtime.llama import build_info  # imports llama.cpp; only callers that compute need it

    return {
        "model_sha256": file_sha256(model),
        "corpus_sha256": file_sha256(corpus) if corpus is not None else None,
        "settings": settings.to_json(),
        "build": build_info(),
        **extra,
    }


def baseline_path(kind: str, key: Mapping[str, Any]) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in kind)
    return cache_dir("baselines") / safe / f"{stable_hash(dict(key))}.json"


def baseline_cached(kind: str, key: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    """Return the stored value for (``kind``, ``key``), computing and storing it first if absent.

    ``compute()`` must return a JSON-able value; what comes back is always the JSON round trip of it, so a hit and
    a miss return equal values."""
    dest = baseline_path(kind, key)
    want = json.loads(json.dumps(dict(key), sort_keys=True, default=str))
    with locked(dest):
        if dest.exists():
            try:
                entry = json.loads(dest.read_text())
                if entry.get("key") == want:  # guards against a (vanishingly unlikely) hash collision
                    return entry["value"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError):
                pass  # atomic writes cannot leave this; never trust it anyway
            dest.unlink()
        value = compute()
        entry = {"kind": kind, "key": want, "value": value}
        write_json(dest, entry)
        return json.loads(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str))
