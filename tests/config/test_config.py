"""Config schema: all problems at once with key paths; overrides; every shipped preset loads."""

from pathlib import Path

import pytest

from lmforge.config import ConfigError, load_config
from lmforge.config.experiment import PRESET_DIR
from lmforge.config.schema import describe
from lmforge.config.experiment import ExperimentConfig


def test_every_problem_reported_at_once_with_its_key():
    raw = {"seed": "x", "tokenizr": {}, "data": {"sources": [{"paht": "a"}], "split": {"val": "a", "test": 2},
                                                   "dedup": {"exact": 1, "threshold": 3.0}}}
    with pytest.raises(ConfigError) as info:
        load_config(raw=raw)
    keys = {k for k, _ in info.value.problems}
    assert keys == {"seed", "tokenizr", "data.sources[0].paht", "data.split.val", "data.split.test",
                    "data.dedup.exact", "data.dedup.threshold"}
    msg = str(info.value)
    assert "did you mean 'tokenizer'" in msg and "did you mean 'path'" in msg
    assert "must be <= 0.9" in msg and "expected a number" in msg


def test_literal_choices_and_cross_field_checks():
    with pytest.raises(ConfigError) as info:
        load_config(raw={"tokenizer": {"type": "bpee"}, "data": {"sources": [{}], "split": {"val": 0.6, "test": 0.5}}})
    text = str(info.value)
    assert "tokenizer.type" in text and "did you mean 'bpe'" in text
    assert "data.sources[0].path" in text and "exactly one of 'path' or 'builtin'" in text
    assert "data.split.val" in text and "val + test" in text


def test_dotted_overrides_parse_yaml_values():
    cfg = load_config("quickstart", ["data.split.val=0.1", "tokenizer.type=wordpiece", "data.dedup.near=false",
                                     "data.labels=[a, b]"])
    assert cfg.data.split.val == 0.1
    assert cfg.tokenizer.type == "wordpiece"
    assert cfg.data.dedup.near is False
    assert cfg.data.labels == ["a", "b"]


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config("quickstart", ["data.split.val"])
    with pytest.raises(ConfigError, match="data.split.val"):
        load_config("quickstart", ["data.split.val=abc"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="quickstart"):
        load_config("no_such_preset")


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path: Path):
    cfg = load_config(str(path))
    sources = {"text": cfg.data.sources, "image": cfg.data.image.sources, "tabular": cfg.data.tabular.sources}
    assert sources[cfg.data.kind] or cfg.finetune.data.train_file or cfg.pretrain.data_dir, \
        f"{path} has neither data sources, finetune files nor prepared pretraining data"
    if cfg.data.kind != "text":  # array data trains with a model of its kind
        from lmforge.tasks import get_task

        assert cfg.finetune.task == cfg.data.kind and cfg.model.arch in get_task(cfg.finetune.task).archs


def test_config_hash_changes_with_content():
    a = load_config("quickstart")
    b = load_config("quickstart", ["data.split.val=0.2"])
    assert a.hash() != b.hash()
    assert a.hash() == load_config("quickstart").hash()


def test_describe_lists_documented_keys():
    rows = {r[0]: r for r in describe(ExperimentConfig)}
    assert "data.dedup.threshold" in rows and rows["data.dedup.threshold"][3]
    assert rows["tokenizer.vocab_size"][2] == 8000


def test_list_items_in_overrides():
    cfg = load_config("quickstart", ["data.sources[0].builtin=stdlib_packages", "pretrain.betas[1]=0.95"])
    assert cfg.data.sources[0].builtin == "stdlib_packages" and cfg.pretrain.betas == [0.9, 0.95]
    with pytest.raises(ConfigError, match=r"data.sources\[3\]: data.sources has 1 item"):
        load_config("quickstart", ["data.sources[3].path=x"])
    with pytest.raises(ConfigError, match="tokenizer: is not a list"):
        load_config("quickstart", ["tokenizer[0]=x"])


def test_a_mistyped_preset_is_reported_with_the_other_problems():
    with pytest.raises(ConfigError) as exc:
        load_config("quickstart", ["model.preset=tinyy", "pretrain.lr=-1"])
    keys = [k for k, _ in exc.value.problems]
    assert sorted(keys) == ["model.preset", "pretrain.lr"]
    assert "did you mean 'tiny'" in str(exc.value)


def test_the_readme_reference_is_the_schema():
    from lmforge.config.reference import README, current_table, reference_table

    text = README.read_text()
    start, end = current_table(text)
    assert text[start:end] == reference_table(), "README out of date: run python -m lmforge.config.reference"


def test_synonyms_from_other_tools_and_keys_one_level_down_are_suggested():
    raw = {"pretrain": {"learning_rate": 1e-3, "max_iters": 10}, "model": {"num_hidden_layers": 2, "hidden_size": 64},
           "finetune": {"optim": {"num_warmup_steps": 3}}, "data": {"seq_len": 64}}
    with pytest.raises(ConfigError) as info:
        load_config(raw=raw)
    hints = {k: m.split("did you mean ")[1].split("?")[0] for k, m in info.value.problems if "did you mean" in m}
    assert hints == {"pretrain.learning_rate": "'lr'", "pretrain.max_iters": "'max_steps'",
                     "model.num_hidden_layers": "'n_layer'", "model.hidden_size": "'d_model'",
                     "data.seq_len": "'pack.seq_len'",
                     "finetune.optim.num_warmup_steps": "'warmup_ratio'"}


def test_a_bad_key_given_with_set_is_attributed_to_set_not_to_the_file():
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", ["pretrain.learning_rate=1e-3"])
    text = str(info.value)
    assert "configuration (from --set)" in text and "quickstart.yaml" not in text
    assert "pretrain.learning_rate: unknown key; did you mean 'lr'?" in text
    assert text.endswith("(from --set pretrain.learning_rate=1e-3)")
    with pytest.raises(ConfigError) as info:  # a file problem and a --set problem: each says where it is from
        load_config(raw={"seeed": 1}, overrides=["pretrain.lr=abc"])
    lines = str(info.value).splitlines()
    assert any(ln.strip().startswith("- seeed:") and "--set" not in ln for ln in lines)
    assert any("pretrain.lr" in ln and ln.endswith("(from --set pretrain.lr=abc)") for ln in lines)
