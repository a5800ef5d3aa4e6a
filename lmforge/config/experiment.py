"""The experiment config: one YAML file, a section per stage, dotted overrides on top."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from lmforge.config.errors import ConfigError
from lmforge.config.schema import build, to_dict
from lmforge.data.config import DataConfig
from lmforge.layout import RunPaths
from lmforge.models.config import ModelConfig
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.training.config import PretrainConfig
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.transfer_config import TransferConfig
from lmforge.training.tune_config import TuneConfig
from lmforge.training.distill_config import DistillConfig
from lmforge.pipeline.config import PipelineConfig

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class ExperimentConfig:
    name: str = field(default="experiment", metadata={"help": "run name; outputs go to runs/<name>/"})
    run_dir: Optional[str] = field(default=None, metadata={"help": "output folder (default runs/<name>)"})
    seed: int = field(default=1234, metadata={"help": "seed for every random choice"})
    workers: int = field(default=0, metadata={"min": 0, "help": "processes for data work (0 = all cores)"})
    data: DataConfig = field(default_factory=DataConfig)
    labeled_data: DataConfig = field(default_factory=DataConfig, metadata={"help": "a second dataset, labeled, for fine-tuning (prepared into <run>/labeled/data; finetune reads its splits): one config can hold an unlabeled pretraining corpus (data) and a labeled task"})
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    @property
    def labeled_paths(self) -> RunPaths:
        """Where ``labeled_data`` is prepared: ``<run>/labeled/`` (data/, tokenizer/)."""
        return RunPaths(self.run_path / "labeled")

    @property
    def paths(self) -> RunPaths:
        """The run folder and its stage folders (explicit ``*.out_dir`` / ``*.data_dir`` keys win)."""
        opt = lambda v: Path(v) if v else None  # noqa: E731
        labeled = self.labeled_paths.data if self.labeled_data.sources else None
        return RunPaths(self.run_path, data_override=opt(self.finetune.data.data_dir) or labeled,
                        pretrain_tokens_override=opt(self.pretrain.data_dir),
                        pretrain_override=opt(self.pretrain.out_dir), finetune_override=opt(self.finetune.out_dir),
                        transfer_override=opt(self.transfer.out_dir))

    @property
    def num_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def hash(self, *sections: str) -> str:
        """Stable hash of the given sections (all when none), for manifests and rerun checks."""
        d = self.to_dict()
        if sections:
            d = {k: d[k] for k in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[list, Any]:
    """``a.b.c=value`` → (['a','b','c'], yaml-parsed value); ``data.sources[0].path=x`` →
    (['data', 'sources', 0, 'path'], 'x')."""
    import re

    if "=" not in text:
        raise ConfigError([(text, "override must look like key.path=value, e.g. data.split.val=0.05")])
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError([(key, f"cannot parse override value {raw!r}: {exc}")]) from None
    keys: list = []
    for part in key.strip().split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise ConfigError([(key, "a key path is names separated by dots, with [N] for list items, "
                                     "e.g. data.sources[0].path=corpus.jsonl")])
        keys.append(m.group(1))
        keys += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return keys, value


def set_path(raw: dict, keys: list, value: Any) -> dict:
    """Set ``raw[k0][k1]...[kn] = value``, creating mappings on the way; an int key indexes an
    existing list (an index past its end is an error naming the list's length)."""
    node: Any = raw
    path = ""
    for k, nxt in zip(keys[:-1], keys[1:]):
        node = _child(node, k, path, want_list=isinstance(nxt, int))
        path = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else k)
    last = keys[-1]
    if isinstance(last, int):
        _check_index(node, last, path)
    node[last] = value
    return raw


def _check_index(node: Any, i: int, path: str) -> None:
    if not isinstance(node, list):
        raise ConfigError([(path, f"[{i}] indexes a list, but {path or 'this'} is not one")])
    if i >= len(node):
        raise ConfigError([(f"{path}[{i}]", f"{path} has {len(node)} item(s) (indices 0..{len(node) - 1})")])


def _child(node: Any, k, path: str, want_list: bool) -> Any:
    if isinstance(k, int):
        _check_index(node, k, path)
        if not isinstance(node[k], (dict, list)):
            node[k] = {}
        return node[k]
    if want_list:
        if not isinstance(node.get(k), list):
            raise ConfigError([(f"{path}.{k}" if path else k, "is not a list in this config, so it has no [N] items")])
        return node[k]
    if not isinstance(node.get(k), dict):
        node[k] = {}
    return node[k]


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        set_path(raw, *parse_override(text))
    return raw


