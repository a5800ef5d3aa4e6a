"""Fine-tuning tasks as objects (see :mod:`lmforge.tasks.base` for the protocol)."""

from __future__ import annotations

from lmforge.tasks.base import Task
from lmforge.tasks.sequence import SequenceTask
from lmforge.tasks.token import TokenTask

TASKS: dict[str, Task] = {"sequence": SequenceTask(), "token": TokenTask()}


def get_task(name: str) -> Task:
    """The task object for ``finetune.task`` / a model's head kind."""
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task"]

