"""Turns a call's credentials (bearer token or client certificate) into a principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from clawq_server.config import ANONYMOUS, AuthConfig, hash_token
from clawq_server.errors import Unauthenticated
from clawq_server.policy.principal import Principal

PrincipalLookup = Callable[[str], Principal | None]


class Authenticator:
    """Resolves the principal of an RPC from its metadata and TLS peer."""

    def __init__(self, auth: Callable[[], AuthConfig], principals: PrincipalLookup) -> None:
        self._auth = auth
        self._principals = principals

    def __call__(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The caller's principal; raises Unauthenticated."""
        name = self._name(context)
        principal = self._principals(name)
        if principal is None:
            raise Unauthenticated("credentials map to no configured principal")
        return principal

    def _name(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        auth = self._auth()
        headers = [
            value if isinstance(value, str) else value.decode()
            for key, value in context.invocation_metadata() or ()
            if key == "authorization"
        ]
        if len(headers) > 1:  # a proxy may have checked another one than the one used
            raise Unauthenticated("more than one authorization header")
        header = headers[0] if headers else ""
        if header:
            scheme, _, token = header.partition(" ")
            name = (
                auth.tokens.get(hash_token(token.strip())) if scheme.lower() == "bearer" else None
            )
            if name is None:
                raise Unauthenticated("invalid bearer token")
            return name
        subject = _peer_subject(context) if auth.subjects else ""
        if subject and subject in auth.subjects:
            return auth.subjects[subject]
        if auth.anonymous:
            return ANONYMOUS
        raise Unauthenticated("a bearer token or a client certificate is required")


def _peer_subject(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    values = list(context.auth_context().get("x509_common_name") or [])
    return values[0].decode() if values else ""
