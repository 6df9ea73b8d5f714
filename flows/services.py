"""Writes for flows: publish (validate, freeze, train), roll back, import/export YAML, restore a draft.

Every publish is refused with a readable report when the draft has problems; nothing is written
then. A FlowVersion is never changed after it is created.
"""

from __future__ import annotations

import hashlib
import json
import time

from django.db import transaction
from django.db.models import Max
from pydantic import ValidationError as PydanticValidationError

from flows.definition import (
    FlowDefinition,
    Problem,
    errors_only,
    from_json,
    from_yaml,
    to_json,
    to_yaml,
    validate_definition,
    validation_messages,
)
from flows.models import (
    BusinessHours,
    Closure,
    EscalationPolicy,
    Faq,
    Flow,
    FlowVersion,
    Holiday,
    Intent,
    Queue,
    Step,
    lines,
)
from tenants.models import Tenant, User


class PublishRefused(Exception):
    """The draft has errors; ``problems`` says which and how to fix them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


class ImportRefused(Exception):
    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("; ".join(messages))


# ---------------------------------------------------------------------------- assembling a definition
def policy_data(tenant_id: int) -> dict:
    policy = EscalationPolicy.objects.filter(tenant_id=tenant_id).select_related("default_queue").first()
    if policy is None:
        first_queue = Queue.objects.filter(tenant_id=tenant_id).order_by("name").values_list("name", flat=True).first()
        return {"default_queue": first_queue or "default"}
    urgent = []
    for line in lines(policy.urgent_keywords):
        parts = [p.strip() for p in line.split("|")]
        entry = {"phrase": parts[0], "reason_label": (parts[1] if len(parts) > 1 and parts[1] else "urgent")}
        if len(parts) > 2 and parts[2]:
            entry["step"] = parts[2]
        urgent.append(entry)
    default_queue = policy.default_queue.name if policy.default_queue else None
    if default_queue is None:
        default_queue = (
            Queue.objects.filter(tenant_id=tenant_id).order_by("name").values_list("name", flat=True).first()
        )
    return {
        "human_phrases": lines(policy.human_phrases),
        "human_dtmf": policy.human_dtmf or None,
        "urgent_keywords": urgent,
        "frustration": policy.frustration,
        "max_misunderstandings": policy.max_misunderstandings,
        "low_asr_confidence": policy.low_asr_confidence,
        "low_asr_repeats": policy.low_asr_repeats,
        "repeat_question_limit": policy.repeat_question_limit,
        "default_queue": default_queue or "default",
        "default_priority": policy.default_priority,
    }


def hours_data(tenant: Tenant) -> dict:
    hours = BusinessHours.objects.filter(tenant_id=tenant.id).first()
    return {
        "timezone": tenant.timezone,
        "weekly": hours.weekly if hours else {},
        "holidays": [{"date": h.date.isoformat(), "name": h.name} for h in Holiday.objects.filter(tenant_id=tenant.id)],
        "closures": [
            {"start": c.start.isoformat(), "end": c.end.isoformat(), "reason": c.reason}
            for c in Closure.objects.filter(tenant_id=tenant.id)
        ],
    }


def draft_data(flow: Flow) -> dict:
    """The draft as a definition dict (not yet validated)."""
    return {
        "name": flow.name,
        "description": flow.description,
        "language": flow.language,
        "voice_style": flow.voice_style,
        "start": flow.start_step,
        "messages": flow.messages or {},
        "policy": policy_data(flow.tenant_id),
        "hours": hours_data(flow.tenant),
        "intents": [
            {"name": i.name, "examples": lines(i.examples), "description": i.description} for i in flow.intents.all()
        ],
        "faqs": [
            {"key": f.key, "questions": lines(f.questions), "answer": f.answer, "voice_answer": f.voice_answer or None}
            for f in flow.faqs.all()
        ],
        "steps": [s.as_definition_dict() for s in flow.steps.all()],
    }


def known_queues(tenant_id: int) -> set[str]:
    return set(Queue.objects.filter(tenant_id=tenant_id).values_list("name", flat=True))


def definition_check(data: dict, *, tenant_id: int) -> tuple[FlowDefinition | None, list[Problem]]:
    """Parse and validate; returns the definition (or None) and every problem found."""
    try:
        defn = FlowDefinition.model_validate(data)
    except PydanticValidationError as exc:
        return None, [Problem(code="invalid_setting", message=m) for m in validation_messages(exc)]
    return defn, validate_definition(defn, known_queues(tenant_id))


def flow_check(flow: Flow) -> tuple[FlowDefinition | None, list[Problem]]:
    return definition_check(draft_data(flow), tenant_id=flow.tenant_id)


# ---------------------------------------------------------------------------- training
def training_examples(defn: FlowDefinition) -> list[tuple[str, str]]:
    examples = [(text, intent.name) for intent in defn.intents for text in intent.examples]
    examples += [(q, f"faq:{faq.key}") for faq in defn.faqs for q in faq.questions]
    return examples


def train_model_bytes(defn: FlowDefinition) -> tuple[bytes | None, float]:
    from flows.nlu import IntentModel

    examples = training_examples(defn)
    if not examples:
        return None, 0.0
    started = time.perf_counter()
    model = IntentModel.train(examples)
    return model.to_bytes(), time.perf_counter() - started


def definition_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------- publish and roll back
def _next_number(flow: Flow) -> int:
    return (FlowVersion.objects.filter(flow=flow).aggregate(n=Max("number"))["n"] or 0) + 1


def flow_publish(*, flow: Flow, user: User | None, note: str = "") -> FlowVersion:
    """Validate the draft; if clean, freeze it as the next version, train its model, make it live."""
    defn, problems = flow_check(flow)
    errors = errors_only(problems)
    if defn is None or errors:
        raise PublishRefused(errors or problems)
    data = to_json(defn)
    model_bytes, seconds = train_model_bytes(defn)
    with transaction.atomic():
        Flow.objects.select_for_update().filter(pk=flow.pk).first()  # serialise concurrent publishes
        version = FlowVersion.objects.create(
            tenant_id=flow.tenant_id,
            flow=flow,
            number=_next_number(flow),
            definition=data,
            content_hash=definition_hash(data),
            nlu_model=model_bytes,
            note=note[:200],
            created_by=user,
            train_seconds=round(seconds, 3),
        )
        Flow.objects.filter(pk=flow.pk).update(published_version=version)
        flow.published_version = version
    return version


def flow_rollback(*, flow: Flow, version: FlowVersion, user: User | None) -> FlowVersion:
    """Make an earlier version live again, as a new version (history is never rewritten)."""
    if version.flow_id != flow.pk:
        raise ValueError("that version belongs to another flow")
    with transaction.atomic():
        Flow.objects.select_for_update().filter(pk=flow.pk).first()
        new = FlowVersion.objects.create(
            tenant_id=flow.tenant_id,
            flow=flow,
            number=_next_number(flow),
            definition=version.definition,
            content_hash=version.content_hash,
            nlu_model=version.nlu_model,
            note=f"Rollback to v{version.number}",
            rolled_back_from=version,
            created_by=user,
            train_seconds=version.train_seconds,
        )
        Flow.objects.filter(pk=flow.pk).update(published_version=new)
        flow.published_version = new
    return new


def version_diff(older: FlowVersion, newer: FlowVersion) -> list[str]:
    from flows.definition import diff_definitions

    return diff_definitions(from_json(older.definition), from_json(newer.definition))


def draft_diff(flow: Flow) -> list[str]:
    """What the draft would change compared with the live version."""
    from flows.definition import diff_definitions

    if flow.published_version is None:
        return ["Not published yet: everything is new."]
    defn, _ = flow_check(flow)
    if defn is None:
        return ["The draft has errors; fix them to see the changes."]
    return diff_definitions(from_json(flow.published_version.definition), defn)


# ---------------------------------------------------------------------------- YAML
def flow_export_yaml(flow: Flow) -> str:
    """The draft as YAML (flows as code). Works even when the draft does not validate yet."""
    defn, _ = flow_check(flow)
    if defn is not None:
        return to_yaml(defn)
    import yaml

    return yaml.safe_dump(draft_data(flow), sort_keys=False, allow_unicode=True)


def version_export_yaml(version: FlowVersion) -> str:
    return to_yaml(from_json(version.definition))


def _write_draft(flow: Flow, defn: FlowDefinition) -> None:
    data = to_json(defn)
    flow.name = defn.name
    flow.description = defn.description
    flow.language = defn.language
    flow.voice_style = defn.voice_style
    flow.start_step = defn.start
    flow.messages = data.get("messages") or {}
    flow.save()
    Step.objects.filter(flow=flow).delete()
    Intent.objects.filter(flow=flow).delete()
    Faq.objects.filter(flow=flow).delete()
    Step.objects.bulk_create(
        Step(
            tenant_id=flow.tenant_id,
            flow=flow,
            key=s["id"],
            kind=s["kind"],
            position=n * 10,
            config={k: v for k, v in s.items() if k not in ("id", "kind")},
        )
        for n, s in enumerate(data["steps"])
    )
    Intent.objects.bulk_create(
        Intent(
            tenant_id=flow.tenant_id,
            flow=flow,
            name=i["name"],
            description=i.get("description", ""),
            examples="\n".join(i["examples"]),
        )
        for i in data["intents"]
    )
    Faq.objects.bulk_create(
        Faq(
            tenant_id=flow.tenant_id,
            flow=flow,
            key=f["key"],
            questions="\n".join(f["questions"]),
            answer=f["answer"],
            voice_answer=f.get("voice_answer") or "",
        )
        for f in data["faqs"]
    )


def flow_import_yaml(*, tenant: Tenant, text: str, flow: Flow | None = None) -> Flow:
    """Replace a flow's draft (or create a flow) from YAML. Bad YAML changes nothing.

    Steps, intents, FAQ and messages come from the file; hours, holidays and the escalation policy
    stay the tenant's own (they are shared by every flow and edited in their own admin pages).
    """
    try:
        defn = from_yaml(text)
    except ValueError as exc:
        raise ImportRefused(getattr(exc, "errors", None) or [str(exc)]) from exc
    with transaction.atomic():
        if flow is None:
            if Flow.objects.filter(tenant_id=tenant.id, name=defn.name).exists():
                raise ImportRefused(
                    [f"A flow named {defn.name!r} exists already; import into it or rename the file's flow."]
                )
            flow = Flow(tenant_id=tenant.id)
        _write_draft(flow, defn)
    return flow


def flow_create_from_definition(*, tenant: Tenant, defn: FlowDefinition) -> Flow:
    with transaction.atomic():
        flow = Flow(tenant_id=tenant.id)
        _write_draft(flow, defn)
    return flow


def flow_restore_draft(*, flow: Flow, version: FlowVersion) -> Flow:
    """Replace the draft with a version's steps, intents and FAQ (to edit from there)."""
    with transaction.atomic():
        _write_draft(flow, from_json(version.definition))
    return flow


