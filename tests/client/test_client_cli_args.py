"""The CLI's parsing of key=value arguments and of submit-file lines."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from clawq.cli_commands import UsageError, parse_assignments, parse_value
from clawq.cli_submit_file import parse_line


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ('["ls","-l"]', ["ls", "-l"]),
        ('{"a": 1}', {"a": 1}),
        ("notes.txt", "notes.txt"),
        ("", ""),
        ('"123"', "123"),
        ("a=b", "a=b"),
    ],
)
def test_values_are_json_when_they_parse(text: str, value: object) -> None:
    """A value that parses as JSON is that JSON; anything else is the text itself."""
    assert parse_value(text) == value


def test_at_file_reads_the_file(tmp_path: Path) -> None:
    """key=@file reads the file's text."""
    source = tmp_path / "code.py"
    source.write_text("print('hi')\n")
    assert parse_assignments([f"code=@{source}", "x=1"]) == {"code": "print('hi')\n", "x": 1}


@pytest.mark.parametrize("word", ["novalue", "=x"])
def test_malformed_assignment_is_a_usage_error(word: str) -> None:
    """A word without key= is a usage error."""
    with pytest.raises(UsageError):
        parse_assignments([word])


def test_submit_file_line_with_options() -> None:
    """A line's tool, args and call options become one Call."""
    call = parse_line(
        '{"tool": "read_file", "args": {"path": "a"}, "idempotency_key": "k", "delay": 2}'
    )
    assert (call.tool, dict(call.args), call.idempotency_key) == ("read_file", {"path": "a"}, "k")
    assert call.delay == timedelta(seconds=2)


@pytest.mark.parametrize(
    "line",
    ["not json", "[1]", '{"args": {}}', '{"tool": "t", "args": []}', '{"tool": "t", "prio": 1}'],
)
def test_bad_submit_file_lines_are_refused(line: str) -> None:
    """A line that is not a call object raises ValueError."""
    with pytest.raises(ValueError, match=r".+"):
        parse_line(line)
