"""The one way in for files a user names: datasets, images, configs, weights, checkpoints, run folders; and the
one way out, `atomic_write`, with which every file cnnlab writes (run folders, caches, downloads) appears whole
or not at all.

Every reader refuses what is not a regular file (a FIFO would hang the read, `/dev/zero` would fill memory, a
folder would raise IsADirectoryError), refuses a file larger than the cap of its kind before reading it, reads no
more than that cap even if the file grows meanwhile, and turns every failure into the project's one-line error
naming the file. Decompression streams with a limit on the output, so a small gzip cannot inflate into gigabytes.

The caps (DEVELOPERS.md and README.md state them): each is far above what a real file of its kind needs.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import zlib
from pathlib import Path

from cnnlab.errors import CnnlabError

MiB = 2 ** 20
LIMITS = {  # kind: (largest file, what the largest real one is)
    "config": 1 * MiB,  # a config.json is about 2 KB
    "metrics": 64 * MiB,  # metrics.jsonl: ~20 KB an epoch with the step losses
    "image": 50 * MiB,  # a phone photo is 3-12 MB
    "dataset": 256 * MiB,  # a compressed IDX file; MNIST's largest is 9.9 MB (EMNIST balanced: 42 MB)
    "dataset-decompressed": 256 * MiB,  # MNIST's largest decompressed is 47 MB (EMNIST balanced: 86 MB)
    "weights": 2048 * MiB,  # torchvision's VGG-19 is 548 MB
    "checkpoint": 4096 * MiB,  # weights plus Adam's two moments: about 3x the weights
}


def regular_file(path: str | Path, error: type[CnnlabError], what: str = "file") -> os.stat_result:
    """The file's stat, after refusing what is missing or not a regular file (links are followed)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a file ({what})")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file but a device, pipe or socket ({what})")
    return info


def read_bytes(path: str | Path, kind: str, error: type[CnnlabError], what: str = "file") -> bytes:
    """The contents of a regular file of `kind` (a key of LIMITS), refused above that kind's cap."""
    limit = LIMITS[kind]
    size = regular_file(path, error, what).st_size
    if size > limit:
        raise error(f"{path}: {size / MiB:,.1f} MiB is over the {limit // MiB:,} MiB limit ({what})")
    try:
        with open(path, "rb") as file:
            # sized by stat: a read of `limit` bytes allocates that much first (50 MiB for an image: 28 us a file)
            data = file.read(size + 1)
            if len(data) > size:  # it grew since stat: read on, to the limit
                data += file.read(limit + 1 - len(data))
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror or err})") from None
    if len(data) > limit:
        raise error(f"{path}: over the {limit // MiB:,} MiB limit ({what}; it grew while being read)")
    return data


def read_text(path: str | Path, kind: str, error: type[CnnlabError], what: str = "file") -> str:
    try:
        return read_bytes(path, kind, error, what).decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def gunzip(data: bytes, limit: int, source: str | Path, error: type[CnnlabError]) -> bytearray:
    """Decompress gzip `data` (several members, as `gzip` writes them, included), refusing output beyond
    `limit` bytes as soon as it is reached: nothing larger is ever held in memory, and nothing twice."""
    out, remaining = bytearray(), limit + 1
    try:
        while data:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a gzip member: header, deflate, trailer
            while data and remaining > 0:
                chunk = inflater.decompress(data, min(remaining, 16 * MiB))
                out += chunk
                remaining -= len(chunk)
                data = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if remaining <= 0:
                raise error(f"{source}: decompresses to more than {limit // MiB:,} MiB; refused")
            if not inflater.eof:
                raise error(f"{source}: corrupt gzip data (truncated)")
            data = inflater.unused_data
    except zlib.error as err:
        raise error(f"{source}: corrupt gzip data ({err})") from None
    return out


# `.NAME.PID.RANDOM.part`: a file on its way to NAME, written by process PID (decoded folders: `.NAME.PID.part`)
_PART = re.compile(r"\..+\.(?P<pid>[0-9]+)(?:\.[0-9a-f]{8})?\.part")


def part_path(path: Path) -> Path:
    """A new name beside `path` for the file that becomes it: hidden, with this process's id, so that a later
    process can tell a leftover of a killed writer (`remove_stale_parts`) from a write in progress."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def create_part(path: Path) -> tuple[int, Path]:
    """(open descriptor, name) of a new partial file for `path`, made with the permissions the umask gives any
    new file (mkstemp's would be 0600: a run folder's files would then not be readable by the group)."""
    while True:
        tmp = part_path(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError):
        return False
    return True


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete the partial files in `folder` whose writing process is gone (killed mid-write); those of running
    processes stay. Returns what was removed."""
    removed = []
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".part")]
    except OSError:
        return removed
    for name in names:
        match = _PART.fullmatch(name)
        if match and not _alive(int(match["pid"])):
            try:
                (folder / name).unlink()
                removed.append(folder / name)
            except OSError:
                pass  # not ours to remove (a read-only folder): it is only ever skipped
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename it into place (atomic on POSIX). A failure (a
    full disk) raises an OSError that names `path`; the file that was there is unchanged."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(path.parent)
        fd, tmp = create_part(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:  # write and fsync say what failed, not where
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise
