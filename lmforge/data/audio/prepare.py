"""``lmforge data prepare`` for ``data.kind: audio``: read → reject (with reasons) → stratified
split → log-mel features → normalization fit on train → ``audio/<split>.npz``, ``manifest.json``,
``rejected/files.jsonl``, ``report.md``."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lmforge.config.schema import to_dict
from lmforge.data import drops
from lmforge.data.audio.features import log_mel
from lmforge.data.audio.read import Rejected, read_clips
from lmforge.data.config import DataConfig
from lmforge.data.split import SPLITS, split_rows
from lmforge.errors import DataError, writing
from lmforge.layout import ensure_dir

KIND = "audio"  # this flow's name in the kind registry (lmforge.kinds) and in the manifests it writes
MANIFEST = "manifest.json"


def prepare_audio(data: DataConfig, seed: int, out: Path, progress: bool = True) -> dict:
    """Prepare ``data.audio`` into ``out``; returns the manifest."""
    t0, a = time.time(), data.audio
    clips, rejected = [], []
    for src in a.sources:
        if not Path(src.path).exists():
            raise DataError(f"{src.path}: no such file or folder (data.audio.sources)")
        for rec in read_clips(Path(src.path), a, a.max_files):
            (rejected if isinstance(rec, Rejected) else clips).append(rec)
    n_read = len(clips) + len(rejected)
    if data.labels:  # declared label set: other labels are rejected
        unknown = [c for c in clips if c.label not in data.labels]
        rejected += [Rejected(c.id, "unknown_label", f"label {c.label!r} is not in data.labels") for c in unknown]
        clips = [c for c in clips if c.label in data.labels]
    unlabeled = [c for c in clips if c.label is None]
    rejected += [Rejected(c.id, "no_label", "a file directly in the source folder: put it in a class subfolder")
                 for c in unlabeled]
    clips = [c for c in clips if c.label is not None]
    reasons = Counter(r.reason for r in rejected)
    drops.say_step("read", n_read, len(clips), reasons, out / "rejected", "check data.audio (sample_rate, "
                   "resample, max_channels) and the files")
    if not clips:
        raise DataError(f"no usable audio clip in {[s.path for s in a.sources]} (rejected: {dict(reasons) or 'none'})")
    labels = list(data.labels) if data.labels else sorted({c.label for c in clips})
    parts = split_rows(len(clips), [c.label for c in clips], data.split.val, data.split.test, seed)
    f = a.features
    feats = log_mel(np.stack([c.samples for c in clips]), a.sample_rate, f.n_fft, f.hop, f.n_mels)
    train = feats[parts["train"]]
    norm = {"mean": float(train.mean()), "std": float(train.std() or 1.0)}
    y = np.asarray([labels.index(c.label) for c in clips], dtype=np.int64)
    adir = ensure_dir(out / "audio", "audio features")
    for s, idx in parts.items():
        with writing(adir):
            np.savez(adir / f"{s}.npz", x=feats[idx], y=y[idx], ids=np.asarray([clips[i].id for i in idx], dtype=str))
    class_counts = {s: dict(Counter(labels[k] for k in y[idx])) for s, idx in parts.items()}
    manifest = {"kind": KIND, "task": "classification", "labels": labels, "shape": list(feats.shape[1:]),
                "sample_rate": a.sample_rate, "seconds": a.seconds, "features": to_dict(f), "normalize": norm,
                "augment": to_dict(a.augment), "splits": {s: int(len(idx)) for s, idx in parts.items()},
                "class_counts": class_counts,
                "counts": {"read": n_read, "kept": len(clips), "rejected": len(rejected),
                           "rejected_by_reason": dict(sorted(reasons.items()))},
                "files": {"arrays": {s: f"audio/{s}.npz" for s in SPLITS}, "rejected": "rejected/files.jsonl",
                          "report": "report.md"},
                "config": to_dict(a), "seconds_taken": round(time.time() - t0, 2)}
    _write(out, manifest, rejected)
    drops.say("split: " + ", ".join(f"{s} {manifest['splits'][s]}" for s in SPLITS)
              + f"; features {manifest['shape']} (log-mel)")
    drops.say_total(n_read, len(clips), reasons, out / "rejected", "clips")
    return manifest


def _write(out: Path, manifest: dict, rejected: list[Rejected]) -> None:
    rdir = ensure_dir(out / "rejected", "rejected files")
    with writing(rdir), open(rdir / "files.jsonl", "w", encoding="utf-8") as fh:
        for r in rejected:
            fh.write(json.dumps({"file": r.id, "reason": r.reason, "detail": r.detail}) + "\n")
    c = manifest["counts"]
    lines = ["# Audio data", "", f"Read {c['read']} clips, kept {c['kept']}, rejected {c['rejected']}"
             + (f" ({c['rejected_by_reason']})" if c["rejected"] else "") + ".", "",
             f"Features: log-mel {manifest['shape']} at {manifest['sample_rate']} Hz, {manifest['seconds']} s per clip; "
             f"normalization fit on train: mean {manifest['normalize']['mean']:.3f}, std {manifest['normalize']['std']:.3f}.",
             "", "| split | clips |", "|---|---:|"] + [f"| {s} | {n} |" for s, n in manifest["splits"].items()]
    with writing(out):
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_split(data_dir: Path, split: str):
    """(x float32 (N, 1, n_mels, frames), y, ids) of a prepared split."""
    path = Path(data_dir) / "audio" / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(path)
    with np.load(path, allow_pickle=False) as z:
        return z["x"], z["y"], [str(i) for i in z["ids"]]
