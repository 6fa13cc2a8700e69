"""Webhooks: which hosts an alert may reach, how its body is signed, and one POST attempt.

The host check (against server-side request forgery): a webhook's host must resolve only to
public addresses — none loopback, private, link-local, reserved, multicast, unspecified or
otherwise not globally routable (``ipaddress``) — unless the host, or ``host:port``, is listed
in ``SIGNPOST_WEBHOOK_ALLOW_HOSTS``. It runs when a rule is created (`check_webhook_url`) and
again on every connection a delivery opens: the transport's network backend resolves the host
itself, checks each address and connects to a checked one, so a name that resolves elsewhere
by then (DNS rebinding) is refused too. Only http and https; redirects are not followed, and
proxies from the environment are not used (either would bypass the check).

The signature: ``X-Signpost-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body with the
rule's secret (`sign`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from service.errors import BadRequest

__all__ = [
    "AllowList",
    "Attempt",
    "UnsafeWebhook",
    "check_webhook_url",
    "post",
    "sign",
    "webhook_client",
]

SIGNATURE_HEADER = "X-Signpost-Signature"
DELIVERY_HEADER = "X-Signpost-Delivery"
_ERROR_BODY_CHARS = 300


class UnsafeWebhook(BadRequest):
    """A webhook URL refused: not http(s), no host, or a host that is not public."""

    code = "unsafe_webhook"

    def __init__(self, message: str):
        super().__init__(f"webhook_url: {message}", field="webhook_url")


@dataclass(frozen=True)
class AllowList:
    """Hosts (any port) and host:port pairs a webhook may reach whatever they resolve to."""

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """``SIGNPOST_WEBHOOK_ALLOW_HOSTS``: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
        hosts, host_ports = set(), set()
        for entry in (part.strip().lower() for part in text.split(",")):
            if not entry:
                continue
            if entry.startswith("["):  # [::1] or [::1]:8080
                host, _, rest = entry[1:].partition("]")
                port = rest.removeprefix(":")
            elif entry.count(":") == 1:
                host, port = entry.split(":")
            else:  # a name, an IPv4 address or a bare IPv6 address
                host, port = entry, ""
            if port:
                if not port.isdigit():
                    raise ValueError(f"'{entry}': the port must be a number")
                host_ports.add((host, int(port)))
            else:
                hosts.add(host)
        return cls(frozenset(hosts), frozenset(host_ports))

    def allows(self, host: str, port: int) -> bool:
        """Whether ``host`` (on ``port``) is listed."""
        host = host.lower().strip("[]")
        return host in self.hosts or (host, port) in self.host_ports


def _not_public(address: str) -> str | None:
    """Why an address may not be reached (None: it is a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is no part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag, words in (("is_loopback", "a loopback"), ("is_unspecified", "an unspecified"),
                        ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                        ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(ip, flag):
            return f"{words} address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def resolve_checked(host: str, port: int, allow: AllowList) -> list[str]:
    """The addresses of ``host``, each checked (every one, unless the host is allowed).

    Raises
    ------
    UnsafeWebhook
        The host does not resolve, or one of its addresses is not public.

    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeWebhook(f"cannot resolve host '{host}': {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not allow.allows(host, port):
        for address in addresses:
            if (why := _not_public(address)) is not None:
                shown = host if host == address else f"{host} resolves to {address},"
                raise UnsafeWebhook(
                    f"{shown} {why}; webhooks reach public hosts only, unless "
                    f"SIGNPOST_WEBHOOK_ALLOW_HOSTS lists '{host}' or '{host}:{port}'")
    return addresses


def check_webhook_url(url: str, allow: AllowList) -> str:
    """Check a webhook URL as a rule is created; returns it (stripped).

    Raises
    ------
    UnsafeWebhook
        Not an absolute http(s) URL, or a host that is not public (and not allowed).

    """
    url = url.strip()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeWebhook(f"'{url}' is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeWebhook(f"'{url}': use an http:// or https:// URL")
    if not parsed.host:
        raise UnsafeWebhook(f"'{url}' has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    resolve_checked(parsed.host, port, allow)
    return url


class _CheckedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `resolve_checked` passed.

    The name is resolved once, here, and the socket is opened to the checked address; TLS
    still verifies the certificate for (and sends SNI of) the URL's host name.
    """

    def __init__(self, allow: AllowList):
        self.allow = allow

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None,
                    ) -> httpcore.NetworkStream:
        """Resolve ``host``, refuse it unless every address is allowed, connect to one."""
        addresses = resolve_checked(host, port, self.allow)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout=timeout,
                                           local_address=local_address,
                                           socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # getaddrinfo returns at least one address or raises
        raise error


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, allow: AllowList):
        super().__init__(trust_env=False)
        # httpx 0.28 takes no network backend (encode/httpx#3749 is open): its pool is rebuilt
        # with one that checks each address it connects to
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                             network_backend=_CheckedBackend(allow))


def webhook_client(allow: AllowList, timeout: float) -> httpx.Client:
    """An HTTP client for webhooks: checked addresses, no redirects, no proxies, a timeout."""
    return httpx.Client(transport=_CheckedTransport(allow), timeout=timeout,
                        follow_redirects=False, trust_env=False,
                        headers={"User-Agent": "signpost-alerts/1"})


def sign(secret: str, body: bytes) -> str:
    """The ``X-Signpost-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """How one POST went: delivered (2xx), else whether a retry may do better."""

    delivered: bool
    retry: bool
    status: int | None
    error: str | None


def post(client: httpx.Client, url: str, body: bytes, secret: str, delivery_id: int,
         extra_headers: Iterable[tuple[str, str]] = ()) -> Attempt:
    """POST a signed body once.

    A 2xx answer is delivered; any other answer (redirects included) and a network error or
    timeout may be retried; a refused host may not (it stays refused).
    """
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               DELIVERY_HEADER: str(delivery_id), **dict(extra_headers)}
    try:
        response = client.post(url, content=body, headers=headers)
    except UnsafeWebhook as exc:
        return Attempt(delivered=False, retry=False, status=None, error=exc.message)
    except httpx.TimeoutException as exc:
        return Attempt(delivered=False, retry=True, status=None,
                       error=f"timed out: {type(exc).__name__} {exc}".strip())
    except httpx.HTTPError as exc:
        return Attempt(delivered=False, retry=True, status=None,
                       error=f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return Attempt(delivered=True, retry=False, status=response.status_code, error=None)
    text = response.text[:_ERROR_BODY_CHARS].strip()
    return Attempt(delivered=False, retry=True, status=response.status_code,
                   error=f"HTTP {response.status_code}" + (f": {text}" if text else ""))
