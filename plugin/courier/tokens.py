"""Bearer tokens of the DICOMweb servers (`Courier.Nodes.{id}.Authorization`): one job, keep a
valid `Authorization: Bearer` header for each.

A static token (BearerTokenFile/Env) is used as it is. OAuth2 client credentials: the token
endpoint (TokenUrl) is asked with `grant_type=client_credentials`, ClientId and the client secret
in the form (client_secret_post) and Scope; the access token is cached with its expiry
(`expires_in`) and renewed RefreshBeforeSeconds before it (never in the first half of its life),
on demand and by a thread, so that Orthanc's registry entry of the server (its HttpHeaders, which
every QIDO, WADO and STOW request of orthanc-dicomweb carries) always holds a valid one:
`on_refresh(node_id)` is called after each renewal. A failed token request is a retriable
DeliveryError naming the node, the endpoint and the HTTP status or the OAuth2 error code, never
the secret or the token. While a renewal fails, the previous token is kept until it expires.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import requests

from courier import threads
from courier.config.nodes import Authorization, NodeSettings
from courier.errors import DeliveryError

log = logging.getLogger("courier.tokens")

RETRY_SECONDS = 5.0          # after a failed renewal
TOKEN_TIMEOUT = 30.0         # one request to the token endpoint
FOREVER = float("inf")


def unauthorized(node_id: str) -> str:
    """The reason given when a DICOMweb server answers 401."""
    return (f"{node_id} refused Courier's credentials (HTTP 401 Unauthorized): check the bearer token or the "
            f"client credentials of Courier.Nodes.{node_id}.Authorization")


def renew_at(obtained_at: float, expires_in: Optional[float], before: float) -> float:
    """When a token obtained at `obtained_at` and valid `expires_in` seconds is renewed: `before`
    seconds ahead of its expiry, but not in the first half of its life (a token that lives less
    than `before`); never when it does not expire."""
    if expires_in is None:
        return FOREVER
    return obtained_at + max(expires_in - before, expires_in / 2)


@dataclass(frozen=True)
class Token:
    value: str
    obtained_at: float
    expires_at: float          # FOREVER: no expiry given
    renew_at: float


def granted(answer: Mapping, now: float, before: float) -> Token:
    """A token endpoint's JSON answer as a Token (pure); ValueError when it holds none."""
    value = answer.get("access_token") if isinstance(answer, Mapping) else None
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n"):
        raise ValueError("the answer holds no access_token")
    kind = str(answer.get("token_type") or "Bearer")
    if kind.lower() != "bearer":
        raise ValueError(f"token_type {kind!r}, not Bearer")
    expires_in = answer.get("expires_in")
    try:
        seconds = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        raise ValueError("expires_in is not a number") from None
    if seconds is not None and seconds <= 0:
        raise ValueError("expires_in is not positive")
    return Token(value, now, now + seconds if seconds is not None else FOREVER, renew_at(now, seconds, before))


class TokenProvider:
    """The current token of one DICOMweb server. `clock` (monotonic seconds) and `post`
    (requests.post's signature) are injected by tests."""

    def __init__(self, node_id: str, authorization: Authorization, clock: Callable[[], float] = time.monotonic,
                 post: Callable = requests.post) -> None:
        self.node_id, self.authorization, self.clock, self.post = node_id, authorization, clock, post
        self._token: Optional[Token] = None
        self._retry_at = 0.0
        self.failure = ""                      # the last renewal's error, "" once one succeeded
        self.renewed: Callable[[str], None] = lambda node_id: None     # a renewal made on demand, by token()
        self._lock = threading.Lock()

    @property
    def static(self) -> bool:
        return self.authorization.kind == "bearer"

    def token(self) -> str:
        """A valid token, asked of the endpoint when there is none or it is due for renewal
        (DeliveryError when it cannot be had and the one held has expired)."""
        with self._lock:
            now = self.clock()
            token = self._token
            if token is not None and now < token.renew_at:
                return token.value
            try:
                value = self._renew(now).value
            except DeliveryError:
                if token is not None and now < token.expires_at:
                    return token.value         # still valid: used while the endpoint is down
                raise
        self.renewed(self.node_id)             # Orthanc's registry must get it too (outside the lock)
        return value

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def next_renewal(self) -> float:
        """When the thread should renew (FOREVER for a static token)."""
        with self._lock:
            if self.static:
                return FOREVER if self._token is not None else 0.0
            if self._token is None or self.failure:
                return self._retry_at
            return self._token.renew_at

    def renew(self) -> None:
        """Renew now (the thread, or after a 401); DeliveryError when the endpoint fails."""
        with self._lock:
            self._renew(self.clock())

    def invalidate(self) -> None:
        """The server refused the token: the next `token()` asks for a new one."""
        with self._lock:
            if not self.static:
                self._token = None

    def _renew(self, now: float) -> Token:
        try:
            token = self._static(now) if self.static else self._request(now)
        except DeliveryError as exc:
            self.failure, self._retry_at = str(exc), now + RETRY_SECONDS
            raise
        self._token, self.failure = token, ""
        return token

    def _static(self, now: float) -> Token:
        return Token(self.authorization.secret, now, FOREVER, FOREVER)

    def _request(self, now: float) -> Token:
        auth = self.authorization
        form = {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": auth.secret}
        if auth.scope:
            form["scope"] = auth.scope
        where = f"{self.node_id}: the token endpoint {auth.token_url}"
        try:
            response = self.post(auth.token_url, data=form, headers={"Accept": "application/json"},
                                 timeout=TOKEN_TIMEOUT)
        except requests.RequestException as exc:
            raise DeliveryError(f"{where} did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise DeliveryError(f"{where} refused the client credentials: HTTP {response.status_code}"
                                f"{_oauth_error(response)}")
        try:
            return granted(response.json(), now, auth.refresh_before)
        except ValueError as exc:
            raise DeliveryError(f"{where} gave no usable token: {exc}") from None


def _oauth_error(response) -> str:
    """The OAuth2 error code of a refusal (`invalid_client`), never the rest of the body."""
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) < 64 else ""


