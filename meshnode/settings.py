"""Settings described once: the machinery behind ``config.toml``.

Every setting is a dataclass field made with :func:`setting`: its default, its help text,
its check and (when it differs from the field's name) its TOML key. From that one
description come

- the loader's type checks (:func:`read_table`: unknown keys and wrong types are errors
  that name the key),
- the validator (:func:`check`: each field's check, then the class's cross-field
  ``invariants``), and
- the commented template ``meshnode init`` writes (:func:`render_section`,
  :func:`render_example`),

so a default, a key or its documentation cannot drift apart. ``meshnode.config`` (the node's
sections), ``meshnode.agents.llm`` (``[llm]``) and ``meshnode.agents.specs`` (the
``[[agents]]`` example) describe their settings this way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

from meshnode.errors import ConfigError

T = TypeVar("T")
#: A value's problem, as the rest of the message after the key (": must be positive", or
#: " 'x': use a or b" to show the value); None when the value is fine.
Check = Callable[[Any], str | None]
#: How wide the comment lines of a template are.
WIDTH = 90


@dataclass(frozen=True, slots=True)
class Doc:
    help: str
    check: Check | None = None
    #: The TOML key, when it is not the field's name.
    key: str = ""
    #: For a field of a class that spans several tables (NodeConfig): its table.
    section: str = ""
    #: Environment variables that fill the setting when the file leaves it empty; the
    #: template then shows it empty.
    env: tuple[str, ...] = ()
    #: The value a commented example shows (for settings without a default).
    example: Any = None


def setting(
    default: T,
    help: str,
    *,
    check: Check | None = None,
    key: str = "",
    section: str = "",
    env: tuple[str, ...] = (),
    example: Any = None,
    repr: bool = True,
) -> T:
    """A dataclass field with a default and its documentation."""
    doc = Doc(help, check, key, section, env, example)
    field: T = dataclasses.field(default=default, metadata={"doc": doc}, repr=repr)
    return field


def documented(help: str, *, example: Any = None, check: Check | None = None) -> dict[str, Doc]:
    """The metadata documenting a field without a default: ``field(metadata=documented(...))``
    (a plain ``field`` call, so that type checkers still see the field as required)."""
    return {"doc": Doc(help, check, example=example)}


def doc_of(field: dataclasses.Field[Any]) -> Doc | None:
    doc = field.metadata.get("doc")
    return doc if isinstance(doc, Doc) else None


def settings_of(
    cls: type, section: str | None = None
) -> list[tuple[str, dataclasses.Field[Any], Doc]]:
    """(TOML key, field, doc) of each of ``cls``'s settings in order; with ``section``, of
    that table only (a class spanning several tables may use one key in two of them)."""
    out = []
    for f in dataclasses.fields(cls):
        doc = doc_of(f)
        if doc is not None and (section is None or doc.section == section):
            out.append((doc.key or f.name, f, doc))
    return out


def documented_fields(
    cls: type, section: str | None = None
) -> dict[str, tuple[dataclasses.Field[Any], Doc]]:
    """TOML key -> (field, doc) of the settings of ``cls`` (of one ``section``)."""
    return {key: (f, doc) for key, f, doc in settings_of(cls, section)}


# ---- reading ---------------------------------------------------------------------------


def _toml_type(hint: Any) -> type:
    """The TOML value type of a field annotation: str, int, float, bool or tuple (a list)."""
    origin = get_origin(hint)
    if origin is tuple:
        return tuple
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _toml_type(inner)
    if hint in (str, int, float, bool):
        return typing.cast(type, hint)
    raise TypeError(f"no TOML type for {hint!r}")


def typed(where: str, value: Any, expected: type) -> Any:
    """``value`` as the field type ``expected`` (an int is a float too), or a ConfigError."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if expected is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def unknown(where: str, key: str, known: Iterable[str]) -> ConfigError:
    names = ", ".join(known)
    return ConfigError(f"{where}.{key}: unknown setting" + (f" (known: {names})" if names else ""))


