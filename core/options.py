"""One declaration per option: a dataclass field from which the CLI, the YAML schema and the checks derive.

An option is a field made with :func:`option` (default, help text, and for numbers the allowed
range: ``ge``/``gt``/``le``/``lt``); choices come from ``Literal`` annotations. From the dataclass:

- :func:`add_options` adds ``--field-name`` arguments to an argparse parser (types, choices,
  ``nargs`` for lists, switches for booleans, the default and range in the help), and
  :func:`from_args` builds the dataclass from the parsed namespace;
- :func:`from_mapping` builds it from a YAML mapping (every key checked, errors name the key's
  path), and :func:`parse_pairs` reads ``KEY=VALUE`` pairs (``--set``, ``--option``) into such a
  mapping;
- :func:`validate` checks types and ranges wherever the dataclass is built (the Python API calls it
  from ``__post_init__``), so the same bad value is refused the same way from the CLI, the YAML
  and Python, with the allowed range in the message.

Nothing here evaluates strings: values are converted by type, and ``KEY=VALUE`` values are read as
YAML scalars with ``yaml.safe_load``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import types
import typing
from typing import Any, Callable, Literal, Union

import yaml

from langgraft.errors import UserError

_MISSING: Any = dataclasses.MISSING
BOUNDS = ("ge", "gt", "le", "lt")
_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
MAX_PAIR_VALUE = 10_000  # characters of one KEY=VALUE value: a YAML scalar or short list, never a document
MAX_YAML_CHARACTERS = 1 << 20  # a pipeline file is a few KB; a megabyte is already far beyond any real one


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None,
           aliases: tuple[str, ...] = (), keys: tuple[str, ...] = (), metavar: str | None = None, cli: bool = True,
           group: str | None = None, result: bool = True) -> Any:
    """A dataclass field with its help text and allowed range (the one place its default is written).

    ``aliases``: further CLI spellings (hidden from ``--help``), kept for existing scripts.
    ``keys``: former names still accepted as YAML / ``KEY=VALUE`` keys (e.g. ``batch_size``).
    ``cli=False``: a field of the Python API and YAML only (e.g. paths a stage fills in).
    ``group``: the ``--help`` section the CLI argument is listed under.
    ``result=False``: the option never changes what a run computes (logging, checkpoint cadence),
    so a cache key may leave it out (:func:`result_values`).
    """
    metadata = {"help": help, "aliases": aliases, "keys": keys, "metavar": metavar, "cli": cli, "group": group, "result": result,
                **{name: value for name, value in zip(BOUNDS, (ge, gt, le, lt)) if value is not None}}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------- types


def _optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, allows None)`` of ``X | None``."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True
    return tp, False


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return {type(None): "null", str: "string", int: "integer", float: "number", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _same_shape(tp: Any, value: Any) -> bool:
    """Could ``value`` be meant as a ``tp``? (mapping, list or scalar)"""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp))  # a mapping from YAML, or the section already built
    if origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    return not isinstance(value, (dict, list))


def convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (from YAML, a ``KEY=VALUE`` pair or Python) as a ``tp``; a :class:`UserError` naming ``where``.

    The one converter: numbers must be finite, integers are not floats, booleans are not numbers,
    strings are not dates.
    """
    origin = typing.get_origin(tp)
    if tp is Any or (dataclasses.is_dataclass(tp) and isinstance(value, tp)):
        return value
    if origin is Literal:
        if any(value == allowed and type(value) is type(allowed) for allowed in typing.get_args(tp)):
            return value
        raise UserError(f"{where}: {value!r} is not allowed; allowed values: {type_name(tp)}")
    if origin in (Union, types.UnionType):
        choices = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None and len(choices) < len(typing.get_args(tp)):
            return None
        shaped = [o for o in choices if _same_shape(o, value)]
        if len(shaped) == 1:  # the only choice of this shape: its own error names the bad key
            return convert(shaped[0], value, where)
        for choice in shaped:
            try:
                return convert(choice, value, where)
            except UserError:
                continue
        raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            item = typing.get_args(tp)[0]
            converted = [convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(converted) if origin is tuple else converted
    elif origin is dict:
        if isinstance(value, dict):
            key_type, value_type = (typing.get_args(tp) or (Any, Any))
            return {convert(key_type, k, f"{where}"): convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        number = value
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            if not math.isfinite(number):
                raise UserError(f"{where}: {value!r} is not a finite number")
            return float(number)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        if isinstance(value, (datetime.date, datetime.datetime)):
            raise UserError(f"{where}: YAML read {value} as a date; quote it to keep it as text: '{value}'")
    elif isinstance(value, tp):
        return value
    raise UserError(f"{where}: expected {type_name(tp)}, got {value!r}")


# --------------------------------------------------------------------------- checks


def range_text(metadata: typing.Mapping[str, Any]) -> str:
    """``">= 1"``, ``"> 0 and <= 1"``: the allowed range of a numeric option, for messages and help."""
    return " and ".join(f"{_BOUND_TEXT[b]} {metadata[b]:g}" if isinstance(metadata[b], float)
                        else f"{_BOUND_TEXT[b]} {metadata[b]}" for b in BOUNDS if b in metadata)


def _out_of_range(value: Any, metadata: typing.Mapping[str, Any]) -> bool:
    checks = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}
    return any(not checks[b](value, metadata[b]) for b in BOUNDS if b in metadata)


def validate(instance: Any, label: Callable[[str], str] = str) -> None:
    """Every field of ``instance`` has its declared type and lies in its declared range.

    ``label`` names a field in the message: ``--max-steps`` on the CLI, ``pretrain.max_steps`` in
    YAML, ``max_steps`` in Python (the default).
    """
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            raise UserError(f"{label(field.name)}: {value!r} is not a finite number")
        converted = convert(hints[field.name], value, label(field.name))
        if converted is not value:  # an int for a float field, a Path for a str field
            object.__setattr__(instance, field.name, converted)
        numbers = converted if isinstance(converted, list) else [converted]
        for number in numbers:
            if isinstance(number, (int, float)) and not isinstance(number, bool) and _out_of_range(number, field.metadata):
                raise UserError(f"{label(field.name)} must be {range_text(field.metadata)}, got {number!r}")


class Validated:
    """Mixin: a dataclass that checks its fields (:func:`validate`) whenever it is built."""

    def __post_init__(self) -> None:
        validate(self)


# --------------------------------------------------------------------------- YAML and KEY=VALUE


def from_mapping(cls: type, data: Any, where: str = "") -> Any:
    """Dataclass ``cls`` from a YAML mapping; every key checked, every error names its path."""
    label = where or "the pipeline file"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{label}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    renamed = alias_names(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key in renamed and renamed[key] not in data:
            key = renamed[key]
        if key not in names:
            raise UserError(f"unknown key {path!r}; allowed keys{' in ' + where if where else ''}: {', '.join(names)}")
        kwargs[key] = convert(hints[key], value, path)
    for key in getattr(cls, "REQUIRED", ()):
        if not kwargs.get(key):
            raise UserError(f"missing key {(where + '.' if where else '') + key!r} (required)")
    key_path = (lambda name: f"{where}.{name}") if where else str
    try:
        instance = cls(**kwargs)
    except UserError as exc:
        raise _relabel(exc, cls, key_path) from None
    validate(instance, key_path)
    return instance


def alias_names(cls: type) -> dict[str, str]:
    """``{former key: field}`` for the ``keys`` of ``cls``'s options (``batch_size`` -> ``per_device_train_batch_size``)."""
    return {key: f.name for f in dataclasses.fields(cls) for key in f.metadata.get("keys", ())}


def load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` of a bounded document without aliases; a :class:`UserError` naming ``what``.

    Aliases (``*name``) are refused before anything is built: a few hundred bytes of nested aliases
    expand to gigabytes (a "billion laughs" document), and no langgraft file needs them.
    """

    if len(text) > MAX_YAML_CHARACTERS:
        raise UserError(f"{what}: {len(text)} characters is too long for a configuration (at most "
                        f"{MAX_YAML_CHARACTERS}); check that this is the right file")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise UserError(f"{what}: YAML aliases (*{event.anchor}) are not supported; write the value out")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UserError(f"{what}: not valid YAML: {reason}{where}") from None


def parse_pairs(pairs: typing.Iterable[str], what: str, example: str, cls: type | None = None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a mapping; each value read as a YAML scalar or flow list (:func:`load_yaml`).

    ``KEY`` alone means ``KEY=true`` (a switch). With ``cls``, ``no-KEY`` alone sets the boolean
    option ``KEY`` of ``cls`` to false (as ``--no-key`` does on the CLI). One :class:`UserError`
    line for a malformed pair.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, has_value, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not key:
            raise UserError(f"{what} {pair!r}: expected KEY=VALUE, e.g. {what} {example}")
        if not has_value:
            negated = key[3:] if key.startswith("no_") else None
            switches = _switches(cls) if cls is not None else set()
            if negated in switches and key not in switches:
                result[negated] = False
            else:
                result[key] = True
            continue
        if len(text) > MAX_PAIR_VALUE:
            raise UserError(f"{what} {key}: the value is {len(text)} characters long; at most {MAX_PAIR_VALUE}")
        result[key] = load_yaml(text, f"{what} {pair!r}") if text.strip() else ""
        if isinstance(result[key], dict):
            raise UserError(f"{what} {pair!r}: give a scalar or a [list] as the value, not a mapping")
    return result


def _switches(cls: type) -> set[str]:
    """Names of the boolean options of ``cls`` (``bool`` or ``bool | None``)."""
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if _optional(hints[f.name])[0] is bool}


# --------------------------------------------------------------------------- argparse


def _argument_type(tp: Any, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if tp is str:
            return text
        if typing.get_origin(tp) in (Union, types.UnionType):  # e.g. a TSV column: an index or a header name
            choices = typing.get_args(tp)
            for choice in sorted(choices, key=lambda c: c is str):  # numbers first, text last
                try:
                    return _argument_type(choice, name)(text)
                except argparse.ArgumentTypeError:
                    continue
            raise argparse.ArgumentTypeError(f"expected {type_name(tp)}, got {text!r}")
        try:
            value = float(text) if tp is float else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {type_name(tp)}, got {text!r}") from None
        if tp is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        return value

    parse.__name__ = type_name(tp)
    return parse


def add_options(parser: Any, cls: type, *, skip: typing.Collection[str] = (), required: typing.Collection[str] = (),
                defaults: dict[str, Any] | None = None, omit_defaults: bool = False) -> None:
    """Add one ``--field-name`` argument per field of ``cls`` (in field order) to ``parser`` (or a group).

    ``required``: fields the command needs although the dataclass has a default (a field without
    a default is always required); ``defaults``: a command's own defaults (rare: e.g. a quicker
    budget for one command). Boolean fields are switches (``--x`` / ``--no-x`` when the default is
    true or None). Fields with a ``group`` go into an argument group of that title (created once per
    parser). ``omit_defaults``: options the user does not give are absent from the namespace (to
    tell what was given, e.g. the options of one of several module kinds).
    """
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata.get("cli", True) or not field.init:
            continue
        tp, optional = _optional(hints[field.name])
        has_default = field.default is not _MISSING or field.default_factory is not _MISSING
        default = defaults.get(field.name, field.default if field.default is not _MISSING else (
            field.default_factory() if field.default_factory is not _MISSING else None))
        help_text = field.metadata.get("help", "")
        bounds = range_text(field.metadata)
        kwargs: dict[str, Any] = {"dest": field.name, "help": help_text}
        if field.metadata.get("metavar"):
            kwargs["metavar"] = field.metadata["metavar"]
        origin = typing.get_origin(tp)
        if tp is bool:
            toggled = default or (default is None and optional)
            kwargs.update(action=argparse.BooleanOptionalAction if toggled else "store_true",
                          default=default if optional else bool(default))
        else:
            if origin in (list, tuple):
                item = typing.get_args(tp)[0]
                kwargs["nargs"] = "+"
                tp = item
                origin = typing.get_origin(tp)
            if origin is Literal:
                kwargs["choices"] = typing.get_args(tp)
                kwargs["type"] = type(kwargs["choices"][0])
            else:
                kwargs["type"] = _argument_type(tp, field.name)
            kwargs["default"] = default
            if field.name in required or not has_default:
                kwargs["required"] = True
                kwargs.pop("default")
            elif default is not None and default != [] and "default" not in help_text:
                shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
                kwargs["help"] = f"{help_text} (default: {shown})".lstrip()
            if bounds:
                kwargs["help"] = f"{kwargs['help']}; {bounds}"
        if omit_defaults and "default" in kwargs:
            kwargs["default"] = argparse.SUPPRESS
        title = field.metadata.get("group")
        target = parser
        if title:
            if title not in groups:
                groups[title] = next((g for g in getattr(parser, "_action_groups", ()) if g.title == title), None) \
                    or parser.add_argument_group(title)
            target = groups[title]
        target.add_argument(flag(field.name), **kwargs)
        for alias in field.metadata.get("aliases", ()):
            hidden = {k: v for k, v in kwargs.items() if k not in ("help", "required", "default")}
            target.add_argument(alias, **hidden, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """``cls`` from the parsed CLI namespace (fields the command did not add keep their defaults).

    Range errors name the CLI flag (``--max-steps must be >= 1, got 0``).
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, f.name) and f.name not in fixed}
    try:
        instance = cls(**values, **fixed)
    except UserError as exc:
        raise _relabel(exc, cls, flag) from None
    validate(instance, flag)
    return instance


def _relabel(exc: UserError, cls: type, label: Callable[[str], str]) -> UserError:
    """A ``__post_init__`` message that starts with a field name (``max_steps ...``) names it as ``label`` does."""
    text = str(exc)
    for field in dataclasses.fields(cls):
        if text.startswith(field.name + " ") or text.startswith(field.name + ":"):
            return UserError(label(field.name) + text[len(field.name):])
    return exc


def defaults(cls: type) -> dict[str, Any]:
    """``{field: default}`` of ``cls`` (what the CLI, the YAML and Python all start from)."""
    return {f.name: f.default if f.default is not _MISSING else f.default_factory()
            for f in dataclasses.fields(cls) if f.default is not _MISSING or f.default_factory is not _MISSING}


def result_values(instance: Any) -> dict[str, Any]:
    """``{field: value}`` of the options that change what a run computes (``result=True``, the default).

    What a stage's cache key should hold of an options dataclass: precision and learning rate do
    change the result, logging and checkpoint cadence do not.
    """
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.metadata.get("result", True)}
