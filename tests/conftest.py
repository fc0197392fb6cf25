import atexit
import fcntl
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

# The suite tests the CPU: its bit-exact checks (same seed, same weights; resume after a kill) hold for the CPU's
# deterministic kernels, and `device: auto` would train in bf16 on a GPU. Hidden here, before anything starts
# CUDA, so that the subprocesses the tests launch inherit it too; benchmarks/gpu.py is the GPU's own check.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# For the same reason the suite trains in fp32 on every CPU: `--precision auto` would pick bf16 on CPUs that compute
# it natively (cnnlab.hardware), and the floors were measured in fp32 across seeds, threads and AVX2/AVX-512
# kernels. Capping oneDNN just below its bf16 instructions keeps its AVX-512 fp32 kernels and turns auto into fp32
# (no effect on CPUs without AVX-512); tests/test_hardware.py lifts the cap to check the bf16 path itself.
SUITE_ONEDNN_CAP = "AVX512_CORE_VNNI"
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", SUITE_ONEDNN_CAP)

# `make test` runs one xdist worker per core: each computes on one thread (PyTorch's intra-op threads, NumPy's BLAS),
# as do the processes it starts, so that two workers on two cores do not run four threads that wait on each other
# (OpenBLAS's threads spin while they wait). Set before anything loads torch or NumPy, which read them once. Tests
# of thread counts set them explicitly (`--threads 2`).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")

