"""fetch_recording: an authenticated GET of a Vonage recording, only to Vonage, with timeouts and a size cap."""

from __future__ import annotations

import io
import wave
from typing import Any

import jwt
import pytest
import requests

from telephony import client as client_mod
from telephony.client import (
    FakeVoiceClient,
    TelephonyError,
    VoiceClient,
    VonageVoiceClient,
    check_recording_url,
)
from tests.telephony.test_client import private_key  # noqa: F401  (module-scoped RSA key fixture)

MP3 = b"ID3\x03\x00\x00\x00" + b"\xff\xfb\x90\x00" * 100


class AudioSession:
    """Stands in for the SDK's requests.Session: records the request, answers with bytes."""

    def __init__(self, status: int = 200, body: bytes = MP3, content_type: str = "audio/mpeg", exc=None):
        self.status, self.body, self.content_type, self.exc = status, body, content_type, exc
        self.requests: list[dict[str, Any]] = []

    def request(self, **kw: Any) -> requests.Response:
        self.requests.append(kw)
        if self.exc is not None:
            raise self.exc
        response = requests.Response()
        response.status_code = self.status
        response._content = self.body
        response._content_consumed = True
        response.url = kw["url"]
        if self.content_type:
            response.headers["Content-Type"] = self.content_type
        return response


@pytest.fixture
def vonage(private_key):  # noqa: F811
    def make(**answer) -> tuple[VonageVoiceClient, AudioSession]:
        c = VonageVoiceClient(application_id="app-123", private_key=private_key)
        session = AudioSession(**answer)
        c.vonage.http_client._session = session
        return c, session

    return make


@pytest.mark.parametrize(
    "url",
    [
        "https://api.nexmo.com/v1/files/aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "https://api-us.nexmo.com/v1/files/abc",
        "https://api-eu.vonage.com/v1/files/abc",
        "https://API.NEXMO.COM:443/v1/files/abc",
    ],
)
def test_vonage_recording_hosts_are_accepted(url):
    assert check_recording_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://api.nexmo.com/v1/files/abc",  # not https
        "https://evil.example/?x=api.nexmo.com",  # the SDK's own check lets this through
        "https://api.nexmo.com.evil.example/v1/files/abc",
        "https://evil.example/api.nexmo.com",
        "https://user:pw@api.nexmo.com/v1/files/abc",
        "https://api.nexmo.com:8443/v1/files/abc",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/v1/files/abc",
        "file:///etc/passwd",
        "",
        "not a url",
    ],
)
def test_anything_else_is_refused_before_any_request(url, vonage):
    c, session = vonage()
    with pytest.raises(TelephonyError) as err:
        c.fetch_recording(url)
    assert not err.value.retryable
    assert session.requests == []
    with pytest.raises(TelephonyError):
        FakeVoiceClient().fetch_recording(url)


def test_the_recording_is_fetched_with_our_jwt_timeouts_and_no_redirects(vonage):
    c, session = vonage()
    data, content_type = c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")
    assert (data, content_type) == (MP3, "audio/mpeg")
    (req,) = session.requests
    assert (req["method"], req["url"]) == ("GET", "https://api.nexmo.com/v1/files/rec-1")
    assert req["timeout"] == (3.0, 7.0) and req["allow_redirects"] is False and req["stream"] is True
    auth = req["headers"]["Authorization"]  # the SDK builds it as bytes
    token = (auth.decode() if isinstance(auth, bytes) else auth).removeprefix("Bearer ")
    assert jwt.decode(token, options={"verify_signature": False})["application_id"] == "app-123"


def test_a_missing_content_type_is_sniffed(vonage):
    c, _ = vonage(content_type="application/octet-stream")
    assert c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")[1] == "audio/mpeg"
    c, _ = vonage(content_type="", body=client_mod.tone_wav())
    assert c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")[1] == "audio/wav"


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (401, False), (429, True), (500, True), (503, True), (302, False)]
)
def test_errors_are_telephony_errors(vonage, status, retryable):
    c, _ = vonage(status=status, body=b'{"title": "Not found"}', content_type="application/json")
    with pytest.raises(TelephonyError) as err:
        c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")
    assert err.value.retryable is retryable and err.value.status_code == status


def test_network_failures_are_retryable(vonage):
    c, _ = vonage(exc=requests.ReadTimeout("read timed out"))
    with pytest.raises(TelephonyError) as err:
        c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")
    assert err.value.retryable


def test_an_oversized_recording_is_refused(vonage, monkeypatch):
    monkeypatch.setattr(client_mod, "MAX_RECORDING_BYTES", 100)
    c, _ = vonage(body=b"\x00" * 1000)
    with pytest.raises(TelephonyError, match="larger than expected"):
        c.fetch_recording("https://api.nexmo.com/v1/files/rec-1")


def test_the_fake_serves_one_second_of_valid_wav_and_can_fail():
    fake = FakeVoiceClient()
    assert isinstance(fake, VoiceClient)
    data, content_type = fake.fetch_recording("https://api.nexmo.com/v1/files/rec-1")
    assert content_type == "audio/wav"
    with wave.open(io.BytesIO(data)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate(), audio.getnframes()) == (
            1,
            2,
            8000,
            8000,
        )
    assert fake.calls == [{"method": "fetch_recording", "url": "https://api.nexmo.com/v1/files/rec-1"}]
    fake.fail_next(TelephonyError("boom", retryable=True))
    with pytest.raises(TelephonyError):
        fake.fetch_recording("https://api.nexmo.com/v1/files/rec-2")
    assert len(fake.calls) == 1 and len(fake.failures) == 1
