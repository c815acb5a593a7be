"""The composition root: config → backends → services → server, started and stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clawq_server import config as config_mod
from clawq_server.api.admin_service import AdminServicer
from clawq_server.api.auth import Authenticator
from clawq_server.api.server import Served, is_loopback, start_server
from clawq_server.api.task_service import TaskServicer
from clawq_server.api.worker_service import WorkerServicer
from clawq_server.audit import AuditLog, AuditSink, NullAudit, Redactor
from clawq_server.cache.redis import RedisStore
from clawq_server.cache.tool_cache import ToolCache, watcher
from clawq_server.config import Config
from clawq_server.errors import ClawqError, InvalidArgument
from clawq_server.model import RetryPolicy
from clawq_server.policy.limits import RateLimiter
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue
from clawq_server.queue.redis import RedisQueue
from clawq_server.queue.sqlite import SqliteQueue
from clawq_server.recorder import Recorder
from clawq_server.store.hybrid import HybridQueue
from clawq_server.store.sqlite_archive import SqliteArchive
from clawq_server.submission import Admission
from clawq_server.tasks import Tasks
from clawq_server.tools import builtin
from clawq_server.tools.builtin import Toolset
from clawq_server.tools.registry import ToolRegistry
from clawq_server.worker import middleware
from clawq_server.worker.cache_link import CacheLink
from clawq_server.worker.runner import Worker, WorkerSettings

log = logging.getLogger("clawq")


@dataclass
class Policy:
    """The part of the config that reload may swap: principals and auth."""

    config: Config

    def principal(self, name: str) -> Principal | None:
        """The named principal of the current config."""
        return self.config.principals.get(name)


def open_queue(config: Config, *, serve: bool = True) -> TaskQueue:
    """The queue backend named by config.backend_url; serve: the process answers clients."""
    url = config.backend_url
    retry = RetryPolicy()
    if url.startswith("sqlite://"):
        path = Path(url.removeprefix("sqlite://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteQueue(path, retry=retry, max_queued=config.max_queued)
    if is_redis(url):
        return _redis_queue(config, retry, watch_results=serve)
    raise InvalidArgument.field("backend", f"unsupported backend URL {url!r}")


def is_redis(url: str) -> bool:
    """True when url names a Redis server."""
    return url.startswith(("redis://", "rediss://", "unix://"))


def open_cache(config: Config, registry: ToolRegistry) -> ToolCache:
    """The result cache: shared in Redis for a cluster, in memory for one process."""
    if is_redis(config.backend_url):
        store = RedisStore(split_archive(config.backend_url)[0], prefix=config.redis_prefix)
        return ToolCache(config.cache, store, registry, watcher())
    return ToolCache.in_memory(config.cache, registry)


def split_archive(url: str) -> tuple[str, str]:
    """The Redis URL without its ``archive`` option, and that option ("" when absent)."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    archive = options.pop("archive", "")
    return urlunsplit(parts._replace(query=urlencode(options))), archive


def _redis_queue(config: Config, retry: RetryPolicy, *, watch_results: bool) -> TaskQueue:
    """A Redis queue; with ``?archive=PATH`` in the URL, finished tasks are also kept in a
    SQLite archive, so they outlive Redis retention (redis-py refuses unknown URL options,
    hence the option is taken out first)."""
    url, archive = split_archive(config.backend_url)
    live = RedisQueue(
        url,
        prefix=config.redis_prefix,
        retry=retry,
        max_queued=config.max_queued,
        archive=bool(archive),
        watch_results=watch_results,
    )
    if not archive:
        return live
    Path(archive).parent.mkdir(parents=True, exist_ok=True)
    return HybridQueue(live, SqliteArchive(Path(archive)))


def check_bind(config: Config) -> None:
    """Refuse to expose an unauthenticated, unencrypted server beyond loopback."""
    if is_loopback(config.listen) or config.insecure:
        return
    if config.tls is None or not config.auth.required:
        raise InvalidArgument(
            f"refusing to listen on {config.listen} without TLS and authentication; "
            "configure both or pass --insecure"
        )


