"""Fetch dataset files from their mirrors: progress bar, checksum of the decompressed bytes, atomic write.

A file is written to its final name only after its checksum matched, so a failed or corrupted download never
leaves anything behind that a later run would trust.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from cnnlab.data.registry import DatasetInfo
from cnnlab.errors import DatasetError

CHUNK = 1 << 16


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename it into place (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fetch(url: str, progress, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        task = progress.add_task(url.rsplit("/", 1)[-1], total=total) if progress else None
        chunks = []
        while chunk := response.read(CHUNK):
            chunks.append(chunk)
            if progress:
                progress.update(task, advance=len(chunk))
        return b"".join(chunks)


def download_file(info: DatasetInfo, file: str, dest_dir: Path, mirrors: tuple[str, ...] | None = None,
                  quiet: bool = False, timeout: float = 60.0) -> Path:
    """Download `<file>.gz` into `dest_dir` from the first mirror that serves it with the right checksum."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    errors = []
    progress = None if quiet else Progress(TextColumn("downloading {task.description}"), BarColumn(),
                                           DownloadColumn(), TransferSpeedColumn(), transient=True)
    with progress or _NullContext():
        for base in mirrors or info.mirrors:
            url = base.rstrip("/") + f"/{file}.gz"
            try:
                payload = _fetch(url, progress, timeout)
                digest = sha256_of(gzip.decompress(payload))
            except (urllib.error.URLError, OSError, EOFError, zlib.error, ValueError) as err:
                errors.append(f"{url}: {getattr(err, 'reason', err)}")
                continue
            if digest != info.sha256[file]:
                errors.append(f"{url}: checksum mismatch (sha256 {digest[:12]}…, expected {info.sha256[file][:12]}…)")
                continue
            target = dest_dir / f"{file}.gz"
            atomic_write(target, payload)
            return target
    raise DatasetError(f"could not download {info.name} file {file}: " + "; ".join(errors))


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
