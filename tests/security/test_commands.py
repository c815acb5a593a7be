"""execute_command under attack: executables, argument abuse per tool, paths, environment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.commands import plan_command
from clawq_server.policy.principal import DEFAULT_COMMANDS, Root
from clawq_server.tools.command import ExecuteCommandTool
from clawq_server.tools.process import ProcessRunner
from tests.security.helpers_proc import PROC_SECRET, ProcWorkspace

pytest_plugins = ["tests.security.proc_fixtures"]

GIT = shutil.which("git") or "/usr/bin/git"
OUT = "../outside/secret.txt"  # from the root, this names the secret outside it

ARGUMENT_ABUSE = [
    # find: primaries that run, write or delete
    ["find", ".", "-exec", "cat", "{}", ";"],
    ["find", ".", "-execdir", "sh", ";"],
    ["find", ".", "-ok", "rm", "{}", ";"],
    ["find", ".", "-okdir", "rm", "{}", ";"],
    ["find", ".", "-delete"],
    ["find", ".", "-fprintf", "x", "%p"],
    ["find", ".", "-fprint", "x"],
    ["find", ".", "-fprint0", "x"],
    ["find", ".", "-fls", "x"],
    ["find", "-L", "."],
    # git: configuration, helpers, other repositories, subcommands
    ["git", "-c", "core.pager=sh", "log"],
    ["git", "-c", "core.sshCommand=sh", "status"],
    ["git", "--exec-path=/tmp", "status"],
    ["git", "--exec-path", "status"],
    ["git", "-C", "..", "status"],
    ["git", "-C", "/etc", "status"],
    ["git", "--git-dir=/etc", "status"],
    ["git", "--work-tree=/", "status"],
    ["git", "--config-env=core.pager=X", "log"],
    ["git", "-p", "log"],
    ["git", "log", "--output=out.txt"],
    ["git", "log", "--outp=out.txt"],
    ["git", "diff", "--ext-diff"],
    ["git", "diff", "--textconv"],
    ["git", "show", "--ext"],
    ["git", "log", "--upload-pack=sh"],
    ["git", "diff", "-O/etc/orderfile"],
    ["git", "diff", "--open-files-in-pager"],
    ["git", "grep", "x"],
    ["git", "push"],
    ["git", "config", "core.pager", "sh"],
    ["git", "clone", "ext::sh -c id"],
    ["git", "st"],
    ["git"],
    # tar: commands run on tar's behalf, files read from lists, absolute names
    ["tar", "-xf", "a.tar", "--to-command=sh"],
    ["tar", "-xf", "a.tar", "--to-com=sh"],
    ["tar", "-cf", "a.tar", "--checkpoint=1", "--checkpoint-action=exec=sh", "notes.txt"],
    ["tar", "-cf", "a.tar", "--use-compress-program=sh", "notes.txt"],
    ["tar", "-I", "sh", "-cf", "a.tar", "notes.txt"],
    ["tar", "-cIf", "sh", "a.tar", "notes.txt"],
    ["tar", "cIf", "sh", "a.tar", "notes.txt"],
    ["tar", "-cf", "a.tar", "--rsh-command=sh", "notes.txt"],
    ["tar", "-cf", "a.tar", "--info-script=sh", "notes.txt"],
    ["tar", "-cf", "a.tar", "--new-volume-script=sh", "notes.txt"],
    ["tar", "-F", "sh", "-cf", "a.tar", "notes.txt"],
    ["tar", "-cf", "a.tar", "-T", "list"],
    ["tar", "-cPf", "a.tar", "notes.txt"],
    ["tar", "-cf", "a.tar", "-C", "..", "outside"],
    ["tar", "-cf", "a.tar", "--directory=/etc", "passwd"],
    ["tar", "xCf", "..", "a.tar"],
    # tar: the prompt at a volume's end, where "!" starts a shell reading stdin
    ["tar", "-c", "-M", "-L", "20", "-f", "a.tar", "notes.txt"],
    ["tar", "cMf", "a.tar", "notes.txt"],
    ["tar", "-cf", "a.tar", "--multi-volume", "notes.txt"],
    ["tar", "-cf", "a.tar", "--tape-len=20", "notes.txt"],
    ["tar", "-cwf", "a.tar", "notes.txt"],
    ["tar", "-cf", "a.tar", "--volno-file=v", "notes.txt"],
    # git: another repository directory, a bare one found by discovery
    ["git", "--git-dir=evil", "log"],
    ["git", "--work-tree=.", "status"],
    ["git", "--bare", "log"],
    # grep, sort, diff, du, wc, file: files named by options
    ["grep", "-f", "/etc/passwd", "notes.txt"],
    ["grep", "--file=/etc/passwd", "notes.txt"],
    ["grep", "--file", OUT, "notes.txt"],
    ["grep", "-rf/etc/passwd", "."],
    ["grep", "-R", "x", "."],
    ["sort", "--compress-program=sh", "notes.txt"],
    ["sort", "-o", "/tmp/clawq-owned", "notes.txt"],
    ["sort", "--output=/etc/x", "notes.txt"],
    ["sort", "-o../out", "notes.txt"],
    ["sort", "--files0-from=list"],
    ["diff", "--to-file=/etc/passwd", "notes.txt"],
    ["diff", "--from-file", OUT, "notes.txt"],
    ["du", "--files0-from=list"],
    ["wc", "--files0-from=list"],
    ["file", "-f", "list"],
    # plain path operands outside the roots
    ["cat", OUT],
    ["cat", "/etc/passwd"],
    ["cat", "../../../../etc/passwd"],
    ["ls", ".."],
    ["ls", "/"],
    ["head", "-n1", "/proc/self/environ"],
    ["cat", "sub/../../outside/secret.txt"],
    ["cat", ".env"],
    ["cat", "keys/id.pem"],
]


@pytest.mark.parametrize("argv", ARGUMENT_ABUSE, ids=lambda a: " ".join(a)[:60])
def test_argument_abuse_is_refused(proc_ws: ProcWorkspace, argv: list[str]) -> None:
    """Known escapes of each allowed tool are refused before anything runs."""
    (proc_ws.root / ".env").write_text("TOKEN=" + PROC_SECRET)
    principal = proc_ws.principal()
    with pytest.raises(PolicyDenied):
        plan_command(principal, argv)


def test_refusal_names_the_argument(proc_ws: ProcWorkspace) -> None:
    """A refusal says which argument and why."""
    with pytest.raises(PolicyDenied, match=r"args\.argv\[2\].*-exec"):
        plan_command(proc_ws.principal(), ["find", ".", "-exec", "id", ";"])


def test_symlink_argument_pointing_outside_is_refused(proc_ws: ProcWorkspace) -> None:
    """A symlink in the root that points outside is judged by its target."""
    (proc_ws.root / "link").symlink_to(proc_ws.outside / "secret.txt")
    with pytest.raises(PolicyDenied):
        plan_command(proc_ws.principal(), ["cat", "link"])


def test_cwd_outside_the_roots_is_refused(proc_ws: ProcWorkspace) -> None:
    """The working directory must lie inside a root, also through a symlink."""
    (proc_ws.root / "door").symlink_to(proc_ws.outside)
    for cwd in ("..", str(proc_ws.outside), "door"):
        with pytest.raises(PolicyDenied, match=r"args\.cwd"):
            plan_command(proc_ws.principal(), ["ls"], cwd=cwd)


def _copy_ls(proc_ws: ProcWorkspace) -> Path:
    (proc_ws.root / "bin").mkdir()
    copy = proc_ws.root / "bin" / "ls"
    shutil.copy2("/bin/ls", copy)
    return copy


@pytest.mark.parametrize("name", ["./ls", "bin/ls", "ABS"])
def test_workspace_binary_is_not_an_allowed_executable(proc_ws: ProcWorkspace, name: str) -> None:
    """A copy of an allowed binary inside the workspace is not that binary."""
    copy = _copy_ls(proc_ws)
    shutil.copy2(copy, proc_ws.root / "ls")
    argv0 = str(copy) if name == "ABS" else name
    with pytest.raises(PolicyDenied, match=r"args\.argv\[0\]"):
        plan_command(proc_ws.principal(), [argv0])


def test_symlink_named_like_an_allowed_tool_is_refused(proc_ws: ProcWorkspace) -> None:
    """A workspace symlink called ls that points at sh is refused, not run as ls."""
    (proc_ws.root / "ls").symlink_to("/bin/sh")
    with pytest.raises(PolicyDenied):
        plan_command(proc_ws.principal(), [str(proc_ws.root / "ls")])
    with pytest.raises(PolicyDenied):
        plan_command(proc_ws.principal(), ["./ls"])


@pytest.mark.parametrize("argv0", ["sh", "/bin/sh", "bash", "python3", "nosuchtool"])
def test_executables_off_the_list_are_refused(proc_ws: ProcWorkspace, argv0: str) -> None:
    """Programs that are not on the principal's list never run."""
    with pytest.raises(PolicyDenied):
        plan_command(proc_ws.principal(), [argv0, "-c", "id"])


