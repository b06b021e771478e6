"""The metadata rules: what both stores can keep and read back, refused otherwise with the rule and the path."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from videoseek.metadata import (
    INT64_MAX,
    INT64_MIN,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_STRING_CHARS,
    MAX_METADATA_VALUES,
    InvalidMetadata,
    MetadataRule,
    check_metadata,
    parse_metadata,
)


def nested_text(levels: int, key: str = "x") -> str:
    """``{"x": [[...[1]...]]}`` with ``levels`` containers in all (the object counts as one)."""
    return f'{{"{key}": ' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


def refusal(raw: str | bytes) -> InvalidMetadata:
    with pytest.raises(InvalidMetadata) as caught:
        parse_metadata(raw)
    return caught.value


def deepest_allowed_path() -> str:
    # the container one level too deep sits under x and MAX_METADATA_DEPTH - 2 more lists
    return "metadata.x" + "[0]" * (MAX_METADATA_DEPTH - 1)


@pytest.mark.parametrize("levels", [MAX_METADATA_DEPTH + 1, 130, 20_000])
def test_nesting_deeper_than_the_limit_is_refused_with_the_path_of_the_value(levels: int) -> None:
    refused = refusal(nested_text(levels))
    assert refused.rule is MetadataRule.DEPTH
    assert refused.path == deepest_allowed_path()
    assert str(refused) == f"{deepest_allowed_path()}: nested deeper than {MAX_METADATA_DEPTH} levels" + (
        " (lists and objects inside each other)"
    )


def test_nesting_at_the_limit_is_accepted() -> None:
    value = parse_metadata(nested_text(MAX_METADATA_DEPTH))
    assert json.dumps(value) == nested_text(MAX_METADATA_DEPTH)


def test_python_values_nested_too_deep_or_in_a_cycle_are_refused_without_recursing_forever() -> None:
    deep: Any = 1
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(InvalidMetadata) as caught:
        check_metadata({"x": deep})
    assert (caught.value.rule, caught.value.path) == (MetadataRule.DEPTH, deepest_allowed_path())
    cycle: dict[str, Any] = {}
    cycle["again"] = cycle
    with pytest.raises(InvalidMetadata) as caught:
        check_metadata(cycle)
    assert caught.value.rule is MetadataRule.DEPTH


def test_the_depth_path_follows_object_keys_and_list_positions() -> None:
    inner = "[" * MAX_METADATA_DEPTH + "]" * MAX_METADATA_DEPTH
    refused = refusal(f'{{"a": 1, "b": {{"c.d": [0, {{"e": {inner}}}]}}}}')
    assert refused.path.startswith('metadata.b["c.d"][1].e[0]')
    assert refused.path.count("[0]") == MAX_METADATA_DEPTH - 4


@pytest.mark.parametrize(
    ("raw", "path", "shown"),
    [
        ('{"x": NaN}', "metadata.x", "NaN"),
        ('{"x": [1, Infinity]}', "metadata.x[1]", "Infinity"),
        ('{"a": {"b": -Infinity}}', "metadata.a.b", "-Infinity"),
        ('{"x": 1e999}', "metadata.x", "1e999"),
    ],
)
def test_numbers_that_are_not_finite_are_refused_although_python_parses_them(
    raw: str, path: str, shown: str
) -> None:
    refused = refusal(raw)
    assert (refused.rule, refused.path) == (MetadataRule.NUMBER, path)
    assert shown in str(refused)


@pytest.mark.parametrize("digits", [20, 4000, 5000])
def test_integers_beyond_signed_64_bits_are_refused_even_past_pythons_digit_limit(digits: int) -> None:
    refused = refusal('{"n": ' + "9" * digits + "}")
    assert (refused.rule, refused.path) == (MetadataRule.INTEGER, "metadata.n")
    assert "64-bit" in str(refused)


def test_the_signed_64_bit_range_is_kept_and_one_past_it_is_refused() -> None:
    assert parse_metadata(f'{{"lo": {INT64_MIN}, "hi": {INT64_MAX}}}') == {"lo": INT64_MIN, "hi": INT64_MAX}
    for value in (INT64_MAX + 1, INT64_MIN - 1, 10**5000):
        with pytest.raises(InvalidMetadata) as caught:
            check_metadata({"n": value})
        assert caught.value.rule is MetadataRule.INTEGER


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("", 'metadata[""]'),
        ('a"b', 'metadata["a\\"b"]'),
        ("a\\b", 'metadata["a\\\\b"]'),
        ("tab\there", 'metadata["tab\\there"]'),
        ("k" * (MAX_METADATA_KEY_CHARS + 1), 'metadata["' + "k" * 40 + '..."]'),
        ("\ud800", 'metadata["\\ud800"]'),
    ],
)
def test_keys_no_filter_could_name_are_refused(key: str, path: str) -> None:
    with pytest.raises(InvalidMetadata) as caught:
        check_metadata({"ok": 1, key: 1})
    assert (caught.value.rule, caught.value.path) == (MetadataRule.KEY, path)


def test_keys_with_dots_brackets_spaces_and_accents_are_kept() -> None:
    metadata = {
        "a.b": 1,
        "a[0]": 2,
        "a b": 3,
        "café": 4,
        "k" * MAX_METADATA_KEY_CHARS: 5,
        "nested": {"x.y": 6},
    }
    assert parse_metadata(json.dumps(metadata)) == metadata


def test_strings_too_long_or_not_unicode_are_refused() -> None:
    refused = refusal(json.dumps({"s": ["ok", "x" * (MAX_METADATA_STRING_CHARS + 1)]}))
    assert (refused.rule, refused.path) == (MetadataRule.STRING, "metadata.s[1]")
    refused = refusal('{"s": "\\ud800"}')  # Python's parser accepts a lone surrogate escape
    assert (refused.rule, refused.path) == (MetadataRule.STRING, "metadata.s")
    assert parse_metadata(json.dumps({"s": "x" * MAX_METADATA_STRING_CHARS, "nul": "a\x00b"}))


def test_too_many_values_and_too_many_bytes_are_refused() -> None:
    refused = refusal(json.dumps({"tags": list(range(MAX_METADATA_VALUES))}))
    assert refused.rule is MetadataRule.VALUES and refused.path.startswith("metadata.tags[")
    assert parse_metadata(json.dumps({"tags": list(range(MAX_METADATA_VALUES - 2))}))
    big = json.dumps({f"k{i}": "x" * 1000 for i in range(MAX_METADATA_BYTES // 1000 + 1)})
    assert refusal(big).rule is MetadataRule.SIZE
    with pytest.raises(InvalidMetadata) as caught:  # the same limit for library callers
        check_metadata({f"k{i}": "x" * 1000 for i in range(MAX_METADATA_BYTES // 1000 + 1)})
    assert caught.value.rule is MetadataRule.SIZE


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("[1, 2]", MetadataRule.OBJECT),
        ('"text"', MetadataRule.OBJECT),
        ("{nope", MetadataRule.JSON),
        (b"\xff\xfe", MetadataRule.JSON),
        ('{"a": 1} trailing', MetadataRule.JSON),
    ],
)
def test_text_that_is_not_a_json_object_is_refused(raw: str | bytes, rule: MetadataRule) -> None:
    refused = refusal(raw)
    assert (refused.rule, refused.path) == (rule, "metadata")


def test_blank_text_is_no_metadata() -> None:
    assert parse_metadata(b"") == {} and parse_metadata("  \n") == {}


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"t": (1, 2)}, "metadata.t"),
        ({"b": b"bytes"}, "metadata.b"),
        ({"s": {1, 2}}, "metadata.s"),
        ({"n": np.int64(3)}, "metadata.n"),
        ({1: "int key"}, "metadata[1]"),
    ],
)
def test_python_values_json_cannot_hold_are_refused(value: dict[Any, Any], path: str) -> None:
    with pytest.raises(InvalidMetadata) as caught:
        check_metadata(value)
    assert caught.value.path == path
    assert caught.value.rule in (MetadataRule.TYPE, MetadataRule.KEY)


def test_every_refusal_is_a_value_error_that_names_its_path() -> None:
    refused = refusal('{"x": NaN}')
    assert isinstance(refused, ValueError) and str(refused).startswith("metadata.x: ")
