"""Configuration: TOML file < environment (CLAWQ_*) < flags, validated once into dataclasses."""

from __future__ import annotations

import hashlib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clawq_server.errors import InvalidArgument
from clawq_server.policy.principal import (
    DEFAULT_COMMANDS,
    DEFAULT_DENY_PATTERNS,
    Limits,
    Principal,
    Root,
)

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"


def hash_token(token: str) -> str:
    """How bearer tokens are stored: their SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server certificate and key; a client CA turns on mTLS (client certificates required)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may call: token hashes and certificate subjects mapped to principal names."""

    tokens: Mapping[str, str] = field(default_factory=dict)
    subjects: Mapping[str, str] = field(default_factory=dict)
    anonymous: bool = True

    @property
    def required(self) -> bool:
        """True when callers must present a token or a client certificate."""
        return bool(self.tokens or self.subjects) or not self.anonymous


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The result cache: backend, bounds, TTLs."""

    enabled: bool = True
    max_entries: int = 10_000
    max_bytes: int = 256 << 20
    max_entry_bytes: int = 1 << 20
    ttl_s: float = 3600.0
    tool_ttl_s: Mapping[str, float] = field(default_factory=dict)
    disabled_tools: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a clawq process needs to start."""

    listen: str = "127.0.0.1:50051"
    backend_url: str = "sqlite://.clawq/clawq.db"
    redis_prefix: str = "clawq"
    workers: int = 4
    lease_s: float = 30.0
    max_queued: int = 0
    insecure: bool = False
    tls: TlsConfig | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    principals: Mapping[str, Principal] = field(default_factory=dict)
    audit_path: Path | None = Path(".clawq/audit.jsonl")
    redact_patterns: tuple[str, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    sandbox: str = "auto"
    # execute_python outside bubblewrap runs as the worker's user, uncontained: refused
    # unless the operator says so.
    python_without_sandbox: bool = False
    grace_s: float = 10.0
    remote_tools: tuple[
        Mapping[str, Any], ...
    ] = ()  # `[[tools]]` tables: tools external workers run
    source: Path | None = None


_DEFAULT = Config()


def default_principal(roots: list[Path]) -> Principal:
    """The anonymous principal of a local server: the given roots, read-mostly commands."""
    return Principal(
        name=ANONYMOUS,
        roots=tuple(Root.at(r.resolve()) for r in roots),
        commands=DEFAULT_COMMANDS,
        worker=True,
        admin=True,
    )


def _limits(raw: Mapping[str, Any]) -> Limits:
    known = {f.name for f in fields(Limits)}
    unknown = set(raw) - known
    if unknown:
        raise InvalidArgument.field("limits", f"unknown keys {sorted(unknown)}")
    return Limits(**raw)


def _principal(raw: Mapping[str, Any], base: Path) -> Principal:
    name = str(raw["name"])
    roots = tuple(
        Root.at((base / str(r["path"])).resolve(), bool(r.get("writable", True)))
        for r in raw.get("roots", [])
    )
    if not roots:
        raise InvalidArgument.field(f"principals.{name}.roots", "at least one root is required")
    tools = raw.get("tools")
    return Principal(
        name=name,
        roots=roots,
        tools=frozenset(tools) if tools is not None else None,
        commands=tuple(raw.get("commands", DEFAULT_COMMANDS)),
        env_allow=frozenset(raw.get("env_allow", ())),
        deny_patterns=(*DEFAULT_DENY_PATTERNS, *_deny(raw.get("deny", []), name)),
        python_enabled=bool(raw.get("python", False)),
        allow_recursive_delete=bool(raw.get("allow_recursive_delete", False)),
        limits=_limits(raw.get("limits", {})),
        rate_per_s=float(raw.get("rate_per_s", 0.0)),
        burst=int(raw.get("burst", 0)),
        max_queued=int(raw.get("max_queued", 0)),
        worker=bool(raw.get("worker", False)),
        admin=bool(raw.get("admin", False)),
    )


def _deny(raw: Any, principal: str) -> tuple[str, ...]:
    """A principal's own deny patterns: added to the defaults, which cannot be dropped."""
    if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip("/") for p in raw):
        raise InvalidArgument.field(
            f"principals.{principal}.deny", "must be a list of non-empty glob patterns"
        )
    return tuple(raw)


_CREDENTIALS = ("token_sha256", "token_env", "cert_subjects")


