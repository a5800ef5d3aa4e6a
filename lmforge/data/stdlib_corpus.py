"""Built-in corpora from the docstrings of the Python standard library (no download needed).

``stdlib_docstrings``: one document per module/class/function docstring (unlabeled).
``stdlib_packages``: the same documents labeled with the top-level stdlib package or module
they come from (``email``, ``asyncio``, ...): a real text-classification task.
Tests and vendored packages (``test``, ``idle_test``, ``site-packages``) are skipped.
"""

from __future__ import annotations

import ast
import inspect
import os
import sysconfig
import warnings
from typing import Iterator, NamedTuple

SKIP_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__", "dist-packages"}
FILES_PER_SLICE = 64


def stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def files() -> list[str]:
    root = stdlib_root()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return out


def slices() -> list[list[str]]:
    fs = files()
    return [fs[i:i + FILES_PER_SLICE] for i in range(0, len(fs), FILES_PER_SLICE)]


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, int, str]]:
    """(qualified name, line, docstring) for the module and every class/function in it."""
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield module, 1, doc
    stack = [(tree, module)]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                d = ast.get_docstring(child, clean=True)
                if d:
                    yield name, child.lineno, inspect.cleandoc(d)
                stack.append((child, name))


class Unparsable(NamedTuple):
    """A source file that could not be parsed (the reader counts it as a reject)."""
    path: str
    detail: str


def read(paths: list[str], labeled: bool) -> Iterator[tuple[dict, int, str] | Unparsable]:
    """Raw records ``(record, line, path)`` of the docstrings in ``paths``, or :class:`Unparsable`
    for a file that cannot be parsed. Validation into Documents is the reader's job."""
    root = stdlib_root()
    for path in paths:
        rel = os.path.relpath(path, root)
        module = rel[:-3].replace(os.sep, ".").removesuffix(".__init__")
        top = module.split(".")[0]
        try:
            with open(path, "rb") as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(fh.read())
        except (SyntaxError, ValueError, OSError) as exc:
            yield Unparsable(path, str(exc))
            continue
        items = sorted(_docstrings(tree, module), key=lambda t: (t[1], t[0]))
        for qualname, line, text in items:
            yield {"text": text, "id": qualname, "label": top if labeled else None}, line, path
