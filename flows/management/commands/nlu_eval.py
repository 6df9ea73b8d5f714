"""`python manage.py nlu_eval PATH.json [--mode full|per-domain] [--domains domains.json] [--json]`.

Benchmarks flows.nlu on CLINC150-format data (see flows/nlu_eval.py for the protocol). Touches no
database. With --json the last line of output is one JSON object with the pooled figures.
"""

from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Benchmark the intent model (flows.nlu) on CLINC150-format JSON data; no database access."
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument(
            "path", help="JSON with train, val, test, oos_train, oos_val, oos_test (test/oos_* optional)"
        )
        parser.add_argument("--mode", choices=["full", "per-domain"], default="full")
        parser.add_argument(
            "--domains", help="domain -> intents JSON (per-domain mode; default: domains.json next to PATH)"
        )
        parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--no-calibration",
            action="store_true",
            help="do not pass val as calibration: threshold from the training examples only (a plain tenant publish)",
        )

    def handle(self, *args, **opts):
        from flows.nlu_eval import METRIC_KEYS, evaluate, format_report

        path = opts["path"]
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {path}: {exc}")
        if not isinstance(data, dict) or not data.get("train"):
            raise CommandError(f"{path} has no 'train' rows")
        domains = None
        if opts["mode"] == "per-domain":
            dpath = opts["domains"] or os.path.join(os.path.dirname(os.path.abspath(path)), "domains.json")
            try:
                with open(dpath, encoding="utf-8") as f:
                    domains = json.load(f)
            except (OSError, ValueError) as exc:
                raise CommandError(f"per-domain mode needs --domains (cannot read {dpath}: {exc})")

        def log(msg: str) -> None:
            self.stdout.write(msg)
            self.stdout.flush()

        res = evaluate(data, opts["mode"], domains, seed=opts["seed"], calibrate=not opts["no_calibration"], log=log)
        self.stdout.write(format_report(res))
        if opts["json"]:
            self.stdout.write(json.dumps({k: round(float(res[k]), 6) for k in METRIC_KEYS}))
