"""Build typed config dataclasses from plain dicts, collecting every problem at once.

A config section is a ``@dataclass`` whose fields carry type hints and, optionally,
``metadata={"help": ..., "min": ..., "max": ..., "choices": ...}``. :func:`build` walks a
YAML-loaded dict against that schema and returns the dataclass, or raises one
:class:`ConfigError` that lists each unknown key, wrong type and out-of-range value with
its dotted path and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Optional, Union

from lmforge.config.errors import ConfigError

Problems = list[tuple[str, str]]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list[{_type_name(inner)}]"
    if origin is dict:
        k, v = typing.get_args(tp) or (Any, Any)
        return f"dict[{_type_name(k)}, {_type_name(v)}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(value: Any, tp: Any, path: str, problems: Problems) -> Any:
    """Check/convert ``value`` against type ``tp``; append problems instead of raising."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append((path, f"expected a mapping of {tp.__name__} fields, got {type(value).__name__} {value!r}"))
            return None
        return _build(tp, value, path, problems)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: Problems = []
            out = _convert(value, arg, path, trial)
            if not trial:
                return out
        problems.append((path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}"))
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append((path, f"must be one of {', '.join(repr(c) for c in choices)}; got {value!r}{extra}"))
        return value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            problems.append((path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}"))
            return None
        return [_convert(v, inner, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            problems.append((path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}"))
            return None
        return {
            _convert(k, kt, _join(path, k), problems): _convert(v, vt, _join(path, k), problems)
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            problems.append((path, f"expected true or false, got {type(value).__name__} {value!r}"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((path, f"expected an integer, got {type(value).__name__} {value!r}"))
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected a number, got {type(value).__name__} {value!r}"))
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append((path, f"expected a string, got {type(value).__name__} {value!r}"))
        return value
    if tp is type(None):
        if value is not None:
            problems.append((path, f"expected null, got {value!r}"))
        return None
    return value


def _check_range(value: Any, meta: typing.Mapping, path: str, problems: Problems) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        problems.append((path, f"must be >= {lo}; got {value}"))
    if hi is not None and value > hi:
        problems.append((path, f"must be <= {hi}; got {value}"))


# names other tools use for our keys (HF TrainingArguments, nanoGPT, PyTorch Lightning, HF configs)
SYNONYMS = {
    "learning_rate": "lr", "lr_rate": "lr", "base_lr": "lr", "num_epochs": "epochs", "num_train_epochs": "epochs",
    "max_epochs": "epochs", "epoch": "epochs", "train_batch_size": "batch_size", "per_device_train_batch_size": "batch_size",
    "batchsize": "batch_size", "bs": "batch_size", "steps": "max_steps", "num_steps": "max_steps",
    "total_steps": "max_steps", "max_iters": "max_steps", "num_train_steps": "max_steps", "warmup": "warmup_steps",
    "warmup_iters": "warmup_steps", "num_warmup_steps": "warmup_steps", "gradient_accumulation_steps": "grad_accum",
    "accumulate_grad_batches": "grad_accum", "n_layers": "n_layer", "num_layers": "n_layer",
    "num_hidden_layers": "n_layer", "n_heads": "n_head", "num_heads": "n_head", "num_attention_heads": "n_head",
    "hidden_size": "d_model", "n_embd": "d_model", "dim": "d_model", "intermediate_size": "d_ff",
    "block_size": "max_seq_len", "max_position_embeddings": "max_seq_len", "max_len": "max_length",
    "patience": "early_stopping_patience", "eval_steps": "eval_every", "eval_interval": "eval_every",
    "save_steps": "save_every", "logging_steps": "log_every", "log_interval": "log_every",
    "save_total_limit": "keep_last", "min_lr_ratio": "min_lr", "optim": "optimizer", "dropout_rate": "dropout",
    "hidden_dropout_prob": "dropout", "lr_scheduler_type": "schedule", "scheduler": "schedule",
    "output_dir": "out_dir", "random_seed": "seed", "label_column": "label_field", "text_column": "text_field",
}


def _nested(cls: type, name: str, depth: int = 2, prefix: str = "") -> Optional[str]:
    """The dotted path of a field called ``name`` in ``cls`` or its config sub-sections (breadth first)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if name in fields:
        return _join(prefix, name)
    if depth == 0:
        return None
    hints = typing.get_type_hints(cls)
    for f in fields:
        if dataclasses.is_dataclass(hints[f]):
            hit = _nested(hints[f], name, depth - 1, _join(prefix, f))
            if hit:
                return hit
    return None


def suggest(cls: type, key: str) -> Optional[str]:
    """What an unknown ``key`` of ``cls`` most likely meant: a synonym (``learning_rate`` → ``lr``),
    the same name one level down (``epochs`` → ``loop.epochs``), or a close spelling."""
    for name in (SYNONYMS.get(key.lower()), key):
        hit = _nested(cls, name) if name else None
        if hit and hit != key:
            return hit
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    close = difflib.get_close_matches(key, fields, n=1) or difflib.get_close_matches(SYNONYMS.get(key.lower(), ""), fields, n=1)
    return close[0] if close else None


def _build(cls: type, raw: dict, path: str, problems: Problems) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    n_before = len(problems)
    renamed = getattr(cls, "__renamed__", {})
    for key in raw:
        if key not in fields and key in renamed:
            new = _join(path, renamed[key])
            problems.append((_join(path, key), f"renamed: this key is now {new} (see README, 'Renamed keys')"))
        elif key not in fields:
            hint = suggest(cls, str(key))
            extra = f"did you mean {hint!r}? " if hint else ""
            problems.append((_join(path, key), f"unknown key; {extra}valid keys: {', '.join(sorted(fields))}"))
    for name, f in fields.items():
        if name not in raw:
            continue
        sub = _join(path, name)
        value = _convert(raw[name], hints[name], sub, problems)
        _check_range(value, f.metadata, sub, problems)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        problems.append((path, str(exc)))
        return None
    check = getattr(obj, "validate", None)
    if callable(check) and len(problems) == n_before:  # cross-field checks only on well-typed fields
        for key, msg in check():
            problems.append((_join(path, key), msg))
    return obj


def build(cls: type, raw: dict, source: str | None = None) -> Any:
    """Return ``cls`` built from ``raw``; raise one ConfigError listing every problem."""
    problems: Problems = []
    obj = _convert(raw, cls, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (for manifests and hashing)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Rows ``(key, type, default, help)`` for documentation and ``--help``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, key)
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        rows.append((key, _type_name(tp), default, f.metadata.get("help", "")))
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list and typing.get_args(tp) else None
        if inner is not None and dataclasses.is_dataclass(inner):  # each item's keys: data.sources[].path
            rows += describe(inner, f"{key}[]")
    return rows
