"""Signed Vonage webhooks: verify the `Authorization: Bearer <JWT>` header, and sign requests the same way.

What Vonage sends (Messages "Signed webhooks" concept page; Voice signed callbacks use "the same JWT in the
Authorization header"; Vonage's own TypeScript sample types the claims): an HS256 JWT signed with the
account's signature secret, with claims `iat` (seconds), `jti` (unique id), `iss` ("Vonage"), `api_key`,
`application_id` and `payload_hash` = SHA-256 hex of the payload. Vonage support ("How do I verify that
the Voice API Webhook request and its payload has not been tampered") says the payload is the request
body for POST and, for GET, the query parameters as a JSON object (in received order, no whitespace).
`vonage_jwt.verify_signature` only checks the signature (and maps errors to one exception), so this module
decodes with PyJWT directly, HS256 only, and checks time, hash, api key and replay itself.

Notes for callers: the Voice answer webhook was historically sent unsigned (Developer Preview doc:
"the initial answer webhook [is] still sent without signature"): decide per endpoint whether a missing
header is fatal. A Vonage retry of a timed-out webhook may carry the same token: with a replay store, the
retry is rejected as "replayed"; answer such requests idempotently (e.g. from the stored conversation).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import jwt
from django.core.signals import setting_changed
from jwt.algorithms import HMACAlgorithm

MAX_SKEW_SECONDS = 60
REASONS = {
    "missing": "No signed Authorization header",
    "not_configured": "No signature secret is configured",
    "bad_signature": "The token's signature does not verify",
    "invalid_claims": "The token lacks a valid iat claim",
    "expired": "The token is too old",
    "future": "The token was issued in the future",
    "payload_mismatch": "The payload does not match the token's payload_hash",
    "wrong_api_key": "The token was issued for another API key",
    "replayed": "The token was already used",
}


class SignatureError(Exception):
    """A webhook failed verification. `reason` is a short machine code (see REASONS)."""

    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        self.detail = detail or REASONS.get(reason, reason)
        super().__init__(f"{reason}: {self.detail}")


@dataclass(frozen=True)
class SignedClaims:
    iat: int
    jti: str | None
    api_key: str | None
    application_id: str | None
    payload_hash: str | None
    claims: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- replay stores


@runtime_checkable
class ReplayStore(Protocol):
    def seen(self, jti: str, ttl: int) -> bool:
        """Remember jti for ttl seconds; True when it was already remembered (atomically)."""
        ...


class InMemoryReplayStore:
    """One process only (tests, dev). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def seen(self, jti: str, ttl: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._expiry) > 10_000:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            if self._expiry.get(jti, 0) > now:
                return True
            self._expiry[jti] = now + ttl
            return False


class CacheReplayStore:
    """Django cache backed (shared across processes with Redis). The atomic check-and-set is the cache's
    `claim` (contactcenter.cache.RedisCache: SET NX on the thread's own connection) or else `add`."""

    def __init__(self, alias: str = "default", prefix: str = "vonage-jti:"):
        self.alias = alias
        self.prefix = prefix

    def seen(self, jti: str, ttl: int) -> bool:
        claim = _process_claims.get(self.alias)
        if claim is None:
            from django.core.cache import caches

            cache = caches[self.alias]
            if not hasattr(cache, "claim"):  # Django's own backends: one object per request, as Django keeps them
                return not cache.add(self.prefix + jti, 1, timeout=ttl)
            # Ours is thread-safe (contactcenter/cache.py): one object for the process. Django builds a new
            # cache object for every request context, and on a webhook that was ~4% of the work.
            claim = _process_claims[self.alias] = caches.create_connection(self.alias).claim
        return not claim(self.prefix + jti, ttl)


# alias -> the process's RedisCache.claim; forgotten when CACHES changes (tests)
_process_claims: dict[str, Callable[[str, int], bool]] = {}


def _forget_claims(*, setting: str, **kwargs) -> None:
    if setting == "CACHES":
        _process_claims.clear()


setting_changed.connect(_forget_claims, dispatch_uid="telephony.signing.forget_claims")


