"""Drive one phone call through Switchboard's Vonage webhooks exactly as Vonage would.

`CallSimulator` sends what Vonage sends: the answer webhook as a signed GET (to, from, uuid,
conversation_uuid in the query; the JWT's payload_hash covers the query), each caller input as a signed
POST of Vonage's input payload to the `eventUrl` of the `input` action in the previous NCCO, and a
signed "completed" status event when the call ends. It reads back what the caller would hear, notes
holds (`conversation`), voicemails (`record`), transfers (`connect`) and hang-ups (an NCCO without an
input), and validates every NCCO with `telephony.ncco.validate_ncco`.

How the requests travel is a pluggable transport:

- `HttpTransport` (default): real HTTP to a running server (`manage.py call_simulate`, the benchmark).
  Standard library only (`http.client`), one keep-alive connection per origin.
- `DjangoClientTransport`: Django's test client (tests).
- `InProcessTransport`: the dashboard's phone simulator. It resolves the webhook URL with Django's own
  URL resolver, builds a real `WSGIRequest` carrying the signed Authorization header and body, and calls
  the resolved webhook view (they are async: through `asgiref.sync.async_to_sync`). Why this and not
  the alternatives: HTTP to SITE_URL breaks wherever SITE_URL is a public tunnel or not reachable from the
  server itself; a full `WSGIHandler` fires `request_started`/`request_finished`, whose
  `close_old_connections` would close the database connection of the relay request in the middle of it,
  and runs the whole middleware stack a second time (SSL redirect in production, sessions); the test
  client is test machinery. What the in-process path still exercises is everything that makes the
  webhook what it is: URL routing, the signature check (JWT, payload hash, replay store), payload
  parsing, the time budget with its apology fallback, the services and the NCCO renderer. Only the
  middleware is skipped, which does nothing for these webhooks (CSRF-exempt, no session or user; the
  services enter their own tenant scope).

The NCCO's URLs carry the server's SITE_URL; the simulator keeps their path and query and sends them to
its own base URL, so a simulated call works against a server whose SITE_URL is a public tunnel.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import re
import socket
import time
import uuid as uuid_lib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from inspect import iscoroutinefunction
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from telephony.signing import sign_request

DEFAULT_FROM = "+15555550123"
SIM_UUID_PREFIX = "sim-"
USER_AGENT = "Switchboard-CallSimulator/1"
WEBHOOK_URL_NAMES = frozenset(
    {"vonage-answer", "vonage-event", "vonage-fallback", "vonage-input", "vonage-recording", "vonage-transcription"}
)
_DIGITS = re.compile(r"^[0-9*#]{1,20}$")

# What the call is doing after the last NCCO.
IDLE, LISTENING, ON_HOLD, VOICEMAIL, TRANSFERRED, ENDED, COMPLETED = (
    "idle",
    "listening",
    "on_hold",
    "voicemail",
    "transferred",
    "ended",
    "completed",
)


_NOT_LISTENING = {
    IDLE: " (not answered yet)",
    ON_HOLD: " (on hold for an agent)",
    TRANSFERRED: " (transferred)",
    VOICEMAIL: " (recording a voicemail)",
    ENDED: " (the AI hung up)",
    COMPLETED: " (hung up)",
}


# ---------------------------------------------------------------- errors


class SimulatorError(Exception):
    """A problem worth one clear sentence (no traceback): the server is down, refused us, and so on."""


class ServerUnreachable(SimulatorError):
    def __init__(self, origin: str, reason: str = ""):
        self.origin = origin
        detail = f" ({reason})" if reason else ""
        super().__init__(f"Nothing answers at {origin}{detail}: start it with make run")


class SignatureRefused(SimulatorError):
    def __init__(self, url: str, detail: str = ""):
        self.url = url
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"The server refused the signature at {url}{extra}: is VONAGE_SIGNATURE_SECRET the same on both sides?"
        )


class UnknownNumber(SimulatorError):
    def __init__(self, number: str, turn: SimTurn):
        self.number = number
        self.turn = turn
        super().__init__(
            f"No business answers {number}: the number is unknown or inactive on this server, or its script is "
            "not published."
        )


class CallNotListening(SimulatorError):
    """say/press/silence when the last NCCO had no input action (on hold, transferred, hung up...)."""


class BadResponse(SimulatorError):
    pass


# ---------------------------------------------------------------- transports


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


class Transport(Protocol):
    def send(self, method: str, url: str, *, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
        """Send one request to the absolute `url`; raise ServerUnreachable when nothing answers."""
        ...


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class _OneWrite:
    """http.client sends a request's headers and its body in two writes, so the server reads (and its event
    loop wakes) twice per webhook; a client that buffers its writes sends a small request in one."""

    def _send_output(self, message_body=None, encode_chunked=False):
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            head = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(head + message_body)
            return
        super()._send_output(message_body, encode_chunked=encode_chunked)


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


class HttpTransport:
    """Real HTTP with the standard library: one keep-alive connection per origin (not thread-safe: one
    transport per simulated call). A request that fails on a *reused* connection because the server had
    closed it is sent once more on a fresh one, as HTTP clients do."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def _connect(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        if parts.scheme == "https":
            return _HTTPSConnection(parts.netloc, timeout=self.timeout)
        if parts.scheme != "http":
            raise SimulatorError(f"{url} is not an http(s) URL.")
        return _HTTPConnection(parts.netloc, timeout=self.timeout)

    def send(self, method: str, url: str, *, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
        origin = _origin(url)
        for attempt in (1, 2):
            connection = self._connections.get(origin)
            reused = connection is not None
            if connection is None:
                connection = self._connections[origin] = self._connect(url)
            try:
                connection.request(method, _target(url), body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(origin)
                if reused and attempt == 1:
                    continue
                raise ServerUnreachable(origin, _reason(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(origin)
                raise ServerUnreachable(origin, _reason(exc)) from None
            if response.will_close:
                self._drop(origin)
            return HttpResponse(response.status, data)
        raise ServerUnreachable(origin)  # pragma: no cover - the loop always returns or raises

    def _drop(self, origin: str) -> None:
        connection = self._connections.pop(origin, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for origin in list(self._connections):
            self._drop(origin)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return str(exc) or type(exc).__name__


class DjangoClientTransport:
    """Through a `django.test.Client` (tests): the full request machinery, middleware included."""

    def __init__(self, client):
        self.client = client

    def send(self, method: str, url: str, *, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
        extra = {
            "HTTP_" + name.upper().replace("-", "_"): value
            for name, value in headers.items()
            if name.lower() != "content-type"
        }
        content_type = headers.get("Content-Type", "application/octet-stream")
        response = self.client.generic(method, _target(url), body, content_type=content_type, **extra)
        return HttpResponse(response.status_code, response.content)


class InProcessTransport:
    """Calls the webhook views in this process (see the module docstring for why this way).

    Only the Vonage webhook routes can be reached: anything else answers 404 without running a view.
    """

    def __init__(self, allowed_url_names: Iterable[str] = WEBHOOK_URL_NAMES):
        self.allowed = frozenset(allowed_url_names)

    def send(self, method: str, url: str, *, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
        from asgiref.sync import async_to_sync
        from django.urls import Resolver404, resolve

        parts = urlsplit(url)
        try:
            match = resolve(parts.path)
        except Resolver404:
            match = None
        if match is None or match.url_name not in self.allowed:
            return HttpResponse(404, b'{"error": {"code": "not_found", "message": "Not a Vonage webhook."}}')
        request = self._request(method, url, headers, body)
        view = match.func
        if iscoroutinefunction(view):
            response = async_to_sync(view)(request, *match.args, **match.kwargs)
        else:
            response = view(request, *match.args, **match.kwargs)
        return HttpResponse(response.status_code, response.content)

    @staticmethod
    def _request(method: str, url: str, headers: dict[str, str], body: bytes):
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIRequest

        site = urlsplit(settings.SITE_URL or "http://localhost")
        parts = urlsplit(url)
        scheme = site.scheme or "http"
        host = site.hostname or "localhost"
        port = str(site.port or (443 if scheme == "https" else 80))
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method.upper(),
            "SCRIPT_NAME": "",
            "PATH_INFO": parts.path or "/",
            "QUERY_STRING": parts.query,
            "SERVER_NAME": host,
            "SERVER_PORT": port,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": site.netloc or host,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers.items():
            if name.lower() == "content-type":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return WSGIRequest(environ)


# ---------------------------------------------------------------- turns


@dataclass
class SimTurn:
    """One webhook round trip: what the caller did, what the AI said, and the raw NCCO."""

    kind: str  # answer | say | press | silence
    caller: str  # what the caller said or did ("" for the answer)
    ai: str  # the talk actions' text, joined
    notes: list[str] = field(default_factory=list)
    ncco: list[Any] = field(default_factory=list)
    invalid: str | None = None  # validate_ncco's error, if any
    state: str = LISTENING
    latency_ms: float = 0.0
    status: int = 200

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe_ncco(ncco: list[Any]) -> tuple[str, list[str], str]:
    """(what the caller hears, notes, the call's state after it)."""
    actions = [a for a in ncco if isinstance(a, dict)]
    said = " ".join(str(a.get("text", "")).strip() for a in actions if a.get("action") == "talk").strip()
    notes: list[str] = []
    kinds = [a.get("action") for a in actions]
    for action in actions:
        kind = action.get("action")
        if kind == "stream":
            notes.append("plays audio: " + ", ".join(action.get("streamUrl") or []))
        elif kind == "conversation":
            if action.get("startOnEnter") is False:
                notes.append(
                    f"on hold: the caller hears hold music until an agent joins (conversation {action.get('name')})"
                )
            else:
                notes.append(f"joins conversation {action.get('name')}")
        elif kind == "record":
            notes.append("recording a voicemail (ends on silence, on # or after the time limit)")
        elif kind == "connect":
            targets = ", ".join(
                "+" + str(e["number"]) if e.get("type") == "phone" and e.get("number") else str(e.get("type"))
                for e in action.get("endpoint") or []
            )
            notes.append(f"transferred to {targets or 'another endpoint'}")
    if "input" in kinds:
        state = LISTENING
    elif "conversation" in kinds:
        state = ON_HOLD
    elif "connect" in kinds:
        state = TRANSFERRED
    elif "record" in kinds:
        state = VOICEMAIL
    else:
        state = ENDED
        notes.append("the AI hangs up (the NCCO ends without an input)")
    return said, notes, state


def _not_in_service_texts() -> frozenset[str]:
    from telephony.ncco import unknown_number_ncco

    return frozenset(unknown_number_ncco(lang)[0]["text"] for lang in ("en-US", "es-ES", "fr-FR", "de-DE"))


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------- the call


class CallSimulator:
    """One simulated inbound call. Not thread-safe; one per call.

    >>> call = CallSimulator("http://127.0.0.1:8000", secret)
    >>> call.answer("+15555550100").ai
    >>> call.say("What are your hours?").ai
    >>> call.hang_up()
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        transport: Transport | None = None,
        *,
        api_key: str = "sim",
        application_id: str | None = None,
    ):
        if not secret:
            raise SimulatorError("No signature secret: set VONAGE_SIGNATURE_SECRET (the server's value).")
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.transport: Transport = transport or HttpTransport()
        self.api_key = api_key
        self.application_id = application_id
        self.to = ""
        self.from_ = ""
        self.uuid = ""
        self.conversation_uuid = ""
        self.input_url: str | None = None
        self.state = IDLE
        self.started_at: float | None = None  # epoch seconds
        self.turns: list[SimTurn] = []

    # -- state (the dashboard keeps it in the session between requests)

    def to_state(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "from": self.from_,
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "input_url": self.input_url,
            "state": self.state,
            "started_at": self.started_at,
            "turns": len(self.turns),
        }

    @classmethod
    def from_state(
        cls, data: dict[str, Any], *, base_url: str, secret: str, transport: Transport | None = None, **kwargs
    ) -> CallSimulator:
        call = cls(base_url, secret, transport, **kwargs)
        call.to = data.get("to") or ""
        call.from_ = data.get("from") or ""
        call.uuid = data.get("uuid") or ""
        call.conversation_uuid = data.get("conversation_uuid") or ""
        call.input_url = data.get("input_url")
        call.state = data.get("state") or IDLE
        call.started_at = data.get("started_at")
        return call

    @property
    def listening(self) -> bool:
        return self.state == LISTENING and bool(self.input_url)

    @property
    def in_progress(self) -> bool:
        return self.state not in (IDLE, COMPLETED)

    # -- HTTP

    def _url(self, path_or_url: str) -> str:
        """The NCCO's absolute URL (with the server's SITE_URL) re-aimed at our base URL."""
        return self.base_url + _target(path_or_url)

    def _send(self, method: str, url: str, *, payload: dict | None = None, query: dict | None = None):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        body = b""
        if method == "GET":
            items = list((query or {}).items())
            headers["Authorization"] = sign_request(
                body=b"", secret=self.secret, api_key=self.api_key, application_id=self.application_id, query=items
            )
            if items:
                url = url + ("&" if "?" in url else "?") + urlencode(items)
        else:
            body = json.dumps(payload or {}, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            headers["Authorization"] = sign_request(
                body=body, secret=self.secret, api_key=self.api_key, application_id=self.application_id
            )
        started = time.perf_counter()
        response = self.transport.send(method, url, headers=headers, body=body)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status == 401:
            detail = ""
            try:
                detail = json.loads(response.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise SignatureRefused(_origin(url) + urlsplit(url).path, detail)
        if response.status != 200:
            snippet = response.body[:200].decode("utf-8", "replace").strip()
            hint = " (is the host in the server's ALLOWED_HOSTS?)" if response.status == 400 else ""
            raise BadResponse(f"{method} {url} answered HTTP {response.status}{hint}: {snippet or '(empty body)'}")
        try:
            data = json.loads(response.body or b"null")
        except ValueError:
            snippet = response.body[:120].decode("utf-8", "replace")
            raise BadResponse(f"{method} {url} did not answer JSON: {snippet!r}") from None
        return data, elapsed, response.status

    def _turn(self, kind: str, caller: str, method: str, url: str, **kwargs) -> SimTurn:
        from telephony.ncco import NccoError, validate_ncco

        ncco, elapsed, status = self._send(method, url, **kwargs)
        invalid = None
        if not isinstance(ncco, list):
            invalid = f"the server answered {type(ncco).__name__}, not an NCCO list"
            ncco = []
        else:
            try:
                validate_ncco(ncco)
            except (NccoError, ValueError) as exc:
                invalid = str(exc)
        said, notes, state = describe_ncco(ncco)
        inputs = [a for a in ncco if isinstance(a, dict) and a.get("action") == "input"]
        urls = inputs[-1].get("eventUrl") if inputs else None
        self.input_url = urls[0] if isinstance(urls, list) and urls and isinstance(urls[0], str) else None
        if state == LISTENING and not self.input_url:
            state = ENDED
            notes.append("the input action has no eventUrl: the caller's answer goes nowhere")
        self.state = state
        turn = SimTurn(
            kind=kind, caller=caller, ai=said, notes=notes, ncco=ncco, invalid=invalid, state=state,
            latency_ms=round(elapsed, 2), status=status,
        )  # fmt: skip
        self.turns.append(turn)
        if state == ENDED:
            self.hang_up()  # Vonage ends the call when the NCCO runs out, and reports it
        return turn

    # -- what a caller does

    def answer(
        self, to: str, from_: str = DEFAULT_FROM, *, uuid: str | None = None, conversation_uuid: str | None = None
    ) -> SimTurn:
        """The call comes in: Vonage GETs the answer URL. Numbers go without "+", as Vonage sends them.
        Raises UnknownNumber (after the polite message) when no business answers `to`."""
        from django.urls import reverse

        if self.in_progress:
            raise SimulatorError("This call is already in progress; hang up first.")
        self.to, self.from_ = to, from_
        self.uuid = uuid or f"{SIM_UUID_PREFIX}{uuid_lib.uuid4().hex}"
        self.conversation_uuid = conversation_uuid or f"CON-{uuid_lib.uuid4()}"
        self.started_at = time.time()
        query = {
            "to": to.lstrip("+"),
            "from": from_.lstrip("+"),
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
        }
        turn = self._turn("answer", "", "GET", self.base_url + reverse("vonage-answer"), query=query)
        actions = [a for a in turn.ncco if isinstance(a, dict)]
        if (
            len(actions) == 1
            and actions[0].get("action") == "talk"
            and actions[0].get("text") in _not_in_service_texts()
        ):
            raise UnknownNumber(to, turn)
        return turn

    def _input(self, kind: str, caller: str, payload: dict) -> SimTurn:
        if not self.listening:
            why = _NOT_LISTENING.get(self.state, "")
            raise CallNotListening(f"The call is not waiting for the caller{why}.")
        body = {"uuid": self.uuid, "conversation_uuid": self.conversation_uuid, "timestamp": _now_iso(), **payload}
        return self._turn(kind, caller, "POST", self._url(self.input_url or ""), payload=body)

    def say(self, text: str, confidence: float = 0.93) -> SimTurn:
        text = " ".join(str(text).split())
        if not text:
            raise SimulatorError("Say something (an empty utterance is silence: use silence()).")
        result = {"confidence": f"{float(confidence):.2f}", "text": text}
        payload = {
            "speech": {"results": [result], "timeout_reason": "end_on_silence_timeout"},
            "dtmf": {"digits": None, "timed_out": True},
        }
        return self._input("say", text, payload)

    def press(self, digits: str) -> SimTurn:
        digits = str(digits).strip()
        if not _DIGITS.match(digits):
            raise SimulatorError(f"{digits!r} is not something a keypad sends (0-9, * and #, at most 20).")
        payload = {"dtmf": {"digits": digits, "timed_out": False}, "speech": {"results": []}}
        return self._input("press", f"(presses {digits})", payload)

    def silence(self) -> SimTurn:
        payload = {
            "speech": {"results": [], "timeout_reason": "start_timeout"},
            "dtmf": {"digits": None, "timed_out": True},
        }
        return self._input("silence", "(says nothing)", payload)

    def hang_up(self) -> bool:
        """The call ends: Vonage posts the "completed" status event. False when there was nothing to end."""
        from django.urls import reverse

        if not self.in_progress:
            return False
        ended = time.time()
        started = self.started_at or ended
        payload = {
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "status": "completed",
            "direction": "inbound",
            "from": self.from_.lstrip("+"),
            "to": self.to.lstrip("+"),
            "timestamp": _now_iso(),
            "start_time": dt.datetime.fromtimestamp(started, dt.UTC).isoformat().replace("+00:00", "Z"),
            "end_time": dt.datetime.fromtimestamp(ended, dt.UTC).isoformat().replace("+00:00", "Z"),
            "duration": str(max(int(round(ended - started)), 0)),
        }
        self.state = COMPLETED
        self.input_url = None
        self._send("POST", self.base_url + reverse("vonage-event"), payload=payload)
        return True
