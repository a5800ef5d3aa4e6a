"""The run report's data section for ``data.kind: audio``."""

from __future__ import annotations

from lmforge.reporting.facts import RunFacts
from lmforge.reporting.sections import Section


def audio_data(f: RunFacts, manifest: dict) -> Section:
    """Clips read, kept and rejected with reasons, features, split sizes per class."""
    s = Section("data", "Data (audio)")
    c = manifest.get("counts") or {}
    s.text(f"Read {c.get('read', 0):,} clips, kept {c.get('kept', 0):,}; log-mel features {manifest.get('shape')} at "
           f"{manifest.get('sample_rate')} Hz, {manifest.get('seconds')} s per clip.")
    src = "data/manifest.json"
    s.table(["reason", "count"], [[k, v] for k, v in (c.get("rejected_by_reason") or {}).items()], src)
    labels, classes = manifest.get("labels") or [], manifest.get("class_counts") or {}
    s.table(["split", "clips", *labels], [[k, n, *(classes.get(k, {}).get(lab, 0) for lab in labels)]
                                          for k, n in (manifest.get("splits") or {}).items()], src)
    return s
