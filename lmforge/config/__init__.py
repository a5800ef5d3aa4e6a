"""Typed, validated configuration: dataclass schemas, YAML presets and dotted overrides."""

from lmforge.config.errors import ConfigError
from lmforge.config.experiment import ExperimentConfig, load_config

__all__ = ["ConfigError", "ExperimentConfig", "load_config"]
