"""The permission check: may this principal call this tool with these arguments?"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clawq_server.errors import PolicyDenied
from clawq_server.policy.principal import Principal

ArgumentCheck = Callable[[Principal, Mapping[str, Any]], None]


class Permissions:
    """Tool allow lists first, then the static argument checks of each tool.

    Static checks need no filesystem access beyond resolving roots, so they run at
    admission for every call; the tools re-check against the filesystem when they run.
    """

    def __init__(self, checks: Mapping[str, ArgumentCheck]) -> None:
        self._checks = dict(checks)

    def __call__(self, principal: Principal, tool: str, args: Mapping[str, Any]) -> None:
        """Raise PolicyDenied (or InvalidArgument) when the call is not allowed."""
        if not principal.may_use(tool):
            raise PolicyDenied.field(
                "tool", f"{tool!r} is not allowed for principal {principal.name!r}"
            )
        check = self._checks.get(tool)
        if check is not None:
            check(principal, args)
