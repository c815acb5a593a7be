"""How Redis failures become domain errors: refused, full, or possibly applied."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clawq_server.errors import BackendFull, BackendUnavailable
from clawq_server.queue.redis_scripts import translated


def _translate(error: Exception, *, write: bool = True) -> Exception:
    try:
        with translated(write=write):
            raise error
    except Exception as raised:  # whatever translated() made of error
        return raised
    raise AssertionError("translated() swallowed the error")


@pytest.mark.parametrize(
    "error",
    [
        rx.BusyLoadingError("Redis is loading the dataset in memory"),
        rx.AuthenticationError("invalid username-password pair"),
        rx.ReadOnlyError("You can't write against a read only replica."),
        rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        rx.TimeoutError("Timeout connecting to server"),
        rx.ConnectionError("No connection available."),
        rx.ResponseError("BUSY Redis is busy running a script."),
        rx.ResponseError("MISCONF Redis is configured to save RDB snapshots"),
        rx.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ],
)
def test_a_refusal_is_unavailable_and_certainly_not_applied(error: Exception) -> None:
    """Redis answered no, or the command never left: retry freely."""
    translated_error = _translate(error)
    assert type(translated_error) is BackendUnavailable
    assert not translated_error.maybe_applied


@pytest.mark.parametrize(
    "error",
    [
        rx.TimeoutError("Timeout reading from 127.0.0.1:6379"),
        rx.TimeoutError("Timeout writing to socket"),
        rx.ConnectionError("Connection closed by server."),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_a_lost_reply_may_have_been_applied(error: Exception) -> None:
    """The write may have run: the caller is told so, by a reason of its own."""
    translated_error = _translate(error)
    assert isinstance(translated_error, BackendUnavailable)
    assert (translated_error.maybe_applied, translated_error.reason) == (True, "OUTCOME_UNKNOWN")
    read = _translate(error, write=False)
    assert isinstance(read, BackendUnavailable)
    assert (read.maybe_applied, read.reason) == (False, "BACKEND_UNAVAILABLE")


def test_out_of_memory_is_backend_full() -> None:
    """maxmemory reached: a reason of its own, nothing written."""
    full = _translate(rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"))
    assert isinstance(full, BackendFull)
    assert (full.reason, full.maybe_applied) == ("BACKEND_FULL", False)


def test_other_answers_pass_through() -> None:
    """A consumer group that exists is an answer for the caller, not an outage."""
    busy_group = rx.ResponseError("BUSYGROUP Consumer Group name already exists")
    assert _translate(busy_group) is busy_group
