"""Credentials for the REST sender: bearer, basic, OAuth2 client credentials, HMAC, mutual TLS.

``auth`` (one of)::

    {"bearer": "TOKEN"} | {"bearer_env": "VAR"}
    {"basic": {"username": "u", "password": "p" | "password_env": "VAR"}}
    {"oauth2": {"token_url": "https://idp/token", "client_id": "id",
                "client_secret": "s" | "client_secret_env": "VAR",
                "scope": "a b", "audience": "api", "client_auth": "basic" | "post"}}

OAuth2 uses the client-credentials grant (RFC 6749 section 4.4): a form POST of
``grant_type=client_credentials`` (plus ``scope``/``audience`` when set) with the client
credentials in HTTP Basic (``client_auth: basic``, the default, which every server must
support) or in the form (``post``). The token is cached until ``expires_in`` minus a margin
(10% of the lifetime, at most 60 s; no ``expires_in``: until a 401), concurrent senders share
one token request, and a 401 from the destination drops the token it was sent with.

``hmac`` signs each request (Stripe style): with ``t`` the Unix time in whole seconds on the
sender's clock, the sender adds ``X-Signature-Timestamp: t`` and ``<header>: sha256=<hex>``
where ``<hex>`` is HMAC-SHA256(secret, ``t + "." + body``) over the exact body bytes (the
default header is ``X-Signature-256``; ``algorithm: sha512`` gives ``sha512=<hex>``). A
receiver recomputes it with a constant-time compare and rejects stale timestamps (replays).

``tls`` (``ca``, ``cert``, ``key``, ``server_name``, ``min_version``) applies to the
destination's own host and port; any other host (e.g. a public token endpoint) is verified
against the system's trusted CAs.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from engine.config import Field, Spec
from engine.config.fieldtypes import Url
from engine.config.scalars import Enum, String
from engine.config.spec import Nested
from engine.tls import client_tls_options

TIMESTAMP_HEADER = "X-Signature-Timestamp"
HMAC_ALGORITHMS = ("sha256", "sha512")
TOKEN_MARGIN = 60.0  # refresh an OAuth2 token at most this many seconds before it expires

# fetch(url, form, headers) -> Deferred[(status, body bytes)]: a form POST made by the sender.
Fetch = Callable[[str, dict[str, str], dict[str, str]], Deferred]


# The settings of what this module implements, shared by the rest and fhir destinations.
BASIC = Spec(
    "basic auth",
    "HTTP Basic credentials.",
    (
        Field("username", String(), "User name.", required=True),
        Field("password", String(), "Password (or use password_env)."),
        Field("password_env", String(), "Environment variable holding the password."),
    ),
    kinds=("password", "password_env"),
)

OAUTH2 = Spec(
    "oauth2",
    "OAuth2 client-credentials grant; the token is cached and refreshed before it expires.",
    (
        Field("token_url", Url(), "Token endpoint.", required=True),
        Field("client_id", String(), "Client id.", required=True),
        Field("client_secret", String(), "Client secret (or use client_secret_env)."),
        Field("client_secret_env", String(), "Environment variable holding the secret."),
        Field("scope", String(), "Scope to ask for."),
        Field("audience", String(), "Audience to ask for."),
        Field("client_auth", Enum("basic", "post"), "How the client authenticates to the "
              "token endpoint.", default="basic"),
    ),
    kinds=("client_secret", "client_secret_env"),
)  # fmt: skip

AUTH = Spec(
    "auth",
    "How the destination authenticates: one of bearer, bearer_env, basic, oauth2 (mutual TLS "
    "goes under tls).",
    (
        Field("bearer", String(), "A bearer token (prefer bearer_env or ${VAR})."),
        Field("bearer_env", String(), "Environment variable holding the bearer token."),
        Field("basic", Nested(BASIC), "HTTP Basic."),
        Field("oauth2", Nested(OAUTH2), "OAuth2 client credentials."),
    ),
    kinds=("bearer", "bearer_env", "basic", "oauth2"),
)

HMAC = Spec(
    "hmac",
    "Sign the body for webhook receivers: header `sha256=<hex>` of HMAC over "
    "`<timestamp>.<body>`, the timestamp in X-Signature-Timestamp.",
    (
        Field("secret", String(), "The shared secret (or use secret_env)."),
        Field("secret_env", String(), "Environment variable holding the secret."),
        Field("header", String(), "Signature header.", default="X-Signature-256"),
        Field("algorithm", Enum("sha256", "sha512"), "Hash.", default="sha256"),
    ),
    kinds=("secret", "secret_env"),
)


class AuthConfigError(ValueError):
    """Auth, HMAC or TLS settings of a REST destination that cannot work."""


class TokenError(Exception):
    """The OAuth2 token endpoint gave no usable token (the reason holds no secrets)."""


def _secret(config: Any, name: str, where: str, environ: Mapping[str, str]) -> str:
    """The settings' ``name``, or the environment variable their ``name_env`` names."""
    if getattr(config, name) not in (None, ""):
        return str(getattr(config, name))
    var = getattr(config, f"{name}_env")
    if var is None:
        raise AuthConfigError(f"{where} needs {name} or {name}_env")
    value = environ.get(str(var))
    if not value:
        raise AuthConfigError(
            f"{where}.{name}_env names the environment variable {var}, which is not set; "
            "set it in the engine's environment"
        )
    return value


class NoAuth:
    async def headers(self) -> dict[str, str]:
        return {}

    def invalidate(self, used: Mapping[str, str]) -> bool:
        """A 401 came back for a request sent with ``used``: True when a retry may help."""
        return False

    def stop(self) -> None:
        pass


