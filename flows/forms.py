"""Admin forms for flows. A step's settings form is generated from the pydantic model of its kind,
so every setting gets a proper field, and every validation error lands on the field it is about."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

import yaml
from django import forms
from pydantic import ValidationError as PydanticValidationError

from flows import definition as d
from flows.models import BusinessHours, Step

STEP_MODELS: dict[str, type] = {
    m.model_fields["kind"].default: m
    for m in (
        d.SayStep,
        d.MenuStep,
        d.AskStep,
        d.FaqStep,
        d.CaptureLeadStep,
        d.RequestAppointmentStep,
        d.HoursBranchStep,
        d.ConditionStep,
        d.EscalateStep,
        d.VoicemailStep,
        d.OfferCallbackStep,
        d.EndStep,
    )
}
LONG_TEXT = {"text", "prompt", "reprompt", "voice_text"}
HELP = {
    "next": "Key of the step that follows.",
    "routes": "One per line: intent name = step key (an FAQ as faq:<key> = step key).",
    "dtmf": "One per line: phone key = step key, e.g. 1 = book_cleaning.",
    "error_texts": "One per line: error code = what to say, e.g. invalid = That doesn't look like a phone number.",
    "rules": "One per line: slot op value -> step key, e.g. 'insured eq yes -> book' (ops: eq ne gt lt in present absent).",
    "choices": "One choice per line.",
    "fields": "Slot names to save on the lead, one per line.",
    "skills": "Required agent skills, one per line.",
    "escalate_to": "Key of the escalate step used when the caller asks for a person or is upset here.",
    "on_fail": "Where to go after the last failed attempt (often an escalate step).",
    "queue": "Queue name (see Queues); empty uses the escalation policy's default queue.",
}


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _field_for(name: str, info: Any) -> forms.Field:
    annotation, optional = _strip_optional(info.annotation)
    required = info.is_required() and not optional
    label = "Else go to" if name == "else_" else name.replace("_", " ").capitalize()
    common = {"required": required, "label": label, "help_text": HELP.get(name, "")}
    origin = get_origin(annotation)
    if annotation is bool:
        return forms.BooleanField(required=False, label=label, help_text=HELP.get(name, ""))
    if annotation is int:
        return forms.IntegerField(**common)
    if annotation is float:
        return forms.FloatField(**common)
    if origin is Literal:
        return forms.ChoiceField(choices=[(v, v) for v in get_args(annotation)], **common)
    if annotation is str:
        widget = forms.Textarea(attrs={"rows": 3}) if name in LONG_TEXT else forms.TextInput(attrs={"size": 60})
        return forms.CharField(widget=widget, **common)
    # lists and mappings are edited as lines
    return forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), **{**common, "required": required})


def _to_lines(name: str, value: Any) -> str:
    if value in (None, "", [], {}):
        return ""
    if name == "rules":
        out = []
        for rule in value:
            v = "" if rule.get("value") is None else yaml.safe_dump(rule["value"], default_flow_style=True).strip()
            v = v.removesuffix("\n...").strip()
            out.append(f"{rule['slot']} {rule.get('op', 'eq')} {v} -> {rule['next']}".replace("  ", " "))
        return "\n".join(out)
    if isinstance(value, dict):
        return "\n".join(f"{k} = {v}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return value


def _from_lines(name: str, text: str, annotation: Any) -> Any:
    rows = [line.strip() for line in (text or "").splitlines() if line.strip()]
    annotation, _ = _strip_optional(annotation)
    origin = get_origin(annotation)
    if name == "rules":
        rules = []
        for row in rows:
            if "->" not in row:
                raise forms.ValidationError(f"{row!r}: write it as 'slot op value -> step key'.")
            left, target = (p.strip() for p in row.rsplit("->", 1))
            parts = left.split(None, 2)
            if len(parts) < 2:
                raise forms.ValidationError(f"{row!r}: name a slot and an operator, e.g. 'insured eq yes -> book'.")
            value = yaml.safe_load(parts[2]) if len(parts) == 3 else None
            rules.append({"slot": parts[0], "op": parts[1], "value": value, "next": target})
        return rules
    if origin is dict:
        mapping = {}
        for row in rows:
            if "=" not in row:
                raise forms.ValidationError(f"{row!r}: write it as 'key = value'.")
            key, value = (p.strip() for p in row.split("=", 1))
            mapping[key] = value
        return mapping
    return rows


class StepFormBase(forms.ModelForm):
    """Key, kind and position, plus the settings of the step's kind as separate fields.

    Use ``step_form_for(kind)``: Django needs the setting fields declared on the class.
    """

    step_kind = "say"
    setting_names: tuple[str, ...] = ()

    class Meta:
        model = Step
        # No foreign keys here: their choices must be built per request, inside the tenant scope
        # (the admin adds "flow" through its own scoped formfield); a cached class must not hold them.
        fields = ["key", "kind", "position"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:  # absent when the user may only view the step
            self.fields["kind"].initial = self.step_kind
            self.fields["kind"].widget.attrs["onchange"] = "switchboardStepKind(this)"
        if self.instance.pk is None or self.instance.kind != self.step_kind:
            return
        model = STEP_MODELS[self.step_kind]
        config = self.instance.config or {}
        for name in self.setting_names:
            info = model.model_fields[name]
            alias = info.alias or name
            if alias in config:
                value = config[alias]
                self.initial[f"setting_{name}"] = value if isinstance(value, bool) else _to_lines(name, value)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") and cleaned["kind"] != self.step_kind:
            raise forms.ValidationError("The kind changed; fill in the settings for the new kind and save again.")
        model = STEP_MODELS[self.step_kind]
        config: dict[str, Any] = {}
        for name in self.setting_names:
            info = model.model_fields[name]
            key = f"setting_{name}"
            value = cleaned.get(key)
            field = self.fields[key]
            if isinstance(field.widget, forms.Textarea) and name not in LONG_TEXT:
                try:
                    value = _from_lines(name, value, info.annotation)
                except forms.ValidationError as exc:
                    self.add_error(key, exc)
                    continue
                if value in ([], {}) and not info.is_required():
                    continue
            if value in (None, "") and not isinstance(field, forms.BooleanField):
                continue
            config[info.alias or name] = value
        if self.errors:
            return cleaned
        try:
            model.model_validate({"id": cleaned.get("key") or "x", "kind": self.step_kind, **config})
        except PydanticValidationError as exc:
            for err in exc.errors():
                loc = err.get("loc") or ()
                field_name = str(loc[0]) if loc else None
                message = err.get("msg", "").removeprefix("Value error, ")
                if err.get("type") == "missing":
                    message = "This setting is required for this kind of step."
                target = "key" if field_name == "id" else f"setting_{'else_' if field_name == 'else' else field_name}"
                self.add_error(target if target in self.fields else None, message)
        self.config = config
        return cleaned

    def save(self, commit=True):
        self.instance.config = getattr(self, "config", self.instance.config)
        return super().save(commit)


_FORM_CACHE: dict[str, type[StepFormBase]] = {}


def step_form_for(kind: str) -> type[StepFormBase]:
    kind = kind if kind in STEP_MODELS else "say"
    if kind not in _FORM_CACHE:
        model = STEP_MODELS[kind]
        attrs: dict[str, Any] = {"step_kind": kind}
        names = []
        for name, info in model.model_fields.items():
            if name in ("id", "kind"):
                continue
            field = _field_for(name, info)
            if (
                not info.is_required()
                and info.default not in (None, [], {})
                and not isinstance(field, forms.BooleanField)
                or isinstance(field, forms.BooleanField)
            ):
                field.initial = info.default
            attrs[f"setting_{name}"] = field
            names.append(name)
        attrs["setting_names"] = tuple(names)
        _FORM_CACHE[kind] = type(f"StepForm_{kind}", (StepFormBase,), attrs)
    return _FORM_CACHE[kind]


WEEKDAY_LABELS = (
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
)


def _day_field(label: str) -> forms.CharField:
    return forms.CharField(required=False, label=label, help_text="e.g. 08:00-12:00, 13:00-17:00; empty = closed")


class BusinessHoursForm(forms.ModelForm):
    """One line per weekday: '08:00-12:00, 13:00-17:00' (split shifts), empty when closed."""

    mon = _day_field("Monday")
    tue = _day_field("Tuesday")
    wed = _day_field("Wednesday")
    thu = _day_field("Thursday")
    fri = _day_field("Friday")
    sat = _day_field("Saturday")
    sun = _day_field("Sunday")

    class Meta:
        model = BusinessHours
        fields = ()  # the admin adds "tenant" (scoped to the user's businesses) when there is a choice

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weekly = self.instance.weekly or {}
        for day, _ in WEEKDAY_LABELS:
            self.initial.setdefault(day, ", ".join(f"{a}-{b}" for a, b in weekly.get(day, [])))

    def clean(self):
        cleaned = super().clean()
        weekly = {}
        for day, _ in WEEKDAY_LABELS:
            text = (cleaned.get(day) or "").strip()
            if text:
                weekly[day] = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        try:
            parsed = d.BusinessHours.model_validate({"timezone": "UTC", "weekly": weekly})
        except PydanticValidationError as exc:
            for err in exc.errors():
                message = err.get("msg", "").removeprefix("Value error, ")
                day = next((dd for dd, _ in WEEKDAY_LABELS if f"weekly.{dd}" in message), None)
                self.add_error(day, message)
            return cleaned
        self.weekly = {day: [list(iv) for iv in ivs] for day, ivs in parsed.weekly.items()}
        return cleaned

    def save(self, commit=True):
        self.instance.weekly = getattr(self, "weekly", self.instance.weekly)
        return super().save(commit)


class ImportYamlForm(forms.Form):
    file = forms.FileField(required=False, help_text="A .yaml file exported from Switchboard or written by hand.")
    text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 16, "cols": 100}), label="Or paste YAML"
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload:
            if upload.size > 512 * 1024:
                raise forms.ValidationError("That file is larger than 512 KB; a flow is usually a few KB.")
            try:
                cleaned["yaml"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("That file is not UTF-8 text; export it again as YAML.") from None
        elif (cleaned.get("text") or "").strip():
            cleaned["yaml"] = cleaned["text"]
        else:
            raise forms.ValidationError("Choose a YAML file or paste the YAML.")
        return cleaned
