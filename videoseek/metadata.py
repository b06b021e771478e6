"""User metadata of a video: one set of rules for every way it enters (upload, CLI, library, the store).

Metadata is stored in the payload of every clip of the video, so it must be something both stores can write
*and read back*. Measured with qdrant-edge-py 0.9.0 and qdrant-client 1.20.0 local mode (payload depth counts
the payload object itself, then ``metadata``, then the user's values):

- Qdrant Edge accepts any depth on upsert, then fails: searching a point nested 128 containers deep fails
  (``Failed to deserialize payload: recursion limit exceeded``), and from 124 the shard no longer opens
  (``failed to read WAL entry``). qdrant-client local mode fails searches from about 340 levels
  (RecursionError; the exact depth follows the Python stack) and upserts near 900. A real server (not
  measured: none here) parses requests with serde_json, whose default limit is 128 levels for the whole
  request. Python's ``json.loads`` raises RecursionError near 1,000. Hence a limit far below all of them.
- NaN and Infinity: Edge refuses them (TypeError), local mode stores them; the JSON a server gets cannot
  hold them. Integers: Edge keeps -2**63 .. 2**64-1 exactly, turns bigger ones into floats and refuses one
  beyond a float's range (TypeError); payload indexes and filters are signed 64-bit. Hence finite numbers
  and signed 64-bit integers only.
- Strings with a lone surrogate (``"\\ud800"``, which Python's JSON parser accepts) are refused by Edge.
- Keys: ``.``, ``[``, spaces and the empty key all filter fine when the key is quoted (``metadata."a.b"``)
  in both stores; a double quote cannot appear in a quoted JSON path segment at all (neither parser has an
  escape), so such a key could be stored but never filtered on. The empty key is refused too: the search
  API's metadata filter needs at least one character.

Every refusal is an :class:`InvalidMetadata` naming the rule and the path of the offending value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# The whole metadata as UTF-8 JSON. It is copied into every clip's payload (a 1-hour video has ~700 clips).
MAX_METADATA_BYTES = 64 * 1024
# Containers nested inside each other, the metadata object itself counting as 1. Qdrant Edge stops reading a
# point back at 124 levels of payload (see the module docstring); real metadata rarely needs 4.
MAX_METADATA_DEPTH = 16
# Every value (scalars and containers, at any depth) counted together: bounds the work each clip's payload
# costs the store and keeps validating cheap; a list of a thousand tags still fits.
MAX_METADATA_VALUES = 2048
# Keys: the search API's metadata filter takes keys of at most this many characters.
MAX_METADATA_KEY_CHARS = 128
# Strings: the search API's metadata filter matches strings of at most this many characters, so any stored
# string can be filtered on.
MAX_METADATA_STRING_CHARS = 1024
# What a payload index (and a filter) holds as an integer: signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Characters a key cannot hold: a double quote cannot be written inside a quoted JSON path segment, and
# backslashes and control characters make paths ambiguous or unprintable.
_KEY_FORBIDDEN = re.compile(r'["\\\x00-\x1f\x7f]')
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A JSON string (escapes included) or one of the structural characters that nesting depends on.
_NESTING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_PATH_KEY_CHARS = 40  # how much of a key an error message quotes
_MAX_INTEGER_DIGITS = 19  # len(str(INT64_MAX)): more digits are out of range whatever they are


class MetadataRule(StrEnum):
    """Which rule a refused metadata value breaks (the API returns it as ``rule``)."""

    JSON = "json"  # not UTF-8 JSON text
    OBJECT = "object"  # the top level is not a JSON object
    TYPE = "type"  # a value JSON cannot hold (library callers: tuples, bytes, numpy scalars, ...)
    DEPTH = "depth"
    VALUES = "values"
    SIZE = "size"
    KEY = "key"
    STRING = "string"
    NUMBER = "number"  # NaN or Infinity
    INTEGER = "integer"  # outside the signed 64-bit range


class InvalidMetadata(ValueError):
    """Metadata refused by one rule; the message is ``<path>: <what is wrong and what is allowed>``."""

    def __init__(self, rule: MetadataRule, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.rule = rule
        self.path = path
        self.problem = problem


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a metadata key, or None when it can (also what the search filter accepts)."""
    if not isinstance(key, str):
        return f"keys must be strings, not {type(key).__name__}"
    if not key:
        return "the empty key cannot be filtered on; use 1 to 128 characters"
    if len(key) > MAX_METADATA_KEY_CHARS:
        return f"key is {len(key)} characters long; the limit is {MAX_METADATA_KEY_CHARS}"
    if _KEY_FORBIDDEN.search(key):
        return (
            "keys cannot hold double quotes, backslashes or control characters (filters could not name them)"
        )
    if _SURROGATE.search(key):
        return "key is not valid Unicode (it holds a lone surrogate)"
    return None


