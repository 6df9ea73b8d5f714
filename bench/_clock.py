"""The accelerated clock of bench/callbacks_soak.py (bench-only; production code never imports this).

Simulated now = SIM_START + (wall-clock seconds since REAL_START) x SPEED. Every process of the soak
(worker, beat, the agent pool, the orchestrator) reads the same three numbers from ``SOAK_CLOCK`` and
the same wall clock, so they agree on the simulated time to within the clocks' resolution.

``install()`` replaces ``django.utils.timezone.now``; call it before Django and the apps are imported so
that every ``timezone.now()`` (and ``auto_now`` field) reads the simulated time. Celery's own timers
(beat intervals, countdowns) run in real seconds: the soak scales the beat intervals in its settings, and
``install()`` scales every countdown a process publishes (a dispatch trigger 30 simulated seconds ahead
is sent with an ETA 30 / speed real seconds ahead).
"""

from __future__ import annotations

import datetime as dt
import os
import time

ENV = "SOAK_CLOCK"
_config: tuple[dt.datetime, float, float] | None = None


def encode(sim_start: dt.datetime, real_start: float, speed: float) -> str:
    return f"{sim_start.isoformat()}|{real_start!r}|{speed!r}"


def configure(sim_start: dt.datetime, real_start: float, speed: float) -> str:
    """Start the simulated clock in this process; returns the value to put in ``SOAK_CLOCK`` for others."""
    global _config
    _config = (sim_start.astimezone(dt.UTC), float(real_start), float(speed))
    return encode(sim_start, real_start, speed)


def _from_env() -> None:
    value = os.environ.get(ENV)
    if value:
        start, real, speed = value.split("|")
        configure(dt.datetime.fromisoformat(start), float(real), float(speed))


def speed() -> float:
    return _config[2] if _config else 1.0


def sim_now() -> dt.datetime:
    if _config is None:
        return dt.datetime.now(dt.UTC)
    start, real_start, factor = _config
    return start + dt.timedelta(seconds=(time.time() - real_start) * factor)


def real_seconds(sim_seconds: float) -> float:
    return sim_seconds / speed()


def sleep_until(when: dt.datetime) -> float:
    """Sleep until the simulated time reaches ``when``; returns how late we woke (simulated seconds)."""
    left = (when - sim_now()).total_seconds()
    if left > 0:
        time.sleep(real_seconds(left))
    return (sim_now() - when).total_seconds()


def install() -> None:
    """Make ``django.utils.timezone.now`` the simulated clock in this process (configured from the env)."""
    from django.utils import timezone

    _from_env()
    timezone.now = sim_now
    from celery import signals

    signals.before_task_publish.connect(_scale_eta, weak=False)


def _scale_eta(headers=None, **_) -> None:
    """Celery turned a countdown (meant in simulated seconds) into a real-time ETA: shrink the wait."""
    if not headers or not headers.get("eta") or speed() == 1.0:
        return
    eta = dt.datetime.fromisoformat(headers["eta"])
    now = dt.datetime.now(eta.tzinfo or dt.UTC)
    if eta.tzinfo is None:
        now = now.replace(tzinfo=None)
    headers["eta"] = (now + (eta - now) / speed()).isoformat()
