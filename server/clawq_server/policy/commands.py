"""Command policy: allowed executables, per-executable argument rules, paths, environment.

Every argument is treated as written by an attacker. The checks, in order:

1. argv[0] resolves (against a fixed PATH, then realpath) to an allowed executable; a
   relative or workspace path is never an allowed program.
2. The executable's rules (``RULES``, data, keyed by program name) refuse known escapes:
   forbidden options in every spelling GNU parsers accept (``--opt``, ``--opt=v``,
   unambiguous abbreviations ``--op``, short options inside clusters ``-xIf``, attached
   values), forbidden words (find primaries) and subcommands outside an allow list (git).
3. Every argument that may name a file (the whole argument, what follows ``=`` or ``:``,
   and each tail of a short-option cluster such as ``-f/etc/x`` in ``-rf/etc/x``) is
   resolved against cwd and every directory a ``-C``-like option names; when it contains
   ``/`` or exists, its real path must lie inside a root and match no deny pattern. This
   refuses some harmless text arguments such as a grep pattern ``/usr``, by design.
4. The environment is rebuilt from nothing; additions need a name in env_allow and never
   one that changes how programs load code (LD_*, PYTHON*, GIT_*, BASH_ENV, PATH, ...).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.command_rules import RULES, ArgRules
from clawq_server.policy.path_rules import real_confine, real_path_inside
from clawq_server.policy.principal import Principal

FIXED_PATH = "/usr/local/bin:/usr/bin:/bin"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_DENIED_PREFIXES = ("LD_", "PYTHON", "GIT_", "BASH_FUNC_", "LC_", "MALLOC_", "SSH_", "DYLD_")
_ENV_DENIED = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "IFS",
        "PATH",
        "HOME",
        "SHELL",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
        "LOCPATH",
        "GCONV_PATH",
        "NLSPATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "TZDIR",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "GREP_OPTIONS",
        "TAR_OPTIONS",
        "XDG_CONFIG_HOME",
        "XDG_CONFIG_DIRS",
        "CDPATH",
        "TERMINFO",
        "TERMCAP",
        "MAGIC",
        "SORT_COMPRESS",
    }
)


@dataclass(frozen=True, slots=True)
class CommandPlan:
    """A checked command: what exactly runs, where, and with which environment."""

    executable: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]


def plan_command(
    principal: Principal, argv: list[str], *, cwd: str = "", env: Mapping[str, str] | None = None
) -> CommandPlan:
    """Check a command against the principal's policy and build what the runner needs.

    Raises PolicyDenied (naming the argument) or InvalidArgument for malformed input.
    """
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidArgument.field("args.argv", "must be a non-empty list of strings")
    for index, arg in enumerate(argv):
        if "\0" in arg:
            raise InvalidArgument.field(f"args.argv[{index}]", "contains a NUL character")
    executable = resolve_executable(principal, argv[0])
    workdir = resolve_cwd(principal, cwd)
    rules = rules_for(principal, argv[0], executable)
    args = list(argv[1:])
    for rule in rules:
        rule.check(args)
    _check_paths(principal, args, workdir, rules)
    final = args
    for rule in rules:
        final = rule.apply(final)
    environment = build_env(principal, env or {}, extra=_rule_env(rules))
    return CommandPlan(executable, (executable, *final), workdir, environment)


def resolve_executable(principal: Principal, name: str) -> str:
    """The real path of argv[0] when it is an allowed executable; else PolicyDenied."""
    resolved = _real_program(name)
    if resolved is None:
        raise PolicyDenied.field("args.argv[0]", f"{name!r} is not an allowed executable")
    if real_path_inside(principal, Path(resolved)):
        raise PolicyDenied.field(
            "args.argv[0]", f"{name!r} is inside a workspace root, not a system tool"
        )
    if resolved not in allowed_executables(principal):
        raise PolicyDenied.field(
            "args.argv[0]", f"{name!r} ({resolved}) is not an allowed executable"
        )
    return resolved


def allowed_executables(principal: Principal) -> frozenset[str]:
    """Real paths of the principal's allowed commands (names resolve against the fixed PATH)."""
    found = (_real_program(name) for name in principal.commands)
    return frozenset(path for path in found if path is not None)


