"""Grouping unmatched questions by similarity: TF-IDF over content words, cosine, greedy leaders.

Input: distinct normalised texts with their counts (a few hundred to a couple of thousand for a
month of a busy line). Output: groups of indices. The most frequent text leads; each following
text joins the most similar leader when the cosine reaches the threshold, else leads a new group.
Deterministic, no scikit-learn at run time; sparse (an inverted index over the leaders' words), so
a text is only compared with the groups it shares a content word with.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

#: Words that carry no topic ("do you", "can i"): two questions sharing only these are not alike.
_STOPWORDS_TEXT = """
    a an the and or but if of to in on at for from by with about as into over after before
    i me my we our us you your he she it its they them their this that these those there here
    is am are was were be been being do does did doing have has had having will would can could
    shall should may might must not no yes so just also too very really please thanks thank hi hello
    hey ok okay what when where which who whom whose why how any some all
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

DEFAULT_THRESHOLD = 0.5


def stem(word: str) -> str:
    """A very light stemmer, enough to make "dogs"/"dog" and "allowed"/"allow" one word."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    return word


def content_words(text: str) -> list[str]:
    """The normalised text's words that carry its topic, stemmed (all its words if none do)."""
    words = text.split()
    kept = [stem(w) for w in words if w not in STOPWORDS and len(w) > 1]
    return kept or words


def group_by_similarity(
    texts: Sequence[str], counts: Sequence[int], *, threshold: float = DEFAULT_THRESHOLD
) -> list[list[int]]:
    """Indices of ``texts`` grouped; groups ordered by total count, members by count (both descending)."""
    n = len(texts)
    if n == 0:
        return []
    docs = [sorted(set(content_words(t))) for t in texts]
    df: dict[str, int] = defaultdict(int)
    for doc in docs:
        for word in doc:
            df[word] += 1
    vectors: list[dict[str, float]] = []
    for doc in docs:
        weights = np.array([math.log((1.0 + n) / (1.0 + df[w])) + 1.0 for w in doc], dtype=np.float64)
        norm = float(np.linalg.norm(weights)) or 1.0
        vectors.append({w: float(x) / norm for w, x in zip(doc, weights, strict=True)})

    order = sorted(range(n), key=lambda i: (-counts[i], texts[i]))
    rank = {i: r for r, i in enumerate(order)}
    # Sparse dot products through an inverted index of the leaders' words: each text only meets the
    # leaders it shares a word with, so this stays fast for thousands of texts.
    postings: dict[str, list[int]] = defaultdict(list)
    members: dict[int, list[int]] = {}
    for i in order:
        scores: dict[int, float] = defaultdict(float)
        for word, weight in vectors[i].items():
            for leader in postings.get(word, ()):
                scores[leader] += weight * vectors[leader][word]
        best = max(scores.items(), key=lambda item: (item[1], -rank[item[0]]), default=None)
        if best is not None and best[1] >= threshold - 1e-9:
            members[best[0]].append(i)
            continue
        members[i] = [i]
        for word in vectors[i]:
            postings[word].append(i)
    groups = list(members.values())
    groups.sort(key=lambda g: (-sum(counts[i] for i in g), texts[g[0]]))
    return groups


def cosine(a: str, b: str) -> float:
    """Cosine of two texts' content-word sets (unweighted): for tests and explanations."""
    x, y = set(content_words(a)), set(content_words(b))
    if not x or not y:
        return 0.0
    return len(x & y) / math.sqrt(len(x) * len(y))
