"""Running a notebook as a student does: top to bottom in a fresh Jupyter kernel (nbclient, ipykernel), in QUICK mode."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


# Appended to the run, then removed: the kernel's processor time, its own and its children's (PyTensor's compiler).
_CPU_SECONDS = ("import resource\nprint(sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, "
                "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))))")


def execute(notebook: nbformat.NotebookNode | Path, cwd: Path, timeout: int = 600, monkeypatch=None):
    """(the notebook with its outputs, wall seconds, processor seconds) after running every cell in a new kernel
    started in `cwd`, with CNNLAB_QUICK=1 (each notebook's QUICK switch) and one thread (the suite runs two
    processes on two cores). The processor seconds are what a budget is checked against: on a shared machine the
    wall clock measures the other work too."""
    if monkeypatch is not None:  # the kernel inherits this process's environment
        for name, value in {"CNNLAB_QUICK": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                            "MPLBACKEND": "module://matplotlib_inline.backend_inline"}.items():
            monkeypatch.setenv(name, value)
    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, Path) else notebook
    nb.cells.append(nbformat.v4.new_code_cell(_CPU_SECONDS))
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    seconds = time.perf_counter() - start
    cpu = float(nb.cells.pop().outputs[0].text)
    print(f"{getattr(notebook, 'name', 'notebook')}: {seconds:.1f} s, {cpu:.1f} processor s")  # pytest -s shows it
    return nb, seconds, cpu


def outputs(nb, kind: str = "stream") -> list[dict]:
    """Every output of the kind (stream, display_data, execute_result, error) across the notebook's cells."""
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == kind]


def text(nb) -> str:
    """Everything the cells printed (stdout)."""
    return "".join(out.text for out in outputs(nb) if out.name == "stdout")


def images(nb) -> list[str]:
    """The PNG images the cells displayed (base64)."""
    return [out.data["image/png"] for kind in ("display_data", "execute_result") for out in outputs(nb, kind)
            if "image/png" in out.data]


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
