"""Outbound webhook transport: signatures, which URLs may receive events, one POST's outcome, and retry delays.

Deliveries go to a receiver on 127.0.0.1 that checks signatures as a shop's tool would (no network beyond
127.0.0.1; the only name looked up elsewhere is under `.invalid`, which never resolves).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest

from loyalty.webhooks import delivery
from loyalty.webhooks.delivery import SIGNATURE_HEADER, Attempt, backoff, check_url, post, sign, verify
from tests.local_server import LocalServer, serving

SECRET = "whsec_outbound_" + "s" * 24
BODY = json.dumps({"id": "evt_1", "type": "points.earned", "data": {"member_id": "m_1", "points": 120}}).encode()
T = 1_700_000_000


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """What the receiving server answers (`200`, `500`, `redirect` or `hang`) and what it was sent."""

    url: str
    answer: str = "200"
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        verified = verify(SECRET, body, self.headers.get(SIGNATURE_HEADER, ""))
        receiver.received.append(Received(self.path, dict(self.headers.items()), body, verified))
        if receiver.answer == "hang":
            receiver.release.wait(10)
            return
        if receiver.answer == "redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
        else:
            self.send_response(int(receiver.answer))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(_Handler) as server:
        server.receiver = Receiver(url=f"{server.base_url}/hook")
        yield server.receiver


def _signed_headers(body: bytes = BODY) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(SECRET, body, int(time.time())), "Loyalty-Event-Id": "evt_1"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Signatures ------------------------------------------------------------------------------------------------


def test_the_signature_is_the_timestamp_and_an_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, T) == f"t=1700000000,v1={expected}"


def test_a_signature_verifies_within_the_tolerance():
    assert verify(SECRET, BODY, sign(SECRET, BODY, T), now=T + 300) is True


def test_a_tampered_body_does_not_verify():
    assert verify(SECRET, BODY + b" ", sign(SECRET, BODY, T), now=T) is False


def test_a_wrong_secret_does_not_verify():
    assert verify("whsec_someone_else", BODY, sign(SECRET, BODY, T), now=T) is False


def test_an_old_timestamp_does_not_verify():
    assert verify(SECRET, BODY, sign(SECRET, BODY, T), now=T + 301) is False


def test_a_timestamp_too_far_in_the_future_does_not_verify():
    assert verify(SECRET, BODY, sign(SECRET, BODY, T), now=T - 301) is False


def test_any_one_of_several_v1_signatures_may_match():
    old = sign("whsec_retired", BODY, T).split(",")[1]
    assert verify(SECRET, BODY, f"{sign(SECRET, BODY, T)},{old}", now=T) is True
    assert verify(SECRET, BODY, f"t={T},{old},{sign(SECRET, BODY, T).split(',')[1]}", now=T) is True


@pytest.mark.parametrize("header", [
    "",
    "garbage",
    f"v1={'0' * 64}",
    f"t={T}",
    f"t=abc,v1={'0' * 64}",
    f"t=-{T},v1={'0' * 64}",
    f"t={T},t={T},v1={'0' * 64}",
    f"t={T},v1=ü",
])
def test_a_malformed_header_does_not_verify(header):
    assert verify(SECRET, BODY, header, now=T) is False


# --- Sending ---------------------------------------------------------------------------------------------------


def test_a_delivered_event_is_signed_and_verifies(receiver):
    attempt = post(receiver.url, BODY, _signed_headers(), timeout=5, allow_private=True)

    assert (attempt.status_code, attempt.error, attempt.ok) == (200, None, True)
    assert attempt.duration_ms > 0
    [request] = receiver.received
    assert (request.path, request.body, request.verified) == ("/hook", BODY, True)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "loyalty-webhooks/1"
    assert request.headers["Loyalty-Event-Id"] == "evt_1"


def test_a_500_answer_is_a_failed_attempt_with_status_500(receiver):
    receiver.answer = "500"

    attempt = post(receiver.url, BODY, _signed_headers(), timeout=5, allow_private=True)

    assert (attempt.status_code, attempt.error, attempt.ok) == (500, "answered HTTP 500", False)
    assert len(receiver.received) == 1


def test_a_timeout_is_a_failed_attempt_with_an_error_and_no_status(receiver):
    receiver.answer = "hang"

    attempt = post(receiver.url, BODY, _signed_headers(), timeout=0.3, allow_private=True)

    assert (attempt.status_code, attempt.error, attempt.ok) == (None, "timed out after 0.3s", False)
    assert 250 <= attempt.duration_ms < 5000


def test_a_refused_connection_is_a_failed_attempt_with_an_error_and_no_status():
    url = f"http://127.0.0.1:{_closed_port()}/hook"

    attempt = post(url, BODY, _signed_headers(), timeout=5, allow_private=True)

    assert (attempt.status_code, attempt.error, attempt.ok) == (None, "connection refused", False)


def test_a_redirect_is_not_followed(receiver):
    receiver.answer = "redirect"

    attempt = post(receiver.url, BODY, _signed_headers(), timeout=5, allow_private=True)

    assert attempt.status_code == 302
    assert attempt.error == "answered HTTP 302 redirecting to /elsewhere; redirects are not followed"
    assert attempt.ok is False
    assert [request.path for request in receiver.received] == ["/hook"]


def test_post_refuses_a_private_url_without_sending(receiver):
    attempt = post(receiver.url, BODY, _signed_headers(), timeout=5, allow_private=False)

    assert attempt.status_code is None
    assert attempt.error == ("not sent: 127.0.0.1 is a loopback address; events are only sent to public "
                             "addresses.")
    assert receiver.received == []


def test_post_refuses_a_name_that_connects_to_a_private_address_after_passing_the_check(receiver, monkeypatch):
    monkeypatch.setattr(delivery, "check_url", lambda url, *, allow_private: None)  # DNS rebound since the check

    attempt = post(receiver.url, BODY, _signed_headers(), timeout=5, allow_private=False)

    assert attempt.status_code is None
    assert attempt.error == ("not sent: 127.0.0.1 connected to 127.0.0.1, a loopback address; events are only "
                             "sent to public addresses.")
    assert receiver.received == []


def test_post_refuses_an_https_peer_at_a_private_address_before_the_tls_handshake(receiver, monkeypatch):
    monkeypatch.setattr(delivery, "check_url", lambda url, *, allow_private: None)

    attempt = post(receiver.url.replace("http:", "https:"), BODY, _signed_headers(), timeout=5, allow_private=False)

    assert attempt.status_code is None
    assert attempt.error == ("not sent: 127.0.0.1 connected to 127.0.0.1, a loopback address; events are only "
                             "sent to public addresses.")
    assert receiver.received == []


@pytest.mark.parametrize(("status_code", "ok"), [(200, True), (204, True), (299, True), (199, False),
                                                 (302, False), (404, False), (None, False)])
def test_an_attempt_is_ok_for_2xx_answers_only(status_code, ok):
    assert Attempt(status_code, None, 1.0).ok is ok


# --- Where events may go ---------------------------------------------------------------------------------------

PUBLIC_ONLY = "events are only sent to public addresses."


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://example.com/hook", "Only http:// and https:// URLs can receive events."),
    ("file:///etc/passwd", "Only http:// and https:// URLs can receive events."),
    ("javascript:alert(1)", "Only http:// and https:// URLs can receive events."),
    ("http:///hook", "The URL has no host."),
    ("http://user:pw@example.com/hook", "The URL must not contain a user name or password."),
    ("http://example.com/ho ok", "The URL must not contain spaces or control characters."),
    ("http://example.com:99999/hook", "The URL is not valid."),
    ("http://127.0.0.1/hook", f"127.0.0.1 is a loopback address; {PUBLIC_ONLY}"),
    ("http://[::1]/hook", f"::1 is a loopback address; {PUBLIC_ONLY}"),
    ("http://10.0.0.1/hook", f"10.0.0.1 is a private address; {PUBLIC_ONLY}"),
    ("http://169.254.169.254/latest/meta-data/", f"169.254.169.254 is a link-local address; {PUBLIC_ONLY}"),
    ("http://192.168.1.1/hook", f"192.168.1.1 is a private address; {PUBLIC_ONLY}"),
    ("http://[::ffff:127.0.0.1]/hook", f"::ffff:127.0.0.1 is a loopback address; {PUBLIC_ONLY}"),
    ("http://[::ffff:10.0.0.1]/hook", f"::ffff:10.0.0.1 is a private address; {PUBLIC_ONLY}"),
    ("http://[2002:7f00:1::]/hook", f"2002:7f00:1:: is a loopback address; {PUBLIC_ONLY}"),
    ("http://[fe80::1]/hook", f"fe80::1 is a link-local address; {PUBLIC_ONLY}"),
    ("http://[fec0::1]/hook", f"fec0::1 is a site-local address; {PUBLIC_ONLY}"),
    ("http://[fd00::1]/hook", f"fd00::1 is a private address; {PUBLIC_ONLY}"),
    ("http://0.0.0.0/hook", f"0.0.0.0 is an unspecified address; {PUBLIC_ONLY}"),
    ("http://224.0.0.1/hook", f"224.0.0.1 is a multicast address; {PUBLIC_ONLY}"),
    ("http://240.0.0.1/hook", f"240.0.0.1 is a reserved address; {PUBLIC_ONLY}"),
    ("http://100.64.0.1/hook", f"100.64.0.1 is a non-public address; {PUBLIC_ONLY}"),
    ("http://2130706433/hook", f"2130706433 resolves to 127.0.0.1, a loopback address; {PUBLIC_ONLY}"),
    ("http://hook.example.invalid/hook", "hook.example.invalid does not resolve to an address."),
])
def test_check_url_refuses(url, reason):
    assert check_url(url, allow_private=False) == reason


def test_check_url_refuses_localhost_as_loopback():
    reason = check_url("http://localhost:8080/hook", allow_private=False)

    assert reason in {f"localhost resolves to 127.0.0.1, a loopback address; {PUBLIC_ONLY}",
                      f"localhost resolves to ::1, a loopback address; {PUBLIC_ONLY}"}


def test_check_url_accepts_a_public_address():
    assert check_url("https://93.184.215.14/hook", allow_private=False) is None


def test_check_url_accepts_a_private_address_when_allowed():
    assert check_url("http://127.0.0.1:8080/hook", allow_private=True) is None


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://127.0.0.1/hook", "Only http:// and https:// URLs can receive events."),
    ("http://user:pw@127.0.0.1/hook", "The URL must not contain a user name or password."),
])
def test_check_url_refuses_bad_urls_even_when_private_addresses_are_allowed(url, reason):
    assert check_url(url, allow_private=True) == reason


# --- Retrying --------------------------------------------------------------------------------------------------


def _seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not a secret


def test_the_first_retry_waits_the_base_delay():
    assert backoff(1, _seeded(7)) == timedelta(seconds=30)


def test_backoff_grows_exponentially_within_its_bounds():
    rng = _seeded(7)
    for attempts in range(2, 10):
        upper = 30 * 2 ** (attempts - 1)
        delays = [backoff(attempts, rng).total_seconds() for _ in range(200)]
        assert all(30 <= delay <= upper for delay in delays), attempts
        assert max(delays) > 0.9 * upper, attempts  # the whole range is used, so delays do grow
        assert min(delays) < 30 + 0.1 * (upper - 30), attempts  # jittered down too, not clustered at the top


def test_backoff_is_capped_at_six_hours():
    rng = _seeded(7)
    for attempts in (11, 12, 20, 100, 10_000):
        delays = [backoff(attempts, rng) for _ in range(200)]
        assert all(timedelta(seconds=30) <= delay <= timedelta(hours=6) for delay in delays), attempts
        assert max(delays) > timedelta(hours=5.5), attempts


def test_backoff_is_reproducible_with_a_seeded_random():
    assert backoff(5, _seeded(42)) == backoff(5, _seeded(42))


def test_backoff_refuses_fewer_than_one_failure():
    with pytest.raises(ValueError, match="at least 1"):
        backoff(0)
