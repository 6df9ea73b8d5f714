"""`manage.py nlu_eval` on CLINC-format data: trains as a publish would and prints the agreed JSON."""

import json

from django.core.management import call_command

DOMAINS = {
    "dental": {
        "hours": [
            "what are your hours",
            "when are you open",
            "are you open today",
            "what time do you close",
            "opening times please",
            "how late are you open",
        ],
        "book": [
            "book a cleaning",
            "i need an appointment",
            "schedule a checkup",
            "can i come in tomorrow",
            "make an appointment",
            "set up a visit",
        ],
    },
    "plumbing": {
        "leak": [
            "my pipe is leaking",
            "water under the sink",
            "there is a leak",
            "dripping tap",
            "the faucet drips",
            "my toilet leaks",
        ],
        "quote": [
            "how much for a water heater",
            "give me a quote",
            "what does it cost",
            "price for a repair",
            "how much do you charge",
            "estimate for new pipes",
        ],
    },
}
OOS = ["what is the capital of france", "play some music", "how tall is everest", "tell me a joke"]


def dataset(tmp_path):
    rows = [[t, intent] for d in DOMAINS.values() for intent, texts in d.items() for t in texts]
    train = [r for i, r in enumerate(rows) if i % 3]
    held = [r for i, r in enumerate(rows) if not i % 3]
    data = {
        "train": train,
        "val": held,
        "test": held,
        "oos_val": [[t, "oos"] for t in OOS[:2]],
        "oos_test": [[t, "oos"] for t in OOS[2:]],
        "oos_train": [],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    domains = tmp_path / "domains.json"
    domains.write_text(json.dumps({name: list(d) for name, d in DOMAINS.items()}))
    return path, domains


KEYS = {
    "in_scope_accuracy",
    "oos_recall",
    "oos_precision",
    "wrong_answer_rate",
    "in_scope_wrong_rate",
    "in_scope_escalation_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "train_seconds",
    "peak_rss_mb",
}


def run(capsys, *args):
    call_command("nlu_eval", *args)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return json.loads(last)


def test_full_mode_prints_the_agreed_json_keys(tmp_path, capsys):
    path, _ = dataset(tmp_path)
    result = run(capsys, str(path), "--mode", "full", "--json")
    assert set(result) == KEYS
    assert 0 <= result["in_scope_accuracy"] <= 1 and result["in_scope_accuracy"] >= 0.5
    assert result["latency_p99_ms"] >= result["latency_p50_ms"] > 0


def test_per_domain_mode_treats_other_domains_as_out_of_scope(tmp_path, capsys):
    path, domains = dataset(tmp_path)
    result = run(capsys, str(path), "--mode", "per-domain", "--domains", str(domains), "--json")
    assert set(result) == KEYS
    assert result["oos_recall"] >= 0.5  # the other domain's questions are mostly escalated
