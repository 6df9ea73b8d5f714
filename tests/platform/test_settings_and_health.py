"""Production settings refuse to start without secrets and pass `check --deploy`; /healthz reports."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROD_ENV = {
    "DJANGO_SETTINGS_MODULE": "contactcenter.settings.prod",
    "SECRET_KEY": "x" * 64 + "-prod-check-only-9f8e7d6c5b4a",
    "ALLOWED_HOSTS": "switchboard.example.com",
    "SITE_URL": "https://switchboard.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/switchboard",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_HOST": "smtp.example.com",
    "DEFAULT_FROM_EMAIL": "Switchboard <noreply@example.com>",
    "VONAGE_SIGNATURE_SECRET": "vonage-signature-secret",
    "VONAGE_APPLICATION_ID": "app-id",
    "VONAGE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
    "STRIPE_SECRET_KEY": "sk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}


def run_manage(env_overrides: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY"))}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_with_production_variables():
    result = run_manage(PROD_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "VONAGE_SIGNATURE_SECRET", "STRIPE_SECRET_KEY"])
def test_production_refuses_to_start_without_a_secret(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    env[missing] = ""
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


@pytest.mark.parametrize(("value", "expected"), [(None, "5"), ("", "None"), ("12", "12")])
def test_the_prepare_threshold_can_be_set_or_turned_off_for_a_pooler(value, expected):
    env = dict(PROD_ENV)
    if value is not None:
        env["DB_PREPARE_THRESHOLD"] = value
    code = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])"
    result = run_manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_healthz_reports_database(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"


def test_healthz_is_503_when_the_database_fails(client, db, monkeypatch):
    from contactcenter import health

    def broken():
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(health, "check_database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: ConnectionError"


def test_liveness_answers_while_the_database_is_down(client, db, monkeypatch):
    from contactcenter import health

    def broken():
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(health, "check_database", broken)
    assert client.get("/healthz").status_code == 503
    response = client.get("/healthz/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["Cache-Control"].startswith("max-age=0")
    assert client.post("/healthz/live").status_code == 405


def test_health_probes_answer_over_plain_http_in_production_while_pages_redirect(client, db, settings):
    """Load balancers and supervisors probe over plain HTTP inside the network; production redirects the rest."""
    import json

    read = "import json; from django.conf import settings as s; print(json.dumps(s.SECURE_REDIRECT_EXEMPT))"
    result = run_manage(PROD_ENV, "shell", "-c", read)
    assert result.returncode == 0, result.stderr
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = json.loads(result.stdout.strip().splitlines()[-1])
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz/live").status_code == 200
    assert client.get("/accounts/login/").status_code == 301


def test_requests_are_logged_as_json_with_the_tenant(client_for, alice, tenant_a, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="switchboard.request")
    response = client_for(alice).get(f"/t/{tenant_a.slug}/")
    assert response.status_code == 200
    record = next(r for r in caplog.records if r.name == "switchboard.request")
    assert record.tenant_id == tenant_a.id
    assert record.status == 200
    assert response["X-Request-ID"]
    import json

    from contactcenter.logging import JsonFormatter

    line = json.loads(JsonFormatter().format(record))
    assert line["tenant_id"] == tenant_a.id and line["path"] == f"/t/{tenant_a.slug}/"