def test_absolute_and_aliased_paths_match_the_allowed_name(proc_ws: ProcWorkspace) -> None:
    """/bin/ls and /usr/bin/ls are the allowed ls: matching is on the real path."""
    plans = [plan_command(proc_ws.principal(), [name]) for name in ("ls", "/bin/ls", "/usr/bin/ls")]
    assert len({plan.executable for plan in plans}) == 1


ENV_INJECTION = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_EXEC_PATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "PATH",
    "HOME",
    "TAR_OPTIONS",
    "GLIBC_TUNABLES",
    "LC_ALL",
    "TMPDIR",
]


@pytest.mark.parametrize("name", ENV_INJECTION)
def test_dangerous_env_names_are_refused_even_if_allowed(proc_ws: ProcWorkspace, name: str) -> None:
    """Loader, interpreter, git and shell variables are refused even when on env_allow."""
    principal = proc_ws.principal(env_allow=frozenset({name}))
    with pytest.raises(PolicyDenied, match=rf"args\.env\.{name}"):
        plan_command(principal, ["ls"], env={name: "/tmp/evil"})


def test_env_names_off_the_allow_list_are_refused(proc_ws: ProcWorkspace) -> None:
    """An innocuous name still needs to be on env_allow."""
    with pytest.raises(PolicyDenied, match="env allow list"):
        plan_command(proc_ws.principal(), ["ls"], env={"FOO": "1"})


