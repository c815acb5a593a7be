"""execute_python under attack: the static filter, and the sandbox behind it as the real wall."""

from __future__ import annotations

from pathlib import Path

import pytest

import clawq
from clawq_server import config
from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.python import check_python
from clawq_server.tools.process import ProcessRunner
from clawq_server.tools.python import ExecutePythonTool, system_python
from tests.conftest import ServerFactory
from tests.security.helpers_proc import PROC_SECRET, ProcWorkspace, needs_bwrap

pytest_plugins = ["tests.security.proc_fixtures"]

ALLOWED = frozenset({"math", "json"})

STATIC_ABUSE = [
    "import os",
    "import socket",
    "import subprocess",
    "import importlib",
    "import os.path",
    "from os import system",
    "from . import x",
    "import math, sys",
    "__import__('os')",
    "__builtins__",
    "__loader__.load_module('os')",
    "().__class__.__base__.__subclasses__()",
    "(lambda: 0).__globals__",
    "x = 1\nx.__dict__",
    "getattr(1, 'real')",
    "setattr(object, 'x', 1)",
    "delattr(object, 'x')",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'f', 'eval')",
    "open('notes.txt')",
    "globals()",
    "locals()",
    "vars()",
    "breakpoint()",
    "input()",
    "memoryview(b'x')",
    "'{0.__class__}'.format(1)",
    "f = '{0.__globals__}'",
    "match 1:\n    case int(__class__=c):\n        pass",
    "x = __spec__",
]


@pytest.mark.parametrize("code", STATIC_ABUSE)
def test_static_check_refuses(code: str) -> None:
    """Obvious abuse is refused before a process starts, naming the line."""
    with pytest.raises(PolicyDenied, match=r"args\.code: line \d+"):
        check_python(code, ALLOWED)


def test_static_check_names_the_line() -> None:
    """The refusal names the offending line."""
    with pytest.raises(PolicyDenied, match="line 3"):
        check_python("import math\nx = 1\nimport os\n", ALLOWED)


@pytest.mark.parametrize(
    "code",
    [
        "import math\nprint(math.sqrt(16))",
        "import json\nprint(json.dumps({'a': 1}))",
        "if __name__ == '__main__':\n    print('{0}'.format(1))",
        "class A:\n    def __init__(self):\n        self.x = 1\nprint(A().x)",
    ],
)
def test_static_check_allows_plain_code(code: str) -> None:
    """Ordinary code, including defining __init__, passes the filter."""
    check_python(code, ALLOWED)


def test_syntax_error_is_invalid_argument() -> None:
    """Code that does not parse is invalid input, with the line."""
    with pytest.raises(InvalidArgument, match="line 1"):
        check_python("def (:", ALLOWED)


async def test_python_disabled_is_refused(proc_ws: ProcWorkspace) -> None:
    """A principal without python_enabled cannot run Python at all."""
    tool = ExecutePythonTool(ProcessRunner())
    with pytest.raises(PolicyDenied, match="not enabled"):
        await tool.run({"code": "print(1)"}, proc_ws.ctx())


async def test_python_outside_bubblewrap_needs_the_operator(proc_ws: ProcWorkspace) -> None:
    """In subreaper mode nothing contains the code: refused unless python_without_sandbox."""
    principal = proc_ws.principal(python_enabled=True)
    refused = ExecutePythonTool(ProcessRunner("subreaper"))
    with pytest.raises(PolicyDenied, match="needs the bwrap sandbox"):
        refused.check(principal, {"code": "print(1)"})
    with pytest.raises(PolicyDenied, match="needs the bwrap sandbox"):
        await refused.run({"code": "print(1)"}, proc_ws.ctx(principal))
    accepted = ExecutePythonTool(ProcessRunner("subreaper"), without_sandbox=True)
    result = await accepted.run({"code": "print(1)"}, proc_ws.ctx(principal))
    assert result.output == b"1\n"


async def test_python_runs_when_enabled(proc_ws: ProcWorkspace, mode: str) -> None:
    """Allowed code runs in a separate interpreter and returns its output."""
    tool = ExecutePythonTool(ProcessRunner(mode), without_sandbox=True)
    principal = proc_ws.principal(python_enabled=True)
    code = "import math\nprint(math.factorial(5))"
    result = await tool.run({"code": code}, proc_ws.ctx(principal))
    assert (result.exit_code, result.output) == (0, b"120\n")


async def test_python_exception_is_a_result(proc_ws: ProcWorkspace, mode: str) -> None:
    """An exception in the code is a non-zero exit with the traceback on stderr."""
    tool = ExecutePythonTool(ProcessRunner(mode), without_sandbox=True)
    principal = proc_ws.principal(python_enabled=True)
    result = await tool.run({"code": "1 / 0"}, proc_ws.ctx(principal))
    assert result.exit_code == 1
    assert b"ZeroDivisionError" in result.stderr


async def test_python_timeout_kills_it(proc_ws: ProcWorkspace, mode: str) -> None:
    """An endless loop is killed at its timeout and reported so."""
    tool = ExecutePythonTool(ProcessRunner(mode), without_sandbox=True)
    principal = proc_ws.principal(python_enabled=True)
    result = await tool.run({"code": "while True: pass", "timeout_s": 0.5}, proc_ws.ctx(principal))
    assert result.payload is not None
    assert result.payload["timed_out"] is True
    assert result.exit_code is None


