"""Fine-tuning tasks as objects (see :mod:`lmforge.tasks.base` for the protocol)."""

from __future__ import annotations

from lmforge.tasks.base import Task
from lmforge.tasks.sequence import SequenceTask
from lmforge.tasks.token import TokenTask

TASKS: dict[str, Task] = {"sequence": SequenceTask(), "token": TokenTask()}


ARRAY_TASKS = ("image", "tabular")


def get_task(name: str) -> Task:
    """The task object for ``finetune.task`` / a model's head kind."""
    if name in ARRAY_TASKS:
        return get_array_task(name)
    return TASKS[name]


def get_array_task(name: str):
    """The task object of array data (``image``, ``tabular``): see :mod:`lmforge.tasks.arrays`."""
    if name == "image":
        from lmforge.tasks.image import ImageTask

        return ImageTask()
    from lmforge.tasks.tabular import TabularTask

    return TabularTask()


__all__ = ["ARRAY_TASKS", "TASKS", "Task", "get_array_task", "get_task"]

