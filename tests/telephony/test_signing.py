"""Signed Vonage webhooks: verification reasons, replay protection, and our signer."""

from __future__ import annotations

import hashlib
import json

import jwt
import pytest

from telephony.signing import (
    CacheReplayStore,
    InMemoryReplayStore,
    ReplayStore,
    SignatureError,
    payload_hashes,
    sign_request,
    verify_request,
)

SECRET = "a-test-signature-secret-of-32+-bytes"
NOW = 1_750_000_000.0
BODY = json.dumps({"uuid": "leg-1", "status": "answered", "conversation_uuid": "CON-1"}).encode()


def verify(authorization, body=BODY, **kw):
    kw.setdefault("secret", SECRET)
    kw.setdefault("now", NOW)
    return verify_request(authorization=authorization, body=body, **kw)


def reason(**kw) -> str:
    with pytest.raises(SignatureError) as exc:
        verify(**kw)
    assert exc.value.detail  # readable text alongside the code
    return exc.value.reason


def test_valid_signature():
    header = sign_request(body=BODY, secret=SECRET, api_key="abc123", now=NOW, jti="j-1", application_id="app-1")
    assert header.startswith("Bearer ")
    claims = verify(header, api_key="abc123")
    assert claims.api_key == "abc123"
    assert claims.application_id == "app-1"
    assert claims.jti == "j-1"
    assert claims.iat == int(NOW)
    assert claims.payload_hash == hashlib.sha256(BODY).hexdigest()
    assert claims.claims["iss"] == "Vonage"


def test_token_shape_matches_vonage():
    token = sign_request(body=BODY, secret=SECRET, now=NOW).removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_iat": False})
    assert set(claims) == {"iat", "jti", "iss", "api_key", "payload_hash"}


def test_bearer_prefix_is_optional_and_case_insensitive():
    token = sign_request(body=BODY, secret=SECRET, now=NOW).removeprefix("Bearer ")
    assert verify(token).iat == int(NOW)
    assert verify("bearer " + token).iat == int(NOW)


@pytest.mark.parametrize("header", [None, "", "Bearer ", "   "])
def test_unsigned(header):
    assert reason(authorization=header) == "missing"


def test_wrong_secret():
    header = sign_request(body=BODY, secret="another-secret-that-is-long-enough!!", now=NOW)
    assert reason(authorization=header) == "bad_signature"


def test_garbage_and_alg_none_tokens():
    assert reason(authorization="Bearer not.a.jwt") == "bad_signature"
    unsigned = jwt.encode({"iat": int(NOW), "payload_hash": hashlib.sha256(BODY).hexdigest()}, None, algorithm="none")
    assert reason(authorization=f"Bearer {unsigned}") == "bad_signature"
    hs512 = jwt.encode({"iat": int(NOW)}, SECRET * 2, algorithm="HS512")
    assert reason(authorization=f"Bearer {hs512}", secret=SECRET * 2) == "bad_signature"  # HS256 only
    assert reason(authorization=f"Bearer {hs512}") == "bad_signature"


def test_a_signed_token_whose_claims_are_not_a_json_object_is_refused():
    for payload in (b"[1, 2]", b"not json", b"\xff\xfe"):
        token = jwt.PyJWS().encode(payload, SECRET, algorithm="HS256")
        assert reason(authorization=f"Bearer {token}") == "bad_signature"


def test_no_secret_configured():
    header = sign_request(body=BODY, secret=SECRET, now=NOW)
    assert reason(authorization=header, secret="") == "not_configured"


def test_tampered_body():
    header = sign_request(body=BODY, secret=SECRET, now=NOW)
    tampered = BODY.replace(b"answered", b"completed")
    assert reason(authorization=header, body=tampered) == "payload_mismatch"


def test_non_empty_body_needs_a_payload_hash():
    token = jwt.encode({"iat": int(NOW), "jti": "x"}, SECRET, algorithm="HS256")
    assert reason(authorization=f"Bearer {token}") == "payload_mismatch"


def test_payload_hash_of_compact_json_is_accepted():
    # Vonage hashes the payload as compact JSON; a body sent with whitespace still matches.
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    compact = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    header = sign_request(body=compact, secret=SECRET, now=NOW)
    assert verify(header, body=pretty).iat == int(NOW)
    assert hashlib.sha256(compact).hexdigest() in payload_hashes(pretty)