def rules_for(principal: Principal, name: str, executable: str) -> list[ArgRules]:
    """Every rule set that applies: by argv[0]'s name, the real file's name, and any alias."""
    names = {os.path.basename(name), os.path.basename(executable)}
    names.update(os.path.basename(c) for c in principal.commands if _real_program(c) == executable)
    found = [RULES[n] for n in sorted(names) if n in RULES]
    return [rule for i, rule in enumerate(found) if rule not in found[:i]]


def resolve_cwd(principal: Principal, cwd: str) -> Path:
    """The real working directory: cwd (relative to the first root) inside a root."""
    if not principal.roots:
        raise PolicyDenied.field("args.cwd", "the principal has no roots")
    base = principal.roots[0].path
    real = Path(os.path.realpath(base / cwd if cwd else base))
    if not real_path_inside(principal, real):
        raise PolicyDenied.field("args.cwd", f"{cwd!r} is outside the allowed roots")
    if not real.is_dir():
        raise InvalidArgument.field("args.cwd", "is not a directory")
    return real


def build_env(
    principal: Principal, additions: Mapping[str, str], *, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A scrubbed environment: fixed PATH, locale and HOME, plus allowed additions."""
    writable = [r for r in principal.roots if r.writable] or list(principal.roots)
    home = os.path.realpath(writable[0].path) if writable else "/"
    env = {"PATH": FIXED_PATH, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for name, value in additions.items():
        field = f"args.env.{name}"
        if not isinstance(value, str) or "\0" in value or "\0" in name:
            raise InvalidArgument.field(field, "must be a string without NUL characters")
        if not _ENV_NAME.match(name):
            raise PolicyDenied.field(field, "not a valid variable name")
        if name in _ENV_DENIED or name.upper().startswith(_ENV_DENIED_PREFIXES):
            raise PolicyDenied.field(field, f"setting {name} is never allowed")
        if name not in principal.env_allow:
            raise PolicyDenied.field(field, f"{name} is not in the principal's env allow list")
        env[name] = value
    env.update(extra or {})
    return env


def path_allowed(principal: Principal, path: Path) -> bool:
    """True when the real path lies inside a root and matches no deny pattern."""
    try:
        real_confine(principal, path)
    except (PolicyDenied, InvalidArgument):
        return False
    return True


def _real_program(name: str) -> str | None:
    if "/" in name:
        # Only absolute system paths: "./ls" or "bin/ls" would name a workspace file.
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else None
    else:
        found = shutil.which(name, path=FIXED_PATH)
    if found is None:
        return None
    real = os.path.realpath(found)
    return real if os.path.isfile(real) else None


def _rule_env(rules: list[ArgRules]) -> dict[str, str]:
    return {k: v for rule in rules for k, v in rule.env}


def _check_paths(principal: Principal, args: list[str], cwd: Path, rules: list[ArgRules]) -> None:
    bases = [cwd]
    for rule in rules:
        bases += [cwd / value for value in rule.chdir_values(args)]
    for index, arg in enumerate(args, start=1):
        for candidate in path_candidates(arg):
            for base in bases:
                target = base / candidate
                if ("/" in candidate or os.path.lexists(target)) and not path_allowed(
                    principal, target
                ):
                    raise PolicyDenied.field(
                        f"args.argv[{index}]",
                        f"{candidate!r} is outside the allowed roots or matches a deny pattern",
                    )


def path_candidates(arg: str) -> list[str]:
    """Every substring of an argument that a program might open as a file."""
    found = [arg]
    found += [arg[i + 1 :] for i, ch in enumerate(arg) if ch in "=:,"]
    if arg.startswith("-") and not arg.startswith("--"):
        found += [arg[i:] for i in range(1, len(arg))]
    return [c for c in dict.fromkeys(found) if c]
