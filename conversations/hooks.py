"""Where apps above conversations subscribe (dependencies point one way: conversations never imports them).

- ``on_escalated(fn)``: fn(conversation, transfer_action_json) runs after the commit of the turn that
  handed the conversation to a person (``transfer_action_json`` is the engine's ``transfer`` action as JSON).
- ``on_ended(fn)``: fn(conversation) runs after the commit of the status event that ended the call.
- ``on_leg_event(fn)``: fn(marker, payload) -> bool for Vonage status events of a leg that is not a
  conversation's own (e.g. an agent leg dialled into the caller's conversation); ``marker`` is the query
  string of the event URL the leg was created with. Returns True when the subscriber handled it.

- ``on_callback_scheduled(fn)``: fn(callback) runs after the commit that promised a call back (agents
  send the SMS confirmation; a callback due now is dispatched on the next minute).
- ``on_callback_closed(fn)``: fn(callback) runs after the commit that cancelled or finished a callback.
- ``on_voicemail_recorded(fn)``: fn(voicemail, transcript_expected) runs after the commit of a new
  voicemail (once per recording); ``transcript_expected`` says a transcription was asked for.
- ``on_voicemail_transcribed(fn)``: fn(voicemail) runs after the commit of its transcript.

Apps register in their AppConfig.ready(). Callers run subscribers one by one: a failing subscriber is
logged and never breaks the webhook that triggered it (the caller must still get an NCCO).
Subscribers enter their own tenant scope: they may run after the request's scope has closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_escalated: list[Callable] = []
_ended: list[Callable] = []
_leg_event: list[Callable] = []
_callback_scheduled: list[Callable] = []
_callback_closed: list[Callable] = []
_voicemail_recorded: list[Callable] = []
_voicemail_transcribed: list[Callable] = []


def _register(registry: list[Callable], fn: Callable) -> Callable:
    if fn not in registry:
        registry.append(fn)
    return fn


def on_escalated(fn: Callable) -> Callable:
    return _register(_escalated, fn)


def on_ended(fn: Callable) -> Callable:
    return _register(_ended, fn)


def on_leg_event(fn: Callable) -> Callable:
    return _register(_leg_event, fn)


def on_callback_scheduled(fn: Callable) -> Callable:
    return _register(_callback_scheduled, fn)


def on_callback_closed(fn: Callable) -> Callable:
    return _register(_callback_closed, fn)


def on_voicemail_recorded(fn: Callable) -> Callable:
    return _register(_voicemail_recorded, fn)


def on_voicemail_transcribed(fn: Callable) -> Callable:
    return _register(_voicemail_transcribed, fn)


def voicemail_recorded(voicemail, transcript_expected: bool) -> None:
    for fn in list(_voicemail_recorded):
        try:
            fn(voicemail, transcript_expected)
        except Exception:
            logger.exception("on_voicemail_recorded subscriber failed", extra={"voicemail_id": voicemail.pk})


def voicemail_transcribed(voicemail) -> None:
    _each(_voicemail_transcribed, "on_voicemail_transcribed", voicemail)


def _each(registry: list[Callable], what: str, obj) -> None:
    for fn in list(registry):
        try:
            fn(obj)
        except Exception:
            logger.exception("%s subscriber failed", what, extra={"object_id": getattr(obj, "pk", None)})


def callback_scheduled(callback) -> None:
    _each(_callback_scheduled, "on_callback_scheduled", callback)


def callback_closed(callback) -> None:
    _each(_callback_closed, "on_callback_closed", callback)


def escalated(conversation, transfer_action_json: dict[str, Any]) -> None:
    for fn in list(_escalated):
        try:
            fn(conversation, transfer_action_json)
        except Exception:
            logger.exception("on_escalated subscriber failed", extra={"conversation_id": conversation.pk})


def ended(conversation) -> None:
    for fn in list(_ended):
        try:
            fn(conversation)
        except Exception:
            logger.exception("on_ended subscriber failed", extra={"conversation_id": conversation.pk})


def leg_event(*, marker: dict[str, str], payload: dict[str, Any]) -> bool:
    handled = False
    for fn in list(_leg_event):
        try:
            handled = bool(fn(marker, payload)) or handled
        except Exception:
            logger.exception("on_leg_event subscriber failed", extra={"vonage_uuid": payload.get("uuid")})
    return handled
