"""Fuzzing the config loader and the ``--set`` parser (hypothesis, bounded): random YAML trees
over the real keys and junk, random override strings and random bytes as a config file are
either valid or a ConfigError naming a key path — never a traceback."""

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.config import ConfigError, load_config
from lmforge.config.experiment import ExperimentConfig
from lmforge.config.schema import describe

KEYS = [k for k, *_ in describe(ExperimentConfig)]
SEGMENTS = sorted({s for k in KEYS for s in k.split(".")}) + ["", "x", "data ", "0", "é", "__class__", "a.b"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["3e-4", "1e400", "-0", "null", "~", "[1,", "{"]))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.sampled_from(SEGMENTS), kids, max_size=5)),
                     max_leaves=25)
configs = st.dictionaries(st.sampled_from(SEGMENTS), trees, max_size=6)
real_paths = st.sampled_from(KEYS)
overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", real_paths, st.text(max_size=15)),
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=15), st.text(max_size=15)),
    st.text(max_size=30))
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _load(**kw):
    try:
        load_config(**kw)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(k, str) and isinstance(m, str) and m for k, m in exc.problems)
        assert str(exc)  # printable


@FUZZ
@given(configs)
def test_random_trees_are_valid_or_config_errors(raw):
    _load(raw=raw)


@FUZZ
@given(st.lists(overrides, max_size=4))
def test_random_overrides_are_valid_or_config_errors(sets):
    _load(raw={}, overrides=sets)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_as_a_config_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(data)
    _load(name_or_path=str(path))


def test_the_fuzzer_reaches_real_errors():
    """The generated trees do hit the schema (not only the unknown-key path)."""
    import pytest

    with pytest.raises(ConfigError) as e:
        load_config(raw=yaml.safe_load("data: {split: {val: 2.0}, dedup: {threshold: x}}"))
    assert {k for k, _ in e.value.problems} == {"data.split.val", "data.dedup.threshold"}