class StaticAuth(NoAuth):
    def __init__(self, authorization: str):
        self._value = authorization

    async def headers(self) -> dict[str, str]:
        return {"Authorization": self._value}


def basic_value(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class OAuth2ClientCredentials(NoAuth):
    def __init__(self, token_url: str, client_id: str, client_secret: str, *, clock,
                 fetch: Fetch, scope: str | None = None, audience: str | None = None,
                 client_auth: str = "basic"):  # fmt: skip
        if client_auth not in ("basic", "post"):
            raise AuthConfigError(f"oauth2.client_auth must be basic or post, not {client_auth!r}")
        self.token_url, self.clock, self._fetch = token_url, clock, fetch
        self._form = {"grant_type": "client_credentials"}
        self._form.update({k: v for k, v in (("scope", scope), ("audience", audience)) if v})
        self._credentials = (client_id, client_secret)
        self._client_auth = client_auth
        self._token: str | None = None
        self._expires_at = float("inf")
        self._waiters: list[Deferred] = []
        self._request: Deferred | None = None
        self.requests = 0  # token requests made (for metrics and tests)

    async def headers(self) -> dict[str, str]:
        if self._token is None or self.clock.seconds() >= self._expires_at:
            await self._refresh()
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self, used: Mapping[str, str]) -> bool:
        if used.get("Authorization") == f"Bearer {self._token}":
            self._token = None  # not when another request has already refreshed it
        return True

    def stop(self) -> None:
        if self._request is not None:
            self._request.cancel()

    def _refresh(self) -> Deferred:
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        if self._request is None:
            self._request = Deferred.fromCoroutine(self._get_token())
            self._request.addBoth(self._fan_out)
        return waiter

    def _fan_out(self, result: Any) -> None:
        self._request = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    async def _get_token(self) -> None:
        form = dict(self._form)
        headers = {}
        client_id, client_secret = self._credentials
        if self._client_auth == "post":
            form.update(client_id=client_id, client_secret=client_secret)
        else:
            headers["Authorization"] = basic_value(client_id, client_secret)
        self.requests += 1
        status, body = await self._fetch(self.token_url, form, headers)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status != 200:
            error = answer.get("error")
            detail = f" ({str(error)[:80]})" if isinstance(error, str) else ""
            raise TokenError(f"token endpoint answered HTTP {status}{detail}")
        token, kind = answer.get("access_token"), str(answer.get("token_type") or "bearer")
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answer has no access_token")
        if kind.lower() != "bearer":
            raise TokenError(f"token endpoint issued a {kind[:40]!r} token, not a bearer token")
        try:
            lifetime = float(answer["expires_in"])
        except (KeyError, TypeError, ValueError):
            lifetime = float("inf")
        margin = min(TOKEN_MARGIN, lifetime / 10)
        self._token, self._expires_at = token, self.clock.seconds() + lifetime - margin


def build_auth(config: Any, *, clock, fetch: Fetch,
               environ: Mapping[str, str] = os.environ) -> NoAuth:  # fmt: skip
    """The credentials for validated ``auth`` settings (see the module docstring; the spec
    saw to exactly one kind and what each needs); NoAuth for None."""
    if config is None:
        return NoAuth()
    if config.kind in ("bearer", "bearer_env"):
        return StaticAuth("Bearer " + _secret(config, "bearer", "auth", environ))
    if config.kind == "basic":
        basic = config.basic
        password = _secret(basic, "password", "auth.basic", environ)
        return StaticAuth(basic_value(str(basic.username), password))
    oauth = config.oauth2
    return OAuth2ClientCredentials(
        str(oauth.token_url), str(oauth.client_id),
        _secret(oauth, "client_secret", "auth.oauth2", environ), clock=clock, fetch=fetch,
        scope=oauth.scope, audience=oauth.audience, client_auth=oauth.client_auth,
    )  # fmt: skip


class HmacSigner:
    def __init__(self, secret: bytes, *, clock, header: str = "X-Signature-256",
                 algorithm: str = "sha256"):  # fmt: skip
        if algorithm not in HMAC_ALGORITHMS:
            raise AuthConfigError(
                f"hmac.algorithm {algorithm!r} is not supported; use {' or '.join(HMAC_ALGORITHMS)}"
            )
        self.secret, self.clock, self.header, self.algorithm = secret, clock, header, algorithm

    def sign(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.clock.seconds()))
        digest = hmac.new(self.secret, timestamp.encode() + b"." + body, self.algorithm)
        return {TIMESTAMP_HEADER: timestamp, self.header: f"{self.algorithm}={digest.hexdigest()}"}


def build_signer(config: Any, *, clock,
                 environ: Mapping[str, str] = os.environ) -> HmacSigner | None:  # fmt: skip
    """The signer for validated ``hmac`` settings, or None."""
    if config is None:
        return None
    secret = _secret(config, "secret", "hmac", environ).encode()
    return HmacSigner(secret, clock=clock, header=config.header, algorithm=config.algorithm)


@implementer(IPolicyForHTTPS)
class DestinationTLSPolicy:
    """``client_tls_options`` for the destination's host and port, browser-like elsewhere."""

    def __init__(self, host: str, port: int, tls: Any):
        self._netloc = (host.lower(), port)
        self._creator = client_tls_options(
            tls.server_name or host,
            _path(tls.ca),
            _path(tls.cert),
            _path(tls.key),
            str(tls.min_version),
        )
        self._default = BrowserLikePolicyForHTTPS()

    def creatorForNetloc(self, hostname: bytes, port: int):
        if (hostname.decode("ascii", "replace").strip("[]").lower(), port) == self._netloc:
            return self._creator
        return self._default.creatorForNetloc(hostname, port)


def _path(value: Any) -> str | None:
    return None if value is None else str(value)
