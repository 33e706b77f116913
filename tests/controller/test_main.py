"""Turning validation errors into one sentence (unit tests of the pure formatter)."""

from __future__ import annotations

from controller.main import describe_validation


def test_messages_name_the_field_and_the_problem() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "command"), "msg": "Field required"},
        {"type": "extra_forbidden", "loc": ("body", "resources", "gpus"), "msg": "Extra inputs are not permitted"},
        {"type": "greater_than_equal", "loc": ("body", "resources", "pids"), "msg": "Input should be >= 16"},
    ]
    assert describe_validation(errors) == (
        "command: is required; resources.gpus: is not a field fleetgate knows; resources.pids: Input should be >= 16"
    )


def test_invalid_json_is_named_as_such() -> None:
    message = describe_validation([{"type": "json_invalid", "loc": ("body", 12), "ctx": {"error": "Expecting value"}}])
    assert message == "the request body is not valid JSON (Expecting value)"


def test_bad_sandbox_id_shows_what_one_looks_like() -> None:
    error = {"type": "string_pattern_mismatch", "loc": ("path", "sandbox_id"), "input": "nope", "msg": "x"}
    assert "they look like sb_0123456789ab" in describe_validation([error])


def test_long_lists_are_cut_short() -> None:
    errors = [{"type": "missing", "loc": ("body", f"f{i}"), "msg": ""} for i in range(8)]
    assert describe_validation(errors).endswith("(and 3 more)")