def read_table(
    cls: type, table: Any, where: str, *, section: str | None = None
) -> dict[str, Any]:
    """The values of a TOML table for ``cls``'s fields (attribute name -> typed value).

    ``where`` names the table in errors (``"/home/n/config.toml: gossip"``); ``section``
    picks the fields of one table of a class that spans several (NodeConfig).
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    known = documented_fields(cls, section)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise unknown(where, key, known)
        f, _ = known[key]
        values[f.name] = typed(f"{where}.{key}", value, _toml_type(hints[f.name]))
    return values


# ---- checking --------------------------------------------------------------------------


def check(settings: Any, where: str) -> None:
    """Run every field's check, then the cross-field ``invariants()`` of ``settings`` (which
    yields (key or "", problem) pairs); the first problem is raised as a ConfigError."""
    for key, f, doc in settings_of(type(settings)):
        problem = doc.check(getattr(settings, f.name)) if doc.check else None
        if problem:
            raise ConfigError(f"{doc.section or where}.{key}{problem}")
    invariants: Callable[[], Iterator[tuple[str, str]]] | None = getattr(
        settings, "invariants", None
    )
    for key, problem in invariants() if invariants else ():
        raise ConfigError(f"{where}.{key}{problem}" if key else f"{where}{problem}")


def positive(value: float) -> str | None:
    # TOML allows nan and inf: neither is a usable interval or rate.
    return None if math.isfinite(value) and value > 0 else ": must be a positive number"


def at_least(low: int) -> Check:
    return lambda value: None if value >= low else f": must be at least {low}"


def within(low: float, high: float, unit: str = "") -> Check:
    said = f": must be {unit + ' ' if unit else ''}in {low:g}..{high:g}"
    return lambda value: None if math.isfinite(value) and low <= value <= high else said


def one_of(*choices: str) -> Check:
    said = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    return lambda value: None if value in choices else f" {value!r}: use {said}"


def accepted_by(validate: Callable[[Any], object], *errors: type[Exception]) -> Check:
    """A check by a validating function: the message of the error it raises is the problem."""

    def check_value(value: Any) -> str | None:
        try:
            validate(value)
        except errors as exc:
            return f": {exc}"
        return None

    return check_value


def each(check_one: Check) -> Check:
    """A check of every item of a list setting."""

    def check_all(values: Iterable[Any]) -> str | None:
        return next((p for p in map(check_one, values) if p), None)

    return check_all


# ---- the template ----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def comment(text: str, prefix: str = "# ") -> list[str]:
    return textwrap.wrap(text, WIDTH - len(prefix), initial_indent=prefix,
                         subsequent_indent=prefix, break_on_hyphens=False)


def render_section(name: str, settings: Any, *, intro: str = "",
                   section: str | None = None, values: Mapping[str, str] | None = None) -> str:
    """``[name]`` with each setting of ``settings`` at its value, its help above it.

    A setting filled from the environment is shown empty; ``values`` replaces the shown TOML
    text of some keys (the template's ``{network_id}`` placeholder).
    """
    lines = [f"[{name}]", *comment(intro)] if intro else [f"[{name}]"]
    for key, f, doc in settings_of(type(settings), section):
        shown = "" if doc.env else getattr(settings, f.name)
        lines += comment(doc.help)
        lines.append(f"{key} = {(values or {}).get(key) or toml_value(shown)}")
    return "\n".join(lines) + "\n"


def render_entry(header: str, item: Any, nested: Mapping[str, tuple[str, type]]) -> list[str]:
    """A ``[[header]]`` table: of an instance, its values; of a class, a documented example
    (each setting's help above its example, else its default). ``nested`` maps a field that
    holds an array of tables to their (header, class); those follow the plain settings."""
    example = isinstance(item, type)
    lines, tables = [f"[[{header}]]"], []
    for key, f, doc in settings_of(item if example else type(item)):
        helps = comment(doc.help) if example else []
        if key in nested:
            sub_header, sub_cls = nested[key]
            for sub in [sub_cls] if example else getattr(item, f.name):
                tables += ["", *helps, *render_entry(sub_header, sub, {})]
            continue
        if example:
            value = doc.example if doc.example is not None else f.default
        else:
            value = getattr(item, f.name)
        lines += [*helps, f"{key} = {toml_value(value)}"]
    return lines + tables