def _auth(principals: list[Mapping[str, Any]], env: Mapping[str, str]) -> AuthConfig:
    """Token hashes and subjects by principal. One credential naming two principals is
    refused; a token_env that is not set leaves that principal unable to authenticate (a
    `clawq worker` reads the same file without the server's tokens) but never turns
    authentication off: only a file declaring no credential at all allows anonymous calls.
    """
    tokens: dict[str, str] = {}
    subjects: dict[str, str] = {}

    def claim(table: dict[str, str], key: str, name: str, field: str) -> None:
        if table.setdefault(key, name) != name:
            raise InvalidArgument.field(
                f"principals.{name}.{field}", f"is also a credential of {table[key]!r}"
            )

    for raw in principals:
        name = str(raw["name"])
        for digest in raw.get("token_sha256", []):
            claim(tokens, str(digest), name, "token_sha256")
        env_name = raw.get("token_env")
        if env_name and env.get(env_name):
            claim(tokens, hash_token(env[env_name]), name, "token_env")
        elif env_name:
            log.info("%s cannot authenticate here: %s is not set", name, env_name)
        for subject in raw.get("cert_subjects", []):
            claim(subjects, str(subject), name, "cert_subjects")
    declared = any(raw.get(key) for raw in principals for key in _CREDENTIALS)
    return AuthConfig(tokens=tokens, subjects=subjects, anonymous=not declared)


def _principals(raws: list[Mapping[str, Any]], base: Path) -> dict[str, Principal]:
    out: dict[str, Principal] = {}
    for raw in raws:
        principal = _principal(raw, base)
        if principal.name in out:
            raise InvalidArgument.field(f"principals.{principal.name}", "is defined twice")
        out[principal.name] = principal
    return out


def load(path: Path | None, env: Mapping[str, str], **flags: Any) -> Config:
    """Build a Config from a TOML file, then CLAWQ_* environment, then flags (highest)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InvalidArgument(f"cannot read config {path}: {error}") from error
    base = path.parent.resolve() if path is not None else Path.cwd()
    server = raw.get("server", {})
    principals_raw = raw.get("principals", [])
    config = Config(
        listen=server.get("listen", _DEFAULT.listen),
        backend_url=server.get("backend", _DEFAULT.backend_url),
        workers=int(server.get("workers", _DEFAULT.workers)),
        lease_s=float(server.get("lease_s", _DEFAULT.lease_s)),
        max_queued=int(server.get("max_queued", 0)),
        insecure=bool(server.get("insecure", False)),
        tls=_tls(raw.get("tls"), base),
        auth=_auth(principals_raw, env),
        principals=_principals(principals_raw, base),
        audit_path=_audit_path(raw.get("audit", {}), base),
        redact_patterns=tuple(raw.get("audit", {}).get("redact_patterns", ())),
        cache=_cache(raw.get("cache", {})),
        sandbox=str(server.get("sandbox", "auto")),
        python_without_sandbox=bool(server.get("python_without_sandbox", False)),
        remote_tools=tuple(raw.get("tools", [])),
        source=path,
    )
    overrides: dict[str, Any] = {
        "listen": env.get("CLAWQ_LISTEN"),
        "backend_url": env.get("CLAWQ_BACKEND") or env.get("CLAWQ_REDIS_URL"),
        "redis_prefix": env.get("CLAWQ_REDIS_PREFIX"),
    }
    overrides.update(flags)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _tls(raw: Mapping[str, Any] | None, base: Path) -> TlsConfig | None:
    if not raw:
        return None
    ca = raw.get("client_ca")
    return TlsConfig(base / raw["cert"], base / raw["key"], base / ca if ca else None)


def _audit_path(raw: Mapping[str, Any], base: Path) -> Path | None:
    if raw.get("enabled", True) is False:
        return None
    return base / raw["path"] if "path" in raw else _DEFAULT.audit_path


def _cache(raw: Mapping[str, Any]) -> CacheConfig:
    return CacheConfig(
        enabled=bool(raw.get("enabled", True)),
        max_entries=int(raw.get("max_entries", _DEFAULT.cache.max_entries)),
        max_bytes=int(raw.get("max_bytes", _DEFAULT.cache.max_bytes)),
        max_entry_bytes=int(raw.get("max_entry_bytes", _DEFAULT.cache.max_entry_bytes)),
        ttl_s=float(raw.get("ttl_s", _DEFAULT.cache.ttl_s)),
        tool_ttl_s=dict(raw.get("tool_ttl_s", {})),
        disabled_tools=frozenset(raw.get("disabled_tools", ())),
    )
