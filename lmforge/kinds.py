"""The data-kind registry: one place that maps a kind of data to its pieces.

A *kind* is what the data is — ``text``, ``image``, ``tabular``, ``audio`` — spelled the same way
in ``data.kind``, in a prepared folder's ``manifest.json`` and in a saved model (``lmforge_kind``).
A *task* is what is learned on it (``finetune.task``): ``sequence`` or ``token`` on text; ``image``,
``tabular`` and ``audio`` on their own kinds. Everything that must act differently per kind asks this module
instead of comparing kind strings:

* :func:`task` — the task object (reading, encoding or loading batches, scoring);
* :func:`finetune_setup` — what the one fine-tuning loop needs from a kind
  (:class:`lmforge.training.finetune_setup.FinetuneSetup`);
* :func:`kind_of_task`, :func:`is_array_task`, :func:`is_array_kind` — the questions recipes,
  ``lmforge run``, evaluation and prediction ask about a task or a saved model.

Pieces are named as ``"module:attribute"`` and imported when first used, so asking about a kind
never imports another kind's dependencies. Adding a kind is adding an entry here and its files.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Kind:
    """One kind of data and where its pieces live."""

    name: str
    tasks: tuple[str, ...]  # finetune.task values on this kind; the first is the default
    finetune_setup: str  # "module:function" returning a FinetuneSetup
    arrays: bool  # rows are arrays (lmforge.tasks.arrays.ArraySet), not token ids
    sources: str  # where a config's data section lists this kind's sources (dotted attribute)
    source_example: str  # what an error about missing sources suggests
    own_keys: tuple[str, ...]  # data keys only this kind reads: set on another kind's run, they are config errors
    serves: bool  # lmforge export / serve take its models (lmforge run adds those stages)
    adopts_prepared: bool  # data prepare records its config and inputs, so lmforge run can adopt the folder
    prepare: str = ""  # "module:function" (data config, seed, out folder, progress) -> manifest; "" = the text flow
    report_data: str = ""  # "module:function" (run facts, the data manifest) -> the report's data section
    model_from_record: str = ""  # "module:function" (model config, saved record) -> model: array kinds' own folders
    record_keys: tuple[str, ...] = ()  # what that record must hold to rebuild the model
    pretrain: str = ""  # "module:function" of its pretraining recipe; "" = none
    objectives: tuple[str, ...] = ()  # pretrain.objective values it takes; the first is the default
    inputs: str = ""  # "module:Class" (folder, saved record): its models' inputs in ONNX graphs and requests


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("text", ("sequence", "token"), "lmforge.training.text_setup:text_setup", arrays=False, sources="sources",
         source_example="- path: data/*.jsonl",
         own_keys=("sources", "max_record_bytes", "chunk_mb", "clean", "filter", "dedup", "augment", "pack"),
         serves=True, adopts_prepared=True, report_data="lmforge.reporting.sections:text_data",
         pretrain="lmforge.recipes.pretrain:pretrain", objectives=("clm", "mlm", "rtd")),
    Kind("image", ("image",), "lmforge.training.array_setup:array_setup", arrays=True, sources="image.sources",
         source_example="- builtin: digits, or - path: train-images-idx3-ubyte.gz", own_keys=("image",),
         prepare="lmforge.data.images.prepare:prepare_images",
         serves=True, adopts_prepared=False, report_data="lmforge.reporting.sections:image_data",
         model_from_record="lmforge.models.vision:image_model_from_record",
         record_keys=("in_shape", "num_outputs"), pretrain="lmforge.recipes.pretrain_images:pretrain_images",
         objectives=("mae",), inputs="lmforge.inference.image_inputs:ImageInputs"),
    Kind("tabular", ("tabular",), "lmforge.training.array_setup:array_setup", arrays=True, sources="tabular.sources",
         source_example="- builtin: penguins, or - path: table.csv", own_keys=("tabular",),
         prepare="lmforge.data.tabular.prepare:prepare_tabular",
         serves=True, adopts_prepared=False, report_data="lmforge.reporting.sections:table_data",
         model_from_record="lmforge.models.tabular:tabular_model_from_record",
         record_keys=("n_features", "n_numeric", "cat_cardinalities", "num_outputs"),
         inputs="lmforge.inference.table_inputs:TableInputs"),
    Kind("audio", ("audio",), "lmforge.training.array_setup:array_setup", arrays=True, sources="audio.sources",
         prepare="lmforge.data.audio.prepare:prepare_audio",
         source_example="- path: clips/ (one subfolder of .wav files per class)", own_keys=("audio",),
         serves=True, adopts_prepared=False, report_data="lmforge.reporting.audio_section:audio_data",
         model_from_record="lmforge.models.vision:image_model_from_record", record_keys=("in_shape", "num_outputs"),
         inputs="lmforge.inference.audio_inputs:AudioInputs"),
)}

TASKS: dict[str, str] = {
    "sequence": "lmforge.tasks.sequence:SequenceTask",
    "token": "lmforge.tasks.token:TokenTask",
    "image": "lmforge.tasks.image:ImageTask",
    "tabular": "lmforge.tasks.tabular:TabularTask",
    "audio": "lmforge.tasks.audio:AudioTask",
}


# How a task's model reads the body's hidden states: one pooled vector per text, or one per token.
HEADS: dict[str, str] = {"sequence": "pooled", "token": "per_token", "image": "own", "tabular": "own", "audio": "own"}


def pools(task_name: str) -> bool:
    """Whether a Transformer classifier for this task pools each text to one vector (else: a label per token)."""
    if task_name not in HEADS:
        raise _unknown("finetune.task", "task", task_name, TASKS)
    return HEADS[task_name] == "pooled"


# the names the config schema accepts for data.kind and finetune.task: exactly what is registered
KindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]
TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]


def _unknown(key: str, what: str, name: str, known) -> Exception:
    from lmforge.config.errors import ConfigError  # here: the config package itself asks this registry

    return ConfigError([(key, f"unknown {what} {name!r}; known: {', '.join(known)}")])


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_kind(name: str, key: str = "data.kind") -> Kind:
    """The registered kind ``name``; an unknown one is a config error listing the known kinds."""
    if name not in KINDS:
        raise _unknown(key, "data kind", name, KINDS)
    return KINDS[name]


def kind_of_task(task_name: str) -> Kind:
    """The kind a ``finetune.task`` learns on."""
    for kind in KINDS.values():
        if task_name in kind.tasks:
            return kind
    raise _unknown("finetune.task", "task", task_name, TASKS)


_task_objects: dict[str, Any] = {}


def task(task_name: str):
    """The task object of ``finetune.task`` (or of a saved model's head kind / ``lmforge_kind``)."""
    if task_name not in TASKS:
        raise _unknown("finetune.task", "task", task_name, TASKS)
    if task_name not in _task_objects:
        _task_objects[task_name] = _load(TASKS[task_name])()
    return _task_objects[task_name]


def finetune_setup(task_name: str):
    """The function that prepares the fine-tuning loop for this task's kind."""
    return _load(kind_of_task(task_name).finetune_setup)


def is_array_task(task_name: str) -> bool:
    """Images and tables: fine-tuned on arrays, saved as our own model folders (not HF)."""
    return kind_of_task(task_name).arrays


def kind_section(data):
    """The part of a config's data section that holds this kind's own keys (``data`` itself for text,
    ``data.image``, ``data.tabular``)."""
    obj = data
    for attr in get_kind(data.kind).sources.split(".")[:-1]:
        obj = getattr(obj, attr)
    return obj


def sources_of(data) -> list:
    """The sources a config's data section lists for its kind."""
    return kind_section(data).sources


def data_problems(data):
    """(key, message) problems of a data section that only its kind can tell: another kind's keys set
    (the schema of a text run is not an image run's), sources missing, and what the kind's own
    section reports (``kind_problems``)."""
    kind = get_kind(data.kind)
    default = type(data)()
    for other in KINDS.values():
        if other is kind:
            continue
        for key in other.own_keys:
            if getattr(data, key) != getattr(default, key):
                yield key, (f"is read only for data.kind: {other.name}; this run is data.kind: {kind.name} — "
                            f"remove it, or set data.kind: {other.name}")
    if not sources_of(data):
        yield kind.sources, f"at least one source is needed (e.g. {kind.source_example})"
    section = kind_section(data)
    if section is not data and hasattr(section, "kind_problems"):
        prefix = kind.sources.rpartition(".")[0]
        yield from ((f"{prefix}.{k}", m) for k, m in section.kind_problems())


def pretrain_recipe(kind_name: str):
    """The pretraining recipe of a kind: (pretrain config, model config, run paths, seed, **options) -> summary."""
    kind = get_kind(kind_name)
    if not kind.pretrain:
        from lmforge.config.errors import ConfigError

        with_one = ", ".join(k.name for k in KINDS.values() if k.pretrain)
        raise ConfigError([("pretrain", f"{kind.name} data has no pretraining objective (pretraining takes "
                                        f"{with_one} data): remove the pretrain section")])
    return _load(kind.pretrain)


def model_inputs(kind_name: str, folder, record: dict):
    """How a saved image/table model's inputs look in an ONNX graph and in requests (its kind's ``inputs``)."""
    kind = get_kind(kind_name, "lmforge_kind")
    if not kind.inputs:
        from lmforge.errors import ArtifactError

        raise ArtifactError(f"{kind.name} models are not exported or served yet (image and table models are)")
    return _load(kind.inputs)(folder, record)


def smoke_payload(kind_name: str, data_dir):
    """A request body for a smoke test of a served model of this kind (None: send a text)."""
    kind = get_kind(kind_name)
    return _load(kind.inputs).smoke_payload(data_dir) if kind.inputs else None


def model_from_record(kind_name: str):
    """(model config, a saved model's record) -> the untrained model of an array kind."""
    return _load(get_kind(kind_name, "lmforge_kind").model_from_record)


def own_prepare(kind_name: str):
    """The kind's own ``data prepare`` flow, or None for the text flow (:mod:`lmforge.data.prepare`)."""
    ref = get_kind(kind_name).prepare
    return _load(ref) if ref else None


def data_section(kind_name: str):
    """(run facts, the data manifest) -> the run report's data section for this kind."""
    return _load(get_kind(kind_name, "manifest kind").report_data)


def is_array_kind(kind_name: str) -> bool:
    return get_kind(kind_name).arrays


def array_kinds() -> tuple[str, ...]:
    return tuple(k.name for k in KINDS.values() if k.arrays)