# The suite starts well over a hundred Python processes (xdist workers, CLI and torchrun subprocesses, notebook
# kernels), each importing cnnlab. Where PYTHONDONTWRITEBYTECODE is set (some containers and CI images set it), every
# one of them compiled cnnlab's sources, and every worker the test modules, afresh: 0.4-0.6 s of CPU a process, 3.5 s
# a worker's collection (Zen 4). The suite keeps its bytecode in __pycache__ (ignored by git) whatever the setting.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# PyTensor compiles the pytensor engine's graphs to C and caches them in its compiledir (~/.pytensor by default). Each
# test process compiles from scratch, as a fresh clone does, into a folder of its own that it removes at the end (the
# processes it starts share it): a warm cache cannot hide a slow or broken compilation. tests/test_engines.py says
# what the first compilation costs. The suite compiles at -O1 without debug information (PyTensor's default: -O3 -g):
# the same C code and the same IEEE arithmetic (bit-identical results) for a third less of the compiler's time: the
# engine's first training (82 modules then; 63 since a convolution's windows are cut in two passes) 58-65 -> 39-45
# CPU s, the four tests of the "pytensor-c" group 148 and 155 -> 129 and 141 (two runs of each, alternated, one
# process, Zen 4). What the suite checks is the code, not the compiler's optimizer.
if "PYTENSOR_FLAGS" not in os.environ:
    os.environ["PYTENSOR_FLAGS"] = ("gcc__cxxflags=-O1 -g0,compiledir="
                                    + tempfile.mkdtemp(prefix="cnnlab-tests-pytensor-"))
    # Registered before PyTensor is imported, so that it runs after PyTensor's own clean-up at exit (last in, first
    # out).
    atexit.register(shutil.rmtree, os.environ["PYTENSOR_FLAGS"].partition("compiledir=")[2], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# torchvision's state_dict names, shapes and parameter counts (tests/reference/README.md says how it was made):
# in the repository, so that the key-for-key checks always run.
MANIFEST = REPO / "tests" / "reference" / "torchvision_state_dicts.json"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.cache/cnnlab."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def fashion_data_dir() -> str:
    """Fashion-MNIST is not bundled: CI and developers find it in ../shared/data or $CNNLAB_DATA."""
    for candidate in (os.environ.get("CNNLAB_DATA"), SHARED_DATA):
        if candidate and (Path(candidate) / "fashion-mnist").is_dir():
            return str(candidate)
    pytest.skip("Fashion-MNIST files not found (set CNNLAB_DATA to a folder holding fashion-mnist/)")


def metrics_without_timings(run_dir) -> list[dict]:
    """A run's metrics.jsonl rows without the wall-clock fields, which differ between equal runs."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


_KILLED_CHILD = """
import json, os, signal, sys
import cnnlab.data.download
from cnnlab.train.config import TrainConfig
from cnnlab.train.trainer import Trainer

settings, name, runs_dir, epoch, where = json.loads(sys.argv[1])
trainer = Trainer(TrainConfig.from_dict(settings), name=name, runs_dir=runs_dir, progress=False)
kill_at = trainer.steps_per_epoch * (epoch - 1) + max(1, trainer.steps_per_epoch // 2)
train_batch, replace, steps = trainer.engine.train_batch, os.replace, []


def train_batch_or_die(*args):
    steps.append(1)
    if where == "mid-epoch" and len(steps) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return train_batch(*args)


def replace_or_die(source, target):
    if where == "mid-write" and len(trainer.history) == epoch:  # the epoch's checkpoint is written, not renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, target)


trainer.engine.train_batch = train_batch_or_die
cnnlab.data.download.os.replace = replace_or_die
trainer.fit()
"""


def killed_run(config, name: str, runs_dir, epoch: int = 2, where: str = "mid-epoch") -> None:
    """Train `config` into runs_dir/name in a child process that SIGKILLs itself — no clean-up, no flush, as a
    power cut — half way through `epoch` ("mid-epoch") or, at the end of `epoch`, between writing checkpoint.pt's
    temporary file and renaming it into place ("mid-write"). Steps, not the clock, say when: the kill lands at
    the same point on any machine."""
    settings = json.dumps([config.to_dict(), name, str(runs_dir), epoch, where])
    child = subprocess.run([sys.executable, "-c", _KILLED_CHILD, settings], capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def run_script(path, *args, cwd=None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python PATH ARGS` run in this process: a benchmark's or example's short
    mode, whose checks are about what it computes, not about starting Python (2 s of CPU a time, with torch). The
    script's settings that outlive it here (torch's thread count, the working folder, sys.argv) are put back."""
    import contextlib
    import io
    import runpy

    import torch

    argv, path_list, folder, threads = sys.argv, list(sys.path), os.getcwd(), torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [str(path), *map(str, args)]
    sys.path.insert(0, str(Path(path).resolve().parent))  # as `python PATH` does: the script's folder imports
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(path), run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        sys.argv, sys.path[:] = argv, path_list
        os.chdir(folder)
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


def run_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`cnnlab ARGS` run in this process, answered as subprocess.run answers (returncode, stdout, stderr), with
    `env` added to the environment and `cwd` as the working folder while it runs: for tests that read a command's
    output, not the start of a process (2 s of CPU each, with torch)."""
    import contextlib
    import io

    from cnnlab.cli import main

    saved, folder = {key: os.environ.get(key) for key in env or {}}, os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.update({key: str(value) for key, value in (env or {}).items()})
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit:  # argparse: --help, or a flag it refuses
                code = exit.code
    finally:
        os.chdir(folder)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["cnnlab", *map(str, args)], code, out.getvalue(), err.getvalue())


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `cnnlab ARGS` run in this process (faster than a subprocess)."""
    from cnnlab.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:  # argparse: --help, or a flag it refuses
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


# -- Built once, read by many: the suite's trained runs -----------------------------------------------------------
# Training is most of what the suite costs, and most tests only look at a finished run. A run the tests share is
# built on first use by whichever xdist worker asks first, under a file lock (the other worker waits, then reads it),
# in a folder both workers see, and never built again in that session. Tests read a shared run and never write into
# it (copy it with `shutil.copytree` to change it): each one's files are fingerprinted when it is built and checked
# again when the session ends, so a test that wrote into one fails there, naming it.


def _shared_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # xdist gives each worker basetemp/popen-gwN; their parent is the session's, the same for every worker
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fingerprint(folder: Path) -> str:
    """A digest of every file's name and bytes under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".fingerprint"):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class SharedBuilds:
    """Folders built once per test session (trained runs, generated datasets), shared by every test and worker."""

    def __init__(self, root: Path):
        self.root = root
        self.used: dict[str, Path] = {}
        root.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, build) -> Path:
        """The folder `name`, made by `build(folder)` if no worker has made it yet in this session. `build` writes
        into the empty folder it is given; what it returns is the path the tests get (the folder or one inside)."""
        folder = self.root / name
        with _locked(self.root / f"{name}.lock"):
            if not (folder / ".fingerprint").is_file():
                shutil.rmtree(folder, ignore_errors=True)  # a build that failed part way, in another worker
                folder.mkdir()
                result = Path(build(folder) or folder)
                (folder / ".result").write_text(str(result.relative_to(folder)))
                (folder / ".fingerprint").write_text(fingerprint(folder))
        self.used[name] = folder
        return folder / (folder / ".result").read_text()

    def check_unchanged(self) -> list[str]:
        return [name for name, folder in self.used.items()
                if fingerprint(folder) != (folder / ".fingerprint").read_text()]


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    builds = SharedBuilds(_shared_root(tmp_path_factory))
    yield builds
    changed = builds.check_unchanged()
    assert not changed, f"a test wrote into the shared build(s) {', '.join(changed)}: copy a shared run to change it"


def train_into(folder: Path, name: str = "run", model=None, **settings) -> Path:
    """Train the default recipe with `settings` into folder/name, quietly, and return the run folder."""
    from cnnlab.train.config import recipe_config
    from cnnlab.train.trainer import Trainer

    recipe = settings.pop("recipe", "default")
    return Trainer(recipe_config(recipe, **settings), name=name, runs_dir=folder, progress=False,
                   model=model).fit().run_dir


# -- What each test costs in CPU seconds ------------------------------------------------------------------------
# `--durations` measures wall time, which on a shared machine says more about the neighbours than about the test.
# With CNNLAB_TEST_CPU=FILE each test appends "cpu-seconds<TAB>node id" to FILE: this process's CPU time and that
# of the processes it started and waited for (subprocesses, torchrun's workers), set-up and tear-down included.
# `sort -rn FILE | head -15` is then the suite's cost on any machine, busy or not.
CPU_LOG = os.environ.get("CNNLAB_TEST_CPU")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _cpu_seconds() if CPU_LOG else 0.0
    yield
    if CPU_LOG:
        with open(CPU_LOG, "a") as log:
            log.write(f"{_cpu_seconds() - before:.2f}\t{item.nodeid}\n")


# -- The costly tests start first ---------------------------------------------------------------------------------
# xdist hands the tests out in collection order; a costly test collected last keeps one worker busy while the other
# has finished. Tests marked `slow` (the heaviest few: compiling, several processes, a browser) are collected
# first, in their files' order, so the workers end together. The 15 slowest of every run are printed at its end.
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # a stable sort: files keep their order