def test_expired_and_future():
    old = sign_request(body=BODY, secret=SECRET, now=NOW - 301)
    assert reason(authorization=old) == "expired"
    assert verify(old, max_age_seconds=600).iat == int(NOW - 301)
    skewed = sign_request(body=BODY, secret=SECRET, now=NOW + 59)
    assert verify(skewed).iat == int(NOW + 59)  # within the 60 s clock skew
    future = sign_request(body=BODY, secret=SECRET, now=NOW + 120)
    assert reason(authorization=future) == "future"


def test_exp_claim_in_the_past_is_expired():
    token = jwt.encode(
        {"iat": int(NOW) - 10, "exp": int(NOW) - 120, "payload_hash": hashlib.sha256(BODY).hexdigest()},
        SECRET,
        algorithm="HS256",
    )
    assert reason(authorization=f"Bearer {token}") == "expired"


def test_missing_or_bad_iat():
    for iat in (None, "yesterday", True):
        claims = {"payload_hash": hashlib.sha256(BODY).hexdigest()}
        if iat is not None:
            claims["iat"] = iat
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        assert reason(authorization=f"Bearer {token}") == "invalid_claims"


def test_wrong_api_key():
    header = sign_request(body=BODY, secret=SECRET, api_key="someone-else", now=NOW)
    assert reason(authorization=header, api_key="abc123") == "wrong_api_key"
    assert verify(header).api_key == "someone-else"  # not checked when no api_key is expected


def test_replayed_jti():
    store = InMemoryReplayStore()
    assert isinstance(store, ReplayStore)
    header = sign_request(body=BODY, secret=SECRET, now=NOW, jti="jti-42")
    assert verify(header, replay_store=store).jti == "jti-42"
    assert reason(authorization=header, replay_store=store) == "replayed"
    other = sign_request(body=BODY, secret=SECRET, now=NOW, jti="jti-43")
    assert verify(other, replay_store=store).jti == "jti-43"


def test_rejected_requests_do_not_burn_the_jti():
    store = InMemoryReplayStore()
    header = sign_request(body=BODY, secret=SECRET, now=NOW, jti="jti-7")
    assert reason(authorization=header, body=b'{"forged": true}', replay_store=store) == "payload_mismatch"
    assert verify(header, replay_store=store).jti == "jti-7"


def test_cache_replay_store(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "replay"}}
    store = CacheReplayStore()
    header = sign_request(body=BODY, secret=SECRET, now=NOW, jti="jti-cache")
    verify(header, replay_store=store)
    assert reason(authorization=header, replay_store=store) == "replayed"


def test_get_with_empty_body():
    # GET answer webhook: no body. A payload_hash over the query is checked only when the query is given.
    query = [("to", "447700900000"), ("from", "447700900001"), ("uuid", "leg-1"), ("conversation_uuid", "CON-1")]
    plain = sign_request(body=b"", secret=SECRET, now=NOW)
    assert verify(plain, body=b"").payload_hash is None
    hashed = sign_request(body=b"", secret=SECRET, now=NOW, query=query)
    assert verify(hashed, body=b"").iat == int(NOW)
    assert verify(hashed, body=b"", query=query).iat == int(NOW)
    assert verify(hashed, body=b"", query=dict(query)).iat == int(NOW)
    forged = [*query[:2], ("uuid", "someone-else"), query[3]]
    assert reason(authorization=hashed, body=b"", query=forged) == "payload_mismatch"
    compact = json.dumps(dict(query), separators=(",", ":")).encode()
    assert payload_hashes(b"", query) == [hashlib.sha256(compact).hexdigest()]


@pytest.mark.redis
def test_the_replay_store_refuses_a_jti_seen_by_another_request_context_and_follows_cache_settings(settings):
    import asyncio
    import contextvars
    import uuid

    settings.CACHES = {
        "default": {"BACKEND": "contactcenter.cache.RedisCache", "LOCATION": settings.REDIS_URL, "KEY_PREFIX": "t-jti"}
    }
    store = CacheReplayStore()
    jti = uuid.uuid4().hex

    async def request():  # each webhook in a fresh context, as under ASGI
        return await asyncio.to_thread(store.seen, jti, 60)

    first = contextvars.Context().run(asyncio.run, request())
    second = contextvars.Context().run(asyncio.run, request())
    assert (first, second) == (False, True)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "jti"}}
    assert store.seen(jti, 60) is False, "a new cache setting is a new store"
    assert store.seen(jti, 60) is True
