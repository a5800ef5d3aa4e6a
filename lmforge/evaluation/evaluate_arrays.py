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


from lmforge.errors import DataError
from lmforge.evaluation.array_report import write_array_report
from lmforge.layout import default_eval_dir
from lmforge.inference.predictor import default_device
from lmforge.models.arrays import load_array_model
from lmforge.tasks import get_task
from lmforge.tasks.arrays import ArraySet, format_predictions, predict_set, score


def load_data(folder: Path, meta: dict, file: Optional[str], data_dir: Optional[str], split: str,
              need_label: bool, strict: bool = False) -> tuple[ArraySet, str]:
    if file:
        data = get_task(meta["lmforge_kind"]).read_file(file, folder, meta, need_label, strict)
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


def predict_array_records(folder: Path, file: str, batch_size: int, strict: bool = False) -> Iterator[dict]:
    model, meta = load_array_model(folder)
    data, _ = load_data(folder, meta, file, None, "test", need_label=False, strict=strict)
    device = default_device()
    model.to(device)
    preds = predict_set(get_task(meta["lmforge_kind"]), model, data, meta, batch_size, device)
    yield from format_predictions(preds, data, meta)

