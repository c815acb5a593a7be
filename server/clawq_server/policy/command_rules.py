"""Argument rules per executable, as data: the known escapes of each allowed tool.

A rule set names what a program must never be given. Options are matched the way GNU
parsers read them: long options exactly, as ``--opt=value`` and as any abbreviation
(``--to-com`` is ``--to-command``); short options alone, inside clusters (``-xIf``) and
with attached values; tar's old-style first argument (``xIf``) as a cluster too.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from clawq_server.errors import PolicyDenied


@dataclass(frozen=True, slots=True)
class ArgRules:
    """What one executable may not be given, and what clawq adds to make it safe.

    Attributes:
        program: The program name, for messages.
        long_denied: Long option names (no dashes), refused in every spelling.
        short_denied: Short option letters refused, alone or inside a cluster.
        short_valued: Short option letters that take a value (the rest of a cluster is it).
        words_denied: Whole arguments refused as written (find's primaries).
        subcommands: When set, the first operand must be one of these (git).
        global_allowed: With subcommands, the only options allowed before the subcommand.
        global_valued: Of those, the ones that take the next argument as their value.
        chdir_options: Options that change the directory later relative paths are read
            from; their values become extra bases for the path check.
        old_style_first: The first argument, when it has no dash, is a cluster (tar).
        inject_front: Arguments clawq puts right after argv[0].
        inject_after: Arguments clawq puts right after a given subcommand.
        env: Variables clawq sets for this program.
    """

    program: str
    long_denied: frozenset[str] = frozenset()
    short_denied: str = ""
    short_valued: str = ""
    words_denied: frozenset[str] = frozenset()
    subcommands: frozenset[str] | None = None
    global_allowed: frozenset[str] = frozenset()
    global_valued: frozenset[str] = frozenset()
    chdir_options: frozenset[str] = frozenset()
    old_style_first: bool = False
    inject_front: tuple[str, ...] = ()
    inject_after: tuple[tuple[str, tuple[str, ...]], ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def check(self, args: list[str]) -> None:
        """Raise PolicyDenied, naming the argument, when any argument breaks a rule."""
        start = self._subcommand_end(args) if self.subcommands is not None else 0
        for index in range(start, len(args)):
            arg = args[index]
            if index == 0 and self.old_style_first and arg and not arg.startswith("-"):
                self._check_old_style(arg)
            else:
                self._check_arg(index, arg)

    def apply(self, args: list[str]) -> list[str]:
        """The arguments with clawq's safety arguments put in."""
        out = [*self.inject_front, *args]
        if self.subcommands is None:
            return out
        end = self._subcommand_end(args)
        extra = dict(self.inject_after).get(args[end - 1], ())
        at = len(self.inject_front) + end
        return [*out[:at], *extra, *out[at:]]

    def chdir_values(self, args: list[str]) -> list[str]:
        """The values of every directory-changing option (``-C dir``, ``--directory=dir``)."""
        if not self.chdir_options:
            return []
        end = self._subcommand_end(args) - 1 if self.subcommands is not None else len(args)
        values: list[str] = []
        for index, arg in enumerate(args[:end]):
            following = args[index + 1] if index + 1 < end else ""
            value = self._chdir_value(arg, following)
            if value is not None:
                values.append(value)
        return values

    def _chdir_value(self, arg: str, following: str) -> str | None:
        if arg.startswith("--") and arg != "--":
            name, eq, value = arg[2:].partition("=")
            if any(o[2:].startswith(name) for o in self.chdir_options if o.startswith("--")):
                return value if eq else following
            return None
        letters = {o[1] for o in self.chdir_options if not o.startswith("--")}
        if arg.startswith("-") and len(arg) > 1:
            for position, letter in enumerate(arg[1:], start=2):
                if letter in self.short_valued:
                    if letter not in letters:
                        return None
                    return arg[position:] or following
        return None

    def _deny(self, index: int, arg: str, why: str) -> PolicyDenied:
        return PolicyDenied.field(
            f"args.argv[{index + 1}]", f"{arg!r} is not allowed for {self.program} ({why})"
        )

    def _check_arg(self, index: int, arg: str) -> None:
        if arg in self.words_denied:
            raise self._deny(index, arg, "it runs, writes or deletes on the program's behalf")
        if arg.startswith("--") and arg != "--":
            name = arg[2:].partition("=")[0]
            if any(denied.startswith(name) for denied in self.long_denied):
                raise self._deny(index, arg, "forbidden option")
        elif arg.startswith("-") and len(arg) > 1:
            for letter in arg[1:]:
                if letter in self.short_denied:
                    raise self._deny(index, arg, f"forbidden option -{letter}")
                if letter in self.short_valued:
                    break

    def _check_old_style(self, arg: str) -> None:
        chdir = {o[1] for o in self.chdir_options if not o.startswith("--")}
        for letter in arg:
            if letter in self.short_denied or letter in chdir:
                raise self._deny(0, arg, f"forbidden option {letter}")

    def _subcommand_end(self, args: list[str]) -> int:
        """Check the options before the subcommand; the index just after the subcommand."""
        index = 0
        while index < len(args) and args[index].startswith("-"):
            name = args[index].partition("=")[0]
            if name not in self.global_allowed:
                raise self._deny(index, args[index], "option not allowed before the subcommand")
            if name in self.global_valued and "=" not in args[index]:
                index += 1
            index += 1
        if index >= len(args):
            raise PolicyDenied.field("args.argv", f"{self.program} needs a subcommand")
        if self.subcommands is not None and args[index] not in self.subcommands:
            allowed = ", ".join(sorted(self.subcommands))
            raise self._deny(index, args[index], f"subcommands allowed: {allowed}")
        return index + 1


_GIT_SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.askPass=",
    "core.gitProxy=",
    "credential.helper=",
    "diff.external=",
    "protocol.allow=never",
    "core.attributesFile=/dev/null",
    "safe.bareRepository=explicit",
)
_GIT_NO_DRIVERS = ("--no-ext-diff", "--no-textconv")