def child_path(path: str, key: str) -> str:
    """``path.key``, or ``path["odd key"]`` when the key is not a plain name (long keys shortened)."""
    if _PLAIN_KEY.fullmatch(key) and len(key) <= _PATH_KEY_CHARS:
        return f"{path}.{key}"
    shown = key if len(key) <= _PATH_KEY_CHARS else key[:_PATH_KEY_CHARS] + "..."
    return f"{path}[{json.dumps(shown)}]"


@dataclass(frozen=True)
class _Unstorable:
    """A number the JSON parser met that no store can hold; the walk reports it with its path."""

    text: str
    rule: MetadataRule


def _parse_int(text: str) -> int | _Unstorable:
    # Checked before int(): a 5,000-digit literal would otherwise raise ValueError inside the parser.
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS:
        return _Unstorable(text, MetadataRule.INTEGER)
    return int(text)


def _parse_float(text: str) -> float | _Unstorable:
    value = float(text)
    return value if math.isfinite(value) else _Unstorable(text, MetadataRule.NUMBER)  # 1e999


def _parse_constant(text: str) -> _Unstorable:  # NaN, Infinity, -Infinity: Python's parser accepts them
    return _Unstorable(text, MetadataRule.NUMBER)


def _integer_problem(shown: str) -> str:
    return (
        f"{shown} is outside the signed 64-bit range the store keeps ({INT64_MIN}..{INT64_MAX}); "
        "send it as a string"
    )


def _shown_integer(value: int) -> str:
    # str() of a huge int is slow, and refused beyond 4,300 digits
    return str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"


def _shown_literal(text: str) -> str:
    digits = len(text.lstrip("-"))
    return text if digits <= 2 * _MAX_INTEGER_DIGITS else f"a {digits}-digit integer"


def _depth_error(path: str) -> InvalidMetadata:
    return InvalidMetadata(
        MetadataRule.DEPTH,
        path,
        f"nested deeper than {MAX_METADATA_DEPTH} levels (lists and objects inside each other)",
    )


