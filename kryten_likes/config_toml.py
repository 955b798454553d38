"""From a parsed TOML document to the config classes, strictly.

A cattrs converter structures the tables into the section classes: a
value of the wrong TOML type is refused rather than coerced (`true` is no
int, `"3"` no number), and unknown keys are refused. What cattrs raises is
a tree of exceptions; `problem_lines` flattens it into one line per leaf that
names the dotted key (`likes.rate_burst: expected int, got str`), because
the person reading it has the file open and needs the line to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from .config_sections import BadValue

__all__ = ["STRUCTURE_ERRORS", "WrongType", "make_converter", "problem_lines"]


class WrongType(TypeError):
    """A TOML value of the wrong type for its key."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {_toml_type_name(value)}")


def _toml_type_name(value: object) -> str:
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _structure_int(value: object, _type: type) -> int:
    # bool is an int subclass in Python, but `rate_burst = true` is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType("int", value)
    return value


def _structure_float(value: object, _type: type) -> float:
    # TOML writes `86400` as an int; that is a fine float.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WrongType("float", value)
    return float(value)


def _structure_bool(value: object, _type: type) -> bool:
    if not isinstance(value, bool):
        raise WrongType("bool", value)
    return value


def _structure_str(value: object, _type: type) -> str:
    if not isinstance(value, str):
        raise WrongType("str", value)
    return value


def make_converter() -> cattrs.Converter:
    """A converter that refuses unknown keys and values of the wrong TOML type."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)

    # cattrs would iterate a string into its characters; `servers` must be a list.
    structure_str_items = converter.get_structure_hook(tuple[str, ...])

    def structure_servers(value: object, type_: type) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise WrongType("list of str", value)
        return structure_str_items(value, type_)

    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], structure_servers)

    def section_hook_factory(cls: type) -> Callable[[Any, type], Any]:
        structure_fields = make_dict_structure_fn(cls, converter)

        def structure_section(value: object, type_: type) -> Any:
            # Without this, `likes = 3` surfaces as an AttributeError deep in cattrs.
            if not isinstance(value, Mapping):
                raise WrongType("table", value)
            return structure_fields(value, type_)

        return structure_section

    converter.register_structure_hook_factory(attrs.has, section_hook_factory)
    return converter


def problem_lines(exc: BaseException, path: str) -> Iterator[str]:
    """One line per leaf error of a cattrs exception tree, with dotted key paths.

    `cattrs.transform_error` walks the same tree but renders `msg @ $.path`
    strings; this walk keeps the path structured so that unknown keys and
    validator errors can name the key itself rather than its table.
    """
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from problem_lines(sub, _join(path, note.name))
        for sub in without:
            yield from problem_lines(sub, path)
    elif isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from problem_lines(sub, f"{path}[{note.index!r}]")
        for sub in without:
            yield from problem_lines(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield f"unknown key '{_join(path, key)}'"
    elif isinstance(exc, BadValue):
        yield f"{_join(path, exc.key)}: {exc.requirement}"
    else:
        yield f"{path or 'config'}: {exc}"


# What structuring a document can raise; `problem_lines` turns each into lines.
STRUCTURE_ERRORS = (ClassValidationError, IterableValidationError, BadValue, WrongType)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