class Tokens:
    """The providers of every DICOMweb server with an Authorization, and the thread that renews
    their tokens ahead of expiry; `on_refresh(node_id)` puts a renewed token in Orthanc's registry."""

    def __init__(self, node_settings: Mapping[str, NodeSettings], on_refresh: Callable[[str], None] = lambda n: None,
                 clock: Callable[[], float] = time.monotonic, post: Callable = requests.post) -> None:
        self.on_refresh, self.clock, self.post = on_refresh, clock, post
        self.providers: dict[str, TokenProvider] = {}
        self._pending: set[str] = set()        # renewed on demand: their registry entries to set
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.configure(node_settings)

    def configure(self, node_settings: Mapping[str, NodeSettings]) -> None:
        """A new configuration: providers of unchanged Authorizations (and their tokens) are kept."""
        with self._lock:
            providers = {}
            for node_id, settings in node_settings.items():
                if settings.authorization is None:
                    continue
                kept = self.providers.get(node_id)
                providers[node_id] = kept if kept is not None and kept.authorization == settings.authorization \
                    else TokenProvider(node_id, settings.authorization, self.clock, self.post)
                providers[node_id].renewed = self._renewed_on_demand
            self.providers = providers
        self._wake.set()

    def _renewed_on_demand(self, node_id: str) -> None:
        """A token renewed by a caller (a STOW after a 401, say): the thread sets it in Orthanc's
        registry, as it does for its own renewals."""
        with self._lock:
            self._pending.add(node_id)
        self._wake.set()

    def provider(self, node_id: str) -> Optional[TokenProvider]:
        with self._lock:
            return self.providers.get(node_id)

    def headers(self, node_id: str) -> dict[str, str]:
        """The node's Authorization header ({} for a node without one); DeliveryError when no
        valid token can be had."""
        provider = self.provider(node_id)
        return provider.header() if provider is not None else {}

    def registry_headers(self, node_id: str) -> dict[str, str]:
        """What Orthanc's registry entry of the node gets: the header, or none while no token can
        be had (logged; the thread tries again and sets it)."""
        try:
            return self.headers(node_id)
        except DeliveryError as exc:
            log.error("%s", exc)
            return {}

    def refused(self, node_id: str) -> None:
        """The server answered 401: a token from the endpoint is renewed at once (and set in
        Orthanc's registry)."""
        provider = self.provider(node_id)
        if provider is not None and not provider.static:
            provider.invalidate()
            self._wake.set()

    # -- the thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threads.Thread(target=self._loop, name="courier-tokens", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(5)

    def renew_due(self) -> float:
        """Renew every token that is due; the seconds until the next one is."""
        with self._lock:
            providers = list(self.providers.values())
            pending, self._pending = self._pending, set()
        for node_id in sorted(pending):
            try:
                self.on_refresh(node_id)
            except Exception:                  # noqa: BLE001 - logged; the next renewal sets it again
                log.exception("%s: the renewed token could not be set in Orthanc's registry", node_id)
        now = self.clock()
        wait = 30.0
        for provider in providers:
            due = provider.next_renewal()
            if due > now:
                wait = min(wait, due - now)
                continue
            try:
                provider.renew()
            except DeliveryError as exc:
                log.error("%s (tried again in %g s)", exc, RETRY_SECONDS)
                wait = min(wait, RETRY_SECONDS)
                continue
            if not provider.static:
                log.info("%s: access token renewed", provider.node_id)
            try:
                self.on_refresh(provider.node_id)
            except Exception:                  # noqa: BLE001 - logged; the next renewal sets it again
                log.exception("%s: the renewed token could not be set in Orthanc's registry", provider.node_id)
            wait = min(wait, max(0.0, provider.next_renewal() - self.clock()))
        return max(0.05, wait)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.renew_due()
            self._wake.wait(wait)
            self._wake.clear()
