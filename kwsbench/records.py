"""Typed records from the files and flags a user writes: one loader for plans, noise definitions,
baselines, manifests and recipes.

A record is a dataclass; its type hints are the schema. `read_yaml` turns a file into plain data
(a missing, non-UTF-8 or non-YAML file is a BadInputError naming the file) and `build` checks every
field of a mapping against the record's hints, then against the limits a field declares in its
metadata (`limits(...)`), so a wrong type or an absurd value is refused where it enters, with the
file (or flag), the field and the expected form in the message, never where it would break later.

Types understood: str, int, float (finite), bool, None-able (`X | None`), `list[X]`, `tuple[X, ...]`,
`tuple[X, Y]`, `dict[str, X]`, `Literal[...]`, nested records, and `Any` (unchecked).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from kwsbench.errors import BadInputError

R = TypeVar("R")
_MISSING = dataclasses.MISSING


def limits(*, lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] | None = None,
           nonempty: bool = False, check: Callable[[Any], str] | None = None, help: str = "") -> dict[str, Any]:
    """Field metadata: numeric bounds (inclusive; a list's numbers each), allowed strings, a non-empty list, or
    `check(value) -> problem` ('' when fine) for a rule that bounds cannot say. `help` says what to do."""
    return {"lo": lo, "hi": hi, "choices": choices, "nonempty": nonempty, "check": check, "help": help}


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed YAML document of `path` (a `what`, e.g. "plan file"); BadInputError when the file is missing,
    unreadable, not UTF-8 or not YAML."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as err:
        raise BadInputError(f"{what} {path} not found; check the path") from err
    except IsADirectoryError as err:
        raise BadInputError(f"{what} {path} is a folder, not a file") from err
    except OSError as err:
        raise BadInputError(f"{what} {path} cannot be read ({err.strerror or err}); check its permissions") from err
    except UnicodeDecodeError as err:
        raise BadInputError(
            f"{what} {path} is not UTF-8 text (byte {err.start} is 0x{err.object[err.start]:02x}); "
            "save it as UTF-8") from err
    try:  # libyaml's safe loader where PyYAML has it: the same documents, ~10x faster (manifests are 20-40 kB)
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise BadInputError(f"{what} {path} is not valid YAML ({' '.join(str(err).split())}); fix the syntax "
                            "where shown") from err


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """`read_yaml` for files that must hold a mapping (an empty file is an empty mapping)."""
    raw = read_yaml(path, what)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInputError(f"{what} {path} must hold a mapping of keys, got a {_kind(raw)}; write one KEY: VALUE "
                            "per line")
    return raw


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A record's resolved field types, once per class: resolving the string annotations compiles each one, and a
    manifest builds a record per entry (~150 for the project's)."""
    return typing.get_type_hints(cls)


def build(cls: type[R], raw: Any, where: str, *, text: bool = False, label: Callable[[str], str] | None = None,
          prefix: str = "") -> R:
    """An instance of record `cls` from mapping `raw`, every field checked (unknown, missing, mistyped, out of
    range); BadInputError names `where` and the field. `text`: values may be strings to parse (command-line
    flags). `label(field)` names a field for the user (e.g. its flag); default: the field's (dotted) name."""
    name_of = label or (lambda n: n)
    if not isinstance(raw, dict):
        what = name_of(prefix.rstrip(".")) if prefix else "the file"
        raise BadInputError(f"{where}: {what} must be a mapping of keys, got a {_kind(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        raise BadInputError(f"{where}: unknown key {', '.join(name_of(prefix + k) for k in unknown)}. "
                            f"Known keys here: {', '.join(sorted(fields))}; fix or remove it.")
    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise BadInputError(f"{where}: missing required key {name_of(prefix + name)}; add it")
            continue
        kwargs[name] = check(raw[name], hints[name], where, name_of(prefix + name), text=text, meta=f.metadata)
    return cls(**kwargs)


def check(value: Any, hint: Any, where: str, name: str, *, text: bool = False, meta: Any = None) -> Any:
    """`value` checked against type `hint` (and the limits in `meta`) and converted (int -> float, list -> tuple)."""
    meta = meta or {}
    try:
        out = _convert(value, hint, where, name, text)
    except BadInputError as err:
        if not meta.get("help"):
            raise
        raise BadInputError(f"{str(err).rsplit('; ', 1)[0]}; {meta['help']}") from None
    problem = _limit_problem(out, meta)
    if problem:
        todo = meta.get("help") or "fix the value"
        raise BadInputError(f"{where}: {name} {problem}, got {_show(value)}; {todo}")
    return out


def _convert(value: Any, hint: Any, where: str, name: str, text: bool) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where, name, text)
        shaped = None  # the error of the alternative of the value's own shape (a mapping for a record...)
        for a in inner:  # the first alternative that accepts the value
            try:
                return _convert(value, a, where, name, text)
            except BadInputError as err:
                if _same_shape(value, a):
                    shaped = shaped or err
        raise shaped or _wrong(where, name, hint, value)
    if origin is Literal:
        if value not in args:
            raise BadInputError(
                f"{where}: {name} must be one of {', '.join(map(str, args))}, got {_show(value)}; pick one of them")
        return value
    if origin in (list, tuple):
        return _sequence(value, hint, origin, args, where, name, text)
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, name, hint, value)
        return {_convert(k, args[0], where, f"{name} key", text): _convert(v, args[1], where, f"{name}.{k}", text)
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, text=text, prefix=f"{name}.")
    return _scalar(value, hint, where, name, text)