def queues_ensure(*, tenant: Tenant, names: list[str]) -> None:
    for name in names:
        Queue.objects.get_or_create(tenant_id=tenant.id, name=name)


def tenant_settings_import(*, tenant: Tenant, defn: FlowDefinition) -> None:
    """Set the business's hours, holidays, closures, escalation policy and queues from a definition.

    Used when a flow file is meant to configure the whole business (the demo, or an import with
    "also import hours and policy" ticked). Existing holidays and closures are replaced.
    """
    with transaction.atomic():
        BusinessHours.objects.update_or_create(
            tenant_id=tenant.id,
            defaults={"weekly": {d: [list(iv) for iv in ivs] for d, ivs in defn.hours.weekly.items()}},
        )
        Holiday.objects.filter(tenant_id=tenant.id).delete()
        Holiday.objects.bulk_create(Holiday(tenant_id=tenant.id, date=h.date, name=h.name) for h in defn.hours.holidays)
        Closure.objects.filter(tenant_id=tenant.id).delete()
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(tenant.timezone)
        Closure.objects.bulk_create(
            Closure(
                tenant_id=tenant.id,
                reason=c.reason,
                start=c.start if c.start.tzinfo else c.start.replace(tzinfo=tz),
                end=c.end if c.end.tzinfo else c.end.replace(tzinfo=tz),
            )
            for c in defn.hours.closures
        )
        from flows.runtime import calendar_changed  # bulk writes send no signals

        transaction.on_commit(lambda: calendar_changed(tenant.id))
        calendar_changed(tenant.id)
        queue_names = {defn.policy.default_queue} | {
            s.queue for s in defn.steps if getattr(s, "kind", "") == "escalate" and s.queue
        }
        queues_ensure(tenant=tenant, names=sorted(queue_names))
        policy = defn.policy
        EscalationPolicy.objects.update_or_create(
            tenant_id=tenant.id,
            defaults={
                "human_phrases": "\n".join(policy.human_phrases),
                "human_dtmf": policy.human_dtmf or "",
                "urgent_keywords": "\n".join(
                    " | ".join(filter(None, [k.phrase, k.reason_label, k.step])) for k in policy.urgent_keywords
                ),
                "frustration": policy.frustration,
                "max_misunderstandings": policy.max_misunderstandings,
                "low_asr_confidence": policy.low_asr_confidence,
                "low_asr_repeats": policy.low_asr_repeats,
                "repeat_question_limit": policy.repeat_question_limit,
                "default_queue": Queue.objects.get(tenant_id=tenant.id, name=policy.default_queue),
                "default_priority": policy.default_priority,
            },
        )
