"""Typed configuration: dataclass defaults < YAML file < dotted `a.b=c` overrides, checked against the schema.

Every component owns its dataclass next to its code; a run config composes them. Field help lives once, in
`field(metadata={"help": ...})`, and `describe()` renders it for `--help`. Unknown keys are errors that list the
valid ones. `DTYPES` is the only string → dtype table.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

T = TypeVar("T")

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def get_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; must be one of {sorted(DTYPES)}")
    return DTYPES[name]


class ConfigError(ValueError):
    pass


class UnknownOption(ConfigError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def flat_keys(cls, prefix: str = "") -> list[str]:
    """Every option of a config dataclass as a dotted name (`optim.learning_rate`)."""
    keys = []
    for name, tp in _field_types(cls).items():
        keys += flat_keys(tp, f"{prefix}{name}.") if _is_dataclass_type(tp) else [prefix + name]
    return keys


def suggest(key: str, keys: list[str], n: int = 3) -> list[str]:
    """The valid names closest to `key`: close dotted names, then same or close last parts (`lr` →
    `optim.learning_rate` is too far; `learning_rate` → `optim.learning_rate`, `optim.lr` → `optim.learning_rate`)."""
    leaf = key.rsplit(".", 1)[-1].replace("-", "_")
    leaf = {"lr": "learning_rate", "batch_size": "per_device_batch_size", "epochs": "num_iterations",
            "steps": "max_steps"}.get(leaf, leaf)
    found = difflib.get_close_matches(key, keys, n=n, cutoff=0.75)
    found += [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    found += [k for k in keys if k.rsplit(".", 1)[-1] in difflib.get_close_matches(leaf, list(leaves), n=n, cutoff=0.7)]
    found += [k for k in keys if len(leaf) >= 3 and leaf in k.rsplit(".", 1)[-1].split("_")]
    return list(dict.fromkeys(found))[:n]


def helpf(default: Any, help: str, **kw):
    """A dataclass field with its help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML or CLI value to the annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        key = prefix + unknown[0]
        close = suggest(key, flat_keys(cls, prefix))
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownOption(key, f"unknown option {key}; {hint}valid options of {prefix.rstrip('.') or cls.__name__}: "
                                 f"{', '.join(types_)}")
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> dict:
    """'a.b=c' → {'a': {'b': c}} with c parsed as YAML (numbers, booleans, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-5)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. a path with ': '): the string as written
    if isinstance(value, str) and raw.strip():
        try:
            value = float(raw) if any(c in raw.lower() for c in ".e") else value
        except ValueError:
            pass
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def packaged_configs() -> dict[str, Path]:
    """The YAML configs shipped inside the package (`vapi/configs/`), by name without `.yaml`."""
    from importlib.resources import files

    folder = files("vapi") / "configs"
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file, or the name of a packaged config (`llamagen_c2i_xxl_384`, with or without `.yaml`)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = packaged_configs()
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if name in shipped and (p.parent == Path(".") or p.parent.name == "configs"):
        return shipped[name]
    close = difflib.get_close_matches(name, list(shipped), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"config file {p} does not exist; {hint}shipped configs: {', '.join(sorted(shipped))}")


def _expand_leaf(cls, item: str, sections: list[str] = ()) -> str:
    """`learning_rate=1e-5` → `optim.learning_rate=1e-5` when exactly one option has that name (TRL-style flat
    flags), or exactly one in the first of `sections` that has it (e.g. the selected method's section before the
    others); anything else is left for the schema check."""
    key, eq, value = item.partition("=")
    key = key.strip().replace("-", "_")
    if "." in key or not eq or key in {f.name for f in dataclasses.fields(cls)}:
        return f"{key}{eq}{value}"
    matches = [k for k in flat_keys(cls) if k.rsplit(".", 1)[-1] == key]
    for section in sections:
        if len(matches) > 1:
            preferred = [k for k in matches if k.startswith(section + ".")]
            matches = preferred if preferred else matches
    return f"{matches[0] if len(matches) == 1 else key}={value}"


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = (),
                values: dict[str, Any] | None = None) -> T:
    """defaults < YAML < `values` < overrides, validated against `cls`. `path` may name a packaged config; `values`
    maps dotted names to typed values (a command's own flags, which are aliases of options)."""
    data = to_dict(cls())
    if path:
        path = resolve_config_path(path)
        loaded = _read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a YAML mapping of options")
        data = _merge(data, loaded)
    for key, value in (values or {}).items():
        for part in reversed(key.split(".")):
            value = {part: value}
        data = _merge(data, value)
    sections = []
    if hasattr(cls, "flat_name_sections"):  # which section a flat name shared by several means, from the dotted keys
        dotted = data
        for item in overrides:
            if "." in item.partition("=")[0]:
                dotted = _merge(dotted, parse_override(item))
        sections = cls.flat_name_sections(dotted)
    for item in overrides:
        data = _merge(data, parse_override(_expand_leaf(cls, item, sections)))
    try:
        return from_dict(cls, data)
    except UnknownOption as e:  # suggest from the whole schema: `train.learning_rate` → `optim.learning_rate`
        note = getattr(cls, "FOREIGN_NAMES", {}).get(e.key.rsplit(".", 1)[-1])
        if note:
            raise ConfigError(f"unknown option {e.key}: {note}") from None
        close = suggest(e.key, flat_keys(cls))
        if close and f"did you mean" not in str(e):
            raise ConfigError(f"unknown option {e.key}; did you mean {' or '.join(close)}?") from None
        raise


def _read_yaml(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a text YAML file (undecodable byte at offset {e.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small file so that a reader (or a kill) never sees half of it: a temporary file, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_config(cfg, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls, prefix: str = "", defaults=None) -> list[str]:
    """One line per option: `name = default  help`, nested configs flattened with dots (with the defaults the
    parent gives them, e.g. `vapi sample`'s LlamaGen sampling values)."""
    lines = []
    defaults = cls() if defaults is None else defaults
    for f in dataclasses.fields(cls):
        tp = _field_types(cls)[f.name]
        if _is_dataclass_type(tp):
            lines += describe(tp, prefix + f.name + ".", getattr(defaults, f.name))
            continue
        default = getattr(defaults, f.name)
        lines.append(f"  {prefix + f.name} = {default!r}  {f.metadata.get('help', '')}".rstrip())
    return lines
