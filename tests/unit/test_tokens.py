"""courier.tokens: the expiry logic with an injected clock and a fake token endpoint."""
import pytest

from courier.config.nodes import Authorization, NodeSettings
from courier.errors import DeliveryError
from courier.tokens import FOREVER, TokenProvider, Tokens, granted, renew_at

OAUTH = Authorization("oauth2", "ClientSecretEnv S", "client-secret-value", "http://idp/token", "courier", "dicomweb", 60.0)
BEARER = Authorization("bearer", "BearerTokenFile t", "static-token")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Endpoint:
    """A fake requests.post: issues tok-1, tok-2, ... valid `expires_in` seconds, or fails."""

    def __init__(self, expires_in=3600):
        self.expires_in, self.calls, self.status, self.error = expires_in, [], 200, None

    def __call__(self, url, data=None, headers=None, timeout=None):
        self.calls.append((url, dict(data)))
        if self.error:
            raise self.error
        endpoint = self

        class Response:
            status_code = endpoint.status

            def json(self):
                if endpoint.status != 200:
                    return {"error": "invalid_client", "error_description": "secret client-secret-value is wrong"}
                return {"access_token": f"tok-{len(endpoint.calls)}", "token_type": "Bearer",
                        "expires_in": endpoint.expires_in}
        return Response()


def test_renewal_comes_refresh_before_seconds_ahead_but_not_in_the_first_half_of_life():
    assert renew_at(100.0, 3600, 60) == 100.0 + 3540
    assert renew_at(100.0, 3, 60) == 101.5            # lives less than RefreshBeforeSeconds: halfway
    assert renew_at(100.0, 3, 1) == 102.0
    assert renew_at(100.0, None, 60) == FOREVER


def test_a_grant_needs_a_bearer_access_token_and_a_positive_expiry():
    token = granted({"access_token": "a", "token_type": "bearer", "expires_in": "10"}, 5.0, 2.0)
    assert (token.value, token.expires_at, token.renew_at) == ("a", 15.0, 13.0)
    for answer in ({}, {"access_token": ""}, {"access_token": "a", "token_type": "mac"},
                   {"access_token": "a", "expires_in": 0}, {"access_token": "a", "expires_in": "soon"}):
        with pytest.raises(ValueError):
            granted(answer, 0.0, 1.0)


def test_the_token_is_cached_until_its_renewal_then_asked_again():
    clock, endpoint = Clock(), Endpoint(expires_in=3600)
    provider = TokenProvider("web", OAUTH, clock, endpoint)
    assert provider.header() == {"Authorization": "Bearer tok-1"}
    clock.now += 3539
    assert provider.token() == "tok-1" and len(endpoint.calls) == 1
    assert provider.next_renewal() == 1000.0 + 3540
    clock.now += 1
    assert provider.token() == "tok-2" and len(endpoint.calls) == 2
    url, form = endpoint.calls[0]
    assert url == "http://idp/token" and form == {"grant_type": "client_credentials", "client_id": "courier",
                                                  "client_secret": "client-secret-value", "scope": "dicomweb"}


def test_a_failed_renewal_keeps_the_valid_token_then_fails_retriably_without_the_secret():
    clock, endpoint = Clock(), Endpoint(expires_in=100)
    provider = TokenProvider("web", OAUTH, clock, endpoint)
    assert provider.token() == "tok-1"
    endpoint.status = 401
    clock.now += 60                                   # due (renewal halfway: 50 s), still valid
    assert provider.token() == "tok-1"
    assert "HTTP 401 (invalid_client)" in provider.failure
    assert provider.next_renewal() == clock.now + 5.0
    clock.now += 41                                   # expired
    with pytest.raises(DeliveryError) as refused:
        provider.token()
    assert refused.value.retriable
    text = str(refused.value)
    assert "web: the token endpoint http://idp/token refused the client credentials: HTTP 401" in text
    assert "client-secret-value" not in text and "tok-" not in text


def test_an_endpoint_that_does_not_answer_is_a_retriable_error():
    import requests
    endpoint = Endpoint()
    endpoint.error = requests.ConnectionError("secret in message client-secret-value")
    with pytest.raises(DeliveryError) as failed:
        TokenProvider("web", OAUTH, Clock(), endpoint).token()
    assert failed.value.retriable and "did not answer (ConnectionError)" in str(failed.value)
    assert "client-secret-value" not in str(failed.value)


def test_a_static_token_is_never_renewed_nor_invalidated():
    provider = TokenProvider("web", BEARER, Clock(), Endpoint())
    assert provider.header() == {"Authorization": "Bearer static-token"}
    provider.invalidate()
    assert provider.next_renewal() == FOREVER and provider.token() == "static-token"


def test_the_thread_step_renews_what_is_due_and_sets_it_in_orthanc():
    clock, endpoint, refreshed = Clock(), Endpoint(expires_in=10), []
    settings = {"web": NodeSettings(("QIDO",), authorization=OAUTH), "plain": NodeSettings(("QIDO",))}
    tokens = Tokens(settings, refreshed.append, clock, endpoint)
    assert set(tokens.providers) == {"web"} and tokens.headers("plain") == {}
    assert tokens.renew_due() == pytest.approx(5.0)  # first token at once, the next halfway through 10 s
    assert refreshed == ["web"] and tokens.headers("web") == {"Authorization": "Bearer tok-1"}
    clock.now += 2
    tokens.renew_due()
    assert refreshed == ["web"]
    clock.now += 3
    tokens.renew_due()
    assert refreshed == ["web", "web"] and tokens.headers("web") == {"Authorization": "Bearer tok-2"}
    tokens.refused("web")                             # the server answered 401: renewed at once
    tokens.renew_due()
    assert tokens.headers("web") == {"Authorization": "Bearer tok-3"}
    kept = tokens.providers["web"]
    tokens.configure(settings)
    assert tokens.providers["web"] is kept            # an unchanged Authorization keeps its token
    endpoint.status = 500
    tokens.configure({"web": NodeSettings(("QIDO",), authorization=Authorization(
        "oauth2", "ClientSecretEnv T", "other-secret", "http://idp/token", "courier"))})
    assert tokens.registry_headers("web") == {}      # no token to be had: the entry goes without


def test_a_token_renewed_on_demand_is_set_in_orthancs_registry_by_the_thread():
    clock, endpoint, refreshed = Clock(), Endpoint(expires_in=10), []
    tokens = Tokens({"web": NodeSettings(("QIDO",), authorization=OAUTH)}, refreshed.append, clock, endpoint)
    tokens.renew_due()
    assert refreshed == ["web"]
    tokens.providers["web"].invalidate()              # a STOW got 401 and renews at once, by itself
    assert tokens.headers("web") == {"Authorization": "Bearer tok-2"}
    assert refreshed == ["web"]                       # not yet in Orthanc's registry...
    tokens.renew_due()
    assert refreshed == ["web", "web"]                # ...until the thread's next step
