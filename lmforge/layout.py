"""Every artifact path of a run folder, and the answer to "what is this folder?".

This module alone names the files and folders the stages hand to each other::

    runs/<name>/                      RunPaths
      data/                           prepared data: manifest.json, report.md, splits/<split>/*.jsonl,
        tokens/index.json             token shards (format in lmforge.data.shards), rejected/, work/
      tokenizer/                      the run's tokenizer (an HF tokenizer folder)
      pretrain/                       TrainPaths: checkpoints/step_NNNNNNN/, tokenizer/, metrics.jsonl,
                                      tb/, loss_curve.png, summary.json, config.yaml (resolved)
      finetune/                       TrainPaths: best/ (HF folder), checkpoints/, eval/<split>/,
                                      metrics.jsonl, curves.png, summary.json, config.yaml (resolved)
      labeled/data/                   the labeled_data section, prepared (lmforge run)
      export/onnx/                    the pipeline's export (lmforge run)
      pipeline/                       lmforge run: <stage>.started/.done.json, summary.json/.md
      report/                         report.html, report.md, figures/
      transfer/                       results.jsonl, table.md, transfer.png, runs/<start>_<count>/

A checkpoint ``step_NNNNNNN/`` records where its tokenizer is, relative to itself
(``state.json: tokenizer_dir``), so a pretrain folder moved as a whole stays usable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lmforge.containment import within
from lmforge.errors import ArtifactError
from lmforge.kinds import array_kinds

CHECKPOINT_PREFIX = "step_"
CHECKPOINT_TOKENIZER = "../../tokenizer"  # from checkpoints/step_N/ to the training folder's tokenizer/
STATE_FILE = "state.json"  # in a checkpoint: step, checksums, loop state, resolved config
CHECKSUMS_FILE = "lmforge_checksums.json"  # in an exported model folder (best/): sha256 of each file
TASK_META_FILE = "lmforge_task.json"  # in a task-model folder: task, labels, max_length, ...
LM_META_FILE = "lmforge_lm.json"  # in an ONNX export of a language model / encoder: kind, model config


def ensure_dir(path: Path, what: str) -> Path:
    """Create ``path`` (and parents); a read-only or otherwise unusable location is a clear error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".lmforge-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArtifactError(f"cannot write the {what} folder {path}: {exc.strerror or exc}; "
                            "choose a writable run_dir (or fix the permissions)") from None
    return path


def checkpoint_name(step: int) -> str:
    """``step_NNNNNNN``: the folder name of the checkpoint after ``step`` optimizer steps."""
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints under ``ckpt_dir``, oldest first (temporary ``.tmp-*`` folders and
    folders renamed aside excluded)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir()  # step_NNNNNNN exactly: a folder moved aside (.damaged) is not one
                  if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX):].isdigit())


def older_checkpoint_hint(ck: Path) -> str:
    """What to do when checkpoint ``ck`` is damaged: the newest older one, if any, and how to use it."""
    older = [p for p in list_checkpoints(Path(ck).parent) if p.name < Path(ck).name]
    if not older:
        return "no older checkpoint exists in that folder"
    return (f"the previous checkpoint {older[-1].name} may be intact: move the damaged one aside "
            f"(mv {ck} {ck}.damaged) and run again to continue from {older[-1].name}, or point at {older[-1]}")


@dataclass(frozen=True)
class RunPaths:
    """The folder of one run (``run_dir``, default ``runs/<name>``) and its stage folders.
    Explicit per-stage folders from the config win over the defaults."""

    root: Path
    data_override: Optional[Path] = None
    pretrain_tokens_override: Optional[Path] = None
    pretrain_override: Optional[Path] = None
    finetune_override: Optional[Path] = None
    transfer_override: Optional[Path] = None

    @property
    def data(self) -> Path:
        """Prepared data of this run (``data prepare`` writes here)."""
        return self.root / "data"

    @property
    def finetune_data(self) -> Path:
        """The prepared folder fine-tuning reads its splits from."""
        return self.data_override or self.data

    @property
    def pretrain_tokens(self) -> Path:
        return self.pretrain_tokens_override or tokens_dir(self.data)

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def pretrain(self) -> "TrainPaths":
        return TrainPaths(self.pretrain_override or self.root / "pretrain")

    @property
    def finetune(self) -> "TrainPaths":
        return TrainPaths(self.finetune_override or self.root / "finetune")

    @property
    def transfer(self) -> Path:
        return self.transfer_override or self.root / "transfer"


def tokens_dir(data_dir: Path) -> Path:
    """The token shards folder of a prepared data folder."""
    return Path(data_dir) / "tokens"


def splits_dir(data_dir: Path) -> Path:
    """The per-split JSONL folder of a prepared data folder."""
    return Path(data_dir) / "splits"


def tokenizer_of_tokens(tokens: Path) -> Optional[Path]:
    """The tokenizer folder a token index names (relative to the tokens folder), if any."""
    from lmforge.data.shards import read_index

    if not (Path(tokens) / "index.json").is_file():
        return None
    rel = read_index(tokens).get("tokenizer_dir")
    tokens = Path(tokens).resolve()  # "." or a relative path has no meaningful parents otherwise
    return within(tokens.parent.parent, tokens / rel, "the token index's tokenizer_dir") if rel else None