def _same_shape(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if isinstance(value, dict):
        return origin is dict or dataclasses.is_dataclass(hint)
    if isinstance(value, list | tuple):
        return origin in (list, tuple)
    return False


def _sequence(value: Any, hint: Any, origin: type, args: tuple, where: str, name: str, text: bool) -> Any:
    if not isinstance(value, list | tuple):
        raise _wrong(where, name, hint, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _wrong(where, name, hint, value)
        return tuple(_convert(v, a, where, f"{name}[{i}]", text) for i, (v, a) in enumerate(zip(value, args,
                                                                                                 strict=True)))
    item = args[0] if args else Any
    items = [_convert(v, item, where, f"{name}[{i}]", text) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _scalar(value: Any, hint: Any, where: str, name: str, text: bool) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _wrong(where, name, hint, value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _wrong(where, name, hint, value)
    if hint is float:
        number = value
        if text and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _wrong(where, name, hint, value) from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _wrong(where, name, hint, value)
        if not math.isfinite(number):
            raise BadInputError(f"{where}: {name} must be a finite number, got {_show(value)}; give a finite value")
        return float(number)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, name, hint, value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _wrong(where, name, hint, value)


def _limit_problem(value: Any, meta: Any) -> str:
    if value is None:
        return ""
    if meta.get("nonempty") and isinstance(value, list | tuple | str) and not value:
        return "must not be empty"
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"must be one of {', '.join(choices)}"
    lo, hi = meta.get("lo"), meta.get("hi")
    numbers = value if isinstance(value, list | tuple) else [value]
    for v in numbers:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if lo is not None and v < lo or hi is not None and v > hi:
                return _range_text(lo, hi)
    rule = meta.get("check")
    return rule(value) if rule else ""


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"must be within {lo:g}..{hi:g}"
    return f"must be >= {lo:g}" if lo is not None else f"must be <= {hi:g}"


def describe(hint: Any) -> str:
    """A type hint in words, for messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" (or null)" if type(None) in args else "")
    if origin is list or (origin is tuple and args and args[-1] is Ellipsis):
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if origin is tuple:
        return f"a list of {len(args)} values [{', '.join(describe(a) for a in args)}]"
    if origin is dict:
        return f"a mapping of {_plural(describe(args[1]))}"
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            text = text[len(article):]
            break
    return text if text.endswith("s") else f"{text}s"


def _wrong(where: str, name: str, hint: Any, value: Any) -> BadInputError:
    return BadInputError(f"{where}: {name} must be {describe(hint)}, got {_show(value)}; fix its type")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number"}.get(type(value), type(value).__name__)
