"""CLINC150-style benchmark of flows.nlu (used by `manage.py nlu_eval`; no Django import).

Data: JSON with keys train, val, test, oos_train, oos_val, oos_test (oos_* or test may be absent),
rows `[text, intent]`, out-of-scope rows labelled "oos".

- Training is exactly a tenant publish: `IntentModel.train` on the train rows (oos_train is never a
  label), with val + oos_val passed as `calibration` (used only for the threshold).
- Evaluation on test + oos_test; when `test` is absent, on val + oos_val (reported as such).
- mode "full": one tenant with every intent. mode "per-domain": one tenant per domain of
  `domains` (domain -> intents); for that tenant every query of another domain and every oos query
  is out of scope. Figures are pooled over all (tenant, query) pairs; the mean over domains is
  reported too.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence

import numpy as np

from .nlu import OOS, IntentModel, encoder_available

METRIC_KEYS = (
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
)


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def _rows(data: dict, key: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in data.get(key) or []]


def _counts(pred: Sequence[str | None], gold: Sequence[str | None]) -> dict[str, int]:
    c = {"n": 0, "n_in": 0, "n_oos": 0, "in_right": 0, "in_wrong": 0, "in_esc": 0, "oos_esc": 0, "oos_answered": 0}
    for p, g in zip(pred, gold, strict=True):
        c["n"] += 1
        if g is None:
            c["n_oos"] += 1
            c["oos_esc" if p is None else "oos_answered"] += 1
        else:
            c["n_in"] += 1
            c["in_esc" if p is None else ("in_right" if p == g else "in_wrong")] += 1
    return c


def _rates(c: dict[str, int]) -> dict[str, float]:
    def div(a: float, b: float) -> float:
        return float(a / b) if b else 0.0

    escalated = c["in_esc"] + c["oos_esc"]
    return {
        "in_scope_accuracy": div(c["in_right"], c["n_in"]),
        "oos_recall": div(c["oos_esc"], c["n_oos"]),
        "oos_precision": div(c["oos_esc"], escalated),
        "wrong_answer_rate": div(c["in_wrong"] + c["oos_answered"], c["n"]),
        "in_scope_wrong_rate": div(c["in_wrong"], c["n_in"]),
        "in_scope_escalation_rate": div(c["in_esc"], c["n_in"]),
    }


def _latencies(model: IntentModel, texts: Sequence[str], n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    pick = [texts[i] for i in rng.permutation(len(texts))[: min(n, len(texts))]]
    for t in pick[:20]:  # warm-up
        model.predict(t)
    out = []
    for t in pick:
        t0 = time.perf_counter()
        model.predict(t)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _tenant(
    train: list[tuple[str, str]],
    cal: list[tuple[str, str | None]],
    ev: list[tuple[str, str | None]],
    seed: int,
    latency_n: int,
    log=None,
) -> tuple[dict[str, int], list[float], float, IntentModel]:
    t0 = time.perf_counter()
    model = IntentModel.train(train, calibration=cal or None, seed=seed)
    train_s = time.perf_counter() - t0
    pred: list[str | None] = []
    for start in range(0, len(ev), 1000):  # bounded transient memory
        pred.extend(r.label for r in model.predict_many([t for t, _ in ev[start : start + 1000]]))
    counts = _counts(pred, [g for _, g in ev])
    lat = _latencies(model, [t for t, _ in ev], latency_n, seed)
    return counts, lat, train_s, model


def evaluate(
    data: dict,
    mode: str = "full",
    domains: dict[str, Sequence[str]] | None = None,
    *,
    seed: int = 0,
    latency_samples: int = 1000,
    calibrate: bool = True,
    log=None,
) -> dict:
    """Run the benchmark; returns the METRIC_KEYS figures (pooled) plus details under extra keys.

    calibrate=False trains without the val rows (threshold from the tenant's own examples only,
    i.e. what a plain publish does); the figures are then a fair estimate on val.
    """

    def say(msg: str) -> None:
        if log is not None:
            log(msg)

    train = [(t, lab) for t, lab in _rows(data, "train") if lab != OOS]
    has_test = bool(data.get("test"))
    ev_in, ev_oos = ("test", "oos_test") if has_test else ("val", "oos_val")
    cal_rows = [(t, (None if lab == OOS else lab)) for t, lab in _rows(data, "val") + _rows(data, "oos_val")]
    if not calibrate:
        cal_rows = []
    ev_rows = [(t, (None if lab == OOS else lab)) for t, lab in _rows(data, ev_in) + _rows(data, ev_oos)]
    if not calibrate:
        cal_note = f"no calibration: threshold from the training examples only; evaluated on {ev_in} + {ev_oos}"
    elif not has_test:
        cal_note = "test split absent: evaluated on val + oos_val (the same rows that chose the threshold)"
    else:
        cal_note = "evaluated on test + oos_test; threshold chosen on val + oos_val"
    say(f"mode={mode} embeddings={'on' if encoder_available() else 'off (TF-IDF only)'}; {cal_note}")
    say(f"train={len(train)} calibration={len(cal_rows)} evaluation={len(ev_rows)} ({ev_in} + {ev_oos})")

    per_domain: dict[str, dict] = {}
    if mode == "full":
        counts, lat, train_s, model = _tenant(train, cal_rows, ev_rows, seed, latency_samples)
        train_total = train_s
        thresholds = {"full": model.threshold}
        say(f"trained {len(model.labels)} intents in {train_s:.1f}s, threshold={model.threshold:.3f}")
    elif mode == "per-domain":
        if not domains:
            raise ValueError("per-domain mode needs the domains mapping (domain -> intents)")
        counts = {}
        lat = []
        train_total = 0.0
        thresholds = {}
        per_n = max(50, latency_samples // max(len(domains), 1))
        for dom, intents in domains.items():
            keep = set(intents)
            tr = [(t, lab) for t, lab in train if lab in keep]
            if not tr:
                continue
            cal = [(t, (lab if lab in keep else None)) for t, lab in cal_rows]
            ev = [(t, (lab if lab in keep else None)) for t, lab in ev_rows]
            c, lt, ts, model = _tenant(tr, cal, ev, seed, per_n)
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            lat.extend(lt)
            train_total += ts
            thresholds[dom] = model.threshold
            per_domain[dom] = {
                **_rates(c),
                "train_seconds": ts,
                "threshold": model.threshold,
                "n_intents": len(model.labels),
            }
            r = per_domain[dom]
            say(
                f"  {dom:22s} in-scope {r['in_scope_accuracy']:.3f}  oos-recall {r['oos_recall']:.3f}  "
                f"wrong-intent {r['in_scope_wrong_rate']:.3f}  train {ts:.1f}s  thr {model.threshold:.3f}"
            )
    else:
        raise ValueError(f"unknown mode {mode!r} (full | per-domain)")

    out = _rates(counts)
    out["latency_p50_ms"] = float(np.percentile(lat, 50)) if lat else 0.0
    out["latency_p99_ms"] = float(np.percentile(lat, 99)) if lat else 0.0
    out["train_seconds"] = float(train_total)
    out["peak_rss_mb"] = peak_rss_mb()
    out["_details"] = {
        "mode": mode,
        "evaluated_on": f"{ev_in}+{ev_oos}",
        "note": cal_note,
        "embeddings": encoder_available(),
        "counts": counts,
        "thresholds": thresholds,
        "per_domain": per_domain,
        "mean_over_domains": (
            {k: float(np.mean([d[k] for d in per_domain.values()])) for k in (*_rates(counts).keys(), "train_seconds")}
            if per_domain
            else {}
        ),
    }
    return out


def format_report(res: dict) -> str:
    d = res["_details"]
    pct = lambda x: f"{100 * x:6.2f}%"  # noqa: E731
    lines = [
        f"NLU benchmark ({d['mode']}, evaluated on {d['evaluated_on']}; embeddings {'on' if d['embeddings'] else 'off'})",
        f"  {d['note']}",
        f"  in-scope accuracy        {pct(res['in_scope_accuracy'])}   (right intent, not escalated)",
        f"  OOS recall               {pct(res['oos_recall'])}",
        f"  OOS precision            {pct(res['oos_precision'])}",
        f"  wrong-answer rate        {pct(res['wrong_answer_rate'])}   (of all queries)",
        f"  in-scope wrong intent    {pct(res['in_scope_wrong_rate'])}",
        f"  in-scope escalation      {pct(res['in_scope_escalation_rate'])}",
        f"  latency p50 / p99        {res['latency_p50_ms']:.2f} / {res['latency_p99_ms']:.2f} ms per utterance",
        f"  training time            {res['train_seconds']:.1f} s" + (" (all tenants)" if d["per_domain"] else ""),
        f"  peak RSS                 {res['peak_rss_mb']:.0f} MB",
    ]
    if d["per_domain"]:
        m = d["mean_over_domains"]
        lines.append(
            f"  mean over {len(d['per_domain'])} domains: in-scope {pct(m['in_scope_accuracy'])}, "
            f"OOS recall {pct(m['oos_recall'])}, OOS precision {pct(m['oos_precision'])}, "
            f"wrong-answer {pct(m['wrong_answer_rate'])}, wrong intent {pct(m['in_scope_wrong_rate'])}, "
            f"escalation {pct(m['in_scope_escalation_rate'])}, train {m['train_seconds']:.1f} s per tenant"
        )
        lines.append("  (the figures above and the JSON keys are pooled over all tenant/query pairs)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: python -m flows.nlu_eval PATH.json [--mode ...] [--domains ...] [--json]."""
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--mode", choices=["full", "per-domain"], default="full")
    p.add_argument("--domains")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-calibration", action="store_true")
    a = p.parse_args(argv)
    with open(a.path, encoding="utf-8") as f:
        data = json.load(f)
    domains = None
    if a.mode == "per-domain":
        dpath = a.domains or os.path.join(os.path.dirname(os.path.abspath(a.path)), "domains.json")
        with open(dpath, encoding="utf-8") as f:
            domains = json.load(f)
    res = evaluate(data, a.mode, domains, seed=a.seed, calibrate=not a.no_calibration, log=print)
    print(format_report(res))
    if a.json:
        print(json.dumps({k: round(res[k], 6) for k in METRIC_KEYS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
