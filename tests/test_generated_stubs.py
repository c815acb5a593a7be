"""The committed stubs are exactly what `make proto` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from scripts.genproto import generate

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "client" / "clawq" / "v1"


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    """Regenerating into a temporary folder gives byte-identical files, and no extra ones."""
    generate(tmp_path)
    fresh = tmp_path / "clawq" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_file())
    assert names == committed
    stale = [n for n in names if (fresh / n).read_bytes() != (COMMITTED / n).read_bytes()]
    assert stale == [], "run `make proto` and commit the result"
