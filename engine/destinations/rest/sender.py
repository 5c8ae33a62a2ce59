"""REST sender: one delivery = one HTTP request (POST or PUT) of the rendered payload.

The body is ``delivery.payload`` byte for byte with ``Content-Type: delivery.content_type``
(a ``Content-Type`` in ``headers`` wins). Every request carries ``X-Switchboard-Delivery:
<delivery id>`` and ``Idempotency-Key: <message_id>-<channel>-<destination>``, the same on
every attempt, so a receiver can drop the duplicates that at-least-once delivery creates.
Credentials, HMAC signing and mutual TLS are described in :mod:`engine.destinations.http_auth`.

Outcomes:

- 2xx: ok, code = the status, response = body excerpt (UTF-8, bad bytes replaced).
- 408, 429, 5xx: retry; a ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``.
- 401 with OAuth2: the token is fetched again and the request resent once; then as below.
- other 4xx: dead, with the body excerpt (e.g. a FHIR OperationOutcome). 3xx: dead as well,
  redirects are not followed (credentials must not go to another host): fix the URL.
- no answer within ``timeout`` (the whole exchange, body included): retry "timeout after N s";
  connection refused, DNS, TLS or connection errors: retry with the reason; no token from the
  OAuth2 endpoint: retry "oauth2: ...".

``rate_limit`` (requests per second) spaces requests on the clock with a token bucket
(:class:`TokenBucket`); a ``send`` over the limit waits, it is never refused.

``state``: "down" before ``start``, after ``stop`` and when the last 3 outcomes were all
retries (the peer is unreachable or failing); "degraded" when any of the last 10 was not ok;
"up" otherwise. Logs carry ids, status codes and reasons, never bodies (PHI).
"""

from __future__ import annotations

import contextlib
import email.utils
from collections import deque
from datetime import UTC
from http import HTTPStatus
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlencode, urlsplit

from OpenSSL import SSL
from service_identity import VerificationError
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from engine import __version__
from engine.delivery.outcome import DEAD, OK, RESPONSE_EXCERPT, RETRY, Delivery, Outcome
from engine.destinations.http_auth import DestinationTLSPolicy, TokenError, build_auth, build_signer
from engine.logging import get_logger

BODY_LIMIT = 4 * RESPONSE_EXCERPT + 4  # response bytes kept: enough for the excerpt in UTF-8
TOKEN_LIMIT = 1 << 20  # an OAuth2 token answer (large JWTs)
WINDOW, DOWN_AFTER = 10, 3
TLS_ERRORS = (SSL.Error, VerificationError)


class TokenBucket:
    """``rate`` tokens a second on ``clock``, at most ``burst``; ``acquire`` waits its turn."""

    def __init__(self, rate: float, clock, burst: float = 1.0):
        if rate <= 0:
            raise ValueError(f"rate_limit must be above 0, not {rate}")
        self.rate, self.clock, self.burst = float(rate), clock, float(burst)
        self._tokens, self._stamp = self.burst, clock.seconds()
        self._waiters: deque[Deferred] = deque()
        self._call = None

    def acquire(self) -> Deferred:
        waiter: Deferred = Deferred(self._cancel)
        self._waiters.append(waiter)
        if self._call is None:
            self._serve()
        return waiter

    def _serve(self) -> None:
        self._call = None
        now = self.clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        while self._waiters and self._tokens >= 1 - 1e-9:
            self._tokens -= 1
            self._waiters.popleft().callback(None)
        if self._waiters and self._call is None:
            self._call = self.clock.callLater((1 - self._tokens) / self.rate, self._serve)

    def _cancel(self, waiter: Deferred) -> None:
        self._waiters.remove(waiter)
        if not self._waiters and self._call is not None:
            self._call.cancel()
            self._call = None


def parse_retry_after(value: str | bytes | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date); None if bad."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC as well
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def failure_reason(failure: Failure, timeout: float) -> str:
    """An operator's reason for a failed exchange (no message content)."""
    if failure.check(DeferredTimeout, error.TimeoutError):
        return f"timeout after {timeout:g} s"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.DNSLookupError):
        return f"DNS lookup failed: {failure.getErrorMessage()}"
    if failure.check(*TLS_ERRORS):
        return f"TLS error: {_tls_text(failure.value)}"
    reasons = getattr(failure.value, "reasons", None)  # ResponseNeverReceived, ResponseFailed...
    if reasons:
        for reason in reasons:
            if reason.check(*TLS_ERRORS):
                return f"TLS error: {_tls_text(reason.value)}"
        return f"connection lost: {reasons[0].getErrorMessage()[:200]}"
    if failure.check(error.ConnectError):
        return f"cannot connect: {failure.getErrorMessage()[:200]}"
    return f"request failed: {failure.type.__name__}: {failure.getErrorMessage()[:200]}"


