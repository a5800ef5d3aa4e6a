"""Fine-tuning tasks as objects (see :mod:`lmforge.tasks.base` for the text protocol and
:mod:`lmforge.tasks.arrays` for images and tables). Which task object a name means is the kind
registry's answer (:mod:`lmforge.kinds`)."""

from __future__ import annotations

from lmforge.tasks.base import Task


def get_task(name: str):
    """The task object for ``finetune.task`` / a model's head kind / a saved model's ``lmforge_kind``."""
    from lmforge.kinds import task

    return task(name)


__all__ = ["Task", "get_task"]
