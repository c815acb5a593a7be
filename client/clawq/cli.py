"""The `clawq` command: options, dispatch, and exit codes (0 ok, 1 task failed, 2 usage or RPC)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from clawq import cli_commands as commands
from clawq.cli_render import error_json, one_line, print_json, task_json
from clawq.errors import DeadlineExceeded, Error, TaskFailed
from clawq.sync import Client

#: Subcommands run by the server package, which receives the rest of the command line.
SERVER_COMMANDS = ("serve", "worker", "audit")
DEFAULT_TARGET = "127.0.0.1:50051"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def _global_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after the command's name."""
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    parent.add_argument("--target", help=f"server HOST:PORT (env CLAWQ_TARGET; {DEFAULT_TARGET})")
    parent.add_argument("--token", help="bearer token (env CLAWQ_TOKEN)")
    parent.add_argument("--tls", action="store_true", help="connect with TLS")
    parent.add_argument("--ca", help="CA certificate file to trust (PEM)")
    parent.add_argument("--cert", help="client certificate file for mTLS (PEM)")
    parent.add_argument("--key", help="client private key file for mTLS (PEM)")
    parent.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The parser of every client-side command."""
    common = _global_options()
    parser = _Parser(
        prog="clawq",
        parents=[common],
        description="Queue, run and inspect tool calls on a clawq server.",
        epilog="Server side: clawq serve|worker|audit ... (needs clawq[server]).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.register(sub, common)
    return parser


def _settings(ns: argparse.Namespace, env: Mapping[str, str]) -> argparse.Namespace:
    """Fill the global options from the environment and defaults."""
    ns.target = getattr(ns, "target", None) or env.get("CLAWQ_TARGET") or DEFAULT_TARGET
    ns.token = getattr(ns, "token", None) or env.get("CLAWQ_TOKEN") or None
    for name in ("tls", "json"):
        setattr(ns, name, getattr(ns, name, False))
    for name in ("ca", "cert", "key"):
        setattr(ns, name, getattr(ns, name, None))
    return ns


def _forward(argv: list[str]) -> int:
    """Run a server-side command in clawq_server, if it is installed."""
    try:
        server_main = importlib.import_module("clawq_server.main")
    except ImportError:
        print(f"clawq: '{argv[0]}' needs the server: install clawq[server]", file=sys.stderr)
        return EXIT_USAGE
    code = server_main.main(argv)
    return int(code or 0)


def _report(ns: argparse.Namespace, exc: Error | TaskFailed) -> int:
    """Report a failure on one line (and as JSON with --json); return the exit code."""
    task = exc.task if isinstance(exc, TaskFailed | DeadlineExceeded) else None
    if ns.json and task is not None:
        print_json(task_json(task))
    elif ns.json and isinstance(exc, Error):
        print_json({"error": error_json(exc)})
    print(f"clawq: {one_line(str(exc))}", file=sys.stderr)
    return EXIT_FAILED if task is not None else EXIT_USAGE


def run(ns: argparse.Namespace) -> int:
    """Connect and run the parsed command."""
    try:
        with Client(ns.target, ns.token, tls=ns.tls, ca=ns.ca, cert=ns.cert, key=ns.key) as client:
            code: int = ns.handler(client, ns)
            return code
    except (TaskFailed, Error) as exc:
        return _report(ns, exc)
    except commands.UsageError as exc:
        print(f"clawq: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"clawq: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """The `clawq` entry point; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SERVER_COMMANDS:
        return _forward(args)
    ns = _settings(build_parser().parse_args(args), os.environ)
    try:
        return run(ns)
    except KeyboardInterrupt:
        print("clawq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
