"""check_once: a sound model is walked once per identity; a changed model, a damaged one or an edited checker is
walked again."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fakequant.errors import GGUFFormatError
from fakequant.gguf import check, checked
from fakequant.gguf.synthetic import write_tiny_gguf


@pytest.fixture()
def walks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths read_layout walked, with the markers in a cache of this test's own."""
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    seen: list[Path] = []
    real = check.read_layout

    def counting(path: Path, **kw: object) -> object:
        seen.append(Path(path))
        check._LAYOUTS.clear()  # each call a real walk, not the process's memo
        return real(path, **kw)

    monkeypatch.setattr(check, "read_layout", counting)
    return seen


def test_a_sound_model_is_walked_once_until_it_changes(tmp_path: Path, walks: list[Path]) -> None:
    model = write_tiny_gguf(tmp_path / "m.gguf")
    checked.check_once(model)
    checked.check_once(model)
    assert walks == [model]
    assert len(list((tmp_path / "home" / "checked").iterdir())) == 1
    # the same size, its tensor count made absurd, a new modification time: walked again and refused
    with open(model, "r+b") as fh:
        fh.seek(8)
        fh.write(struct.pack("<Q", 2**40))
    st = os.stat(model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    for _ in range(2):  # a damaged file gets no marker: refused every time
        with pytest.raises(GGUFFormatError, match=r"m\.gguf: tensor count 1099511627776 is impossible"):
            checked.check_once(model)
    assert walks == [model] * 3


def test_a_copy_is_walked_and_an_edited_checker_walks_again(tmp_path: Path, walks: list[Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = write_tiny_gguf(tmp_path / "m.gguf")
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(model.read_bytes())
    checked.check_once(model)
    checked.check_once(copy)  # another inode: its own walk
    checker = tmp_path / "check.py"
    checker.write_text("# a checker\n")
    monkeypatch.setattr(checked, "_CHECKER", checker)
    checked.check_once(model)
    checked.check_once(model)
    checker.write_text("# a checker that refuses more\n")
    checked.check_once(model)
    assert walks == [model, copy, model, model]


def test_a_model_found_sound_before_costs_no_gguf_import(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "m.gguf")
    env = {**os.environ, "FAKEQUANT_HOME": str(tmp_path / "home")}
    probe = ("import sys; from fakequant.gguf.checked import check_once; "
             f"check_once({str(model)!r}); print('gguf' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["True"], ["False"]]
