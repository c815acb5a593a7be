"""The contracts pass buf's STANDARD and COMMENTS lint rules."""

from __future__ import annotations

from scripts.buflint import lint


def test_protos_pass_buf_lint() -> None:
    """buf lint reports nothing for protos/clawq/v1."""
    assert lint() == 0