class TrainPaths:
    """A training output folder (pretrain or finetune)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"  # step_NNNNNNN/ for exact resume
        self.tokenizer = self.root / "tokenizer"  # copied beside the checkpoints: a pretrain folder is self-contained
        self.metrics = self.root / "metrics.jsonl"
        self.tensorboard = self.root / "tb"
        self.summary = self.root / "summary.json"
        self.loss_curve = self.root / "loss_curve.png"  # pretraining
        self.curves = self.root / "curves.png"  # fine-tuning: losses and the selection metric
        self.best = self.root / "best"  # fine-tuning: the selected model as a Hugging Face folder

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainPaths) and other.root == self.root

    def eval(self, name: str) -> Path:
        return self.root / "eval" / name


def checkpoint_tokenizer(checkpoint: Path, state: dict) -> Path:
    """The tokenizer folder a checkpoint was trained with."""
    checkpoint = Path(checkpoint).resolve()  # "step_N" or "." has no meaningful parents otherwise
    return within(checkpoint.parent.parent, checkpoint / state.get("tokenizer_dir", CHECKPOINT_TOKENIZER),
                  f"{checkpoint / STATE_FILE}: tokenizer_dir")


Kind = Literal["checkpoint", "pretrain", "finetune", "task_model", "array_model", "hf_model", "prepared_data", "tokens", "unknown"]


def kind_of(path: str | Path) -> Kind:
    """What a folder holds:

    * ``checkpoint`` — one of our ``step_NNNNNNN`` checkpoints (``state.json``);
    * ``finetune`` — a finetune output folder (``best/``, the exported model, inside);
    * ``pretrain`` — a training folder with ``checkpoints/`` and no ``best/``;
    * ``task_model`` — an HF ``*For{Sequence,Token}Classification`` folder (ours or anyone's);
    * ``array_model`` — an image or table model of ours (``config.json`` with ``lmforge_kind``);
    * ``hf_model`` — any other HF model folder (``config.json``);
    * ``prepared_data`` — a ``data prepare`` output (``tokens/index.json``); ``tokens`` — its tokens folder.
    """
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return "checkpoint"
    if (p / "best" / "config.json").is_file():
        return "finetune"
    if (p / "checkpoints").is_dir():
        return "pretrain"
    if (p / "config.json").is_file():
        try:
            config = json.loads((p / "config.json").read_text())
        except json.JSONDecodeError:
            raise ArtifactError(f"{p / 'config.json'}: not valid JSON") from None
        if isinstance(config, dict) and config.get("lmforge_kind") in array_kinds():
            return "array_model"
        archs = (config.get("architectures") if isinstance(config, dict) else None) or []
        is_task = any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in archs)
        return "task_model" if is_task else "hf_model"
    if (p / "tokens" / "index.json").is_file():
        return "prepared_data"
    if (p / "index.json").is_file():
        return "tokens"
    return "unknown"


def resolve_checkpoint(path: str | Path, prefer: Literal["latest", "best"] = "latest") -> Path:
    """The checkpoint a path means: itself, or (for a pretrain folder or its ``checkpoints/``) the
    latest one, or the best one recorded in the latest state when ``prefer="best"``."""
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    ck_dir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    cks = list_checkpoints(ck_dir)
    if not cks:
        raise ArtifactError(f"{p}: no checkpoint found (expected checkpoints/step_NNNNNNN/ folders)")
    if prefer == "best":
        try:
            best = json.loads((cks[-1] / STATE_FILE).read_text()).get("best", {})
        except (OSError, json.JSONDecodeError):
            best = {}
        name = best.get("name") or (checkpoint_name(best["step"]) if best.get("step") else None)
        if name and (ck_dir / name).is_dir():
            return ck_dir / name
    return cks[-1]


def default_eval_dir(model_folder: Path, name: str) -> Path:
    """Where ``lmforge evaluate`` writes when not told: a fine-tuning run's ``best/`` model reports
    into that run's ``eval/<name>/`` (where the run's own final evaluation is), any other model
    folder into its own ``eval/<name>/``."""
    model_folder = Path(model_folder)
    if model_folder.name == "best" and kind_of(model_folder.parent) == "finetune":
        return TrainPaths(model_folder.parent).eval(name)
    return model_folder / "eval" / name


def task_model_dir(path: str | Path) -> Path:
    """The HF folder of a fine-tuned model: the folder itself, or a finetune folder's ``best/``
    (put back first if a crash left it mid-swap, :mod:`lmforge.swap`)."""
    from lmforge.swap import recover

    p = Path(path)
    recover(p / "best")
    recover(p)
    kind = kind_of(p)
    if kind == "finetune":
        return p / "best"
    if kind in ("task_model", "hf_model", "array_model"):
        return p
    raise ArtifactError(f"{p}: not a fine-tuned model folder (no config.json; give a finetune output folder "
                        "or its best/ folder)")
