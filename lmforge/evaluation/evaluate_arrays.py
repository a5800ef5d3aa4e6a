"""``lmforge evaluate`` / ``predict`` for image and table models (folders written by
``finetune`` with ``task: image | tabular``; see :mod:`lmforge.models.arrays`).

Data comes from a prepared folder's split (``--data-dir`` + ``--split``) or a raw file
(``--file``): images as IDX/.npz/.npy or a folder (one subfolder per class for evaluation; any
folder of images for prediction), tables as CSV/TSV/Parquet — transformed by the preprocessor
saved with the model, so a raw row gets exactly the imputation and scaling of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lmforge.errors import ArtifactError, DataError
from lmforge.evaluation.array_report import write_array_report
from lmforge.layout import default_eval_dir
from lmforge.inference.predictor import default_device
from lmforge.models.arrays import load_array_model
from lmforge.tasks import get_task
from lmforge.tasks.arrays import ArraySet, format_predictions, predict_set, score


def _exists(path: str) -> None:
    if not Path(path).exists():
        raise ArtifactError(f"{path}: no such file or folder")


def read_images(path: str, meta: dict, need_label: bool) -> ArraySet:
    """Images of a raw file or folder, in the model's shape; rejected ones are reported, not used."""
    from lmforge.data.images.config import ImageConfig, ImageSourceConfig
    from lmforge.data.images.read import Rejected, read_source

    C, H, W = meta["in_shape"]
    _exists(path)
    src = ImageSourceConfig(path=str(path))
    if Path(path).is_dir() and not any(p.is_dir() for p in Path(path).iterdir()):
        src = ImageSourceConfig(path=str(path), format="folder")
    images, labels, ids, rejected = [], [], [], []
    for rec in read_source(src, ImageConfig(sources=[src], size=[H, W], channels=C)):
        if isinstance(rec, Rejected):
            rejected.append(rec)
            continue
        images.append(rec.pixels)
        labels.append(rec.label)
        ids.append(rec.id)
    if rejected:
        print(f"[evaluate] {len(rejected)} image(s) of {path} not used: "
              + "; ".join(f"{r.id}: {r.reason}" for r in rejected[:5]), flush=True)
    if not images:
        raise DataError(f"{path}: no readable images")
    y = None
    if need_label:
        index = {n: i for i, n in enumerate(meta["labels"])}
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise DataError(f"{path}: labels the model does not know: {unknown[:10]} (it knows {meta['labels']})")
        y = np.asarray([index[v] for v in labels], dtype=np.int64)
    return ArraySet({"x": np.stack(images)}, y, ids)


def read_rows(path: str, folder: Path, meta: dict, need_label: bool) -> ArraySet:
    """Rows of a raw table through the model's saved preprocessor."""
    from lmforge.data.tabular.preprocess import TabularPreprocessor

    from dataclasses import replace

    from lmforge.data.tabular.config import TableSourceConfig
    from lmforge.data.tabular.read import read_table

    _exists(path)
    pre = TabularPreprocessor.load(folder / "preprocessor")
    columns = pre.cfg.columns if need_label else replace(pre.cfg.columns, target=None)  # predict: no target needed
    got = read_table(TableSourceConfig(path=str(path)), columns)
    for r in got.rejected[:5]:
        print(f"[evaluate] {path} line {r.get('line')}: {r.get('reason')} ({r.get('detail')}) — row not used", flush=True)
    if len(got.frame) == 0:
        raise DataError(f"{path}: no usable rows")
    frame = got.frame
    if need_label:
        frame = frame[frame[meta["target"]].notna()]
    arrays = pre.transform(frame.drop(columns=[meta["target"]]) if not need_label and meta["target"] in frame
                           else frame, lines=[int(v) for v in np.asarray(got.lines)[frame.index]])
    if need_label and meta["task"] == "classification" and (arrays.y < 0).any():
        unknown = sorted({str(v) for v, k in zip(frame[meta["target"]], arrays.y) if k < 0})
        raise DataError(f"{path}: labels the model does not know: {unknown[:10]} (it knows {meta['labels']})")
    return ArraySet({"x": arrays.x.astype(np.float32), "cat": arrays.cat.astype(np.int64)},
                    None if arrays.y is None else np.asarray(arrays.y), list(arrays.ids))


def load_data(folder: Path, meta: dict, file: Optional[str], data_dir: Optional[str], split: str,
              need_label: bool) -> tuple[ArraySet, str]:
    if file:
        data = read_images(file, meta, need_label) if meta["lmforge_kind"] == "image" \
            else read_rows(file, folder, meta, need_label)
        return data, Path(file).stem
    if not data_dir:
        raise DataError("give --file or --data-dir (with --split)")
    task = get_task(meta["lmforge_kind"])
    data = task.load(Path(data_dir), split)
    if len(data) == 0:
        raise DataError(f"{data_dir}: split {split} is empty")
    return data, split


def evaluate_array_model(folder: Path, file: Optional[str], data_dir: Optional[str], split: str, batch_size: int,
                         out: Optional[str]) -> tuple[dict, Path]:
    model, meta = load_array_model(folder)
    data, name = load_data(folder, meta, file, data_dir, split, need_label=True)
    device = default_device()
    model.to(device)
    task = get_task(meta["lmforge_kind"])
    preds = predict_set(task, model, data, meta, batch_size, device)
    m = score(preds, data, meta)
    out_dir = Path(out) if out else default_eval_dir(folder, name)
    report = write_array_report(out_dir, m, meta, data, preds, f"{folder.name} on {name}",
                                {"model": str(folder), "data": file or f"{data_dir} ({split})"})
    return m, report


def predict_array_records(folder: Path, file: str, batch_size: int) -> Iterator[dict]:
    model, meta = load_array_model(folder)
    data, _ = load_data(folder, meta, file, None, "test", need_label=False)
    device = default_device()
    model.to(device)
    preds = predict_set(get_task(meta["lmforge_kind"]), model, data, meta, batch_size, device)
    yield from format_predictions(preds, data, meta)

