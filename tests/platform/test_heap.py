"""contactcenter/heap.py: production freezes the warm heap so full garbage collections stop walking it."""

from __future__ import annotations

import gc

import pytest

from contactcenter import heap
from flows import services
from flows.runtime import compiled_version
from tenants.scoping import tenant_scope
from tests.factories import make_flow


@pytest.fixture
def unfreeze():
    yield
    gc.unfreeze()


def test_off_by_default_outside_production(settings, unfreeze):
    assert settings.GC_FREEZE is False
    assert heap.freeze("test") is False
    assert gc.get_freeze_count() == 0


def test_a_freshly_compiled_published_flow_is_frozen_once_not_on_every_turn(
    settings, tenant_a, alice, unfreeze, monkeypatch
):
    settings.GC_FREEZE = True
    calls: list[str] = []
    real = heap.freeze
    monkeypatch.setattr(heap, "freeze", lambda reason: calls.append(reason) or real(reason))
    with tenant_scope([tenant_a.id]):
        version = services.flow_publish(flow=make_flow(tenant_a), user=alice)
        first = compiled_version(version, tenant_a)
        assert calls == ["published flow compiled"]
        # The compiled flow (and its NLU model) is now in the permanent generation, skipped by collections.
        assert gc.get_freeze_count() > 1000
        assert compiled_version(version, tenant_a) is first  # a cached turn does not freeze again
        assert calls == ["published flow compiled"]


def test_production_turns_it_on():
    from tests.platform.test_settings_and_health import PROD_ENV, run_manage

    shown = run_manage(PROD_ENV, "shell", "-c", "from django.conf import settings; print(settings.GC_FREEZE)")
    assert shown.stdout.strip().endswith("True"), shown.stderr
