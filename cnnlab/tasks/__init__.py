"""The tasks a model can be trained for, each one object that the rest of cnnlab asks (cnnlab.tasks.task)."""

from __future__ import annotations

from cnnlab.models import model_info
from cnnlab.tasks.classification import Classification
from cnnlab.tasks.localization import Localization
from cnnlab.tasks.segmentation import Segmentation
from cnnlab.tasks.task import Task

TASKS: dict[str, Task] = {task.name: task for task in (Classification(), Segmentation(), Localization())}


def task_of(info) -> Task:
    """The task of a dataset (a DatasetInfo, or a run's or a model's `info`), whose labels are made for it."""
    return TASKS[info.task]


def task_for(config) -> Task:
    """The task of a training configuration's model, checked against its dataset and settings."""
    task = TASKS[model_info(config.model).task]
    task.check(config)
    return task


__all__ = ["TASKS", "Task", "task_for", "task_of"]