def test_env_is_built_from_nothing(proc_ws: ProcWorkspace) -> None:
    """The command's environment holds only the fixed names and allowed additions."""
    plan = plan_command(proc_ws.principal(), ["ls"], env={"CLAWQ_MARK": "m"})
    assert set(plan.env) == {"PATH", "HOME", "LANG", "LC_ALL", "CLAWQ_MARK"}
    assert plan.env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert plan.env["HOME"] == str(proc_ws.root.resolve())


def test_nul_in_argument_is_invalid(proc_ws: ProcWorkspace) -> None:
    """A NUL byte in an argument is malformed input, not something to run."""
    with pytest.raises(InvalidArgument):
        plan_command(proc_ws.principal(), ["ls", "a\0b"])


# ---- legitimate calls, really run -------------------------------------------------------


async def _run(proc_ws: ProcWorkspace, argv: list[str], mode: str, **extra: object) -> bytes:
    tool = ExecuteCommandTool(ProcessRunner(mode))
    args = {"argv": argv, "env": proc_ws.env(), **extra}
    result = await tool.run(args, proc_ws.ctx())
    assert result.exit_code == 0, result.stderr
    return result.output


async def test_ls_lists_the_root(proc_ws: ProcWorkspace, mode: str) -> None:
    """ls runs and sees the workspace."""
    assert b"notes.txt" in await _run(proc_ws, ["ls"], mode)


async def test_cat_reads_a_file(proc_ws: ProcWorkspace, mode: str) -> None:
    """cat of a file inside the root prints it."""
    assert await _run(proc_ws, ["cat", "notes.txt"], mode) == b"alpha\nbeta\ngamma\n"


async def test_grep_finds_a_line(proc_ws: ProcWorkspace, mode: str) -> None:
    """grep -n in the workspace finds the line."""
    assert await _run(proc_ws, ["grep", "-n", "beta", "notes.txt"], mode) == b"2:beta\n"


async def test_find_by_name(proc_ws: ProcWorkspace, mode: str) -> None:
    """find -name walks the workspace."""
    (proc_ws.root / "sub").mkdir()
    (proc_ws.root / "sub" / "x.txt").write_text("x")
    out = await _run(proc_ws, ["find", ".", "-name", "*.txt"], mode)
    assert sorted(out.split()) == [b"./notes.txt", b"./sub/x.txt"]


async def test_sort_and_wc_in_a_subdirectory(proc_ws: ProcWorkspace, mode: str) -> None:
    """cwd inside the root is honoured."""
    (proc_ws.root / "sub").mkdir()
    (proc_ws.root / "sub" / "n").write_text("b\na\n")
    assert await _run(proc_ws, ["sort", "n"], mode, cwd="sub") == b"a\nb\n"


