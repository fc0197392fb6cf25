"""Fetch dataset files from their mirrors: progress bar, checksum of the decompressed bytes, atomic write.

A file is written to its final name only after its checksum matched, so a failed or corrupted download never
leaves anything behind that a later run would trust.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from cnnlab.data.registry import DatasetInfo
from cnnlab.errors import DatasetError
from cnnlab.files import atomic_write, create_part, remove_stale_parts

CHUNK = 1 << 16


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stream(url: str, progress, timeout: float):
    """The response body of `url` in chunks, shown on `progress` (a rich Progress, or None)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        task = progress.add_task(url.rsplit("/", 1)[-1], total=total) if progress else None
        while chunk := response.read(CHUNK):
            if progress:
                progress.update(task, advance=len(chunk))
            yield chunk


def _progress(quiet: bool):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return contextlib.nullcontext() if quiet else Progress(TextColumn("downloading {task.description}"), BarColumn(),
                                                           DownloadColumn(), TransferSpeedColumn(), **transient_bar())


def transient_bar() -> dict:
    """Progress's settings for a bar that goes away when done: drawn on standard error (standard output holds the
    command's result), and only on a terminal (elsewhere it would leave an empty line behind)."""
    from rich.console import Console

    console = Console(stderr=True)
    return {"console": console, "transient": True, "disable": not console.is_terminal}


FAILURES = (urllib.error.URLError, OSError, EOFError, zlib.error, ValueError)


def download_file(info: DatasetInfo, file: str, dest_dir: Path, mirrors: tuple[str, ...] | None = None,
                  quiet: bool = False, timeout: float = 60.0) -> Path:
    """Download `<file>.gz` into `dest_dir` from the first mirror that serves it with the right checksum (of the
    decompressed bytes, or of the gzip file where only that is published)."""
    errors = []
    with _progress(quiet) as progress:
        for base in mirrors or info.mirrors:
            url = base.rstrip("/") + f"/{file}.gz"
            try:
                payload = b"".join(_stream(url, progress, timeout))
                digest, expected = ((sha256_of(gzip.decompress(payload)), info.sha256[file]) if file in info.sha256
                                    else (sha256_of(payload), info.sha256[f"{file}.gz"]))
            except FAILURES as err:
                errors.append(f"{url}: {getattr(err, 'reason', err)}")
                continue
            if digest != expected:
                errors.append(f"{url}: checksum mismatch (sha256 {digest[:12]}…, expected {expected[:12]}…)")
                continue
            target = dest_dir / f"{file}.gz"
            atomic_write(target, payload)
            return target
    raise DatasetError(f"could not download {info.name} file {file}: " + "; ".join(errors))


def download_archive(info: DatasetInfo, dest_dir: Path, mirrors: tuple[str, ...] | None = None,
                     quiet: bool = False, timeout: float = 60.0) -> Path:
    """Download the dataset's archive into `dest_dir` from the first mirror that serves it with the published
    md5; streamed to a temporary file (an archive can be larger than memory should hold) renamed into place."""
    archive = info.archive
    errors = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest_dir)
    with _progress(quiet) as progress:
        for base in mirrors or info.mirrors:
            url = base.rstrip("/") + f"/{archive.name}"
            fd, tmp = create_part(dest_dir / archive.name)
            try:
                digest = hashlib.md5(usedforsecurity=False)
                with os.fdopen(fd, "wb") as out:
                    for chunk in _stream(url, progress, timeout):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != archive.md5:
                    errors.append(f"{url}: checksum mismatch (md5 {digest.hexdigest()[:12]}…, expected "
                                  f"{archive.md5[:12]}…)")
                    continue
                os.replace(tmp, dest_dir / archive.name)
                return dest_dir / archive.name
            except FAILURES as err:
                errors.append(f"{url}: {getattr(err, 'reason', err)}")
            finally:
                Path(tmp).unlink(missing_ok=True)
    raise DatasetError(f"could not download {info.name} archive {archive.name}: " + "; ".join(errors))


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(info: DatasetInfo, archive: Path, dest_dir: Path) -> dict[str, Path]:
    """The dataset's files from its `archive` (a .tar.gz or .zip, checked against the published md5 first),
    written into `dest_dir` under their plain names: file name -> path. Only the listed members are read, by
    name: a path inside the archive never chooses where anything is written."""
    import tarfile
    import zipfile

    if md5_of_file(archive) != info.archive.md5:
        raise DatasetError(f"{archive}: checksum mismatch for {info.name} (md5, expected "
                           f"{info.archive.md5[:12]}…): the archive is corrupt or not {info.name}'s")
    out = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                for file, member in info.archive.members.items():
                    out[file] = _write_member(dest_dir, file, member, zipped.read(member))
        else:
            with tarfile.open(archive, "r:*") as tar:
                for file, member in info.archive.members.items():
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise KeyError(member)
                    out[file] = _write_member(dest_dir, file, member, extracted.read())
    except KeyError as err:
        raise DatasetError(f"{archive}: has no member {err} ({info.name})") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive}: unreadable archive ({err})") from None
    return out


def _write_member(dest_dir: Path, file: str, member: str, data: bytes) -> Path:
    target = dest_dir / (f"{file}.gz" if member.endswith(".gz") and not file.endswith(".gz") else file)
    atomic_write(target, data)
    return target
