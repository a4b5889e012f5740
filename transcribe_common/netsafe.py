"""Outgoing HTTP that cannot be turned against the network it runs in (SSRF).

Every URL the pipeline fetches or posts to comes from a user: a job's source URL and its callback
URL. So every outgoing request goes through a ``UrlPolicy``:

- http and https only;
- the host is resolved, and the request is refused if any of its addresses is loopback, private,
  link-local, CGNAT, unique-local, site-local, multicast, reserved or unspecified (cloud metadata
  services live on link-local and unique-local addresses, so they are among them); an IPv6 address
  that wraps an IPv4 one (IPv4-mapped, 6to4, Teredo) is judged by the address it wraps too;
- the connection goes to the address that was checked — the check runs inside the connection
  itself (``GuardedTransport``), so a name that resolves differently a moment later (DNS
  rebinding) gains nothing, and every redirect is checked again the same way;
- ``URL_ALLOWLIST`` opens chosen networks or host names, for internal deployments and tests.

The API runs ``check`` at submission, so that whatever can be known then is refused with a 422.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from transcribe_common.errors import InvalidInput, RetryableError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")


class UnsafeUrl(InvalidInput):
    """The URL is not one the pipeline may reach."""


class UrlPolicy:
    def __init__(self, allowlist: Iterable[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in (e.strip() for e in allowlist):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    @classmethod
    def from_setting(cls, value: str) -> UrlPolicy:
        """``URL_ALLOWLIST``: comma-separated networks (``10.0.0.0/8``), addresses or host names."""
        return cls(value.split(","))

    def check(self, url: str | httpx.URL) -> list[IPAddress]:
        """Refuse a URL the pipeline may not reach; the addresses it may connect to otherwise."""
        url = self.check_form(url)
        return self.resolve(url.host, url.port or (443 if url.scheme == "https" else 80))

    @staticmethod
    def check_form(url: str | httpx.URL) -> httpx.URL:
        """What can be refused without a lookup: the scheme, a missing host."""
        url = httpx.URL(str(url))
        if url.scheme not in SCHEMES:
            raise UnsafeUrl(f"only http and https URLs are allowed, not {url.scheme or 'no scheme'!r}")
        if not url.host:
            raise UnsafeUrl("the URL has no host")
        return url

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        name = host.lower().rstrip(".")
        addresses = _resolve(name, port)
        if name in self.hosts:
            return addresses
        for address in addresses:
            reason = self.refusal(address)
            if reason:  # what a name resolves to is not the caller's to learn: only that it is refused
                what = "is" if host == str(address) else "resolves to"
                raise UnsafeUrl(
                    f"the URL's host {host} {what} {reason}; such addresses are refused unless URL_ALLOWLIST names them"
                )
        return addresses

    def refusal(self, address: IPAddress) -> str | None:
        """Why the pipeline may not connect to ``address``, or None if it may."""
        if any(address in network for network in self.networks):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            for wrapped in _wrapped(address):
                if (reason := self.refusal(wrapped)) is not None:
                    return reason
        for test, reason in _REFUSED:
            if test(address):
                return reason
        return None


def _wrapped(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries: IPv4-mapped (``::ffff:a.b.c.d``), 6to4
    (``2002:AABB:CCDD::``) and Teredo (``2001:0::``: its server, and its client, stored inverted)."""
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    return [a for a in found if a is not None]


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but routed on some networks still
_REFUSED = [
    (lambda a: a.is_loopback, "a loopback address"),
    (lambda a: a.is_link_local, "a link-local address (cloud metadata lives there)"),
    (lambda a: a in _SITE_LOCAL, "a site-local address"),
    (lambda a: a in _CGNAT, "a carrier-grade NAT address"),
    (lambda a: a.is_multicast, "a multicast address"),
    (lambda a: a.is_unspecified, "an unspecified address"),
    (lambda a: a.is_private, "a private address"),
    (lambda a: a.is_reserved or not a.is_global, "a reserved address"),
]


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise UnsafeUrl(f"the URL's host {host} does not resolve") from exc
        raise RetryableError(f"resolving {host}: {exc}") from exc
    except UnicodeError as exc:
        raise UnsafeUrl(f"the URL's host {host!r} is not a valid name") from exc
    found = dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
    return list(found)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks the host itself, then connects to the address it checked."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in self.policy.resolve(host, port):  # each one checked; tried in order, as sockets do
            try:
                return super().connect_tcp(str(address), port, *args, **kwargs)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None, "getaddrinfo returns at least one address"
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, whose every new connection goes through ``UrlPolicy.resolve``.
    TLS still verifies the certificate against the URL's host name, not the address."""

    def __init__(self, policy: UrlPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx has no public hook for httpcore's network backend; the pool it builds takes one.
        self._pool._network_backend = _GuardedBackend(policy)


def client(policy: UrlPolicy, *, timeout: float, follow_redirects: bool, max_redirects: int = 5) -> httpx.Client:
    """An httpx client for user-given URLs: guarded connections (so each redirect's host is checked
    when it is connected to), each redirect's scheme checked before it is followed, and no proxy
    settings taken from the environment."""

    def check_request(request: httpx.Request) -> None:
        policy.check_form(request.url)

    return httpx.Client(
        transport=GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
        event_hooks={"request": [check_request]},
    )
