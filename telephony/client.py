"""The one outbound Vonage client (calls, call control, SMS), plus a fake with the same interface.

SDK facts this relies on (vonage 4.9 / vonage_voice 1.5 / vonage_http_client 1.5 / vonage_messages 1.8):
- `HttpClientOptions.timeout` is an int and defaults to None (no timeout). The HttpClient passes its
  `_timeout` straight to `requests`, so we set a (connect, read) tuple there after construction.
- The HttpClient retries by itself (urllib3 `Retry(total=3)` on connection errors, and up to
  `pool_maxsize` times on RemoteDisconnected, for POST too): a call may be placed twice by one request.
  Our idempotency store only stops *our* repeats of the same operation; keys must be stable per intent.
- `CreateCallRequest.to` accepts phone/sip/websocket/vbc only: an `app` user is posted to /v1/calls
  through the SDK's authenticated HttpClient instead.
- `Voice.transfer_call_ncco(uuid, list[NccoAction])` turns plain dicts into empty `{}` actions (it is
  `validate_call` over the field-less base class), so transfers PUT our validated NCCO to /v1/calls/{uuid}
  with the same body the SDK builds: {"action": "transfer", "destination": {"type": "ncco", "ncco": [...]}}.
- Errors: `vonage_http_client.errors.HttpRequestError` (and subclasses) carry `.response.status_code`;
  network failures are `requests` exceptions.
- Recordings: `Voice.download_recording(url, file_path)` only checks that "vonage.com" or "nexmo.com"
  appears *somewhere* in the URL (so `https://evil.example/?x=nexmo.com` passes, with our JWT attached)
  and `HttpClient.download_file_stream` passes no timeout and writes to a file. `fetch_recording` does
  the same authenticated GET (JWT from the SDK's `auth`, the SDK's session and its retrying adapter) but
  accepts only https Vonage API hosts, follows no redirects, keeps our (connect, read) timeouts and caps
  the size, returning the bytes.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
import struct
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from telephony.ncco import agent_join_ncco, callback_bridge_ncco, digits_only, render

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 7.0
IDEMPOTENCY_TTL = 24 * 3600
#: A 300 s voicemail is about 5 MB as mp3 (and 10 MB as 16-bit 8 kHz wav); anything far larger is not ours.
MAX_RECORDING_BYTES = 50 * 1024 * 1024
#: Where Vonage serves recordings from: api.nexmo.com, api-us.nexmo.com, api-eu.vonage.com, ...
RECORDING_HOST = re.compile(r"^api(-[a-z0-9]+)?\.(nexmo|vonage)\.com$")

T = TypeVar("T")


# ---------------------------------------------------------------- values and errors


@dataclass(frozen=True)
class PhoneTarget:
    """A phone number (E.164, with or without "+")."""

    number: str


@dataclass(frozen=True)
class AppUserTarget:
    """A Vonage Client SDK user (an agent's browser/app)."""

    user: str


Endpoint = PhoneTarget | AppUserTarget


@dataclass(frozen=True)
class CallResult:
    uuid: str
    status: str


@dataclass(frozen=True)
class MessageResult:
    message_uuid: str


class TelephonyError(Exception):
    """A Vonage operation failed. `retryable`: 429, 5xx, timeouts and connection errors."""

    def __init__(self, message: str, retryable: bool, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


def _phone_digits(number: str, what: str) -> str:
    digits = digits_only(number)
    if digits is None:
        raise TelephonyError(f"{what}: {number!r} is not an E.164 phone number", retryable=False)
    return digits


def _agent_ncco(conversation_name: str, end_on_exit: bool) -> list[dict[str, Any]]:
    try:
        return agent_join_ncco(conversation_name, end_on_exit=end_on_exit)
    except ValueError as exc:
        raise TelephonyError(f"conversation_name: {exc}", retryable=False) from exc


def _bridge_ncco(announce: str, customer_number: str, from_number: str, customer_event_url: str) -> list[dict]:
    try:
        return callback_bridge_ncco(
            announce=announce,
            customer_number=_phone_digits(customer_number, "customer_number"),
            from_number=_phone_digits(from_number, "from_number"),
            customer_event_url=customer_event_url,
        )
    except ValueError as exc:
        raise TelephonyError(f"callback NCCO: {exc}", retryable=False) from exc


def check_recording_url(url: str) -> str:
    """The recording URL if it points at a Vonage API host over https; TelephonyError otherwise.

    We attach our application's JWT to this request, so it must never go anywhere else (SSRF, token leak).
    """
    try:
        parts = urlsplit(str(url or ""))
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        host, port, parts = "", None, None
    if parts is None or parts.scheme != "https" or not RECORDING_HOST.match(host) or port not in (None, 443):
        raise TelephonyError(
            f"fetch_recording: {str(url)[:200]!r} is not a Vonage recording URL (https://api.nexmo.com/... expected)",
            retryable=False,
        )
    if parts.username or parts.password:
        raise TelephonyError("fetch_recording: credentials in the recording URL are not allowed", retryable=False)
    return url


def _sniff_audio_type(data: bytes, declared: str) -> str:
    declared = (declared or "").split(";")[0].strip().lower()
    if declared.startswith("audio/"):
        return declared
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if data[:4] == b"OggS":
        return "audio/ogg"
    return "application/octet-stream"


def tone_wav(*, seconds: float = 1.0, frequency: float = 440.0, rate: int = 8000) -> bytes:
    """A short valid WAV (16-bit mono sine tone): what the fake client serves as every recording."""
    frames = int(seconds * rate)
    samples = (int(12000 * math.sin(2 * math.pi * frequency * n / rate)) for n in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def _endpoint(to: Endpoint | str) -> Endpoint:
    if isinstance(to, str):
        return PhoneTarget(to)
    if isinstance(to, PhoneTarget | AppUserTarget):
        return to
    raise TelephonyError(f"to: unsupported endpoint {to!r}", retryable=False)


# ---------------------------------------------------------------- idempotency stores


@runtime_checkable
class IdempotencyStore(Protocol):
    def get(self, key: str) -> Any | None: ...

    def put(self, key: str, result: Any, ttl: int) -> None: ...


class InMemoryIdempotencyStore:
    """One process only (tests, dev). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._data.get(key)
            if item is None or item[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            return item[1]

    def put(self, key: str, result: Any, ttl: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, result)


class CacheIdempotencyStore:
    """Django cache backed (shared across processes with Redis)."""

    def __init__(self, alias: str = "default", prefix: str = "vonage-idem:"):
        self.alias = alias
        self.prefix = prefix

    def get(self, key: str) -> Any | None:
        from django.core.cache import caches

        return caches[self.alias].get(self.prefix + key)

    def put(self, key: str, result: Any, ttl: int) -> None:
        from django.core.cache import caches

        caches[self.alias].set(self.prefix + key, result, timeout=ttl)


class _KeyedOnce:
    """Run an operation once per idempotency key (per store), serialising concurrent repeats in-process."""

    def __init__(self, store: IdempotencyStore, ttl: int):
        self.store = store
        self.ttl = ttl
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, namespace: str, key: str, op: Callable[[], T]) -> tuple[T, bool]:
        if not key:
            raise TelephonyError("idempotency_key: required", retryable=False)
        full = f"{namespace}:{key}"
        with self._guard:
            lock = self._locks.setdefault(full, threading.Lock())
        with lock:
            try:
                cached = self.store.get(full)
                if cached is not None:
                    return cached, True
                result = op()
                self.store.put(full, result, self.ttl)
                return result, False
            finally:
                with self._guard:
                    if len(self._locks) > 10_000:
                        self._locks = {k: v for k, v in self._locks.items() if v.locked()}


# ---------------------------------------------------------------- the interface


@runtime_checkable
class VoiceClient(Protocol):
    def call_into_conversation(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        conversation_name: str,
        event_url: str,
    ) -> CallResult: ...

    def call_agent_then_customer(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        customer_number: str,
        announce: str,
        event_url: str,
        customer_event_url: str,
    ) -> CallResult: ...

    def transfer(self, *, uuid: str, ncco: list[dict[str, Any]]) -> None: ...

    def hangup(self, *, uuid: str) -> None: ...

    def send_sms(self, *, idempotency_key: str, to: str, from_: str, text: str) -> MessageResult: ...

    def fetch_recording(self, url: str) -> tuple[bytes, str]: ...


def _sms_sender(from_: str) -> str:
    digits = digits_only(from_)
    if digits:
        return digits
    if from_ and len(from_) <= 11 and from_.replace(" ", "").isalnum():
        return from_  # alphanumeric sender id
    raise TelephonyError(f"from_: {from_!r} is neither a phone number nor an alphanumeric sender id", False)


# ---------------------------------------------------------------- Vonage


class VonageVoiceClient:
    """Wraps the vonage SDK. Pass `vonage=` (an SDK client or a stand-in) to avoid building one."""

    def __init__(
        self,
        *,
        application_id: str | None = None,
        private_key: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        idempotency_store: IdempotencyStore | None = None,
        idempotency_ttl: int = IDEMPOTENCY_TTL,
        api_host: str | None = None,
        vonage: Any = None,
    ):
        if vonage is None:
            from vonage import Auth, HttpClientOptions, Vonage

            options: dict[str, Any] = {"timeout": math.ceil(read_timeout)}
            if api_host:
                options["api_host"] = api_host
            vonage = Vonage(Auth(application_id=application_id, private_key=private_key), HttpClientOptions(**options))
        self.vonage = vonage
        self.timeout = (float(connect_timeout), float(read_timeout))
        http = getattr(vonage, "http_client", None)
        if http is not None and hasattr(http, "_timeout"):
            http._timeout = self.timeout  # requests accepts (connect, read); the SDK option is one int
        self._once = _KeyedOnce(idempotency_store or InMemoryIdempotencyStore(), idempotency_ttl)

    # -- helpers

    def call_agent_then_customer(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        customer_number: str,
        announce: str,
        event_url: str,
        customer_event_url: str,
    ) -> CallResult:
        """A callback: ring the agent (phone or app user); when they answer they hear who is being called and
        the customer is dialled and bridged (``callback_bridge_ncco``)."""
        target = _endpoint(to)
        from_digits = _phone_digits(from_number, "from_number")
        ncco = _bridge_ncco(announce, customer_number, from_number, customer_event_url)
        if isinstance(target, PhoneTarget):
            to_json = {"type": "phone", "number": _phone_digits(target.number, "to")}
        else:
            to_json = {"type": "app", "user": target.user}
        body = {
            "to": [to_json],
            "from": {"type": "phone", "number": from_digits},
            "ncco": ncco,
            "event_url": [event_url],
            "event_method": "POST",
        }

        result, _ = self._once.run("call", idempotency_key, lambda: self._create_call(body))
        return result

    def _create_call(self, body: dict[str, Any]) -> CallResult:
        """POST /v1/calls with our own validated body through the SDK's authenticated client (the SDK's
        typed request cannot carry app users or our NCCO dicts)."""
        http = self.vonage.voice.http_client
        data = self._call("create_call", lambda: http.post(http.api_host, "/v1/calls", body))
        if not isinstance(data, dict) or not data.get("uuid"):
            raise TelephonyError(f"create_call: unexpected response {data!r}", retryable=False)
        return CallResult(uuid=str(data["uuid"]), status=str(data.get("status", "started")))

    def _call(self, what: str, op: Callable[[], T]) -> T:
        try:
            return op()
        except TelephonyError:
            raise
        except Exception as exc:
            raise _map_error(what, exc) from exc

    # -- operations

    def call_into_conversation(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        conversation_name: str,
        event_url: str,
        end_on_exit: bool = True,
    ) -> CallResult:
        target = _endpoint(to)
        from_digits = _phone_digits(from_number, "from_number")
        ncco = _agent_ncco(conversation_name, end_on_exit)

        def op() -> CallResult:
            if isinstance(target, PhoneTarget):
                from vonage_voice import Conversation, CreateCallRequest, Phone, ToPhone

                request = CreateCallRequest(
                    to=[ToPhone(number=_phone_digits(target.number, "to"))],
                    from_=Phone(number=from_digits),
                    ncco=[Conversation(name=conversation_name, startOnEnter=True, endOnExit=end_on_exit)],
                    event_url=[event_url],
                    event_method="POST",
                )
                response = self._call("create_call", lambda: self.vonage.voice.create_call(request))
                return CallResult(uuid=str(response.uuid), status=str(response.status))
            body = {
                "to": [{"type": "app", "user": target.user}],
                "from": {"type": "phone", "number": from_digits},
                "ncco": ncco,
                "event_url": [event_url],
                "event_method": "POST",
            }
            return self._create_call(body)

        result, _ = self._once.run("call", idempotency_key, op)
        return result

    def transfer(self, *, uuid: str, ncco: list[dict[str, Any]]) -> None:
        valid = render(ncco)
        http = self.vonage.voice.http_client
        body = {"action": "transfer", "destination": {"type": "ncco", "ncco": valid}}
        self._call("transfer", lambda: http.put(http.api_host, f"/v1/calls/{uuid}", body))

    def hangup(self, *, uuid: str) -> None:
        self._call("hangup", lambda: self.vonage.voice.hangup(uuid))

    def send_sms(self, *, idempotency_key: str, to: str, from_: str, text: str) -> MessageResult:
        to_digits = _phone_digits(to, "to")
        sender = _sms_sender(from_)

        def op() -> MessageResult:
            from vonage_messages import Sms

            message = Sms(to=to_digits, from_=sender, text=text, client_ref=idempotency_key[:100])
            response = self._call("send_sms", lambda: self.vonage.messages.send(message))
            return MessageResult(message_uuid=str(response.message_uuid))

        result, _ = self._once.run("sms", idempotency_key, op)
        return result

    def fetch_recording(self, url: str) -> tuple[bytes, str]:
        """Download a recording (authenticated GET with our JWT). Returns (bytes, content type)."""
        url = check_recording_url(url)
        http = self.vonage.voice.http_client

        def op() -> tuple[bytes, str]:
            headers = {"User-Agent": http.user_agent, "Authorization": http.auth.create_jwt_auth_string()}
            # The SDK's own session (its retrying adapter); never follow a redirect with our token.
            with http._session.request(
                method="GET", url=url, headers=headers, timeout=self.timeout, stream=True, allow_redirects=False
            ) as response:
                if response.status_code != 200:
                    http._parse_response(response)  # raises HttpRequestError & co. for 4xx/5xx
                    raise TelephonyError(
                        f"fetch_recording: Vonage answered {response.status_code}",
                        retryable=False,
                        status_code=response.status_code,
                    )
                chunks, size = [], 0
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > MAX_RECORDING_BYTES:
                        raise TelephonyError("fetch_recording: the recording is larger than expected", False)
                    chunks.append(chunk)
                data = b"".join(chunks)
                return data, _sniff_audio_type(data, response.headers.get("Content-Type", ""))

        return self._call("fetch_recording", op)


def _map_error(what: str, exc: Exception) -> TelephonyError:
    import requests
    from pydantic import ValidationError
    from vonage_http_client.errors import HttpRequestError

    if isinstance(exc, HttpRequestError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        retryable = status is not None and (status == 429 or status >= 500)
        return TelephonyError(f"{what}: Vonage answered {status}: {exc}", retryable=retryable, status_code=status)
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return TelephonyError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, requests.RequestException):
        return TelephonyError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, ValidationError | ValueError):
        return TelephonyError(f"{what}: invalid request: {exc}", retryable=False)
    return TelephonyError(f"{what}: {type(exc).__name__}: {exc}", retryable=False)


# ---------------------------------------------------------------- fake


class FakeVoiceClient:
    """Same interface, no network. Records effective operations in `.calls` (dicts with "method" and the
    arguments); a repeated idempotency key returns the first result and is counted in `.deduplicated`.
    `fail_next(exc)` makes the next operation raise exc (recorded in `.failures`). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._once = _KeyedOnce(InMemoryIdempotencyStore(), IDEMPOTENCY_TTL)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: list[dict[str, Any]] = []
            self.failures: list[dict[str, Any]] = []
            self.deduplicated = 0
            self._fail: list[BaseException] = []
            self._counter = itertools.count(1)
            self._once = _KeyedOnce(InMemoryIdempotencyStore(), IDEMPOTENCY_TTL)

    def fail_next(self, exc: BaseException) -> None:
        with self._lock:
            self._fail.append(exc)

    def _maybe_fail(self, record: dict[str, Any]) -> None:
        if self._fail:
            exc = self._fail.pop(0)
            self.failures.append({**record, "error": exc})
            raise exc

    def _next_uuid(self, kind: int) -> str:
        return f"00000000-0000-4000-8{kind:03d}-{next(self._counter):012d}"

    def _keyed(self, namespace: str, key: str, record: dict[str, Any], make: Callable[[], T]) -> T:
        def op() -> T:
            self._maybe_fail(record)
            result = make()
            self.calls.append({**record, "result": result})
            return result

        with self._lock:
            result, repeated = self._once.run(namespace, key, op)
            if repeated:
                self.deduplicated += 1
            return result

    def call_into_conversation(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        conversation_name: str,
        event_url: str,
        end_on_exit: bool = True,
    ) -> CallResult:
        target = _endpoint(to)
        if isinstance(target, PhoneTarget):
            target = PhoneTarget(_phone_digits(target.number, "to"))
        record = {
            "method": "call_into_conversation",
            "idempotency_key": idempotency_key,
            "to": target,
            "from_number": _phone_digits(from_number, "from_number"),
            "conversation_name": conversation_name,
            "event_url": event_url,
            "ncco": _agent_ncco(conversation_name, end_on_exit),
        }
        return self._keyed("call", idempotency_key, record, lambda: CallResult(self._next_uuid(1), "started"))

    def call_agent_then_customer(
        self,
        *,
        idempotency_key: str,
        to: Endpoint | str,
        from_number: str,
        customer_number: str,
        announce: str,
        event_url: str,
        customer_event_url: str,
    ) -> CallResult:
        target = _endpoint(to)
        if isinstance(target, PhoneTarget):
            target = PhoneTarget(_phone_digits(target.number, "to"))
        record = {
            "method": "call_agent_then_customer",
            "idempotency_key": idempotency_key,
            "to": target,
            "from_number": _phone_digits(from_number, "from_number"),
            "customer_number": _phone_digits(customer_number, "customer_number"),
            "event_url": event_url,
            "ncco": _bridge_ncco(announce, customer_number, from_number, customer_event_url),
        }
        return self._keyed("call", idempotency_key, record, lambda: CallResult(self._next_uuid(3), "started"))

    def transfer(self, *, uuid: str, ncco: list[dict[str, Any]]) -> None:
        with self._lock:
            try:
                valid = render(ncco)
            except ValueError as exc:
                raise TelephonyError(f"transfer: invalid NCCO: {exc}", retryable=False) from exc
            record = {"method": "transfer", "uuid": uuid, "ncco": valid}
            self._maybe_fail(record)
            self.calls.append(record)

    def hangup(self, *, uuid: str) -> None:
        with self._lock:
            record = {"method": "hangup", "uuid": uuid}
            self._maybe_fail(record)
            self.calls.append(record)

    def send_sms(self, *, idempotency_key: str, to: str, from_: str, text: str) -> MessageResult:
        record = {
            "method": "send_sms",
            "idempotency_key": idempotency_key,
            "to": _phone_digits(to, "to"),
            "from_": _sms_sender(from_),
            "text": text,
        }
        return self._keyed("sms", idempotency_key, record, lambda: MessageResult(self._next_uuid(2)))

    def fetch_recording(self, url: str) -> tuple[bytes, str]:
        """One second of a 440 Hz tone as audio/wav, for any Vonage recording URL (others are refused)."""
        with self._lock:
            record = {"method": "fetch_recording", "url": url}
            check_recording_url(url)
            self._maybe_fail(record)
            self.calls.append(record)
        return tone_wav(), "audio/wav"


# ---------------------------------------------------------------- configuration

_fake: FakeVoiceClient | None = None
_vonage: VonageVoiceClient | None = None
_singleton_lock = threading.Lock()


def _client_kind() -> str:
    from django.conf import settings

    kind = (getattr(settings, "VONAGE_CLIENT", "") or "").strip().lower()
    if not kind:
        kind = "vonage" if getattr(settings, "VONAGE_APPLICATION_ID", "") else "fake"
    if kind not in ("fake", "vonage"):
        raise ValueError(f"VONAGE_CLIENT must be 'fake' or 'vonage', not {kind!r}")
    return kind


def get_voice_client() -> VoiceClient:
    """The configured client: settings.VONAGE_CLIENT = "fake" | "vonage" (default: "fake" when
    VONAGE_APPLICATION_ID is empty). Both are process-wide singletons; the Vonage one shares idempotency
    through the Django cache."""
    global _fake, _vonage
    kind = _client_kind()
    with _singleton_lock:
        if kind == "fake":
            if _fake is None:
                _fake = FakeVoiceClient()
            return _fake
        if _vonage is None:
            from django.conf import settings

            key = (getattr(settings, "VONAGE_PRIVATE_KEY", "") or "").replace("\\n", "\n")
            _vonage = VonageVoiceClient(
                application_id=settings.VONAGE_APPLICATION_ID,
                private_key=key,
                idempotency_store=CacheIdempotencyStore(),
            )
        return _vonage


def reset_fake_client() -> FakeVoiceClient:
    """Forget everything the fake recorded (tests) and return it."""
    global _fake
    with _singleton_lock:
        if _fake is None:
            _fake = FakeVoiceClient()
        _fake.reset()
        return _fake
