"""The base of every error lmforge reports to a user.

The CLI catches :class:`LmforgeError` only: it prints ``lmforge: <message>`` and exits with the
error's ``exit_code`` (2 for configuration and usage errors, 1 for everything else a user can
fix: bad data, a missing file, a corrupted checkpoint). Any other exception is a bug in lmforge
and is shown with its traceback.

Errors also derive from the built-in class they refine (``ValueError``, ``RuntimeError``,
``FileNotFoundError``), so code that catches those keeps working.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager


class LmforgeError(Exception):
    """A problem the user can act on; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(LmforgeError, ValueError):
    """Bad command-line usage (a missing or contradictory flag)."""

    exit_code = 2


class InputError(UsageError):
    """One input of a request that cannot be used; ``part`` names what inside it (a column), if anything."""

    def __init__(self, message: str, part: str | None = None):
        super().__init__(message)
        self.part = part


class ArtifactError(LmforgeError, FileNotFoundError):
    """A folder or file a stage needs is missing, unreadable or not what it should be."""


class Interrupted(LmforgeError):
    """SIGINT/SIGTERM received; the run stopped cleanly at a step boundary. ``what`` says where;
    ``hint`` how to continue (the standalone commands' ``--resume``; ``lmforge run`` names itself)."""

    exit_code = 130

    def __init__(self, what: str, hint: str = "continue with --resume"):
        super().__init__(f"{what}; {hint}")
        self.what, self.hint = what, hint


class DataError(LmforgeError, ValueError):
    """Input data a stage cannot use: an empty set, an unknown label, a wrong format."""


class ModelError(LmforgeError, ValueError):
    """A model that cannot do what was asked (unsupported layout, too-long input, wrong kind)."""


class TrainingError(LmforgeError, RuntimeError):
    """A training run that cannot start or go on (model/data mismatch, non-finite loss, ...)."""


class ClusterError(LmforgeError, ConnectionError):
    """A Ray cluster that cannot be reached, or that lost a unit's worker more often than the retries allow."""


class StorageError(LmforgeError, OSError):
    """The disk refused a write: full, over quota, read-only or not permitted."""


_STORAGE = {errno.ENOSPC: "free some space and run the same command again: finished work units and checkpoints are kept",
            errno.EDQUOT: "free some space (disk quota exceeded) and run the same command again: finished work is kept",
            errno.EROFS: "the file system is read-only: choose a writable run_dir",
            errno.EACCES: "fix the permissions, or choose another run_dir",
            errno.EPERM: "fix the permissions, or choose another run_dir"}


def storage_error(exc: OSError, where: str | os.PathLike | None = None) -> StorageError | None:
    """A :class:`StorageError` naming the file (or ``where``) for a disk-full / read-only /
    permission ``OSError``; None for any other error (a bug or a missing input: not ours to reword)."""
    path = exc.filename or where or "(unknown path)"
    if exc.errno is None and "requested and" in str(exc) and "written" in str(exc):
        # numpy's tofile on a full disk: "16384 requested and 6112 written", no errno
        return StorageError(f"cannot write {path}: a short write ({exc}): No space left on device, most likely; "
                            f"{_STORAGE[errno.ENOSPC]}")
    if exc.errno not in _STORAGE:
        return None
    verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
    return StorageError(f"cannot {verb} {path}: {os.strerror(exc.errno)}; {_STORAGE[exc.errno]}")


def nearly_full(path: str | os.PathLike, margin: int = 4 << 20) -> bool:
    """Whether the file system of ``path`` has less than ``margin`` bytes free (used to explain a
    failed write whose library did not say why, e.g. torch.save's "iostream error")."""
    import shutil

    try:
        return shutil.disk_usage(path).free < margin
    except OSError:
        return False


@contextmanager
def writing(where: str | os.PathLike):
    """Turn a disk-full / read-only / permission error raised inside into a :class:`StorageError`
    that names the file, or ``where`` when the operating system did not say which file."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        err = storage_error(exc, where)
        if err is None:
            raise
        raise err from None