@dataclass
class App:
    """A running clawq process: server and/or workers over one queue."""

    config: Config
    queue: TaskQueue
    cache: ToolCache
    reload: Reloader
    recorder: Recorder
    served: Served | None = None
    workers: list[Worker] = field(default_factory=list)
    audit: AuditLog | None = None
    sandbox: str = "none"
    watcher: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (0 when no server runs)."""
        return self.served.port if self.served else 0


@contextlib.asynccontextmanager
async def build_app(
    config: Config, *, serve: bool = True, env: Mapping[str, str] | None = None
) -> AsyncIterator[App]:
    """Start queue, audit, workers and server; stop them in reverse order on exit."""
    if serve:
        check_bind(config)
    policy = Policy(config)
    queue = open_queue(config, serve=serve)
    await queue.start()
    audit = await _open_audit(config)
    sink: AuditSink = audit if audit is not None else NullAudit()
    tools = builtin.build(
        config.sandbox, config.remote_tools, python_without_sandbox=config.python_without_sandbox
    )
    cache = open_cache(config, tools.registry)
    app = App(
        config,
        queue,
        cache,
        Reloader(policy, env or {}),
        Recorder(queue),
        audit=audit,
        sandbox=tools.sandbox,
    )
    if config.source is not None:
        app.watcher = asyncio.create_task(app.reload.watch(), name="config-watch")
    try:
        if config.workers > 0:
            app.workers.append(await _start_worker(app, tools, policy, sink))
        if serve:
            app.served = await _serve(app, tools, policy, sink)
        yield app
    finally:
        await _shutdown(app)


async def _open_audit(config: Config) -> AuditLog | None:
    if config.audit_path is None:
        return None
    audit = AuditLog(config.audit_path, Redactor(config.redact_patterns))
    await audit.start()
    return audit


async def _start_worker(app: App, tools: Toolset, policy: Policy, sink: AuditSink) -> Worker:
    """One in-process worker running config.workers tasks at once through the chain."""
    chain = middleware.build_chain(
        [
            middleware.Metrics(),
            middleware.Audit(sink),
            middleware.Permission(tools.permissions),
            middleware.Validation(tools.registry),
            CacheLink(app.cache),
            middleware.Timeout(default_s=300.0),
        ]
    )
    config = app.config
    worker = Worker(
        app.queue,
        tools.registry,
        policy.principal,
        chain,
        WorkerSettings(
            tools=tools.local,
            concurrency=config.workers,
            lease_s=config.lease_s,
            grace_s=config.grace_s,
        ),
        may_lease=lambda: sink.accepting,
    )
    await worker.start()
    return worker


async def _serve(app: App, tools: Toolset, policy: Policy, sink: AuditSink) -> Served:
    """The gRPC server with its three services, started."""
    admission = Admission(tools.registry, tools.permissions, RateLimiter(), sink, RetryPolicy())
    authenticate = Authenticator(lambda: policy.config.auth, policy.principal)
    tasks = Tasks(app.queue, admission, app.cache, app.recorder)
    return await start_server(
        app.config.listen,
        app.config.tls,
        TaskServicer(tasks, authenticate),
        AdminServicer(tools.registry, app.queue, app.cache, app.reload, authenticate),
        WorkerServicer(app.queue, authenticate, sink, policy.principal, tools.permissions),
    )


async def _shutdown(app: App) -> None:
    if app.watcher is not None:
        app.watcher.cancel()
    if app.served is not None:
        await app.served.set_serving(False)
        await app.served.server.stop(grace=app.config.grace_s)
    for worker in app.workers:
        await worker.stop()
    await builtin.finish_file_calls()
    await app.recorder.close()
    await app.cache.close()
    if app.audit is not None:
        await app.audit.close()
    await app.queue.close()


class Reloader:
    """Re-reads the config file on request, on SIGHUP and when the file changes.

    Only principals and auth are swapped; an invalid file is refused and the old
    configuration stays in force.
    """

    def __init__(self, policy: Policy, env: Mapping[str, str]) -> None:
        self._policy = policy
        self._env = env
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        source = self._policy.config.source
        try:
            stat = source.stat() if source is not None else None
        except OSError:
            return None
        return None if stat is None else (stat.st_mtime_ns, stat.st_size)

    async def __call__(self) -> str:
        """Reload now; an empty string on success, else why the new file was refused."""
        current = self._policy.config
        if current.source is None:
            return "no configuration file to reload"
        self._stamp = self._file_stamp()
        try:
            fresh = await asyncio.to_thread(config_mod.load, current.source, self._env)
            if current.auth.required and not fresh.auth.required:
                raise InvalidArgument(
                    "the file declares no credential: a reload cannot turn authentication off"
                )
        except Exception as error:  # a malformed file can fail the loader in any way
            message = error.message if isinstance(error, ClawqError) else repr(error)
            log.warning("configuration reload refused: %s", message)
            return f"refused: {message}"
        kept = {k: v for k, v in current.principals.items() if k == config_mod.ANONYMOUS}
        self._policy.config = replace(
            current, auth=fresh.auth, principals={**kept, **fresh.principals}
        )
        log.info("configuration reloaded from %s", current.source)
        return ""

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's mtime or size changes (polled: one stat a second)."""
        while True:
            await asyncio.sleep(interval)
            if self._file_stamp() != self._stamp:
                await self()