_GIT = ArgRules(
    program="git",
    subcommands=frozenset({"status", "log", "diff", "show"}),
    global_allowed=frozenset(
        {
            "-C",
            "--no-pager",
            "-P",
            "--no-replace-objects",
            "--literal-pathspecs",
            "--glob-pathspecs",
            "--noglob-pathspecs",
            "--icase-pathspecs",
            "--no-optional-locks",
        }
    ),
    global_valued=frozenset({"-C"}),
    chdir_options=frozenset({"-C"}),
    long_denied=frozenset(
        {
            "output",
            "output-directory",
            "ext-diff",
            "textconv",
            "open-files-in-pager",
            "upload-pack",
            "receive-pack",
            "exec",
            "exec-path",
            "config",
            "config-env",
            "paginate",
            "no-no-ext-diff",
            "no-no-textconv",
        }
    ),
    short_denied="O",
    short_valued="nSGLUlMCB",
    inject_front=("--no-pager", *(a for kv in _GIT_SAFE_CONFIG for a in ("-c", kv))),
    inject_after=(("log", _GIT_NO_DRIVERS), ("diff", _GIT_NO_DRIVERS), ("show", _GIT_NO_DRIVERS)),
    env=(
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("GIT_PAGER", "cat"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        # Empty: no transport at all, whatever a repository's configuration allows (a
        # promisor remote's fetch would otherwise run an ext:: command).
        ("GIT_ALLOW_PROTOCOL", ""),
    ),
)

_FIND = ArgRules(
    program="find",
    words_denied=frozenset(
        {
            "-exec",
            "-execdir",
            "-ok",
            "-okdir",
            "-delete",
            "-fprintf",
            "-fprint",
            "-fprint0",
            "-fls",
            "-files0-from",
            "-L",
            "-follow",
        }
    ),
)

_TAR = ArgRules(
    program="tar",
    long_denied=frozenset(
        {
            "to-command",
            "checkpoint-action",
            "use-compress-program",
            "rsh-command",
            "rmt-command",
            "info-script",
            "new-volume-script",
            "files-from",
            "absolute-names",
            "dereference",
            # At a volume's end tar asks what to do, and "!" there starts a shell.
            "multi-volume",
            "tape-length",
            "interactive",
            "confirmation",
            "volno-file",
        }
    ),
    short_denied="IFTPhMLw",
    short_valued="bCfFgHIKLNTVX",
    chdir_options=frozenset({"-C", "--directory"}),
    old_style_first=True,
    # Without it an archive name with a colon is a remote host reached through rsh.
    inject_front=("--force-local",),
)

_GREP = ArgRules(
    program="grep",
    long_denied=frozenset({"dereference-recursive"}),
    short_denied="R",
    short_valued="efmABCdD",
)
_SORT = ArgRules(
    program="sort",
    long_denied=frozenset({"compress-program", "files0-from"}),
    short_valued="kotST",
)
# -r would follow symlinks met below the directories given, out of the roots.
_DIFF = ArgRules(program="diff", short_valued="CUDFILSxX", inject_front=("--no-dereference",))
_FILES0 = frozenset({"files0-from", "dereference"})
_DU = ArgRules(program="du", long_denied=_FILES0, short_denied="L", short_valued="BdtX")
_WC = ArgRules(program="wc", long_denied=frozenset({"files0-from"}))
_LS = ArgRules(
    program="ls", long_denied=frozenset({"dereference"}), short_denied="L", short_valued="ITw"
)
_FILE = ArgRules(
    program="file", long_denied=frozenset({"files-from"}), short_denied="f", short_valued="mFeP"
)

RULES = MappingProxyType(
    {
        "git": _GIT,
        "find": _FIND,
        "tar": _TAR,
        "grep": _GREP,
        "egrep": _GREP,
        "fgrep": _GREP,
        "rgrep": _GREP,
        "sort": _SORT,
        "diff": _DIFF,
        "du": _DU,
        "wc": _WC,
        "ls": _LS,
        "file": _FILE,
    }
)
