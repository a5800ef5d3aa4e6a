"""Saved image and table models: a self-describing folder that evaluation, prediction and serving load.

Layout of a saved folder::

    model.safetensors         the state dict (BatchNorm running statistics included)
    config.json               {"lmforge_kind": "image" | "tabular", "model": <ModelConfig fields>,
                               + the caller's meta: in_shape / n_features, n_numeric,
                               cat_cardinalities, num_outputs, labels, normalize stats, task, ...}
    lmforge_checksums.json    sha256 of both files, verified before anything is read

The folder is written under a temporary name and renamed into place, so a reader never sees
a half-written model and an existing folder is replaced as a whole.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from torch import nn

from lmforge.config.schema import build
from lmforge.errors import ArtifactError, writing
from lmforge.kinds import array_kinds, get_kind, model_from_record
from lmforge.layout import CHECKSUMS_FILE
from lmforge.models.config import ModelConfig
from lmforge.models.weights import CheckpointError, read_safetensors, unique_state, verify, write_checksums

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _plain(obj):
    """JSON fallback for array-like meta values (numpy arrays, tensors, numpy scalars)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store a {type(obj).__name__} in config.json")


def save_array_model(model: nn.Module, folder: Path, model_cfg: ModelConfig, meta: dict) -> Path:
    """Write ``model`` to ``folder`` (replacing it); ``meta["kind"]`` is "image" or "tabular" and
    ``meta`` holds what rebuilding needs (the kind's ``record_keys`` in :mod:`lmforge.kinds`) plus anything a
    user of the model reads."""
    folder = Path(folder)
    kind = meta.get("kind")
    if kind not in array_kinds():
        raise ValueError(f"meta['kind'] must be one of {', '.join(array_kinds())}; got {kind!r}")
    missing = [k for k in get_kind(kind).record_keys if k not in meta]
    if missing:
        raise ValueError(f"meta for a {kind} model lacks {', '.join(missing)}")
    from safetensors.torch import save_file

    from lmforge.swap import swap_in

    config = {"lmforge_kind": kind, "model": asdict(model_cfg), **meta}
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    with writing(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(unique_state(model), str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_plain))
        write_checksums(tmp)
        swap_in(tmp, folder)
    return folder


def read_array_config(folder: Path) -> dict:
    """The ``config.json`` of a saved image/table model; anything else is an :class:`ArtifactError`
    saying what the folder lacks."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such model folder")
    if not path.is_file():
        raise ArtifactError(f"{folder}: not a saved image/table model (it has no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    kind = config.get("lmforge_kind") if isinstance(config, dict) else None
    if kind not in array_kinds():
        raise ArtifactError(f"{folder}: not a saved image/table model ({CONFIG_FILE} has lmforge_kind={kind!r}; "
                            f"expected one of {', '.join(array_kinds())})")
    missing = [k for k in ("model", *get_kind(kind).record_keys) if k not in config]
    if missing:
        raise ArtifactError(f"{path}: a {kind} model's config lacks {', '.join(missing)}")
    return config


def is_array_model(folder: Path) -> bool:
    """Whether ``folder`` holds a saved image or table model."""
    try:
        read_array_config(folder)
    except ArtifactError:
        return False
    return True


def load_array_model(folder: Path) -> tuple[nn.Module, dict]:
    """``(model in eval mode, config dict)`` of a folder written by :func:`save_array_model`;
    the checksums are verified first and the weights must match the rebuilt model exactly."""
    folder = Path(folder)
    config = read_array_config(folder)
    if not (folder / CHECKSUMS_FILE).is_file():
        raise CheckpointError(f"{folder}: missing {CHECKSUMS_FILE}; the folder was not written by lmforge "
                              "or is incomplete — save the model again")
    verify(folder)
    cfg = build(ModelConfig, config["model"], source=str(folder / CONFIG_FILE))
    model = model_from_record(config["lmforge_kind"])(cfg, config)
    state = read_safetensors(folder / WEIGHTS_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: weights do not match the model in {CONFIG_FILE} "
                              f"({exc})") from None
    return model.eval(), config