def resolve_config_path(name_or_path: str) -> Path:
    """A file path, or the name of a preset under ``configs/``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for candidate in (PRESET_DIR / name_or_path, PRESET_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    presets = sorted(x.stem for x in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
    raise ConfigError([("config", f"no file {name_or_path!r} and no preset of that name; presets: {', '.join(presets) or 'none'}")])


def load_raw(name_or_path: str | None, overrides: list[str] | None = None) -> tuple[dict, Optional[str]]:
    """The config as a plain dict (YAML file or preset, overrides applied, not yet validated) and
    its source path."""
    raw: dict = {}
    source = None
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError([("", f"not UTF-8 text (byte {exc.start}: {exc.reason})")], source) from None
        except yaml.YAMLError as exc:
            raise ConfigError([("", f"invalid YAML: {exc}")], source) from None
        if not isinstance(raw, dict):
            raise ConfigError([("", f"top level must be a mapping, got {type(raw).__name__}")], source)
    return apply_overrides(raw, overrides or []), source


def attribute_overrides(exc: ConfigError, overrides: list[str]) -> ConfigError:
    """The same problems, each one a ``--set`` caused saying so (the file is not where to look)."""
    if not overrides:
        return exc
    given = {text.partition("=")[0].strip(): text for text in overrides}
    problems, from_file = [], False
    for key, msg in exc.problems:
        text = next((t for k, t in given.items() if key == k or key.startswith((k + ".", k + "["))), None)
        if text is None:
            from_file = True
        problems.append((key, msg + (f" (from --set {text})" if text else "")))
    return ConfigError(problems, exc.source if from_file else "--set")


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None,
                raw: dict | None = None) -> ExperimentConfig:
    """Load YAML (file or preset), apply ``key.path=value`` overrides, validate everything at once."""
    source = None
    if raw is None:
        raw, source = load_raw(name_or_path, overrides)
    else:
        raw = apply_overrides(raw, overrides or [])
    task_from_kind(raw)
    objective_from_kind(raw)
    try:
        cfg = build(ExperimentConfig, raw, source)
    except ConfigError as exc:
        raise attribute_overrides(exc, overrides or []) from None
    if cfg.model.preset is not None:  # preset sizes, with the keys the user wrote winning
        from lmforge.models.config import resolve

        try:
            cfg.model = resolve(cfg.model, set((raw.get("model") or {}).keys()))
        except ValueError as exc:
            raise ConfigError([("model.preset", str(exc).split(": ", 1)[1])], source) from None
        problems = [(f"model.{k}", msg) for k, msg in cfg.model.validate()]
        if problems:
            raise ConfigError(problems, source)
    frame_like_finetuning(cfg)
    if "finetune" not in raw:  # no finetune section: its (unused) task still follows the data kind
        from lmforge.kinds import get_kind

        cfg.finetune.task = get_kind(cfg.data.kind).tasks[0]
    kind_problem = task_fits_kind(cfg)
    if kind_problem:
        raise ConfigError([kind_problem], source)
    problems = list(pretrain_fits_kind(cfg)) if "pretrain" in raw else []
    if problems:
        raise ConfigError(problems, source)
    if cfg.pretrain.objective == "rtd" and cfg.model.arch != "encoder" and not cfg.pretrain.init:
        raise ConfigError([("pretrain.objective", f"rtd (replaced-token detection) trains an encoder; model.arch is "
                                                  f"{cfg.model.arch} (set model.arch: encoder, or objective: clm)")],
                          source)
    return cfg


def task_from_kind(raw: dict) -> None:
    """The kind is said once: a config with ``data.kind: image`` (or another kind with its own
    tasks) and a finetune section that names no task fine-tunes with that kind's task."""
    kind = (raw.get("data") or {}).get("kind") if isinstance(raw.get("data"), dict) else None
    ft = raw.get("finetune")
    if kind and isinstance(ft, dict) and "task" not in ft:
        from lmforge.kinds import KINDS

        if kind in KINDS and KINDS[kind].arrays:
            ft["task"] = KINDS[kind].tasks[0]


def objective_from_kind(raw: dict) -> None:
    """A pretrain section that names no objective on image data pretrains with that kind's (mae)."""
    data, pre = raw.get("data"), raw.get("pretrain")
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind and isinstance(pre, dict) and "objective" not in pre:
        from lmforge.kinds import KINDS

        if kind in KINDS and KINDS[kind].objectives:
            pre["objective"] = KINDS[kind].objectives[0]


def pretrain_fits_kind(cfg: ExperimentConfig):
    """(key, message) for a pretrain section that cannot run on this data kind or model."""
    from lmforge.kinds import KINDS, get_kind

    kind = get_kind(cfg.data.kind)
    if not kind.objectives:
        takes = ", ".join(k.name for k in KINDS.values() if k.objectives)
        yield "pretrain", f"{kind.name} data has no pretraining objective (pretraining takes {takes} data): remove it"
        return
    objective = cfg.pretrain.objective
    if objective not in kind.objectives:
        yield "pretrain.objective", (f"{objective} does not train on {kind.name} data; use one of "
                                     f"{', '.join(kind.objectives)} (or another data.kind)")
    elif objective == "mae" and cfg.model.arch != "vit":
        yield "model.arch", f"mae (masked-image pretraining) trains a ViT; model.arch is {cfg.model.arch}: set model.arch: vit"


def task_fits_kind(cfg: ExperimentConfig):
    """A finetune task of another kind than the config's image/table/audio data: (key, message), else None."""
    from lmforge.kinds import get_kind, kind_of_task

    data_kind, task_kind = get_kind(cfg.data.kind), kind_of_task(cfg.finetune.task)
    if data_kind.arrays and task_kind is not data_kind:
        return ("finetune.task", f"{cfg.finetune.task} learns on {task_kind.name} data, but data.kind is {data_kind.name}: "
                                 f"use finetune.task: {data_kind.tasks[0]} (or leave it out: it follows data.kind)")
    return None


def frame_like_finetuning(cfg: ExperimentConfig) -> None:
    """``data.pack.framing: auto`` → the framing fine-tuning uses for ``model.arch``: an encoder's
    examples are ``<cls> text <sep>``, so its pretraining windows are too; a decoder's end with EOS."""
    if cfg.data.pack.framing == "auto":
        cfg.data.pack.framing = "cls_sep" if cfg.model.arch == "encoder" else "eos"
