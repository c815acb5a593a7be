"""Figure 5: Celery, RQ, arq, Dramatiq, taskiq and SAQ on the same private Redis."""

from __future__ import annotations

from benchmarks.services import Group

GROUPS: list[Group] = []
