"""JSON text or already decoded: `decoded` and `json_object`, for text, bytes, decoded values, None and
invalid JSON under each policy."""

from __future__ import annotations

import orjson
import pytest

from babylon_console.core.jsonvalue import decoded, json_object


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, null]}', b'{"a": [1, 2.5, null]}'])
def test_json_text_as_str_or_bytes_is_decoded(text: str | bytes) -> None:
    assert decoded(text) == {"a": [1, 2.5, None]}


def test_scalar_json_text_is_decoded_too() -> None:
    assert decoded('"headline"') == "headline"
    assert decoded("3") == 3
    assert decoded("null") is None


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], 3, 2.5, True, None])
def test_a_value_already_decoded_is_returned_as_it_is(value: object) -> None:
    assert decoded(value) is value


@pytest.mark.parametrize("text", ["{not json", b"{not json", "", "NaN"])
def test_invalid_json_text_raises_without_a_policy(text: str | bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        decoded(text)
    with pytest.raises(ValueError):  # JSONDecodeError is a ValueError: pydantic validators report it
        decoded(text)


@pytest.mark.parametrize("text", ["{not json", b"{not json"])
def test_invalid_json_text_gives_what_the_policy_makes_of_it(text: str | bytes) -> None:
    assert decoded(text, on_error=lambda raw: raw) is text
    assert decoded(text, on_error=lambda raw: {"value": raw}) == {"value": text}
    assert decoded(text, on_error=lambda _raw: None) is None


def test_the_policy_is_not_asked_about_valid_text_or_decoded_values() -> None:
    def never(raw: str | bytes) -> object:
        raise AssertionError(f"asked about {raw!r}")

    assert decoded("[1]", on_error=never) == [1]
    assert decoded(None, on_error=never) is None
    assert decoded({"a": 1}, on_error=never) == {"a": 1}


@pytest.mark.parametrize("value", ['{"a": 1}', b'{"a": 1}', {"a": 1}])
def test_json_object_of_an_object(value: object) -> None:
    assert json_object(value) == {"a": 1}


@pytest.mark.parametrize("value", [None, "", "{not json", b"{not json", "[1, 2]", '"text"', "3", [1, 2], 3, "null"])
def test_json_object_of_anything_else_is_empty(value: object) -> None:
    assert json_object(value) == {}