def _git_repo(root: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1"}
    for argv in (
        ["init", "-q"],
        ["add", "notes.txt"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"],
    ):
        subprocess.run([GIT, *argv], cwd=root, env=env, check=True, capture_output=True)


async def test_git_status_and_log_in_a_repo(proc_ws: ProcWorkspace, mode: str) -> None:
    """git status and log work in a repository inside the root."""
    _git_repo(proc_ws.root)
    (proc_ws.root / "notes.txt").write_text("changed\n")
    assert b"notes.txt" in await _run(proc_ws, ["git", "status", "--short"], mode)
    assert b"first" in await _run(proc_ws, ["git", "log", "--oneline"], mode)


async def test_repo_config_cannot_run_commands(proc_ws: ProcWorkspace, mode: str) -> None:
    """A hostile .git/config (fsmonitor, external diff, pager) runs nothing."""
    _git_repo(proc_ws.root)
    pwned = proc_ws.root / "pwned"
    with (proc_ws.root / ".git" / "config").open("a") as config:
        config.write(
            f"[core]\n\tfsmonitor = touch {pwned}\n\tpager = touch {pwned}\n"
            f"[diff]\n\texternal = touch {pwned}\n"
        )
    (proc_ws.root / "notes.txt").write_text("changed\n")
    await _run(proc_ws, ["git", "status"], mode)
    await _run(proc_ws, ["git", "diff"], mode)
    assert not pwned.exists()


def _promisor_repo(root: Path, url: str) -> None:
    """A repository that looks like a partial clone of url, missing notes.txt's blob."""
    _git_repo(root)
    git = [GIT, "-C", str(root)]
    blob = subprocess.run(
        [*git, "rev-parse", "HEAD:notes.txt"], capture_output=True, check=True, text=True
    ).stdout.strip()
    (root / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    for key, value in (
        ("core.repositoryformatversion", "1"),
        ("extensions.partialClone", "origin"),
        ("remote.origin.promisor", "true"),
        ("remote.origin.url", url),
        ("protocol.ext.allow", "always"),
    ):
        subprocess.run([*git, "config", key, value], check=True)


async def test_a_promisor_remote_cannot_run_a_fetch_command(
    proc_ws: ProcWorkspace, mode: str
) -> None:
    """A repository set up as a partial clone whose promisor remote is an ext:: command:
    reading a missing object would fetch it through that command. No transport is allowed."""
    pwned = proc_ws.root / "pwned"
    _promisor_repo(proc_ws.root, f"ext::sh -c touch% {pwned}")
    tool = ExecuteCommandTool(ProcessRunner(mode))
    args = {"argv": ["git", "show", "HEAD:notes.txt"], "env": proc_ws.env()}
    result = await tool.run(args, proc_ws.ctx())
    assert b"not allowed" in result.stderr
    assert not pwned.exists()


async def test_diff_does_not_follow_a_symlink_below_a_directory(
    proc_ws: ProcWorkspace, mode: str
) -> None:
    """diff -r compares a symlink met inside the trees as a link, not what it points to."""
    for side in ("a", "b"):
        (proc_ws.root / side).mkdir()
    (proc_ws.root / "b" / "esc").symlink_to(proc_ws.outside)
    (proc_ws.root / "a" / "esc").mkdir()
    (proc_ws.root / "a" / "esc" / "secret.txt").write_text("other\n")  # diffed line by line
    tool = ExecuteCommandTool(ProcessRunner(mode))
    result = await tool.run({"argv": ["diff", "-r", "a", "b"], "env": proc_ws.env()}, proc_ws.ctx())
    assert PROC_SECRET.encode() not in result.output + result.stderr


@pytest.mark.parametrize("program", ["git", "tar"])
def test_git_and_tar_are_not_allowed_by_default(proc_ws: ProcWorkspace, program: str) -> None:
    """Off the default list: a principal is given them explicitly."""
    principal = proc_ws.principal(commands=DEFAULT_COMMANDS)
    with pytest.raises(PolicyDenied, match="not an allowed executable"):
        plan_command(principal, [program, "--version"])


async def test_command_failure_is_a_result(proc_ws: ProcWorkspace) -> None:
    """A command that exits non-zero returns a result with its exit code and stderr."""
    tool = ExecuteCommandTool(ProcessRunner())
    result = await tool.run({"argv": ["ls", "missing"], "env": proc_ws.env()}, proc_ws.ctx())
    assert result.exit_code == 2
    assert b"missing" in result.stderr
    assert result.payload is not None
    assert result.payload["sandbox"] in ("bwrap", "subreaper")


async def test_secret_never_reaches_output(proc_ws: ProcWorkspace) -> None:
    """Through every refusal above, the secret text never appears in a result."""
    tool = ExecuteCommandTool(ProcessRunner())
    with pytest.raises(PolicyDenied) as caught:
        await tool.run({"argv": ["cat", OUT], "env": proc_ws.env()}, proc_ws.ctx())
    assert PROC_SECRET not in str(caught.value)


async def test_read_only_root_cannot_be_written_by_a_command(
    proc_ws: ProcWorkspace, mode: str
) -> None:
    """A read-only root is mounted read-only (bwrap); without bwrap the command is refused."""
    principal = proc_ws.principal(roots=(Root(proc_ws.root, writable=False),))
    tool = ExecuteCommandTool(ProcessRunner(mode))
    args = {"argv": ["sort", "-o", "sorted", "notes.txt"], "env": proc_ws.env()}
    if mode == "subreaper":
        with pytest.raises(PolicyDenied, match="read-only roots need the bwrap sandbox"):
            await tool.run(args, proc_ws.ctx(principal))
    else:
        result = await tool.run(args, proc_ws.ctx(principal))
        assert result.exit_code != 0
    assert not (proc_ws.root / "sorted").exists()
