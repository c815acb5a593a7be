"""Properties of the lexical path rules: whatever the input, an accepted path stays in its root."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.path_rules import NAME_MAX, check_path, confine, denied_by
from clawq_server.policy.principal import DEFAULT_DENY_PATTERNS, Principal, Root

ROOT = Path("/srv/clawq/ws")
PRINCIPAL = Principal("p", (Root(ROOT), Root(ROOT / "ro", writable=False)))
COMPONENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "b",
        "ro",
        ".env",
        ".git",
        "config",
        "x.pem",
        "ws",
        "ws-evil",
        "\x00",
        "srv",
        "clawq",
        "KEY.Key",
        "é" * (NAME_MAX // 2 + 1),  # over NAME_MAX bytes in few characters
        "e" * (NAME_MAX // 4 + 1),
    ]
)
PATHS = st.builds(
    lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
    st.booleans(),
    st.lists(COMPONENTS, max_size=10),
)


@given(PATHS, st.booleans())
def test_accepted_paths_stay_inside_their_root(path: str, write: bool) -> None:
    """An accepted path is its root plus clean components, none denied, writable if asked."""
    try:
        confined = confine(PRINCIPAL, path, write=write)
    except (PolicyDenied, InvalidArgument):
        return
    assert confined.root in PRINCIPAL.roots
    assert confined.absolute == confined.root.path.joinpath(*confined.relative)
    assert not {"..", ".", ""} & set(confined.relative)
    assert all("\x00" not in part for part in confined.relative)
    assert denied_by(PRINCIPAL.deny_patterns, confined.relative) is None
    assert not write or confined.root.writable
    assert confined.relative[:1] != ("ro",) or confined.root.path.name == "ro"


def _verdict(check: Callable[[], object]) -> tuple[type, str] | None:
    """None when check passes, else the refusal's type and message."""
    try:
        check()
    except (PolicyDenied, InvalidArgument) as refused:
        return type(refused), refused.message
    return None


@given(PATHS, st.booleans())
def test_admissions_check_gives_confines_verdict(path: str, write: bool) -> None:
    """check_path refuses exactly what confine refuses, with the same error."""
    assert _verdict(lambda: check_path(PRINCIPAL, path, write=write)) == _verdict(
        lambda: confine(PRINCIPAL, path, write=write)
    )


@pytest.mark.parametrize("verdict", [confine, check_path])
@pytest.mark.parametrize("path", ["é" * (NAME_MAX // 2 + 1), "a/" + "€" * (NAME_MAX // 3 + 1)])
def test_a_long_component_is_refused_however_few_its_characters(
    verdict: Callable[[Principal, str], object], path: str
) -> None:
    with pytest.raises(InvalidArgument, match="longer than"):
        verdict(PRINCIPAL, path)


@pytest.mark.parametrize("verdict", [confine, check_path])
def test_a_lone_surrogate_in_a_long_path_is_an_invalid_argument(
    verdict: Callable[[Principal, str], object],
) -> None:
    with pytest.raises(InvalidArgument, match="not valid UTF-8"):
        verdict(PRINCIPAL, "a/../" * 15 + "\ud800")


@given(st.lists(st.sampled_from(["a", ".ssh", "b.KEY", ".git", "config", "c"]), max_size=6))
def test_denied_by_agrees_with_the_plain_definition(parts: list[str]) -> None:
    """The compiled matcher agrees with matching each pattern against every run of components."""
    lowered = [p.lower() for p in parts]
    expected = (
        ".ssh" in lowered
        or any(p.endswith(".key") for p in lowered)
        or any(lowered[i : i + 2] == [".git", "config"] for i in range(len(lowered)))
    )
    assert (denied_by(DEFAULT_DENY_PATTERNS, tuple(parts)) is not None) == expected


GLOB_PIECES = st.sampled_from(["a", "B", "*", "?", "a*", "*b", "[ab]", "[!a]", "*a*b", ".x"])
NAMES = st.sampled_from(["a", "b", "A", "ab", "ba", "aab", "xb", ".x", "a.x", "c"])
GLOBS = st.tuples(
    st.sampled_from(["", "/"]),
    st.lists(GLOB_PIECES, min_size=1, max_size=3).map("/".join),
    st.sampled_from(["", "/"]),
).map("".join)


def _plain_match(pattern: str, parts: list[str]) -> bool:
    pieces = [p.lower() for p in pattern.strip("/").split("/")]
    names = [p.lower() for p in parts]
    return any(
        all(fnmatch.fnmatchcase(name, piece) for name, piece in zip(window, pieces, strict=True))
        for window in (names[i : i + len(pieces)] for i in range(len(names) - len(pieces) + 1))
    )


@given(st.lists(GLOBS, min_size=1, max_size=4), st.lists(NAMES, max_size=6))
def test_denied_by_agrees_with_fnmatch_for_any_patterns(
    patterns: list[str], parts: list[str]
) -> None:
    """Each piece of a pattern matches one whole component; end slashes change nothing."""
    found = denied_by(tuple(patterns), tuple(parts))
    matching = [p for p in patterns if _plain_match(p, parts)]
    assert (found is not None) == bool(matching)
    assert found is None or found in matching


def test_a_pattern_with_end_slashes_hides_its_component() -> None:
    """ "/.env" and ".env/" hide a ".env" component as ".env" does."""
    for pattern in ("/.env", ".env/", "/.env/"):
        assert denied_by((pattern,), ("app", ".env")) == pattern


def test_wide_wildcard_runs_match_piece_by_piece() -> None:
    """Matching grows with the path, not exponentially with a pattern's width.

    Matched as one expression over the joined components, this pattern backtracks through
    every way of spreading its stars over the slashes: minutes, not microseconds.
    """
    pattern = "/".join(["*"] * 24 + ["x"])
    parts = tuple("c" * 40 for _ in range(60))
    assert denied_by((pattern,), parts) is None
    assert denied_by((pattern,), (*parts, "x")) == pattern
