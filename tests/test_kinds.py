"""The data-kind registry: one place answers what each kind and task is made of."""

import importlib.util
from pathlib import Path

import pytest

from lmforge import kinds
from lmforge.config.errors import ConfigError
from lmforge.data.config import DataConfig

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_kind_and_task_are_config_errors_listing_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        kinds.get_kind("video")
    assert "data.kind" in str(exc.value) and "text, image, tabular, audio" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        kinds.kind_of_task("speech")
    assert "finetune.task" in str(exc.value) and "sequence" in str(exc.value)


def test_every_task_belongs_to_one_kind_and_every_piece_imports():
    for name, task_ref in kinds.TASKS.items():
        kind = kinds.kind_of_task(name)
        assert sum(name in k.tasks for k in kinds.KINDS.values()) == 1
        assert kinds.task(name).name == name
        assert callable(kinds.finetune_setup(name))
        assert name in kinds.HEADS
    for kind in kinds.KINDS.values():
        assert callable(kinds.data_section(kind.name))
        assert (kinds.own_prepare(kind.name) is None) == (not kind.arrays)
        if kind.arrays:
            assert callable(kinds.model_from_record(kind.name)) and kind.record_keys
    assert kinds.array_kinds() == ("image", "tabular", "audio")
    assert kinds.pools("sequence") and not kinds.pools("token")


def test_data_problems_name_the_kind_s_own_keys():
    assert [k for k, _ in kinds.data_problems(DataConfig(kind="image"))] == ["image.sources"]
    assert [k for k, _ in kinds.data_problems(DataConfig(kind="text"))] == ["sources"]
    keys = [k for k, _ in kinds.data_problems(DataConfig(kind="tabular"))]
    assert keys[0] == "tabular.sources" and all(k.startswith("tabular.") for k in keys)


def _structure():
    spec = importlib.util.spec_from_file_location("structure_check", ROOT / "benchmarks" / "structure_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_structure_check_finds_kind_comparisons_and_ignores_other_strings():
    import ast

    sc = _structure()
    hits = sc.kind_comparisons(ast.parse('if cfg.data.kind == "image":\n    pass\nif task in ("token", "x"):\n    pass\n'
                                         'if event[0] == "token" or fmt != "text":\n    pass\n'))
    assert [line for line, _ in hits] == [1, 3]


def test_the_tree_keeps_one_finetune_loop_no_kind_comparisons_no_long_functions_no_cycles():
    r = _structure().check()
    assert r["kind_comparisons"] == []
    assert len(r["finetune_loops"]) == 1 and r["finetune_loops"][0].startswith("recipes/finetune.py")
    assert r["import_cycles"] == []
    assert r["long_functions"] == []  # no function over 80 lines (the argparse table excepted)


def test_another_kind_s_keys_are_config_errors_listed_with_every_other_problem():
    from lmforge.config.experiment import load_config

    raw = {"name": "x", "data": {"kind": "image", "image": {"sources": [{"builtin": "digits"}]},
                                 "clean": {"lowercase": True}, "tabular": {"columns": {"target": "y"}}},
           "model": {"arch": "cnn"}, "pretrain": {"lr": -1},
           "finetune": {"task": "image", "keep_layers": [0], "data": {"train_file": "t.jsonl"}}}
    with pytest.raises(ConfigError) as exc:
        load_config(raw=raw)
    keys = [k for k, _ in exc.value.problems]
    assert {"data.clean", "data.tabular", "finetune.keep_layers", "finetune.data.train_file",
            "pretrain.lr"} <= set(keys), keys
    msg = dict(exc.value.problems)["data.clean"]
    assert "data.kind: text" in msg and "this run is data.kind: image" in msg
    # the same keys on a text run are fine
    ok = {"name": "y", "data": {"sources": [{"path": "a.jsonl"}], "clean": {"lowercase": True}}}
    assert load_config(raw=ok).data.clean.lowercase
