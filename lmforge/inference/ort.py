"""onnxruntime sessions for exported graphs (CPU provider; intra-op threads when given)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def session(path: str | Path, threads: Optional[int] = None):
    """An ``onnxruntime.InferenceSession`` for the graph at ``path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