# ---- escapes that slip past the filter: the sandbox must hold (static check bypassed) ----

# Rebuilds __import__ from string pieces, without a dunder in any attribute or name token.
GET_IMPORT = (
    "g = getattr\n"
    "d = '_' * 2\n"
    "b = g(g(lambda: 0, d + 'glo' + 'bals' + d)[d + 'builtins' + d], 'get', None)\n"
    "imp = b(d + 'imp' + 'ort' + d) if b else g(__builtins__, d + 'import' + d)\n"
)
SUBCLASS_CHAIN = (
    "d = '_' * 2\n"
    "base = getattr(getattr((), d + 'cla' + 'ss' + d), d + 'base' + d)\n"
    "subs = getattr(base, d + 'subclasses' + d)()\n"
    "inits = [getattr(c, d + 'init' + d) for c in subs]\n"
    "found = [getattr(i, d + 'globals' + d, None) for i in inits]\n"
    "glb = [f for f in found if f and d + 'builtins' + d in f][0]\n"
    "b = glb[d + 'builtins' + d]\n"
    "imp = b[d + 'import' + d] if isinstance(b, dict) else getattr(b, d + 'import' + d)\n"
)

ESCAPES = {
    "read_secret_outside": GET_IMPORT
    + "os = imp('os')\nprint(os.read(os.open({secret!r}, 0), 100))",
    "read_etc_shadow": GET_IMPORT
    + "os = imp('os')\nprint(os.read(os.open('/etc/shadow', 0), 100))",
    "subclasses_chain_read": SUBCLASS_CHAIN
    + "os = imp('os')\nprint(os.read(os.open({secret!r}, 0), 100))",
    "format_string_leak": "print('{{0.__class__.__base__}}'.format(1))\n"
    + GET_IMPORT
    + "print(imp('os').listdir({outside!r}))",
    "socket_to_host_redis": GET_IMPORT
    + "s = imp('socket').create_connection(('127.0.0.1', 6379), 2)\n"
    "s.sendall(b'PING\\r\\n')\nprint('connected', s.recv(10))",
    "socket_to_internet": GET_IMPORT + "imp('socket').create_connection(('1.1.1.1', 53), 2)\n"
    "print('connected')",
    "shell_out": GET_IMPORT + "print(imp('os').system('cat {secret}'))",
    "write_outside": GET_IMPORT
    + "open_ = imp('io').open\nopen_({outside!r} + '/x', 'w').write('pwn')",
}


@needs_bwrap
@pytest.mark.parametrize("name", sorted(ESCAPES))
async def test_escape_past_the_filter_stays_contained(proc_ws: ProcWorkspace, name: str) -> None:
    """Code the filter would refuse, run anyway: no secret, no network, nothing written outside."""
    secret = str(proc_ws.outside / "secret.txt")
    code = ESCAPES[name].format(secret=secret, outside=str(proc_ws.outside))
    with pytest.raises(PolicyDenied):
        check_python(code, frozenset({"math"}))
    before = proc_ws.outside_snapshot()
    runner = ProcessRunner("bwrap")
    argv = (system_python(), "-I", "-S", "-c", code)
    out = await runner.run(proc_ws.spec(*argv, timeout_s=10))
    assert PROC_SECRET.encode() not in out.stdout + out.stderr
    assert b"connected" not in out.stdout
    assert b"secret.txt" not in out.stdout
    assert b"root:" not in out.stdout
    assert proc_ws.outside_snapshot() == before
    assert out.exit_code != 0 or b"127" in out.stdout or b"256" in out.stdout


@needs_bwrap
async def test_escape_cannot_outlive_its_timeout(proc_ws: ProcWorkspace) -> None:
    """Code that forks a setsid daemon past the filter is still killed with its tree."""
    code = (
        GET_IMPORT + "os = imp('os')\n"
        "if os.fork() == 0:\n    os.setsid()\n    imp('time').sleep(1000)\n"
        "imp('time').sleep(1000)\n"
    )
    out = await ProcessRunner("bwrap").run(
        proc_ws.spec(system_python(), "-I", "-S", "-c", code, timeout_s=0.5)
    )
    assert out.timed_out


@pytest.mark.parametrize("accepted", [False, True])
async def test_the_server_setting_reaches_the_tool(
    server_factory: ServerFactory, accepted: bool
) -> None:
    """`python_without_sandbox` in the configuration decides for a subreaper server."""
    async with (
        server_factory(
            sandbox="subreaper",
            python_without_sandbox=accepted,
            principal_overrides={"python_enabled": True},
        ) as served,
        clawq.AsyncClient(served.target) as client,
    ):
        if accepted:
            assert (await client.execute("execute_python", code="print(2)")).output == "2\n"
        else:
            with pytest.raises(clawq.PermissionDenied, match="needs the bwrap sandbox"):
                await client.execute("execute_python", code="print(2)")


def test_the_setting_is_read_from_the_file(tmp_path: Path) -> None:
    """[server] python_without_sandbox = true is loaded; it is off by default."""
    path = tmp_path / "clawq.toml"
    path.write_text("[server]\npython_without_sandbox = true\n")
    assert config.load(path, {}).python_without_sandbox
    assert not config.load(None, {}).python_without_sandbox