# ---------------------------------------------------------------- hashing


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _query_object(query: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    items = query.items() if isinstance(query, Mapping) else query
    return dict(items)


def payload_hashes(body: bytes, query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> list[str]:
    """Hashes a genuine payload_hash may have: of the raw body, of the body re-serialised as compact JSON
    (what Vonage hashes), or for an empty body of the query parameters as a compact JSON object."""
    return list(_payload_hashes(body, query))


def _payload_hashes(body: bytes, query) -> Iterator[str]:
    """payload_hashes one at a time: the raw body's first (the re-serialised body is only parsed and
    hashed when that one did not match)."""
    if body:
        yield _sha256(body)
        try:
            compact = _compact_json(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            return
        yield _sha256(compact)
    elif query is not None:
        yield _sha256(_compact_json(_query_object(query)))


# ---------------------------------------------------------------- verify / sign


class _HS256(HMACAlgorithm):
    """PyJWT's HS256 with each secret prepared once: PyJWT prepares the key on every call, and for HMAC that
    means checking that the secret is not a PEM or DER public key (a parse attempt each time), half the
    cost of verifying a webhook's token."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one instance for the process; keys are the secrets in use
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)


# The JWS layer of PyJWT (signature and header checks); the claims are checked below, as before.
_JWS = jwt.PyJWS()
_JWS.unregister_algorithm("HS256")
_JWS.register_algorithm("HS256", _HS256())


def verify_request(
    *,
    authorization: str | None,
    body: bytes,
    secret: str,
    api_key: str | None = None,
    max_age_seconds: int = 300,
    now: float | None = None,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    replay_store: ReplayStore | None = None,
) -> SignedClaims:
    """Verify a Vonage-signed request; return its claims or raise SignatureError(reason).

    body: the raw request body. For an empty body (GET) payload_hash is only checked when `query` (the query
    parameters in received order) is given. jti replay is checked last, so rejected requests burn no jti.
    """
    if not secret:
        raise SignatureError("not_configured")
    token = re.sub(r"^bearer(\s+|$)", "", (authorization or "").strip(), flags=re.IGNORECASE).strip()
    if not token:
        raise SignatureError("missing")
    try:
        claims = json.loads(_JWS.decode_complete(token, key=secret, algorithms=["HS256"])["payload"])
    except jwt.InvalidTokenError as exc:
        raise SignatureError("bad_signature", f"{REASONS['bad_signature']} ({type(exc).__name__})") from None
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("bad_signature", f"{REASONS['bad_signature']} (DecodeError)") from None
    if not isinstance(claims, dict):
        raise SignatureError("bad_signature", f"{REASONS['bad_signature']} (DecodeError)")

    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise SignatureError("invalid_claims")
    current = time.time() if now is None else now
    if iat > current + MAX_SKEW_SECONDS:
        raise SignatureError("future", f"Issued {iat - current:.0f} s in the future")
    if current - iat > max_age_seconds:
        raise SignatureError("expired", f"Issued {current - iat:.0f} s ago (max {max_age_seconds} s)")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp < current - MAX_SKEW_SECONDS:
        raise SignatureError("expired", "The token's exp has passed")

    claimed_hash = claims.get("payload_hash")
    if body and not isinstance(claimed_hash, str):
        raise SignatureError("payload_mismatch", "The token has no payload_hash for a non-empty body")
    if isinstance(claimed_hash, str):
        claimed, checked = claimed_hash.lower(), False
        for expected in _payload_hashes(body, query):
            if hmac.compare_digest(claimed, expected):
                break
            checked = True
        else:
            if checked:  # nothing to check against (a GET verified without its query): not a mismatch
                raise SignatureError("payload_mismatch")

    claimed_key = claims.get("api_key")
    if api_key and not (isinstance(claimed_key, str) and hmac.compare_digest(claimed_key, api_key)):
        raise SignatureError("wrong_api_key")

    jti = claims.get("jti")
    jti = str(jti) if jti not in (None, "") else None
    if jti and replay_store is not None and replay_store.seen(jti, int(max_age_seconds + MAX_SKEW_SECONDS)):
        raise SignatureError("replayed")

    return SignedClaims(
        iat=int(iat),
        jti=jti,
        api_key=claimed_key if isinstance(claimed_key, str) else None,
        application_id=claims.get("application_id") if isinstance(claims.get("application_id"), str) else None,
        payload_hash=claimed_hash if isinstance(claimed_hash, str) else None,
        claims=dict(claims),
    )


def sign_request(
    *,
    body: bytes,
    secret: str,
    api_key: str = "sim",
    now: float | None = None,
    jti: str | None = None,
    application_id: str | None = None,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
) -> str:
    """The Authorization header value ("Bearer <jwt>") Vonage would send for this body (or, for an empty
    body, these query parameters). Used by the call simulator and tests."""
    claims: dict[str, Any] = {
        "iat": int(time.time() if now is None else now),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": api_key,
    }
    if application_id:
        claims["application_id"] = application_id
    if body:
        claims["payload_hash"] = _sha256(body)
    elif query is not None:
        claims["payload_hash"] = _sha256(_compact_json(_query_object(query)))
    return "Bearer " + _JWS.encode(json.dumps(claims, separators=(",", ":")).encode(), secret, algorithm="HS256")
