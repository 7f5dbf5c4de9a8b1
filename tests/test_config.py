"""vapi.config: defaults < YAML < `a.b=c` overrides, schema checks, the one dtype table, `--help` rendering."""
from dataclasses import dataclass, field

import pytest
import torch

from vapi.config import (ConfigError, describe, flat_keys, get_dtype, helpf, load_config, parse_override,
                         save_config)


@dataclass
class Inner:
    rate: float = helpf(0.5, "a rate")
    names: list[str] = helpf(["a"], "some names")


@dataclass
class Outer:
    steps: int = helpf(10, "how many steps")
    path: str | None = helpf(None, "a path or None")
    inner: Inner = field(default_factory=Inner)


def test_defaults_then_yaml_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("steps: 20\ninner:\n  rate: 0.25\n")
    cfg = load_config(Outer, tmp_path / "c.yaml", ["inner.rate=0.125", "names=x,y"])
    assert (cfg.steps, cfg.inner.rate, cfg.inner.names, cfg.path) == (20, 0.125, ["x", "y"], None)
    assert load_config(Outer).steps == 10
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Outer, tmp_path / "saved.yaml") == cfg  # the dump reads back as the same config


def test_values_are_checked_against_the_schema():
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        load_config(Outer, None, ["steps=1.5"])
    with pytest.raises(ConfigError, match="unknown option inner.rte; did you mean inner.rate"):
        load_config(Outer, None, ["inner.rte=1"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("steps")


def test_overrides_parse_as_yaml():
    assert parse_override("a.b=1e-5") == {"a": {"b": 1e-5}}
    assert parse_override("a=true") == {"a": True} and parse_override("a=[1, 2]") == {"a": [1, 2]}


def test_dtype_table_raises_on_unknown_names():
    assert get_dtype("bf16") is torch.bfloat16 and get_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        get_dtype("int8")


def test_describe_lists_every_option_with_default_and_help():
    assert flat_keys(Outer) == ["steps", "path", "inner.rate", "inner.names"]
    lines = describe(Outer)
    assert lines[0] == "  steps = 10  how many steps" and "  inner.rate = 0.5  a rate" in lines
