"""Text normalisation for the NLU module (pure Python, no Django).

Callers reach the bot through speech-to-text or web chat, so the same request arrives as
"What are your hours?!", "um so like what are your hours" or "WHAT ARE YOUR HOURS". `normalize`
maps these to one canonical form before the model sees them (training examples go through the
same function, so what matters most is consistency, not linguistic perfection):

- Unicode NFKC, lower case, curly quotes to straight ones;
- contractions expanded ("what's" -> "what is", "can't" -> "can not", "i'd" -> "i would");
- fillers dropped ("um", "uh", "erm", "hmm", a leading "so"/"well"/"okay so", "like," and
  ", you know," used as fillers, a trailing "you know"); "like" and "you know" stay when they carry
  meaning ("i would like to book", "do you know your hours");
- spoken numbers to digits: "two thirty" -> "2 30", "five five five" -> "5 5 5",
  "twenty five" -> "25", "one hundred and twenty" -> "120", "oh" between digits -> "0";
  a lone "one" that is not next to another number stays a word ("which one is cheaper");
- "$40" -> "40 dollars", "15%" -> "15 percent", "2:30" -> "2 30";
- other punctuation removed, stuttered repeats ("what what are") collapsed, whitespace squeezed.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "tokens"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})

_IRREGULAR_CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "let's": "let us",
    "y'all": "you all",
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "got to",
    "ima": "i am going to",
    "i'ma": "i am going to",
}
# "'s" is only expanded after words where it is (almost) always "is"/"has"; "john's" keeps a plain "s".
_S_IS_WORDS = {
    "what",
    "where",
    "who",
    "how",
    "when",
    "why",
    "it",
    "that",
    "there",
    "here",
    "he",
    "she",
    "this",
    "everything",
    "nothing",
    "something",
    "someone",
    "somebody",
}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'m", " am"), ("'d", " would"))

_FILLERS = {"um", "umm", "ummm", "uh", "uhh", "uhm", "uhmm", "erm", "er", "err", "hmm", "hmmm", "hm", "mm", "mmm", "ah"}
_LEADING_DISCOURSE = {"so", "well", "okay", "ok", "alright", "right", "yeah", "oh", "anyway", "anyways"}

_KNOW_VERBS = {"do", "does", "did", "would", "will", "to", "not", "want", "i", "we", "they"}

_UNITS = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _expand_contractions(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        word = m.group(0)
        if word in _IRREGULAR_CONTRACTIONS:
            return _IRREGULAR_CONTRACTIONS[word]
        if word.endswith("'s"):
            stem = word[:-2]
            return f"{stem} is" if stem in _S_IS_WORDS else f"{stem}s"
        for suffix, expansion in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix):
                return word[: -len(suffix)] + expansion
        return word.replace("'", "")

    return re.sub(r"[a-z]+'[a-z]+|gonna|wanna|gotta|ima|cannot", repl, text)


def _strip_fillers(text: str) -> str:
    # Comma-delimited fillers first, while punctuation is still there.
    for _ in range(4):
        before = text
        text = re.sub(r"(^|[,.;!?]\s*)(?:you know|i mean|like)\s*,\s*", r"\1", text)
        text = re.sub(r",\s*(?:you know|i mean|like)\s*(?=$|[,.;!?])", "", text)
        if text == before:
            break
    return text


def _words_to_numbers(words: list[str]) -> list[str]:
    """Turn runs of number words into digits ("twenty five" -> "25", "two thirty" -> "2 30")."""
    out: list[str] = []
    i = 0
    n = len(words)

    def is_num(w: str) -> bool:
        return w in _UNITS or w in _TENS or w in _SCALES or w.isdigit()

    while i < n:
        w = words[i]
        if not (w in _UNITS or w in _TENS or (w in _SCALES and out and out[-1] == "a")):
            out.append(w)
            i += 1
            continue
        if w == "oh":
            # "oh" is only a zero inside a digit run: "five five oh one"
            in_run = i + 1 < n and is_num(words[i + 1]) and bool(out) and out[-1].isdigit()
            out.append("0" if in_run else w)
            i += 1
            continue
        if w == "one" and not ((i + 1 < n and is_num(words[i + 1])) or (out and out[-1].isdigit())):
            out.append(w)  # a lone "one" is usually a pronoun ("which one", "no one")
            i += 1
            continue
        if w in _SCALES:  # "a hundred" -> "100"
            out[-1] = str(_SCALES[w])
            i += 1
            continue
        # Parse one number: [units|tens [units]] [hundred [and] [tens [units] | units]] [thousand ...]
        total = 0
        current = 0
        last = None  # kind of the last consumed token: "unit", "teen", "tens", "scale"
        j = i
        while j < n:
            t = words[j]
            if t == "and" and last == "scale" and j + 1 < n and (words[j + 1] in _UNITS or words[j + 1] in _TENS):
                j += 1
                continue
            if t in _TENS and last in (None, "scale"):
                current += _TENS[t]
                last = "tens"
            elif t in _UNITS and t != "oh" and (last in (None, "scale") or (last == "tens" and _UNITS[t] < 10)):
                current += _UNITS[t]
                last = "teen" if _UNITS[t] >= 10 else "unit"
            elif t in _SCALES and last in ("unit", "teen", "tens") and current:
                if _SCALES[t] == 100:
                    current *= 100
                else:
                    total += current * _SCALES[t]
                    current = 0
                last = "scale"
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def normalize(text: str) -> str:
    """Canonical form of a caller utterance (see the module docstring). Never raises on str input."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).translate(_APOSTROPHES).lower()
    text = _strip_fillers(text)
    text = re.sub(r"\$\s*(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", text)
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = re.sub(r"(\d)\s*([ap])\.?m\b\.?", r"\1 \2m", text)  # 2:30pm -> 2 30 pm
    text = _expand_contractions(text)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # twenty-five, follow-up
    words = _WORD_RE.findall(text.replace("'", " "))
    words = [w for w in words if w not in _FILLERS]
    # Leading discourse markers ("so", "well", "okay so like ...") carry no intent.
    while len(words) > 1 and (words[0] in _LEADING_DISCOURSE or (words[0] == "like" and words[1] not in ("to", "a"))):
        words.pop(0)
    if len(words) == 1 and words[0] in _LEADING_DISCOURSE | {"like"}:
        words = []
    if len(words) >= 2 and words[-2:] == ["you", "know"] and (len(words) < 3 or words[-3] not in _KNOW_VERBS):
        words = words[:-2]
    words = _words_to_numbers(words)
    # Collapse stutters ("what what are") but keep repeated digits ("5 5 5").
    deduped: list[str] = []
    for w in words:
        if deduped and w == deduped[-1] and not w.isdigit():
            continue
        deduped.append(w)
    return " ".join(deduped)


def tokens(text: str) -> list[str]:
    """Word tokens of already-normalised text."""
    return text.split()
