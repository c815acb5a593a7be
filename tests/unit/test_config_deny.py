"""A principal's deny patterns from the config file: added to the defaults, then enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawq_server import config
from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.path_rules import confine
from clawq_server.policy.principal import DEFAULT_DENY_PATTERNS


def _load(tmp_path: Path, deny: str) -> config.Config:
    (tmp_path / "ws").mkdir(exist_ok=True)
    path = tmp_path / "clawq.toml"
    path.write_text(f'[[principals]]\nname = "agent"\nroots = [{{ path = "ws" }}]\n{deny}\n')
    return config.load(path, {})


def test_configured_patterns_hide_paths_beside_the_defaults(tmp_path: Path) -> None:
    """A configured pattern refuses its paths; the default ones still apply."""
    agent = _load(tmp_path, 'deny = ["secrets", "*.sqlite"]').principals["agent"]
    assert agent.deny_patterns == (*DEFAULT_DENY_PATTERNS, "secrets", "*.sqlite")
    for path in ("secrets/token.txt", "data/app.SQLITE", ".env"):
        with pytest.raises(PolicyDenied):
            confine(agent, path)
    assert confine(agent, "data/notes.txt").display == "data/notes.txt"


def test_without_deny_a_principal_gets_the_defaults(tmp_path: Path) -> None:
    """No deny key: exactly the default patterns."""
    assert _load(tmp_path, "").principals["agent"].deny_patterns == DEFAULT_DENY_PATTERNS


@pytest.mark.parametrize("value", ['"secrets"', '["ok", 3]', '[""]', '["/"]'])
def test_a_malformed_deny_list_is_refused_naming_the_field(tmp_path: Path, value: str) -> None:
    """Not a list of non-empty patterns: the config is refused, naming the key."""
    with pytest.raises(InvalidArgument) as refused:
        _load(tmp_path, f"deny = {value}")
    assert refused.value.violations[0].field == "principals.agent.deny"
