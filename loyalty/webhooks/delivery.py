"""Outbound webhooks, the transport half: sign an event, check where it may go, POST it once, and say when to retry.

The outbox worker owns the database side (which events, which endpoints, how many attempts); this module only
talks to the network, so it takes its settings as arguments and imports nothing from Flask or the models.

Endpoint URLs are typed in by staff, so a URL is a request to make our server connect somewhere. Unless
`allow_private` is set (local development, tests), only public addresses may receive events: no loopback, no
private networks, no cloud metadata service at 169.254.169.254. The check runs when a URL is registered and again
at every send (DNS answers change), and the address actually connected to is checked too, so a name that
resolves to a public address for the check and to a private one for the connection still gets nowhere.
Redirects are never followed, since a redirect could point anywhere, and environment proxies are not used.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import random
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

SIGNATURE_HEADER = "Loyalty-Signature"
USER_AGENT = "loyalty-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer at most; receivers' bodies are not used
_MAX_ERROR_CHARS = 200

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- Signatures ------------------------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header for `body` sent at `timestamp`: the timestamp is signed too, so a captured delivery
    cannot be replayed later than the receiver's tolerance."""
    if not secret:
        raise ValueError("a webhook secret is required to sign")
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: int | None = None) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of `now`: what a receiver does.

    Any one of several `v1` values may match (a sender rotating secrets signs with both); the comparison is
    constant-time so the signature cannot be guessed byte by byte.
    """
    if not secret or not header:
        return False
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value.encode())
    if len(timestamps) != 1 or not signatures or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        return False
    timestamp = int(timestamps[0])
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, body, timestamp).encode()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


# --- Where events may go ---------------------------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not receive events, as a sentence for the staff who typed it, or None when it may."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        return "The URL must not contain spaces or control characters."
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "The URL is not valid."
    if parts.scheme.lower() not in ("http", "https"):
        return "Only http:// and https:// URLs can receive events."
    host = parts.hostname
    if not host:
        return "The URL has no host."
    if "@" in parts.netloc:
        return "The URL must not contain a user name or password."
    if allow_private:
        return None
    literal = _ip_literal(host)
    if literal is not None:
        kind = _refused_kind(literal)
        return f"{host} is {kind} address; events are only sent to public addresses." if kind else None
    try:
        answers = socket.getaddrinfo(host, port or _DEFAULT_PORTS[parts.scheme.lower()], type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return f"{host} does not resolve to an address."
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0])
        kind = _refused_kind(address)
        if kind:
            return f"{host} resolves to {address}, {kind} address; events are only sent to public addresses."
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _refused_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("a loopback", ...), or None for a public one. IPv4 addresses
    carried inside IPv6 ones (mapped, 6to4, NAT64) are judged as the IPv4 address they reach."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _refused_kind(embedded)
        if address.is_site_local:
            return "a site-local"
    checks = (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_reserved", "a reserved"),
        ("is_private", "a private"),
    )
    for attribute, kind in checks:
        if getattr(address, attribute):
            return kind
    return None if address.is_global else "a non-public"  # e.g. 100.64.0.0/10, carrier-grade NAT


# --- Sending ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: the answer's status (None when there was none) and what went wrong, if anything."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        """Delivered: the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Attempt:
    """POST `body` to `url` once. Network trouble, refusals and non-2xx answers come back as a failed Attempt,
    never as an exception, so the worker can record it and schedule a retry."""
    started = time.monotonic()

    def attempt(status_code: int | None, error: str | None) -> Attempt:
        if error is not None and len(error) > _MAX_ERROR_CHARS:
            error = error[: _MAX_ERROR_CHARS - 1] + "…"
        return Attempt(status_code, error, (time.monotonic() - started) * 1000)

    refusal = check_url(url, allow_private=allow_private)
    if refusal is not None:
        return attempt(None, f"not sent: {refusal}")
    request = urllib.request.Request(  # noqa: S310 - check_url admits http and https only
        url, data=body, method="POST",
        headers={**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        response = _opener(allow_private).open(request, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as error:
        return attempt(None, _describe(error, timeout))
    with response:
        _drain(response, deadline=started + timeout)
    status = response.status
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return attempt(status, f"answered HTTP {status} redirecting to {location or '(nowhere)'}; "
                               "redirects are not followed")
    if not 200 <= status < 300:
        return attempt(status, f"answered HTTP {status}")
    return attempt(status, None)


def _opener(allow_private: bool) -> urllib.request.OpenerDirector:
    """An opener with HTTP(S) only: no proxies, no redirect handling, every status returned as an answer."""
    opener = urllib.request.OpenerDirector()
    if allow_private:
        opener.add_handler(urllib.request.HTTPHandler())
        opener.add_handler(urllib.request.HTTPSHandler())
    else:
        opener.add_handler(_PublicOnlyHTTPHandler())
        opener.add_handler(_PublicOnlyHTTPSHandler())
    return opener


def _drain(response: http.client.HTTPResponse, *, deadline: float) -> None:
    """Read (and drop) up to MAX_ANSWER_BYTES of the answer, stopping at the deadline: the status is what counts,
    and a receiver that trickles or streams forever must not hold the worker."""
    remaining = MAX_ANSWER_BYTES
    try:
        while remaining > 0 and time.monotonic() < deadline:
            chunk = response.read1(min(remaining, 16 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, http.client.HTTPException):
        pass  # the status line and headers arrived; the rest of the answer is not needed


def _describe(error: Exception, timeout: float) -> str:
    """A short text for a failed send, for the delivery log shown to staff."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, _PrivatePeer):
        return f"not sent: {reason}"
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name does not resolve"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {reason.verify_message}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed: {reason.reason or reason}"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, http.client.HTTPException):
        return "the answer was not valid HTTP"
    if isinstance(reason, ValueError):
        return f"could not send the request: {reason}"
    return f"connection failed: {reason}"


class _PrivatePeer(OSError):
    """The connection reached an address events may not go to (the name resolved differently than at the check)."""


class _PublicOnlyHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        """Connect, then refuse before a byte is sent if the peer is not a public address."""
        super().connect()
        address = ipaddress.ip_address(self.sock.getpeername()[0])
        kind = _refused_kind(address)
        if kind:
            self.sock.close()
            self.sock = None
            raise _PrivatePeer(f"{self.host} connected to {address}, {kind} address; "
                               "events are only sent to public addresses.")


# HTTPSConnection.connect calls super().connect() before the TLS handshake; with this base order that super() is
# the checking connect above, so the peer is refused before any TLS or HTTP bytes are sent.
class _PublicOnlyHTTPSConnection(http.client.HTTPSConnection, _PublicOnlyHTTPConnection):
    pass


class _PublicOnlyHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        """Open with the checking connection."""
        return self.do_open(_PublicOnlyHTTPConnection, req)


class _PublicOnlyHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self) -> None:
        self._verified_context = ssl.create_default_context()
        super().__init__(context=self._verified_context)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        """Open with the checking connection and a verifying TLS context."""
        return self.do_open(_PublicOnlyHTTPSConnection, req, context=self._verified_context)


# --- Retrying --------------------------------------------------------------------------------------------------


def backoff(attempts: int, rng: random.Random | None = None, *, base: float = 30, cap: float = 6 * 3600) -> timedelta:
    """How long to wait before the next try after `attempts` failures: exponential, so a receiver that is down is
    not hammered, with full jitter between `base` and the exponential bound, so retries do not arrive in waves."""
    if attempts < 1:
        raise ValueError("backoff counts failures so far, at least 1")
    exponent = min(attempts - 1, 1000)  # 2.0 ** 1024 overflows; the cap is long reached by then
    upper = min(cap, base * 2.0**exponent)
    low, high = min(base, upper), upper
    return timedelta(seconds=(rng or random.Random()).uniform(low, high))  # noqa: S311 - jitter, not a secret
