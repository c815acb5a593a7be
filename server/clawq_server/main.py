"""The server-side commands behind `clawq serve`, `clawq worker` and `clawq audit`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from clawq_server import audit, config
from clawq_server.app import build_app
from clawq_server.errors import ClawqError

log = logging.getLogger("clawq")
GC_YOUNG_THRESHOLD = 20_000


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--db", type=Path, help="SQLite database file (embedded mode)")
    parser.add_argument("--redis-url", help="Redis URL (cluster mode), e.g. redis://host:6379/0")
    parser.add_argument("--redis-prefix", help="prefix of every Redis key")
    parser.add_argument(
        "--root", action="append", type=Path, default=[], help="allowed root (repeat)"
    )
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "subreaper"], help="command sandbox")
    parser.add_argument("--audit-log", type=Path, help="audit log file (JSON lines)")
    parser.add_argument("--lease", type=float, help="lease length in seconds")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawq")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server (with in-process workers)")
    _common(serve)
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051)")
    serve.add_argument("--workers", type=int, help="in-process worker concurrency (0: none)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback bind without TLS and authentication",
    )
    worker = commands.add_parser("worker", help="run a worker against a shared Redis")
    _common(worker)
    worker.add_argument("--concurrency", type=int, default=4, help="tasks run at once")
    audit_cmd = commands.add_parser("audit", help="audit log tools")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check an audit log's hash chain")
    verify.add_argument("file", type=Path)
    return parser


def _config(args: argparse.Namespace) -> config.Config:
    env = os.environ
    flags: dict[str, object] = {}
    if args.db is not None:
        flags["backend_url"] = f"sqlite://{args.db}"
    if args.redis_url:
        flags["backend_url"] = args.redis_url
    for name, key in (
        ("redis_prefix", "redis_prefix"),
        ("sandbox", "sandbox"),
        ("lease", "lease_s"),
        ("audit_log", "audit_path"),
    ):
        if getattr(args, name) is not None:
            flags[key] = getattr(args, name)
    for name in ("listen", "workers", "insecure"):
        if getattr(args, name, None) is not None:
            flags[name] = getattr(args, name)
    if args.command == "worker":
        flags["workers"] = args.concurrency
    loaded = config.load(args.config, env, **flags)
    if args.root or not loaded.principals:
        roots = args.root or [Path(".clawq/workspace")]
        for root in roots:
            root.mkdir(parents=True, exist_ok=True)
        principals = {**loaded.principals, config.ANONYMOUS: config.default_principal(roots)}
        loaded = replace(loaded, principals=principals)
    return loaded


async def _run(cfg: config.Config, *, serve: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_app(cfg, serve=serve, env=os.environ) as app:
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload()))
        what = (
            f"listening on {cfg.listen.rsplit(':', 1)[0]}:{app.port}" if serve else "worker running"
        )
        log.info(
            "clawq %s (backend %s, workers %d, sandbox %s, tls %s)",
            what,
            cfg.backend_url,
            cfg.workers,
            app.sandbox,
            "on" if cfg.tls else "off",
        )
        _tune_gc()
        await stop.wait()
        log.info("clawq stopping")


def _tune_gc() -> None:
    # A batch allocates thousands of short-lived objects, so with the default threshold
    # (700 allocations) the collector ran several times per batch, and a read of 1,000
    # tasks spent a third of its time in it. What startup built lives for the process and
    # is frozen out of collection; cycles are still collected, just in larger steps.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def main(argv: list[str]) -> int:
    """Run a server-side command; argv[0] is the subcommand."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "audit":
        verdict = audit.verify(args.file)
        if verdict.ok:
            print(f"ok: {verdict.records} records, chain intact")
            return 0
        print(f"line {verdict.bad_line}: {verdict.problem}", file=sys.stderr)
        return 1
    try:
        cfg = _config(args)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(cfg, serve=args.command == "serve"))
    except ClawqError as error:
        print(f"clawq: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
