"""Static check of the package's structure (issue 28's targets), by reading the source with ``ast``.

Counts, over ``lmforge/``:

* **kind comparisons** — ``==`` / ``!=`` / ``in`` tests against a data-kind or task name
  (``"text"``, ``"image"``, ``"tabular"``, ``"sequence"``, ``"token"``, ...) outside the kind
  registry (``lmforge/kinds.py``), and ``match`` cases on those names;
* **fine-tune loops** — functions in fine-tuning modules that step an optimizer inside a ``for``
  loop (``precision.step`` / ``optimizer.step``);
* **long functions** — functions over 80 lines, ``cli.build_parser`` (an argparse table) excepted;
* **import cycles** — strongly connected groups of modules in the graph of module-level imports.

    python benchmarks/structure_check.py            # the report
    python benchmarks/structure_check.py --json     # one JSON line
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lmforge"
KIND_NAMES = {"text", "image", "images", "tabular", "table", "sequence", "token", "audio"}
REGISTRY = {"kinds.py"}
LONG = 80
LONG_EXEMPT = {("cli.py", "build_parser")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _kind_strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in KIND_NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _kind_strings(e)]
    return []


def _about_kind(node: ast.AST) -> bool:
    """Whether an operand names a kind or task (``data.kind``, ``ft.task``, ``meta["lmforge_kind"]``, ...);
    a file format or an event type compared with "text" or "token" is not a kind comparison."""
    return any(word in ast.unparse(node).lower() for word in ("kind", "task"))


def kind_comparisons(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, the kind names) of every comparison or match case of a kind/task value against a kind name."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(o, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for o in node.ops):
            sides = [node.left, *node.comparators]
            names = [s for side in sides for s in _kind_strings(side)]
            if names and any(_about_kind(side) for side in sides if not _kind_strings(side)):
                hits.append((node.lineno, ",".join(names)))
        elif isinstance(node, ast.Match) and _about_kind(node.subject):
            for case in node.cases:
                if isinstance(case.pattern, ast.MatchValue) and _kind_strings(case.pattern.value):
                    hits.append((case.pattern.lineno, ",".join(_kind_strings(case.pattern.value))))
    return hits


def _steps_optimizer(fn: ast.AST) -> bool:
    for loop in ast.walk(fn):
        if not isinstance(loop, (ast.For, ast.While)):
            continue
        for call in ast.walk(loop):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "step":
                owner = call.func.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if name in ("precision", "optimizer", "opt"):
                    return True
    return False


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def import_graph(mods: dict[str, Path], trees: dict[str, ast.AST]) -> dict[str, set[str]]:
    """Module-level imports between lmforge modules (imports inside functions are lazy by design)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, tree in trees.items():
        is_pkg = mods[mod].name == "__init__.py"
        for node in tree.body:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def check() -> dict:
    mods = _modules()
    trees = {m: ast.parse(p.read_text(), str(p)) for m, p in mods.items()}
    kinds, loops, long_fns = [], [], []
    for mod, tree in trees.items():
        path = mods[mod].relative_to(ROOT)
        if path.name not in REGISTRY:
            kinds += [f"{path}:{line} ({names})" for line, names in kind_comparisons(tree)]
        for fn in _functions(tree):
            n = fn.end_lineno - fn.lineno + 1
            if n > LONG and (str(path), fn.name) not in LONG_EXEMPT:
                long_fns.append(f"{path}:{fn.lineno} {fn.name} ({n} lines)")
            if "finetune" in path.stem and _steps_optimizer(fn) and not any(
                    _steps_optimizer(inner) for inner in _functions(fn) if inner is not fn):
                loops.append(f"{path}:{fn.lineno} {fn.name}")
    cyc = cycles(import_graph(mods, trees))
    return {"kind_comparisons": kinds, "finetune_loops": loops, "long_functions": long_fns, "import_cycles": cyc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = check()
    counts = {k: len(v) for k, v in r.items()}
    if args.json:
        print(json.dumps(counts))
        return
    for key, items in r.items():
        print(f"{key}: {len(items)}")
        for it in items:
            print(f"  {it}")


if __name__ == "__main__":
    main()
