"""Everything a run report says, read from the files the stages wrote — nothing recomputed.

Each fact keeps its source: ``sources`` lists every file read, with its path relative to the run
folder, size and sha256, so a figure in the report can be traced to the file it came from.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class RunFacts:
    run_dir: Path
    sources: dict[str, dict] = field(default_factory=dict)  # relative path -> {bytes, sha256}
    pipeline: Optional[dict] = None
    data: Optional[dict] = None  # data/manifest.json
    labeled: Optional[dict] = None  # labeled/data/manifest.json
    rejected: dict[str, list[dict]] = field(default_factory=dict)  # data kind -> a few rejects per reason
    pretrain: Optional[dict] = None  # summary.json
    pretrain_metrics: list[dict] = field(default_factory=list)
    finetune: Optional[dict] = None
    finetune_metrics: list[dict] = field(default_factory=list)
    evals: dict[str, dict] = field(default_factory=dict)  # split -> eval/<split>/metrics.json
    confusion_png: dict[str, bytes] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)  # relative path -> figure a stage wrote (images, tables)
    tune: list[dict] = field(default_factory=list)
    transfer: list[dict] = field(default_factory=list)  # transfer/results.jsonl
    transfer_png: Optional[bytes] = None
    distill: Optional[dict] = None
    export: Optional[dict] = None
    export_dir: Optional[Path] = None
    environment: dict = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)  # stage -> its resolved config.yaml

    def read(self, path: Path) -> bytes:
        """The bytes of ``path``, recorded as a source (size and sha256, by its name relative to
        the run folder): each file is read once, for its hash and its content alike."""
        rel = str(path.relative_to(self.run_dir)) if path.is_relative_to(self.run_dir) else str(path)
        data = path.read_bytes()
        self.sources[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return data

    def json(self, path: Path) -> Optional[Any]:
        if not path.is_file():
            return None
        try:
            return json.loads(self.read(path))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def jsonl(self, path: Path, limit: Optional[int] = None) -> list[dict]:
        if not path.is_file():
            return []
        out = []
        for line in self.read(path).decode("utf-8", "replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
            if limit is not None and len(out) >= limit:
                break
        return out


def _rejects(facts: RunFacts, folder: Path, per_reason: int = 3) -> list[dict]:
    """A few rejected records per reason from ``rejected/*.jsonl``."""
    seen: dict[str, int] = {}
    out = []
    for f in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for rec in facts.jsonl(f, limit=2000):
            reason = str(rec.get("reason", "?"))
            if seen.get(reason, 0) < per_reason:
                seen[reason] = seen.get(reason, 0) + 1
                text = next((rec[k] for k in ("snippet", "text") if isinstance(rec.get(k), str)), None)
                where = f"{rec['source']}:{rec['line']}" if "source" in rec and "line" in rec else f.name
                out.append({"reason": reason, "text": (text if text is not None else json.dumps(rec))[:240],
                            "where": where})
    return out


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("lmforge", "torch", "transformers", "tokenizers", "onnxruntime", "optuna"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def collect(run_dir: str | Path) -> RunFacts:
    """Read what exists under ``run_dir`` (any subset of stages)."""
    import os

    run = Path(run_dir).resolve()
    f = RunFacts(run)
    f.pipeline = f.json(run / "pipeline" / "summary.json")
    f.data = f.json(run / "data" / "manifest.json")
    f.labeled = f.json(run / "labeled" / "data" / "manifest.json")
    if f.data:
        f.rejected["data"] = _rejects(f, run / "data" / "rejected")
    if f.labeled:
        f.rejected["labeled"] = _rejects(f, run / "labeled" / "data" / "rejected")
    f.pretrain = f.json(run / "pretrain" / "summary.json")
    f.pretrain_metrics = f.jsonl(run / "pretrain" / "metrics.jsonl")
    f.finetune = f.json(run / "finetune" / "summary.json")
    f.finetune_metrics = f.jsonl(run / "finetune" / "metrics.jsonl")
    for split in ("val", "test"):
        m = f.json(run / "finetune" / "eval" / split / "metrics.json")
        if m:
            f.evals[split] = m
            png = run / "finetune" / "eval" / split / "confusion_matrix.png"
            if png.is_file():
                f.confusion_png[split] = f.read(png)
    for rel in ("data/samples.png", "data/augment_grid.png", "data/missingness.png", "pretrain/reconstructions.png",
                *(f"finetune/eval/{s}/{n}.png" for s in ("val", "test") for n in ("mistakes", "residuals"))):
        if (run / rel).is_file():
            f.pngs[rel] = f.read(run / rel)
    f.tune = f.jsonl(run / "tune" / "trials.jsonl")
    f.distill = f.json(run / "distill" / "distill.json")
    f.transfer = f.jsonl(run / "transfer" / "results.jsonl")
    if (run / "transfer" / "transfer.png").is_file():
        f.transfer_png = f.read(run / "transfer" / "transfer.png")
    for cand in (run / "export" / "onnx", run / "finetune" / "export" / "onnx", run / "pretrain" / "export" / "onnx"):
        rec = f.json(cand / "export.json")
        if rec:
            f.export, f.export_dir = rec, cand
            break
    for stage in ("pretrain", "finetune"):
        c = run / stage / "config.yaml"
        if c.is_file():
            f.configs[stage] = f.read(c).decode("utf-8")
    f.environment = {"versions": _versions(), "machine": f"{platform.system()} {platform.release()} "
                     f"{platform.machine()}, {os.cpu_count()} CPU(s)", "run_dir": str(run)}
    return f
