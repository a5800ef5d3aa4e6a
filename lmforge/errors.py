"""The base of every error lmforge reports to a user.

The CLI catches :class:`LmforgeError` only: it prints ``lmforge: <message>`` and exits with the
error's ``exit_code`` (2 for configuration and usage errors, 1 for everything else a user can
fix: bad data, a missing file, a corrupted checkpoint). Any other exception is a bug in lmforge
and is shown with its traceback.

Errors also derive from the built-in class they refine (``ValueError``, ``RuntimeError``,
``FileNotFoundError``), so code that catches those keeps working.
"""

from __future__ import annotations


class LmforgeError(Exception):
    """A problem the user can act on; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(LmforgeError, ValueError):
    """Bad command-line usage (a missing or contradictory flag)."""

    exit_code = 2


class ArtifactError(LmforgeError, FileNotFoundError):
    """A folder or file a stage needs is missing, unreadable or not what it should be."""


class Interrupted(LmforgeError):
    """SIGINT/SIGTERM received; the run stopped cleanly at a step boundary."""

    exit_code = 130


class DataError(LmforgeError, ValueError):
    """Input data a stage cannot use: an empty set, an unknown label, a wrong format."""


class ModelError(LmforgeError, ValueError):
    """A model that cannot do what was asked (unsupported layout, too-long input, wrong kind)."""


class TrainingError(LmforgeError, RuntimeError):
    """A training run that cannot start or go on (model/data mismatch, non-finite loss, ...)."""