def _tls_text(exc: BaseException) -> str:
    args = exc.args[0] if exc.args and isinstance(exc.args[0], list) else None
    if args and all(isinstance(a, tuple) and a for a in args):
        return "; ".join(str(a[-1]) for a in args)[:200]
    return str(exc)[:200] or type(exc).__name__


def _merge(headers: dict[str, str], extra: dict[str, str]) -> None:
    """``headers`` updated with ``extra``, names compared case-insensitively."""
    for key, value in extra.items():
        for same in [k for k in headers if k.lower() == key.lower()]:
            del headers[same]
        headers[key] = value


class _Excerpt(Protocol):
    """Reads a whole response body (so the connection can be reused), keeps the first bytes."""

    def __init__(self, limit: int):
        self.limit, self.size, self.chunks = limit, 0, []
        self.done: Deferred = Deferred(lambda _: self.transport and self.transport.stopProducing())

    def dataReceived(self, data: bytes) -> None:
        if self.size < self.limit:
            self.chunks.append(data[: self.limit - self.size])
            self.size += len(self.chunks[-1])

    def connectionLost(self, reason: Failure) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class RestSender:
    def __init__(self, config, ctx, *, url: str | None = None, method: str | None = None,
                 headers: dict | None = None):  # fmt: skip
        """A sender for validated rest settings (``url``, ``method``, ``headers``: what a
        kind built on it, fhir, sends instead)."""
        self.reactor, self.clock = ctx.reactor, ctx.clock
        self.name = config.name
        self.url = str(url or config.rest)
        self.method = str(method or config.method).upper()
        self.timeout = float(config.timeout)
        headers = config.headers if headers is None else headers
        self.headers = {str(k): str(v) for k, v in headers.items()}
        self.log = get_logger("delivery.rest", destination=self.name)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"rest must be an http:// or https:// URL, not {self.url!r}")
        self.tls_policy = None
        if config.tls:
            if parts.scheme != "https":
                raise ValueError("tls is set but the rest URL is not https://; use https://")
            self.tls_policy = DestinationTLSPolicy(parts.hostname, parts.port or 443, config.tls)
        self.auth = build_auth(config.auth, clock=self.clock, fetch=self._post_form)
        self.signer = build_signer(getattr(config, "hmac", None), clock=self.clock)
        rate = config.rate_limit
        self.bucket = TokenBucket(rate, self.clock) if rate else None
        self._client: HTTPClient | None = None
        self._pool: HTTPConnectionPool | None = None
        self._inflight: set[Deferred] = set()
        self._recent: deque[str] = deque(maxlen=WINDOW)

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._client is not None:
            return
        self._pool = HTTPConnectionPool(self.reactor, persistent=True)
        kwargs: dict[str, Any] = {"pool": self._pool, "connectTimeout": self.timeout}
        if self.tls_policy is not None:
            kwargs["contextFactory"] = self.tls_policy
        no_cookies = IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self._client = HTTPClient(Agent(self.reactor, **kwargs), cookiejar=no_cookies)
        self._recent.clear()

    def stop(self) -> Deferred:
        self._client = None
        for d in list(self._inflight):
            d.cancel()
        self.auth.stop()
        pool, self._pool = self._pool, None
        return pool.closeCachedConnections() if pool is not None else succeed(None)

    @property
    def state(self) -> str:
        recent = list(self._recent)
        if self._client is None:
            return "down"
        if len(recent) >= DOWN_AFTER and all(k == RETRY for k in recent[-DOWN_AFTER:]):
            return "down"
        return "up" if all(k == OK for k in recent) else "degraded"

    # sending -----------------------------------------------------------------------------
    def send(self, delivery: Delivery) -> Deferred:
        """Deliver once; fires with an Outcome, never errbacks."""
        if self._client is None:
            return succeed(Outcome.retry("REST sender is not running"))
        d = Deferred.fromCoroutine(self._deliver(delivery))
        self._inflight.add(d)

        def finish(result: Any) -> Outcome:
            self._inflight.discard(d)
            outcome = result if isinstance(result, Outcome) else self._failed(result)
            with contextlib.suppress(Exception):  # a logging failure must not lose the outcome
                self._note(delivery, outcome)
            return outcome

        return d.addBoth(finish)

    def request_headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": delivery.content_type,
            "User-Agent": f"Switchboard/{__version__}",
        }
        _merge(headers, self.headers)
        headers["X-Switchboard-Delivery"] = str(delivery.id)
        headers["Idempotency-Key"] = (
            f"{delivery.message_id}-{delivery.channel}-{delivery.destination}"
        )
        return headers

    async def _deliver(self, delivery: Delivery) -> Outcome:
        body = delivery.payload
        for attempt in (1, 2):
            if self.bucket is not None:
                await self.bucket.acquire()
            headers = self.request_headers(delivery)
            try:
                used = await self.auth.headers()
            except TokenError as exc:
                return Outcome.retry(f"oauth2: {exc}")
            _merge(headers, used)
            if self.signer is not None:
                _merge(headers, self.signer.sign(body))
            status, phrase, answer, text = await self._exchange(
                self.method, self.url, headers, body
            )
            if status == 401 and attempt == 1 and self.auth.invalidate(used):
                self.log.info("REST 401: fetching a new token", delivery_id=delivery.id)
                continue
            return self._classify(status, phrase, answer, text)
        raise AssertionError("unreachable")

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes,
                  limit: int = BODY_LIMIT) -> Deferred:  # fmt: skip
        """One request and its whole response, within ``timeout``: (status, phrase, headers,
        the first ``limit`` bytes of the body)."""
        if self._client is None:
            raise CancelledError()
        d = self._client.request(method, url, headers=Headers({k: [v] for k, v in headers.items()}),
                                 data=body, allow_redirects=False, unbuffered=True)  # fmt: skip

        def read(response) -> Deferred:
            reader = _Excerpt(limit)
            response.deliverBody(reader)
            return reader.done.addCallback(
                lambda data: (response.code, response.phrase, response.headers, data)
            )

        def cancelled(failure: Failure) -> Failure:
            # A cancelled Agent request fails with ResponseNeverReceived([CancelledError]).
            if any(r.check(CancelledError) for r in getattr(failure.value, "reasons", ())):
                raise CancelledError()
            return failure

        return d.addCallback(read).addErrback(cancelled).addTimeout(self.timeout, self.clock)

    async def _post_form(self, url: str, form: dict[str, str], headers: dict[str, str]):
        """The OAuth2 token request: (status, body)."""
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json"}  # fmt: skip
        try:
            status, _, _, data = await self._exchange(
                "POST", url, headers, urlencode(form).encode(), TOKEN_LIMIT
            )
        except CancelledError:
            raise
        except Exception:
            raise TokenError(
                "token request failed: " + failure_reason(Failure(), self.timeout)
            ) from None
        return status, data

    def _classify(self, status: int, phrase: bytes, headers: Headers, data: bytes) -> Outcome:
        text = data.decode("utf-8", "replace") or None
        code = str(status)
        try:  # the standard phrase: peers send odd ones ("Unknown Status") or none (HTTP/2)
            name = HTTPStatus(status).phrase
        except ValueError:
            name = phrase.decode("latin-1", "replace")[:80]
        reason = f"HTTP {status} {name}".strip()
        if 200 <= status < 300:
            return Outcome.ok(code, text)
        if status in (408, 429) or status >= 500:
            after = (headers.getRawHeaders(b"retry-after") or [None])[0]
            return Outcome.retry(reason, code, text, parse_retry_after(after, self.clock.seconds()))
        if 300 <= status < 400:
            return Outcome.dead(
                f"{reason}: redirects are not followed; set the final URL", code, text
            )
        if 400 <= status < 500:
            return Outcome.dead(reason, code, text)
        return Outcome.retry(f"unexpected {reason}", code, text)

    def _failed(self, failure: Failure) -> Outcome:
        if failure.check(CancelledError):
            return Outcome.retry("REST sender stopped before the request completed")
        return Outcome.retry(failure_reason(failure, self.timeout))

    def _note(self, delivery: Delivery, outcome: Outcome) -> None:
        self._recent.append(outcome.kind)
        fields = {"delivery_id": delivery.id, "message_id": delivery.message_id,
                  "code": outcome.code}  # fmt: skip
        if outcome.kind == OK:
            self.log.debug("REST delivered", **fields)
        elif outcome.kind == DEAD:
            self.log.warning("REST delivery refused", reason=outcome.error, **fields)
        else:
            self.log.info("REST delivery failed, to retry", reason=outcome.error, **fields)
