"""Training progress in a Jupyter notebook: one bar per epoch, each a single output of the cell updated in place
(the kernel's display updates), so that an epoch of hundreds of steps leaves one line, not hundreds. It needs no
widget library: the output is plain HTML with a text form, and a saved notebook keeps the bars as they ended.
In a terminal the Trainer draws rich's bars instead; both answer the same calls (add_task, update).
"""

from __future__ import annotations

import html
import sys
import time

MIN_INTERVAL_S = 0.25  # between two redraws of a bar: a display update costs the kernel a message


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell), where output goes to a notebook's cell."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and hasattr(shell, "kernel")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class NotebookProgress:
    """The interface of rich's Progress that the Trainer uses, drawn as one HTML bar per task (epoch)."""

    def __init__(self):
        self.tasks: list[dict] = []

    def __enter__(self) -> NotebookProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task in range(len(self.tasks)):
            self._draw(task)

    def add_task(self, description: str, total: int, stats: str = "") -> int:
        from IPython.display import display

        task = {"description": description, "total": total, "completed": 0, "stats": stats,
                "start": time.perf_counter(), "drawn": 0.0}
        task["handle"] = display(self._bundle(task), raw=True, display_id=True)
        self.tasks.append(task)
        return len(self.tasks) - 1

    def update(self, task: int, completed: int | None = None, stats: str | None = None) -> None:
        state = self.tasks[task]
        if completed is not None:
            state["completed"] = completed
        if stats is not None:
            state["stats"] = stats
        now = time.perf_counter()
        if now - state["drawn"] >= MIN_INTERVAL_S or state["completed"] >= state["total"]:
            self._draw(task)

    def _draw(self, task: int) -> None:
        state = self.tasks[task]
        state["drawn"] = time.perf_counter()
        state["handle"].update(self._bundle(state), raw=True)

    @staticmethod
    def _bundle(task: dict) -> dict[str, str]:
        done, total = task["completed"], task["total"]
        elapsed = _clock(time.perf_counter() - task["start"])
        text = f"{task['description']} {done}/{total} {elapsed} {task['stats']}"
        page = (f"<div style='font-family:monospace;white-space:pre'><b>{html.escape(task['description'])}</b> "
                f"<progress value='{done}' max='{max(total, 1)}' style='width:14em;vertical-align:middle'></progress> "
                f"{done}/{total} {elapsed} {html.escape(task['stats'])}</div>")
        return {"text/plain": text, "text/html": page}
