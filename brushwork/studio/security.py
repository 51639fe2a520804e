"""Request checks that keep the studio local: Host, Origin and body size.

A pure ASGI middleware (so the event stream is not buffered) that refuses, before any
route runs:

* a ``Host`` header naming another machine (DNS rebinding: a web page on evil.example
  whose name is re-pointed at 127.0.0.1 would otherwise talk to the studio as itself);
* a non-GET request whose ``Origin`` (or ``Sec-Fetch-Site``) says another site sent it
  (cross-site request forgery); scripts such as curl send no Origin and are let through;
* a body over its limit, by ``Content-Length`` up front and by counting while reading.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Sent with every response: no framing, no sniffing, nothing loaded from elsewhere.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'self'"),
]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class BodyTooLarge(Exception):
    """The request body grew past its limit while being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the limit of {limit} bytes")
        self.limit = limit


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hostnames(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may name for a server bound to ``bound``.

    Loopback: only the loopback names.  A specific address: it and loopback.  All
    interfaces (0.0.0.0, ::): any IP literal (rebinding needs a domain name), loopback,
    and this machine's own names.
    """
    bound = bound.strip("[]").lower()
    names = set(LOOPBACK_NAMES) | {bound} | {e.strip("[]").lower() for e in extra}
    if bound in ("0.0.0.0", "::", ""):
        names.add("*ip")
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
    return frozenset(names)


def split_host(value: str) -> tuple[str, str | None]:
    """``"127.0.0.1:8000"`` -> ("127.0.0.1", "8000"); ``"[::1]:80"`` -> ("::1", "80")."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", None
        host, rest = value[1:end], value[end + 1:]
        return host, (rest[1:] if rest.startswith(":") else None)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


def host_ok(host_header: str | None, allowed: frozenset[str]) -> bool:
    if not host_header:
        return False
    host, port = split_host(host_header)
    if not host or (port is not None and not port.isdigit()):
        return False
    if host in allowed:
        return True
    return "*ip" in allowed and _is_ip(host)


def origin_ok(origin: str | None, host_header: str | None, fetch_site: str | None) -> bool:
    """Same-origin or no browser origin at all (a script)."""
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or not host_header:
        return False
    return parts.netloc.lower() == host_header.strip().lower()


@dataclass(frozen=True)
class BodyLimits:
    default: int = 64 * 1024  # JSON requests
    upload: int = 25 * 1024 * 1024 + 64 * 1024  # the file and multipart framing
    upload_path: str = "/api/upload"
    clip: int = 50 * 1024 * 1024 + 64 * 1024  # a video (clips.py)
    clip_path: str = "/api/upload/clip"

    def for_path(self, path: str) -> int:
        if path == self.clip_path:
            return self.clip
        return self.upload if path == self.upload_path else self.default


class Guard:
    """ASGI middleware applying the checks above to every HTTP request."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], limits: BodyLimits) -> None:
        self.app = app
        self.hosts = hosts
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        method = scope["method"].upper()
        if not host_ok(host, self.hosts):
            await _refuse(send, 400, "unexpected Host header; open the studio by the "
                                     "address it printed")
            return
        if method not in SAFE_METHODS and not origin_ok(
                headers.get("origin"), host, headers.get("sec-fetch-site")):
            await _refuse(send, 403, "cross-origin request refused")
            return
        if method in SAFE_METHODS and scope["path"].startswith("/api/") and \
                headers.get("sec-fetch-site", "same-origin").lower() == "cross-site":
            await _refuse(send, 403, "cross-site request refused")
            return

        limit = self.limits.for_path(scope["path"])
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _refuse(send, 400, "malformed Content-Length")
                return
            if int(length) > limit:
                await _refuse(send, 413, f"request body over the limit of {limit} bytes")
                return

        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message, headers=[*message.get("headers", []),
                                                 *SECURITY_HEADERS])
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as e:
            if started:
                raise
            await _refuse(send, 413, str(e))


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        if name in out:  # duplicated Host/Origin headers are suspicious: make them fail
            out[name] = out[name] + "," + v.decode("latin-1")
        else:
            out[name] = v.decode("latin-1")
    return out


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
