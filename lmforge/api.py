"""The Python API: the pieces the CLI runs, for notebooks and scripts.

    from lmforge import api

    cfg = api.config("quickstart", {"finetune.loop.epochs": 1})  # a preset, a YAML path or a dict
    api.prepare(cfg)                   # lmforge data prepare
    api.pretrain(cfg)                  # lmforge pretrain
    summary = api.finetune(cfg)        # lmforge finetune (text, images or tables)
    metrics = api.evaluate(cfg.paths.finetune.root, data_dir=cfg.paths.data, split="test")
    model = api.load(cfg.paths.finetune.root)
    model.predict(["a gripping, funny film", "dull"])   # texts; images: a uint8 array; tables: rows

Every function takes a validated :class:`~lmforge.config.ExperimentConfig` (``config`` builds one,
reporting every problem at once, as the CLI does), writes the same run folder and returns the
same summary the CLI writes to ``summary.json``. ``lmforge data prepare | pretrain | finetune |
evaluate`` call these functions.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from lmforge.config.experiment import ExperimentConfig, load_config
from lmforge.errors import DataError, writing

Overrides = Union[dict, list, None]


def _as_sets(overrides: Overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, dict):  # {"finetune.loop.epochs": 1} → ["finetune.loop.epochs=1"]
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return list(overrides)


def config(source: Union[str, Path, dict, None] = None, overrides: Overrides = None) -> ExperimentConfig:
    """A validated config from a preset name, a YAML file or a dict, with dotted overrides
    (``{"key.path": value}`` or ``["key.path=value"]``); a ConfigError lists every problem."""
    if isinstance(source, dict):
        return load_config(raw=copy.deepcopy(source), overrides=_as_sets(overrides))
    return load_config(None if source is None else str(source), _as_sets(overrides))


def prepare(cfg: ExperimentConfig, *, progress: bool = True, rank: int = 0, world_size: int = 1,
            executor: str = "local", address: Optional[str] = None) -> dict:
    """Prepare ``cfg.data`` into ``<run>/data`` (text, images or a table); returns the manifest."""
    from lmforge.data.prepare import prepare as prepare_data

    with writing(cfg.paths.data):
        return prepare_data(cfg.data, cfg.tokenizer, cfg.paths, seed=cfg.seed, workers=cfg.num_workers, name=cfg.name,
                            progress=progress, rank=rank, world_size=world_size, executor=executor, address=address)


def pretrain(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, resume_changed: bool = False,
             progress: bool = True, on_eval=None) -> dict:
    """Pretrain ``cfg.model`` on the prepared data (text: token shards; images: MAE); returns the summary."""
    from lmforge.kinds import pretrain_recipe

    recipe = pretrain_recipe(cfg.data.kind)
    return recipe(cfg.pretrain, cfg.model, cfg.paths, cfg.seed, resume=resume, overwrite=overwrite,
                  resume_changed=resume_changed, progress=progress, on_eval=on_eval)


def finetune(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False, resume_changed: bool = False,
             progress: bool = True, on_eval=None) -> dict:
    """Fine-tune on ``cfg.finetune`` (any kind of data); with ``finetune.compare_random`` also the
    random-init baseline and the gain (``summary["comparison"]``). Returns the summary."""
    from lmforge.recipes.finetune import finetune as run_finetune

    summary = run_finetune(cfg.finetune, cfg.model, cfg.paths, cfg.seed, name=cfg.name, resume=resume,
                           overwrite=overwrite, resume_changed=resume_changed, progress=progress, on_eval=on_eval)
    if cfg.finetune.compare_random:
        from lmforge.recipes.compare import compare_with_random

        summary["comparison"] = compare_with_random(cfg.finetune, cfg.paths, cfg.seed, summary)
    return summary


def evaluate(model: Union[str, Path, None] = None, *, progress: bool = False, **keys) -> dict:
    """Metrics of a fine-tuned model (or the perplexity of a pretrained one) on ``file=`` or
    ``data_dir=`` + ``split=``; the report is written beside the model (or to ``out=``) and its
    path is in the result as ``"report"``. Keys are those of ``lmforge evaluate``."""
    from lmforge.config.schema import build
    from lmforge.evaluation.config import EvaluateConfig
    from lmforge.evaluation.evaluate import evaluate as run_evaluate

    given = {k: str(v) if isinstance(v, Path) else v for k, v in keys.items()}
    m, report = run_evaluate(build(EvaluateConfig, {"model": str(model or ""), **given}), progress=progress)
    return {**m, "report": str(report)}


def load(model: Union[str, Path]) -> "Model":
    """A fine-tuned model ready to predict: a finetune folder or its ``best/``, text, image or table."""
    return Model(Path(model))


class Model:
    """``predict(inputs)``: a list of texts (classifiers, taggers), a uint8 image array (N, H, W) or
    (N, C, H, W), or table rows (a list of dicts or a DataFrame, raw values as in the CSV)."""

    def __init__(self, folder: Path):
        from lmforge.layout import kind_of

        if not folder.exists():
            from lmforge.errors import ArtifactError

            raise ArtifactError(f"{folder}: no such file or folder")
        self.folder = folder / "best" if kind_of(folder) == "finetune" else folder
        if kind_of(self.folder) == "array_model":
            from lmforge.models.arrays import load_array_model

            self._model, self.meta = load_array_model(self.folder)
            self._model.eval()
            self.kind, self._runner = self.meta["lmforge_kind"], None
        else:
            from lmforge.serving.config import ServeConfig
            from lmforge.serving.runner import Runner

            self._runner = Runner(ServeConfig(model=str(self.folder)))
            self.kind, self.meta = "text", self._runner.info()
        self.labels = self.meta.get("labels")

    def predict(self, inputs: Any, batch_size: int = 128) -> list[dict]:
        """One record per input: label, score and probabilities (entities for a tagger; the value for
        a regression)."""
        if self._runner is not None:
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            return [r for lo in range(0, len(texts), batch_size) for r in self._runner.predict(texts[lo:lo + batch_size])]
        from lmforge.inference.predictor import default_device
        from lmforge.tasks import get_task
        from lmforge.tasks.arrays import format_predictions, predict_set

        task, device = get_task(self.kind), default_device()
        data = self._images(inputs) if self.meta.get("in_shape") else self._rows(task, inputs)
        self._model.to(device)
        return list(format_predictions(predict_set(task, self._model, data, self.meta, batch_size, device), data, self.meta))

    def _images(self, images):
        from lmforge.tasks.arrays import ArraySet

        x = np.asarray(images)
        C, H, W = self.meta["in_shape"]
        if x.ndim == 3 and C == 1:
            x = x[:, None]
        if x.dtype != np.uint8 or x.shape[1:] != (C, H, W):
            raise DataError(f"images: expected uint8 pixels of shape (N, {C}, {H}, {W})"
                            + (f" or (N, {H}, {W})" if C == 1 else "") + f"; got {x.dtype} {tuple(x.shape)}")
        return ArraySet({"x": x}, None, [str(i) for i in range(len(x))])

    def _rows(self, task, rows):
        """Table rows through the model's own reader and preprocessor (parsed, imputed and encoded exactly as
        a CSV given to ``lmforge predict`` would be)."""
        import pandas as pd

        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            frame.to_csv(path, index=False)
            return task.read_file(str(path), self.folder, self.meta, need_label=False)
