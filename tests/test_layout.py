"""The layout module: what each folder is, and which checkpoint a path means."""

import json
from pathlib import Path

import pytest

from lmforge.errors import ArtifactError
from lmforge.layout import RunPaths, kind_of, resolve_checkpoint, task_model_dir


def _checkpoint(folder, step, best_step=None):
    d = folder / "checkpoints" / f"step_{step:07d}"
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"step": step, "best": {"step": best_step}}))
    return d


def test_kind_of_every_artifact(tmp_path):
    pre = tmp_path / "pretrain"
    ck = _checkpoint(pre, 10)
    (tmp_path / "ft" / "best").mkdir(parents=True)
    (tmp_path / "ft" / "best" / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    (tmp_path / "ft" / "checkpoints").mkdir()
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "data" / "tokens").mkdir(parents=True)
    (tmp_path / "data" / "tokens" / "index.json").write_text("{}")
    assert kind_of(ck) == "checkpoint" and kind_of(pre) == "pretrain"
    assert kind_of(tmp_path / "ft") == "finetune" and kind_of(tmp_path / "ft" / "best") == "task_model"
    assert kind_of(tmp_path / "hf") == "hf_model" and kind_of(tmp_path / "data") == "prepared_data"
    assert kind_of(tmp_path / "data" / "tokens") == "tokens" and kind_of(tmp_path / "nothing") == "unknown"
    assert task_model_dir(tmp_path / "ft") == tmp_path / "ft" / "best"
    with pytest.raises(ArtifactError, match="not a fine-tuned model folder"):
        task_model_dir(pre)


def test_resolve_checkpoint_latest_or_recorded_best(tmp_path):
    _checkpoint(tmp_path, 5)
    best = _checkpoint(tmp_path, 10)
    last = _checkpoint(tmp_path, 15, best_step=10)
    (tmp_path / "checkpoints" / ".tmp-step_0000020").mkdir()  # an interrupted save is never picked
    assert resolve_checkpoint(tmp_path) == last and resolve_checkpoint(tmp_path / "checkpoints") == last
    assert resolve_checkpoint(tmp_path, prefer="best") == best and resolve_checkpoint(best) == best
    with pytest.raises(ArtifactError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path / "empty")


def test_run_paths_defaults_and_overrides(tmp_path):
    p = RunPaths(tmp_path)
    assert p.pretrain.checkpoints == tmp_path / "pretrain" / "checkpoints"
    assert p.pretrain_tokens == tmp_path / "data" / "tokens" and p.finetune.best == tmp_path / "finetune" / "best"
    q = RunPaths(tmp_path, finetune_override=tmp_path / "elsewhere")
    assert q.finetune.eval("test") == tmp_path / "elsewhere" / "eval" / "test"


def test_checkpoint_tokenizer_from_inside_the_checkpoints_folder(tiny_decoder, monkeypatch):
    """A relative checkpoint path (generate --checkpoint step_N run from checkpoints/) resolves."""
    from lmforge.layout import checkpoint_tokenizer, list_checkpoints

    ck = list_checkpoints(tiny_decoder / "checkpoints")[-1]
    monkeypatch.chdir(ck.parent)
    assert checkpoint_tokenizer(Path(ck.name), {}) == (tiny_decoder / "tokenizer").resolve()
    monkeypatch.chdir(ck)
    assert checkpoint_tokenizer(Path("."), {}).is_dir()
