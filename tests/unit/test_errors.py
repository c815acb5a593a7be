"""Domain errors: field violations and their prefixing."""

from __future__ import annotations

from clawq_server.errors import FieldViolation, PolicyDenied, ResourceExhausted


def test_prefixing_copies_the_error_and_leaves_the_original() -> None:
    """prefixed() returns a copy under the prefix; the original keeps its fields."""
    denied = PolicyDenied.field("args.path", "is outside every allowed root")
    moved = denied.prefixed("calls[2].")
    assert moved.violations == [
        FieldViolation("calls[2].args.path", denied.violations[0].description)
    ]
    assert denied.violations[0].field == "args.path"
    assert (type(moved), moved.message, moved.reason) == (
        PolicyDenied,
        denied.message,
        denied.reason,
    )


def test_prefixing_works_for_errors_with_keyword_only_arguments() -> None:
    """An error whose constructor needs keywords is copied without calling it again."""
    full = ResourceExhausted("queue full", retry_after=2.0)
    full.violations = [FieldViolation("calls", "too many")]
    moved = full.prefixed("x.")
    assert (type(moved), moved.retry_after, moved.violations[0].field) == (
        ResourceExhausted,
        2.0,
        "x.calls",
    )


def test_an_error_without_fields_is_returned_as_it_is() -> None:
    """Nothing to move: the same object, so a batch-wide error is never copied per call."""
    full = ResourceExhausted("queue full", retry_after=1.0)
    assert full.prefixed("calls[0].") is full
