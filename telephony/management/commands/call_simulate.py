"""`manage.py call_simulate`: call a running Switchboard as Vonage would, and print the conversation.

    python manage.py call_simulate --to +15555550100 --say "What are your hours?" --press 0
    python manage.py call_simulate --to +15555550100 --say "Is there parking?" --silence --json

Steps (--say, --press, --silence) run in the order given. Every request is signed with
VONAGE_SIGNATURE_SECRET (this process's settings; --secret to override) and every NCCO is validated.
Exit status 1 on an error or when the server sent an invalid NCCO.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from telephony.simulator import (
    COMPLETED,
    DEFAULT_FROM,
    CallSimulator,
    SimTurn,
    SimulatorError,
    Transport,
    UnknownNumber,
)


def transport_for(url: str) -> Transport | None:
    """The transport to reach `url`; None means real HTTP. Tests replace this to use the test client."""
    return None


def _keys(value: str) -> tuple[str, str]:
    value = value.strip()
    if not re.fullmatch(r"[0-9*#]{1,20}", value):
        raise ValueError(value)
    return ("press", value)


_keys.__name__ = "keypad digits (0-9, * and #)"


def _say(value: str) -> tuple[str, str]:
    if not value.strip():
        raise ValueError(value)
    return ("say", value)


_say.__name__ = "non-empty utterance"


class Command(BaseCommand):
    help = "Simulate a phone call against a running server through the real, signed Vonage webhooks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", required=True, help="The number dialled, e.g. +15555550100.")
        parser.add_argument("--from", dest="from_", default=DEFAULT_FROM, help=f"The caller (default {DEFAULT_FROM}).")
        parser.add_argument(
            "--say", dest="steps", action="append", type=_say, metavar="TEXT", help="The caller says TEXT."
        )
        parser.add_argument(
            "--press", dest="steps", action="append", type=_keys, metavar="DIGITS", help="The caller presses keys."
        )
        parser.add_argument(
            "--silence", dest="steps", action="append_const", const=("silence", ""), help="The caller says nothing."
        )
        parser.add_argument("--confidence", type=float, default=0.93, help="ASR confidence sent with --say (0-1).")
        parser.add_argument("--url", default=None, help=f"The server (default SITE_URL, {settings.SITE_URL}).")
        parser.add_argument("--secret", default=None, help="Signature secret (default VONAGE_SIGNATURE_SECRET).")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON document instead of the dialogue."
        )

    def handle(self, *args, to: str, from_: str, steps, confidence: float, url, secret, as_json: bool, **options):
        base_url = (url or settings.SITE_URL or "http://127.0.0.1:8000").rstrip("/")
        secret = secret or settings.VONAGE_SIGNATURE_SECRET
        self.as_json = as_json
        self.verbose = options.get("verbosity", 1) >= 2
        steps = list(steps or [])
        report: dict = {"to": to, "from": from_, "url": base_url, "turns": [], "skipped": []}
        call: CallSimulator | None = None
        try:
            call = CallSimulator(
                base_url,
                secret,
                transport_for(base_url),
                api_key=settings.VONAGE_API_KEY or "sim",
                application_id=settings.VONAGE_APPLICATION_ID or None,
            )
            self._line(f"Calling {to} from {from_} through {base_url}")
            try:
                self._show(call.answer(to, from_))
            except UnknownNumber as exc:
                self._show(exc.turn)
                raise
            report["uuid"] = call.uuid
            for n, (kind, value) in enumerate(steps):
                if not call.listening:
                    report["skipped"] = [self._step_text(k, v) for k, v in steps[n:]]
                    self._line(
                        "  (the call is no longer waiting for the caller; skipped: "
                        + ", ".join(report["skipped"])
                        + ")",
                        self.style.WARNING,
                    )
                    break
                if kind == "say":
                    turn = call.say(value, confidence=confidence)
                elif kind == "press":
                    turn = call.press(value)
                else:
                    turn = call.silence()
                self._show(turn, caller=True)
            if call.in_progress:
                call.hang_up()
                self._line("Caller hangs up.")
        except SimulatorError as exc:
            if self.as_json:
                report.update(error=str(exc), turns=[t.to_json() for t in (call.turns if call else [])])
                self.stdout.write(_dumps(report))
            raise CommandError(str(exc)) from None

        invalid = [i for i, t in enumerate(call.turns) if t.invalid]
        report.update(
            uuid=call.uuid, state=call.state, turns=[t.to_json() for t in call.turns], invalid_nccos=len(invalid)
        )
        if self.as_json:
            self.stdout.write(_dumps(report))
        else:
            where = "completed" if call.state == COMPLETED else call.state
            self.stdout.write(
                self.style.SUCCESS(f"Call {where} after {len(call.turns)} turn(s) (call uuid {call.uuid}).")
            )
        if invalid:
            raise CommandError(
                f"{len(invalid)} invalid NCCO(s) from the server (turns {', '.join(str(i + 1) for i in invalid)})."
            )

    # -- output

    @staticmethod
    def _step_text(kind: str, value: str) -> str:
        return {"say": f'--say "{value}"', "press": f"--press {value}"}.get(kind, "--silence")

    def _line(self, text: str, style=None) -> None:
        if not self.as_json:
            self.stdout.write(style(text) if style else text)

    def _show(self, turn: SimTurn, *, caller: bool = False) -> None:
        if turn.invalid:
            self.stderr.write(self.style.ERROR(f"!! INVALID NCCO from the server ({turn.kind} turn): {turn.invalid}"))
        if self.as_json:
            return
        if caller:
            self.stdout.write(f"Caller: {turn.caller}")
        self.stdout.write(f"AI: {turn.ai or '(says nothing)'}")
        for note in turn.notes:
            self.stdout.write(self.style.NOTICE(f"  [{note}]"))
        if self.verbose:
            self.stdout.write(f"  ({turn.latency_ms:.0f} ms) NCCO: {_dumps(turn.ncco)}")


def _dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
