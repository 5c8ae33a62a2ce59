"""REST destination: the message POSTed (or PUT) as ER7 or JSON."""

from __future__ import annotations

from engine.config import Field, Spec
from engine.config.containers import FreeMapping
from engine.config.external import Url
from engine.config.scalars import Duration, Enum, Float, String
from engine.config.spec import Nested
from engine.destinations.base import (
    CLIENT_TLS,
    Destination,
    Rendered,
    destination_kind,
    er7_as_json,
)
from engine.hl7.message import Message

BASIC = Spec(
    "basic auth",
    "HTTP Basic credentials.",
    (
        Field("username", String(), "User name.", required=True),
        Field("password", String(), "Password (or use password_env)."),
        Field("password_env", String(), "Environment variable holding the password."),
    ),
    exactly_one_of=("password", "password_env"),
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
    exactly_one_of=("client_secret", "client_secret_env"),
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
    exactly_one_of=("bearer", "bearer_env", "basic", "oauth2"),
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
    exactly_one_of=("secret", "secret_env"),
)


@destination_kind(
    "rest",
    "Send the message to an HTTP endpoint.",
    (
        Field("rest", Url(), "The URL.", required=True, example="https://api.example.org/hl7"),
        Field("method", Enum("POST", "PUT"), "HTTP method.", default="POST"),
        Field("format", Enum("er7", "json"), "Body: the message as ER7 text or as JSON.",
              default="er7"),
        Field("headers", FreeMapping(), "Extra request headers.", default={}),
        Field("timeout", Duration(), "Request timeout.", default="30s"),
        Field("auth", Nested(AUTH), "Credentials.", nullable=True),
        Field("hmac", Nested(HMAC), "Sign each body (HMAC over timestamp.body, Stripe style).",
              nullable=True),
        Field("tls", Nested(CLIENT_TLS), "TLS options (https only): CA, client certificate.",
              nullable=True),
        Field("rate_limit", Float(min=0.001), "At most this many requests per second.",
              nullable=True),
    ),
)  # fmt: skip
class RestDestination(Destination):
    def render(self, message: Message) -> Rendered:
        if self.config["format"] == "json":
            return Rendered(er7_as_json(message), "application/json")
        return super().render(message)
