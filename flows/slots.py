"""Slot parsing and validation for ask steps. Pure: `now` and the tenant timezone come from the caller.

`parse_slot(slot_type, text, now=..., tz=...)` returns a SlotResult whose value is JSON-serialisable
(ISO strings for dates and times). On failure `code` is a stable error code (ask steps can map it to an
approved text with `error_texts`) and `error` is an explanation for logs and agents, never for callers.

Error codes: empty, not_a_name, invalid_phone, invalid_email, no_date, no_time, missing_time,
invalid_date, in_past, not_a_number, ambiguous, out_of_range, not_yes_no, no_match.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import phonenumbers

SlotValue = str | int | float | bool | None


@dataclass(frozen=True)
class SlotResult:
    ok: bool
    value: SlotValue = None
    error: str | None = None
    code: str | None = None

    @classmethod
    def success(cls, value: SlotValue) -> SlotResult:
        return cls(True, value)

    @classmethod
    def fail(cls, code: str, error: str) -> SlotResult:
        return cls(False, None, error, code)


# ---------------------------------------------------------------- number words

_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_SCALES = {"thousand": 1000, "million": 1_000_000}
_NUMWORDS = sorted([*_ONES, *_TEENS, *_TENS, "hundred", *_SCALES], key=len, reverse=True)
_NW = "|".join(_NUMWORDS)
_RUN_RE = re.compile(rf"\b(?:{_NW})(?:[\s-]+(?:and[\s-]+)?(?:{_NW}))*\b")


def _convert_run(words: list[str]) -> list[int]:
    out: list[int] = []
    total = current = 0
    started = False
    last = ""

    def flush() -> None:
        nonlocal total, current, started
        if started:
            out.append(total + current)
        total = current = 0
        started = False

    for w in words:
        if w == "and":
            continue
        if w in _ONES:
            if started and last in ("tens", "hundred", "scale"):
                current += _ONES[w]
            else:
                flush()
                current, started = _ONES[w], True
            last = "ones"
        elif w in _TEENS or w in _TENS:
            v = _TEENS.get(w) or _TENS[w]
            if started and last in ("hundred", "scale"):
                current += v
            else:
                flush()
                current, started = v, True
            last = "teens" if w in _TEENS else "tens"
        elif w == "hundred":
            if started and last in ("ones", "teens", "tens") and current < 100:
                current *= 100
            else:
                flush()
                current, started = 100, True
            last = "hundred"
        elif w in _SCALES:
            if not started:
                current, started = 1, True
            total += (current or 1) * _SCALES[w]
            current = 0
            last = "scale"
    flush()
    return out


def words_to_numbers(text: str) -> str:
    """Replace runs of English number words with digits: "twenty five" -> "25", "ten thirty" -> "10 30"."""
    return _RUN_RE.sub(
        lambda m: " ".join(str(n) for n in _convert_run(re.split(r"[\s-]+", m.group(0).lower()))), text.lower()
    )


_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", **{k: str(v) for k, v in _ONES.items()}}


def spoken_digits(text: str) -> str:
    """Digits from a spoken/typed number: "five five five one two three four" -> "5551234", "double two" -> "22"."""
    t = text.lower()
    t = re.sub(
        r"\b(double|triple)\s+(zero|oh|o|one|two|three|four|five|six|seven|eight|nine|\d)\b",
        lambda m: (_DIGIT_WORDS.get(m.group(2), m.group(2))) * (2 if m.group(1) == "double" else 3),
        t,
    )
    t = re.sub(r"\b(zero|oh|o|one|two|three|four|five|six|seven|eight|nine)\b", lambda m: _DIGIT_WORDS[m.group(1)], t)
    t = words_to_numbers(t)
    return "".join(ch for ch in t if ch.isdigit())


# ---------------------------------------------------------------- helpers


def _norm(text: str) -> str:
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"[^\w\s'@.+:/-]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


# ---------------------------------------------------------------- name

_NAME_PREFIX = re.compile(
    r"^(?:(?:hi|hello|hey|yes|yeah|yep|sure|ok|okay|um+|uh+|er+|well|so|oh)[\s,.]+)*"
    r"(?:(?:my\s+|the\s+)?(?:full\s+|first\s+|last\s+)?name(?:'s|\s+is)|this\s+is|it'?s|it\s+is|i'?m|i\s+am|call\s+me)\s+",
    re.IGNORECASE,
)
_NAME_SUFFIX = re.compile(r"\s+(?:here|speaking|calling|thanks|thank\s+you|please)$", re.IGNORECASE)
_NOT_NAME_WORDS = {
    "what", "when", "where", "why", "how", "who", "which", "can", "could", "would", "do", "does", "is", "are",
    "want", "need", "help", "appointment", "price", "cost", "don't", "dont", "no", "not", "the", "you",
}  # fmt: skip


def _cap(word: str) -> str:
    parts = re.split(r"([-'])", word)
    out = []
    for i, p in enumerate(parts):
        if p in ("-", "'"):
            out.append(p)
        elif i >= 2 and parts[i - 1] == "'" and len(parts[i - 2]) > 1:
            out.append(p.lower())  # don't -> Don't (not Don'T); O'brien handled below
        else:
            out.append(p[:1].upper() + p[1:].lower())
    return "".join(out)


def parse_name(text: str) -> SlotResult:
    t = text.strip().replace("\u2019", "'")
    t = re.sub(r"[^\w\s'\-.]", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    for _ in range(2):
        t = _NAME_PREFIX.sub("", t).strip()
        t = _NAME_SUFFIX.sub("", t).strip()
    t = t.strip(" .")
    words = t.split()
    if not words:
        return SlotResult.fail("not_a_name", "no name was given")
    lowered = {w.lower().strip(".") for w in words}
    if any(ch.isdigit() for ch in t) or lowered & _NOT_NAME_WORDS or len(words) > 5:
        return SlotResult.fail("not_a_name", f"{text!r} does not look like a name")
    if not any(ch.isalpha() for ch in t):
        return SlotResult.fail("not_a_name", f"{text!r} does not look like a name")
    return SlotResult.success(" ".join(_cap(w) for w in words))


# ---------------------------------------------------------------- phone


def parse_phone(text: str, region: str = "US") -> SlotResult:
    raw = text.strip()
    plus = bool(re.match(r"^\s*(\+|plus\b)", raw.lower()))
    digits = spoken_digits(raw)
    if len(digits) < 7:
        return SlotResult.fail("invalid_phone", f"{text!r} has too few digits for a phone number")
    candidate = ("+" if plus else "") + digits
    try:
        number = phonenumbers.parse(candidate, None if plus else region)
    except phonenumbers.NumberParseException as exc:
        return SlotResult.fail("invalid_phone", f"{text!r} is not a phone number ({exc})")
    if not phonenumbers.is_valid_number(number):
        return SlotResult.fail("invalid_phone", f"{candidate} is not a valid phone number for region {region}")
    return SlotResult.success(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


# ---------------------------------------------------------------- email

_EMAIL_RE = re.compile(r"^[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}$")
_EMAIL_PREFIX = re.compile(r"^(?:(?:my\s+)?e-?mail(?:\s+address)?(?:\s+is|'s)?|it'?s|it\s+is|sure|yes)[\s:,]+")


def parse_email(text: str) -> SlotResult:
    t = text.strip().lower().replace("\u2019", "'")
    for _ in range(2):
        t = _EMAIL_PREFIX.sub("", t).strip()
    t = re.sub(r"\s+(?:at\s+sign|at)\s+", "@", f" {t} ").strip()
    t = re.sub(r"\s+(?:dot|period|point)\s+", ".", f" {t} ").strip()
    t = re.sub(r"\s*\b(?:underscore)\b\s*", "_", t)
    t = re.sub(r"\s*\b(?:dash|hyphen)\b\s*", "-", t)
    t = re.sub(r"\s+", "", t).strip(".,;")
    if _EMAIL_RE.match(t) and ".." not in t:
        return SlotResult.success(t)
    return SlotResult.fail("invalid_email", f"{text!r} is not an email address")


# ---------------------------------------------------------------- number


def parse_number(text: str, lo: float | None = None, hi: float | None = None) -> SlotResult:
    t = words_to_numbers(text)
    t = re.sub(r"(\d),(\d{3})\b", r"\1\2", t)
    t = re.sub(r"(\d) point (\d)", r"\1.\2", t)
    nums = re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?", t)
    if not nums:
        return SlotResult.fail("not_a_number", f"no number in {text!r}")
    if len(set(nums)) > 1:
        return SlotResult.fail("ambiguous", f"more than one number in {text!r}")
    value: int | float = float(nums[0])
    if value == int(value):
        value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{'-inf' if lo is None else f'{lo:g}'}..{'inf' if hi is None else f'{hi:g}'}"
        return SlotResult.fail("out_of_range", f"{value} is outside {bounds}")
    return SlotResult.success(value)


# ---------------------------------------------------------------- yes / no

_YES = {"yes", "yeah", "yep", "yup", "yea", "ya", "sure", "correct", "right", "affirmative", "ok", "okay",
        "absolutely", "definitely", "certainly", "indeed", "y", "true", "please", "alright"}  # fmt: skip
_NO = {"no", "nope", "nah", "negative", "incorrect", "wrong", "n", "false", "never"}
_YES_PHRASES = ("that's right", "that is right", "of course", "go ahead", "sounds good", "please do", "i do",
                "it is", "that works", "that's it")  # fmt: skip
_NO_PHRASES = (
    "not really", "no thanks", "no thank you", "i don't", "i do not", "don't", "do not", "not now", "that's wrong",
    "not correct", "not right", "that's not", "that is not", "isn't", "it's not",
)  # fmt: skip
_UNSURE = ("not sure", "don't know", "dont know", "maybe", "perhaps", "no idea", "i guess")


def parse_yes_no(text: str) -> SlotResult:
    t = " " + " ".join(_words(text)) + " "
    if any(f" {p} " in t for p in _UNSURE):
        return SlotResult.fail("not_yes_no", f"{text.strip()!r} is unsure")
    no = any(f" {p} " in t for p in _NO_PHRASES)
    words = t.split()
    yes = any(w in _YES for w in words) or any(f" {p} " in t for p in _YES_PHRASES)
    no = no or any(w in _NO for w in words)
    if no and (not yes or (words and words[0] in _NO)):
        return SlotResult.success(False)
    if yes and not no:
        return SlotResult.success(True)
    if yes and no:
        return SlotResult.fail("ambiguous", f"{text.strip()!r} says both yes and no")
    return SlotResult.fail("not_yes_no", f"{text.strip()!r} is not a yes or a no")


# ---------------------------------------------------------------- choice

_STOP = {"the", "a", "an", "i", "i'd", "id", "want", "would", "like", "please", "one", "to", "for", "let's", "lets",
         "go", "with", "option", "take", "um", "uh", "prefer", "me", "my", "is", "it", "its", "it's"}  # fmt: skip
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}  # fmt: skip


def _tokens(text: str) -> list[str]:
    return [w for w in _words(text) if w not in _STOP]


def _tok_eq(a: str, b: str) -> bool:
    return a == b or (len(a) > 3 and len(b) > 3 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8)


def parse_choice(text: str, choices: list[str] | tuple[str, ...] | None) -> SlotResult:
    options = list(choices or [])
    if not options:
        return SlotResult.fail("no_match", "the step has no choices")
    norm_t = " ".join(_words(text))
    norm_c = [" ".join(_words(c)) for c in options]
    for c, n in zip(options, norm_c, strict=True):
        if norm_t == n:
            return SlotResult.success(c)
    # ordinal / numbered answers: "the second one", "option 2", "2", "the last one"
    digits_t = words_to_numbers(norm_t)
    m = re.fullmatch(r"(?:(?:option|number|choice|the)\s+)?(\d{1,2})(?:\s+(?:one|please))?", digits_t)
    idx = int(m.group(1)) if m else None
    if idx is None:
        for word, n in _ORDINALS.items():
            if re.search(rf"\b{word}\b", norm_t) and len(_tokens(norm_t.replace(word, ""))) == 0:
                idx = n
        if re.search(r"\blast\b", norm_t) and len(_tokens(norm_t.replace("last", ""))) == 0:
            idx = len(options)
    if idx is not None and 1 <= idx <= len(options):
        return SlotResult.success(options[idx - 1])
    # whole choice said inside a sentence; prefer the longest ("deep cleaning" over "cleaning")
    padded = f" {norm_t} "
    inside = [i for i, n in enumerate(norm_c) if n and f" {n} " in padded]
    inside = [i for i in inside if not any(j != i and f" {norm_c[i]} " in f" {norm_c[j]} " for j in inside)]
    if len(inside) == 1:
        return SlotResult.success(options[inside[0]])
    if len(inside) > 1:
        return SlotResult.fail("ambiguous", f"{text.strip()!r} matches {', '.join(options[i] for i in inside)}")
    # token overlap, tolerant to small typos
    said = _tokens(norm_t)
    scores = []
    for i, n in enumerate(norm_c):
        toks = _tokens(n) or _words(n)
        if not toks or not said:
            scores.append((0.0, i))
            continue
        hit = sum(1 for tok in toks if any(_tok_eq(tok, s) for s in said))
        scores.append((hit / len(toks), i))
    scores.sort(key=lambda x: (-x[0], x[1]))
    if scores and scores[0][0] >= 0.5 and (len(scores) == 1 or scores[1][0] < scores[0][0]):
        return SlotResult.success(options[scores[0][1]])
    close = difflib.get_close_matches(norm_t, norm_c, n=2, cutoff=0.75)
    if len(close) == 1:
        return SlotResult.success(options[norm_c.index(close[0])])
    return SlotResult.fail("no_match", f"{text.strip()!r} matches none of: {', '.join(options)}")


# ---------------------------------------------------------------- dates and times

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4, "may": 5,
    "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}  # fmt: skip
_WEEKDAY_NAMES = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "weds": 2, "wednesday": 2, "thu": 3,
    "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}  # fmt: skip
_ORD_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
    "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_PERIODS = {"morning": 9, "afternoon": 14, "evening": 18, "tonight": 19, "night": 19, "lunchtime": 12,
            "lunch": 12}  # fmt: skip
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WD = "|".join(sorted(_WEEKDAY_NAMES, key=len, reverse=True))
_ORD_RE = re.compile(r"\b(?:(twenty|thirty)[\s-]+)?(" + "|".join(sorted(_ORD_WORDS, key=len, reverse=True)) + r")\b")


def _ordinal_sub(m: re.Match[str]) -> str:
    base = {"twenty": 20, "thirty": 30}.get(m.group(1) or "", 0)
    return f"{base + _ORD_WORDS[m.group(2)]}th"


def _safe_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


@dataclass
class _When:
    date: dt.date | None = None
    time: dt.time | None = None
    explicit_year: bool = False
    relative: dt.datetime | None = None  # "in 2 hours"
    invalid: bool = False


def _extract_when(text: str, now_local: dt.datetime, region: str) -> _When:
    today = now_local.date()
    out = _When()
    t = " " + text.lower().replace("\u2019", "'") + " "
    t = t.replace("a.m.", "am").replace("p.m.", "pm").replace("a.m", "am").replace("p.m", "pm")
    t = re.sub(r"(\d{4}-\d{1,2}-\d{1,2})t(\d)", r"\1 \2", t)
    t = re.sub(r"[,!?;]", " ", t)
    t = re.sub(r"\bo'?\s?clock\b", " oclock ", t)
    t = _ORD_RE.sub(_ordinal_sub, t)
    t = re.sub(r"\bnoon\b", " 12:00 pm ", t)
    t = re.sub(r"\bmidday\b", " 12:00 pm ", t)
    t = re.sub(r"\bmidnight\b", " 12:00 am ", t)
    t = words_to_numbers(t)
    t = re.sub(r"\s+", " ", t)

    def cut(m: re.Match[str]) -> None:
        nonlocal t
        t = t[: m.start()] + " " + t[m.end() :]

    # ---- dates
    if m := re.search(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", t):
        out.date, out.explicit_year = _safe_date(int(m[1]), int(m[2]), int(m[3])), True
        out.invalid = out.date is None
        cut(m)
    elif m := re.search(rf"\b({_MON})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:\s+(\d{{4}})\b)?", t):
        out.date, out.explicit_year = _month_day(today, _MONTHS[m[1]], int(m[2]), m[3])
        out.invalid = out.date is None
        cut(m)
    elif m := re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MON})\b(?:\s+(\d{{4}})\b)?", t):
        out.date, out.explicit_year = _month_day(today, _MONTHS[m[2]], int(m[1]), m[3])
        out.invalid = out.date is None
        cut(m)
    elif m := re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", t):
        a, b = int(m[1]), int(m[2])
        month, day = (a, b) if region.upper() in ("US", "CA", "PH") else (b, a)
        year = m[3]
        if year and len(year) == 2:
            year = str(2000 + int(year))
        out.date, out.explicit_year = _month_day(today, month, day, year)
        out.invalid = out.date is None
        cut(m)
    elif m := re.search(r"\b(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)\b", t):
        day = int(m[1])
        d = _safe_date(today.year, today.month, day)
        if d is None or d < today:
            nm = today.month % 12 + 1
            d = _safe_date(today.year + (1 if nm == 1 else 0), nm, day)
        out.date, out.invalid = d, d is None
        cut(m)
    elif m := re.search(r"\bday after tomorrow\b", t):
        out.date = today + dt.timedelta(days=2)
        cut(m)
    elif m := re.search(r"\b(?:tomorrow|tmrw|tmr|tomorow)\b", t):
        out.date = today + dt.timedelta(days=1)
        cut(m)
    elif m := re.search(r"\b(?:today|tonight|this (?=morning|afternoon|evening))\b", t):
        out.date = today
        if "tonight" in m[0]:
            t += " tonight "
        cut(m)
    elif m := re.search(r"\bin (\d+) (day|days|week|weeks)\b", t):
        n = int(m[1]) * (7 if m[2].startswith("week") else 1)
        out.date = today + dt.timedelta(days=n)
        cut(m)
    elif m := re.search(rf"\b(?:(next|this|coming)\s+)?({_WD})\b", t):
        target = _WEEKDAY_NAMES[m[2]]
        ahead = (target - today.weekday()) % 7
        if ahead == 0 and m[1] != "this":
            ahead = 7
        out.date = today + dt.timedelta(days=ahead)
        cut(m)

    # ---- relative times
    if m := re.search(r"\bin (?:(\d+)|an|a) (hour|hours|minute|minutes|min|mins)\b", t):
        n = int(m[1]) if m[1] else 1
        delta = dt.timedelta(hours=n) if m[2].startswith("hour") else dt.timedelta(minutes=n)
        out.relative = now_local + delta
        return out

    # ---- times
    period = None
    if m := re.search(r"\b(?:in the |this )?(morning|afternoon|evening|tonight|night|lunchtime|lunch)\b", t):
        period = m[1]
        cut(m)
    hour = minute = None
    meridiem = None
    for pattern, kind in _TIME_PATTERNS:
        if pattern is None:  # the bare-hour-with-period rule
            if not period:
                continue
            pattern = re.compile(r"\b(\d{1,2})\b")
        m = pattern.search(t)
        if not m:
            continue
        if kind == "half":
            hour, minute = int(m[1]), 30
        elif kind == "quarter_past":
            hour, minute = int(m[1]), 15
        elif kind == "quarter_to":
            hour, minute = (int(m[1]) - 1) % 24, 45
        elif kind == "meridiem":
            hour, minute, meridiem = int(m[1]), int(m[2] or m[3] or m[4] or 0), m[5]
        elif kind == "hm":
            hour, minute = int(m[1]), int(m[2])
        else:  # "h"
            hour, minute = int(m[1]), 0
        break

    if hour is not None:
        if minute is None or minute > 59 or hour > 24 or (meridiem and not 1 <= hour <= 12):
            out.invalid = True
            return out
        if meridiem == "pm" and hour < 12:
            hour += 12
        elif meridiem == "am" and hour == 12:
            hour = 0
        elif meridiem is None:
            if period in ("afternoon", "evening", "tonight", "night") and hour < 12:
                hour += 12
            elif period is None and 1 <= hour <= 7:
                hour += 12  # "at 3" in a business context means 3 pm
        out.time = dt.time(hour % 24, minute)
    elif period:
        out.time = dt.time(_PERIODS[period], 0)
    return out


_TIME_PATTERNS: list[tuple[re.Pattern[str] | None, str]] = [
    (re.compile(r"\bhalf past (\d{1,2})\b"), "half"),
    (re.compile(r"\bquarter past (\d{1,2})\b"), "quarter_past"),
    (re.compile(r"\bquarter to (\d{1,2})\b"), "quarter_to"),
    (re.compile(r"\b(\d{1,2})(?:[:.](\d{2})|\s+(\d{2})|\s+oh\s+(\d))?\s*(am|pm)\b"), "meridiem"),
    (re.compile(r"\b(\d{1,2})[:h](\d{2})\b"), "hm"),
    (re.compile(r"\b(\d{1,2}) oclock\b"), "h"),
    (re.compile(r"\b(\d{1,2})\s+(\d{2})\b"), "hm"),  # "ten thirty" -> "10 30"
    (re.compile(r"\b(\d{1,2}) oh (\d)\b"), "hm"),  # "ten oh five"
    (re.compile(r"\b(?:at|around|about|by)\s+(\d{1,2})\b"), "h"),
    (None, "h"),  # "3 in the afternoon": a bare number next to a period word
    (re.compile(r"^\s*(\d{1,2})\s*$"), "h"),  # just "3"
]


def _month_day(today: dt.date, month: int, day: int, year: str | None) -> tuple[dt.date | None, bool]:
    if year:
        return _safe_date(int(year), month, day), True
    d = _safe_date(today.year, month, day)
    if d is not None and d < today:
        d = _safe_date(today.year + 1, month, day)
    if d is None and month == 2 and day == 29:
        for y in range(today.year, today.year + 5):
            d = _safe_date(y, 2, 29)
            if d and d >= today:
                break
    return d, False


def _aware(d: dt.date, t: dt.time, tz: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(d, t).replace(tzinfo=tz)
    # normalise nonexistent local times (spring-forward gap) to a real instant
    return local.astimezone(dt.UTC).astimezone(tz)


def parse_when(slot_type: str, text: str, *, now: dt.datetime, tz: str, region: str = "US") -> SlotResult:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(tz)
    now_local = now.astimezone(zone)
    w = _extract_when(text, now_local, region)
    if w.invalid:
        return SlotResult.fail("invalid_date", f"{text!r} names a date or time that does not exist")
    if w.relative is not None:
        rel = w.relative.replace(second=0, microsecond=0)
        if slot_type == "date":
            return SlotResult.success(rel.date().isoformat())
        if slot_type == "time":
            return SlotResult.success(rel.strftime("%H:%M"))
        return SlotResult.success(rel.isoformat())
    if slot_type == "date":
        if w.date is None:
            return SlotResult.fail("no_date", f"no date in {text!r}")
        return SlotResult.success(w.date.isoformat())
    if slot_type == "time":
        if w.time is None:
            return SlotResult.fail("no_time", f"no time in {text!r}")
        return SlotResult.success(w.time.strftime("%H:%M"))
    # datetime
    if w.date is None and w.time is None:
        return SlotResult.fail("no_date", f"no date or time in {text!r}")
    if w.time is None:
        return SlotResult.fail("missing_time", f"{text!r} has a date ({w.date.isoformat()}) but no time")
    if w.date is None:
        d = now_local.date()
        if _aware(d, w.time, zone) <= now_local:
            d += dt.timedelta(days=1)
        when = _aware(d, w.time, zone)
    else:
        when = _aware(w.date, w.time, zone)
    if when <= now_local:
        return SlotResult.fail("in_past", f"{when.isoformat()} is in the past")
    return SlotResult.success(when.isoformat())


# ---------------------------------------------------------------- entry point


def parse_slot(
    slot_type: str,
    text: str,
    *,
    now: dt.datetime,
    tz: str,
    choices: list[str] | tuple[str, ...] | None = None,
    min: float | None = None,  # mirrors the ask step's field names
    max: float | None = None,
    region: str = "US",
) -> SlotResult:
    """Parse what the caller said (or typed, or keyed) into a slot value of `slot_type`."""
    lo, hi = min, max
    text = (text or "").strip()
    if not text:
        return SlotResult.fail("empty", "nothing was said")
    if slot_type == "name":
        return parse_name(text)
    if slot_type == "phone":
        return parse_phone(text, region)
    if slot_type == "email":
        return parse_email(text)
    if slot_type in ("datetime", "date", "time"):
        return parse_when(slot_type, text, now=now, tz=tz, region=region)
    if slot_type == "number":
        return parse_number(text, lo, hi)
    if slot_type == "yes_no":
        return parse_yes_no(text)
    if slot_type == "choice":
        return parse_choice(text, choices)
    if slot_type == "text":
        return SlotResult.success(re.sub(r"\s+", " ", text))
    raise ValueError(f"unknown slot type {slot_type!r}")