class _Walk:
    """Checks one metadata value; recursion is bounded by MAX_METADATA_DEPTH (cycles hit it too)."""

    def __init__(self) -> None:
        self.values = 0

    def value(self, value: object, path: str, depth: int) -> None:
        self.values += 1
        if self.values > MAX_METADATA_VALUES:
            raise InvalidMetadata(
                MetadataRule.VALUES, path, f"more than {MAX_METADATA_VALUES} values in all (at any depth)"
            )
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidMetadata(MetadataRule.INTEGER, path, _integer_problem(_shown_integer(value)))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidMetadata(MetadataRule.NUMBER, path, f"{value} is not a finite number")
        elif isinstance(value, str):
            self.string(value, path)
        elif isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise _depth_error(path)
            self.container(value, path, depth)
        elif isinstance(value, _Unstorable):
            if value.rule is MetadataRule.INTEGER:
                raise InvalidMetadata(value.rule, path, _integer_problem(_shown_literal(value.text)))
            raise InvalidMetadata(
                value.rule, path, f"{value.text} is not a finite number (JSON has no NaN or Infinity)"
            )
        else:
            raise InvalidMetadata(
                MetadataRule.TYPE,
                path,
                f"{type(value).__name__} is not a JSON value; "
                "use strings, numbers, booleans, null, lists and objects",
            )

    def container(self, value: dict[Any, Any] | list[Any], path: str, depth: int) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.value(item, f"{path}[{index}]", depth + 1)
            return
        for key, item in value.items():
            problem = key_problem(key)
            if problem is not None:
                shown = child_path(path, key) if isinstance(key, str) else f"{path}[{key!r}]"
                raise InvalidMetadata(MetadataRule.KEY, shown, problem)
            self.value(item, child_path(path, key), depth + 1)

    @staticmethod
    def string(value: str, path: str) -> None:
        if len(value) > MAX_METADATA_STRING_CHARS:
            raise InvalidMetadata(
                MetadataRule.STRING,
                path,
                f"string is {len(value)} characters long; the limit is {MAX_METADATA_STRING_CHARS}",
            )
        if _SURROGATE.search(value):
            raise InvalidMetadata(
                MetadataRule.STRING, path, "string is not valid Unicode (it holds a lone surrogate)"
            )


def check_metadata(value: object, where: str = "metadata") -> dict[str, Any]:
    """``value`` if it is metadata both stores can keep and read back; else :class:`InvalidMetadata`."""
    if not isinstance(value, dict):
        raise InvalidMetadata(
            MetadataRule.OBJECT,
            where,
            f'metadata must be a JSON object, e.g. {{"camera": "front-door"}}, not {type(value).__name__}',
        )
    _Walk().value(value, where, 1)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            MetadataRule.SIZE, where, f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
        )
    return value


def _check_nesting(text: str, where: str) -> None:
    """Refuse JSON text nested deeper than the limit *before* parsing it (the parser recurses per level)."""
    # One frame per open container: [is_object, array index, current object key, expecting a key]
    stack: list[list[Any]] = []
    for match in _NESTING_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if stack and stack[-1][0] and stack[-1][3]:
                try:
                    stack[-1][2] = json.loads(token)
                except ValueError:
                    stack[-1][2] = token[1:-1]
                stack[-1][3] = False
        elif token in "[{":
            if len(stack) >= MAX_METADATA_DEPTH:
                raise _depth_error(_stack_path(where, stack))
            stack.append([token == "{", 0, None, True])
        elif token in "]}":
            if stack:
                stack.pop()
        elif stack:  # a comma
            stack[-1][1] += 1
            stack[-1][3] = True


def _stack_path(where: str, stack: list[list[Any]]) -> str:
    path = where
    for is_object, index, key, _ in stack:
        path = child_path(path, str(key)) if is_object else f"{path}[{index}]"
    return path


def parse_metadata(raw: str | bytes, where: str = "metadata") -> dict[str, Any]:
    """Metadata from JSON text (an upload's field, a command-line option), checked by every rule.

    Blank text is no metadata. Never raises anything but :class:`InvalidMetadata`: not even for 20,000 levels
    of nesting, ``NaN`` or a 5,000-digit integer, all of which Python's own parser lets through or chokes on.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            MetadataRule.SIZE, where, f"metadata is {len(data)} bytes; the limit is {MAX_METADATA_BYTES}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMetadata(MetadataRule.JSON, where, f"metadata is not UTF-8 text: {exc}") from exc
    if not text.strip():
        return {}
    _check_nesting(text, where)
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except json.JSONDecodeError as exc:
        raise InvalidMetadata(MetadataRule.JSON, where, f"metadata is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # cannot happen after _check_nesting; never let it become a 500
        raise _depth_error(where) from exc
    return check_metadata(value, where)
