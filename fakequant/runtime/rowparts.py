"""Row-wise numpy work on the model's threads between two decodes.

numpy's loops release the GIL, and while fakequant scores a chunk's logits the cores llama.cpp decoded it on are
idle. A function that reduces each row of logits on its own gives the same numbers, bit for bit, over contiguous
slices of the rows as over all of them, so the slices can run on threads of their own.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")


def row_parts(n_rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(start, stop)`` slices of ``n_rows`` rows as equal as can be (fewer when there are
    fewer rows; one, empty, for none)."""
    parts = max(1, min(parts, n_rows))
    bounds = [n_rows * k // parts for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def map_row_parts(fn: Callable[[int, int, int], T], n_rows: int, parts: int) -> list[T]:
    """``fn(k, start, stop)`` for each slice ``k`` of :func:`row_parts`, slice 0 on the caller's thread and each
    other on a thread of its own; the results in slice order. An exception raised on a slice is raised again here
    (the first slice's first)."""
    slices = row_parts(n_rows, parts)
    results: list[T | None] = [None] * len(slices)
    errors: list[BaseException | None] = [None] * len(slices)

    def one(k: int) -> None:
        try:
            results[k] = fn(k, *slices[k])
        except BaseException as err:  # raised again in the caller's thread
            errors[k] = err

    threads = [threading.Thread(target=one, args=(k,)) for k in range(1, len(slices))]
    for t in threads:
        t.start()
    one(0)
    for t in threads:
        t.join()
    for err in errors:
        if err is not None:
            raise err
    return cast(list[T], results)  # every slice returned: none raised
