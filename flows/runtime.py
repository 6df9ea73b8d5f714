"""Running flows: the compiled, cached form of a published version, and one engine turn.

Compiled flows are cached per process by (version id, calendar fingerprint): the version is
immutable and its model is stored with it, so a cache hit costs no query beyond the calendar
fingerprint, and a change to hours or holidays takes effect on the next turn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from contactcenter import heap
from flows.definition import BusinessHours, FlowDefinition, from_json
from flows.engine import CompiledFlow, ConversationState, Event, compile_flow, start, step
from flows.models import FlowVersion
from flows.services import hours_data, training_examples
from tenants.models import Tenant

_CACHE_SIZE = 256

# A published version's script and trained model: the model is about a megabyte, and reading it with every
# call turn cost more than the rest of the turn. Hot paths load a version without them (``without_heavy``);
# ``compiled_version`` reads them only when it compiles, once per process and version.
HEAVY_FIELDS = ("definition", "nlu_model")


def without_heavy(relation: str) -> tuple[str, ...]:
    """``defer()`` arguments that leave a related FlowVersion's script and model unread."""
    return tuple(f"{relation}__{name}" for name in HEAVY_FIELDS)


_cache: OrderedDict[tuple, CompiledFlow] = OrderedDict()
_lock = threading.Lock()


class EmptyUnderstander:
    """A flow with no intents or FAQ understands nothing (everything is out of scope)."""

    def predict(self, text: str):
        from flows.nlu import NLUResult, normalize

        return NLUResult(label=None, confidence=0.0, out_of_scope=True, candidates=(), normalized_text=normalize(text))


def _understander_for(version_key: str, model_bytes: bytes | None, defn: FlowDefinition) -> Any:
    from flows.nlu import IntentModel, get_model

    if model_bytes:
        return IntentModel.from_bytes(bytes(model_bytes))
    examples = training_examples(defn)
    if not examples:
        return EmptyUnderstander()
    return get_model(version_key, lambda: examples)


CALENDAR_VERSION_KEY = "flows:calendar-version:{tenant_id}"
# How long a process trusts the calendar version it last read from the shared cache. A change made in this
# process is seen at once (``calendar_changed`` forgets it here); other processes see it within this time.
CALENDAR_RECHECK_SECONDS = 1.0
_calendars: dict[int, tuple[str, str, dict]] = {}  # tenant id -> (version, fingerprint, data)
_calendar_versions: dict[int, tuple[str, float]] = {}  # tenant id -> (version, read at, time.monotonic())


def calendar_changed(tenant_id: int) -> None:
    """Mark a tenant's calendar as changed; every process re-reads it within CALENDAR_RECHECK_SECONDS."""
    cache.set(CALENDAR_VERSION_KEY.format(tenant_id=tenant_id), uuid.uuid4().hex, timeout=None)
    _calendar_versions.pop(tenant_id, None)


def _calendar_version(tenant_id: int) -> str:
    held = _calendar_versions.get(tenant_id)
    now = time.monotonic()
    if held is not None and now - held[1] < CALENDAR_RECHECK_SECONDS:
        return held[0]
    key = CALENDAR_VERSION_KEY.format(tenant_id=tenant_id)
    version = cache.get(key)
    if version is None:
        version = uuid.uuid4().hex
        cache.add(key, version, timeout=None)
        version = cache.get(key) or version
    _calendar_versions[tenant_id] = (version, now)
    return version


def calendar_fingerprint(tenant: Tenant) -> tuple[str, dict]:
    """The tenant's hours, holidays and closures, re-read from the database only after they change.

    Busy processes read the shared version (Django cache, i.e. Redis) at most once a second per tenant,
    instead of three queries per turn; saves and deletes of the calendar models bump it (flows/apps.py).
    """
    version = _calendar_version(tenant.id)
    held = _calendars.get(tenant.id)
    if held is not None and held[0] == version and held[2].get("timezone") == tenant.timezone:
        return held[1], held[2]
    data = hours_data(tenant)
    fingerprint = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()  # noqa: S324 (cache key)
    with _lock:
        _calendars[tenant.id] = (version, fingerprint, data)
    return fingerprint, data


def compiled_version(version: FlowVersion, tenant: Tenant | None = None) -> CompiledFlow:
    """The runnable form of a published version, with the tenant's live calendar.

    Pass the tenant when the caller already has it loaded (it saves a query on every call turn).
    """
    fingerprint, hours = calendar_fingerprint(tenant if tenant is not None else version.tenant)
    key = ("version", version.pk, fingerprint)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    definition, model_bytes = _heavy_fields(version)
    defn = from_json(definition)
    defn = defn.model_copy(update={"hours": BusinessHours.model_validate(hours)})
    understander = _understander_for(f"flowversion:{version.pk}:{version.content_hash}", model_bytes, defn)
    compiled = compile_flow(defn, understander)
    with _lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    # The compiled flow and its model live as long as the process: keep full collections from walking them.
    heap.freeze("published flow compiled")
    return compiled


def _heavy_fields(version: FlowVersion) -> tuple[dict, bytes | None]:
    if not version.get_deferred_fields() & set(HEAVY_FIELDS):
        return version.definition, version.nlu_model
    from tenants.scoping import unscoped

    with unscoped("compile a version its caller already resolved"):
        definition, model_bytes = FlowVersion.objects.filter(pk=version.pk).values_list(*HEAVY_FIELDS).get()
    return definition, model_bytes


def compiled_definition(defn: FlowDefinition, *, cache_key: str) -> CompiledFlow:
    """Compile a draft definition (simulator); its model is trained once per content."""
    key = ("draft", cache_key)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
    examples = training_examples(defn)
    understander = _understander_for(f"draft:{cache_key}", None, defn) if examples else EmptyUnderstander()
    compiled = compile_flow(defn, understander)
    with _lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


@dataclass(frozen=True)
class Turn:
    state: ConversationState
    actions: list[Any]
    understanding: Any | None  # the NLU result for the utterance, when there was one


def run_turn(flow: CompiledFlow, state: ConversationState | None, event: Event) -> Turn:
    """One engine step (or the start of a conversation), plus what the NLU made of the words."""
    if state is None or event.kind == "start":
        new_state, actions = start(flow, event)
        return Turn(new_state, actions, None)
    if event.kind != "utterance" or not event.text:
        new_state, actions = step(flow, state, event)
        return Turn(new_state, actions, None)
    understanding = flow.understander.predict(event.text)
    # The engine asks the same question again; answer it from this turn's result instead of recomputing.
    memo = _OneAnswer(flow.understander, event.text, understanding)
    new_state, actions = step(dataclasses.replace(flow, understander=memo), state, event)
    return Turn(new_state, actions, understanding)


class _OneAnswer:
    def __init__(self, inner: Any, text: str, result: Any):
        self.inner, self.text, self.result = inner, text, result

    def predict(self, text: str) -> Any:
        return self.result if text == self.text else self.inner.predict(text)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _calendars.clear()
        _calendar_versions.clear()


def tenant_calendar(tenant: Tenant) -> BusinessHours:
    """The tenant's one calendar (weekly hours, holidays, closures, time zone) as the validated model
    that ``flows.hours`` works on. Cached like the flows' own: a save of any calendar row is seen at once
    by every process. Routing, callbacks, the service-level clock and reports all read it here."""
    fingerprint, data = calendar_fingerprint(tenant)
    key = ("calendar", tenant.id, fingerprint)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    hours = BusinessHours.model_validate(data)
    with _lock:
        _cache[key] = hours
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return hours
