"""Where apps above tenants subscribe (dependencies point one way: tenants never imports them).

- ``on_tenant_created(fn)``: fn(tenant) runs inside the signup transaction (e.g. a starter script).
- ``onboarding_step(fn)``: fn(tenant) -> dict | None adds a step to the owner's checklist.
Apps register in their AppConfig.ready().
"""

from __future__ import annotations

from collections.abc import Callable

_tenant_created: list[Callable] = []
_onboarding: list[Callable] = []


def on_tenant_created(fn: Callable) -> Callable:
    if fn not in _tenant_created:
        _tenant_created.append(fn)
    return fn


def onboarding_step(fn: Callable) -> Callable:
    if fn not in _onboarding:
        _onboarding.append(fn)
    return fn


def tenant_created(tenant) -> None:
    for fn in _tenant_created:
        fn(tenant)


def onboarding_steps(tenant) -> list[dict]:
    return [step for fn in _onboarding if (step := fn(tenant))]
