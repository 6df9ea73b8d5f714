"""Slot parsing for ask steps (pure: fixed `now`, tenant timezone)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from flows.slots import SlotResult, parse_slot, spoken_digits, words_to_numbers

NY = "America/New_York"
# Thursday 2025-03-06 10:00 in New York (EST; DST starts Sunday the 9th)
NOW = dt.datetime(2025, 3, 6, 10, 0, tzinfo=ZoneInfo(NY))


def parse(slot_type: str, text: str, **kw) -> SlotResult:
    kw.setdefault("now", NOW)
    kw.setdefault("tz", NY)
    return parse_slot(slot_type, text, **kw)


def test_values_are_json_serialisable():
    for slot_type, text in [("datetime", "tomorrow at 3 pm"), ("date", "dec 12"), ("number", "7"), ("yes_no", "yes")]:
        res = parse(slot_type, text)
        assert res.ok
        json.dumps(res.value)


def test_empty_input():
    res = parse("text", "   ")
    assert not res.ok and res.code == "empty"


# ---------------------------------------------------------------- name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my name is john smith", "John Smith"),
        ("It's mary-jane SMITH", "Mary-Jane Smith"),
        ("this is Jane Doe here", "Jane Doe"),
        ("uh, I'm sean o'brien", "Sean O'Brien"),
        ("Priya", "Priya"),
        ("the name is ana lucia costa", "Ana Lucia Costa"),
    ],
)
def test_name(text, expected):
    assert parse("name", text).value == expected


@pytest.mark.parametrize("text", ["what are your hours", "12345", "my name is", "I want an appointment"])
def test_not_a_name(text):
    res = parse("name", text)
    assert not res.ok and res.code == "not_a_name"


# ---------------------------------------------------------------- phone


def test_words_to_digits_helpers():
    assert spoken_digits("five five five one two three four") == "5551234"
    assert spoken_digits("double two oh one") == "2201"
    assert words_to_numbers("one hundred and twenty five") == "125"
    assert words_to_numbers("ten thirty") == "10 30"
    assert words_to_numbers("two thousand three hundred") == "2300"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("two one two five five five oh one two three", "+12125550123"),
        ("two one two, five five five, zero one two three", "+12125550123"),
        ("my number is 1 212 555 0123", "+12125550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("plus four four two zero seven nine four six zero nine five eight", "+442079460958"),
        ("six one seven five five five oh one double nine", "+16175550199"),
    ],
)
def test_phone(text, expected):
    res = parse("phone", text)
    assert res.ok, res.error
    assert res.value == expected


def test_phone_region_from_tenant():
    assert parse("phone", "020 7946 0958", region="GB").value == "+442079460958"


@pytest.mark.parametrize("text", ["five five five one two three four", "123", "call me maybe", "555 123 4567"])
def test_invalid_phone(text):
    res = parse("phone", text)
    assert not res.ok and res.code == "invalid_phone"


# ---------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("john at example dot com", "john@example.com"),
        ("My email is John.Smith@Example.com", "john.smith@example.com"),
        ("john dot smith underscore 2 at gmail dot co dot uk", "john.smith_2@gmail.co.uk"),
        ("it's mary dash ann at mail dot org.", "mary-ann@mail.org"),
    ],
)
def test_email(text, expected):
    assert parse("email", text).value == expected


@pytest.mark.parametrize("text", ["nope", "john at example", "@example.com", "john@@example.com"])
def test_invalid_email(text):
    res = parse("email", text)
    assert not res.ok and res.code == "invalid_email"


# ---------------------------------------------------------------- dates and times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow at 3 pm", "2025-03-07T15:00:00-05:00"),
        ("Tomorrow at 3pm please", "2025-03-07T15:00:00-05:00"),
        ("next Tuesday morning", "2025-03-11T09:00:00-04:00"),  # after the DST change: -04:00
        ("Dec 12 at 10:30", "2025-12-12T10:30:00-05:00"),
        ("December 12th at 10:30 am", "2025-12-12T10:30:00-05:00"),
        ("12 December at 4", "2025-12-12T16:00:00-05:00"),
        ("monday 2pm", "2025-03-10T14:00:00-04:00"),
        ("three thirty pm tomorrow", "2025-03-07T15:30:00-05:00"),
        ("ten oh five am on monday", "2025-03-10T10:05:00-04:00"),
        ("the 15th at noon", "2025-03-15T12:00:00-04:00"),
        ("friday at 3 in the afternoon", "2025-03-07T15:00:00-05:00"),
        ("thursday at 11", "2025-03-13T11:00:00-04:00"),  # today is Thursday: the next one
        ("3/20 at 9:15", "2025-03-20T09:15:00-04:00"),
        ("2025-04-01T14:00", "2025-04-01T14:00:00-04:00"),
        ("Jan 5 at 10am", "2026-01-05T10:00:00-05:00"),  # already past this year -> next year
        ("in 2 hours", "2025-03-06T12:00:00-05:00"),
        ("at 4", "2025-03-06T16:00:00-05:00"),  # time only, later today
        ("9am", "2025-03-07T09:00:00-05:00"),  # time only, already past today -> tomorrow
        ("saturday at quarter past ten", "2025-03-08T10:15:00-05:00"),
        ("day after tomorrow at half past 2", "2025-03-08T14:30:00-05:00"),
        ("this afternoon", "2025-03-06T14:00:00-05:00"),
    ],
)
def test_datetime(text, expected):
    res = parse("datetime", text)
    assert res.ok, res.error
    assert res.value == expected
    assert dt.datetime.fromisoformat(res.value).tzinfo is not None


def test_datetime_uses_tenant_timezone():
    res = parse("datetime", "tomorrow at 9am", tz="Europe/London")
    assert res.value == "2025-03-07T09:00:00+00:00"


def test_nonexistent_local_time_is_normalised():
    # 02:30 on 2025-03-09 does not exist in New York
    res = parse("datetime", "March 9 at 2:30 am")
    assert res.ok
    assert res.value == "2025-03-09T03:30:00-04:00"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("friday", "missing_time"),
        ("today at 9am", "in_past"),
        ("whenever works", "no_date"),
        ("February 30 at 10", "invalid_date"),
        ("at 25:00", "invalid_date"),
    ],
)
def test_datetime_errors(text, code):
    res = parse("datetime", text)
    assert not res.ok
    assert res.code == code
    assert res.error


def test_date_and_time_slots():
    assert parse("date", "next friday").value == "2025-03-07"
    assert parse("date", "march 3 1985").value == "1985-03-03"  # explicit year (e.g. date of birth)
    assert parse("date", "12/25").value == "2025-12-25"
    assert parse("date", "25/12", region="GB").value == "2025-12-25"
    assert parse("time", "half past four in the afternoon").value == "16:30"
    assert parse("time", "noon").value == "12:00"
    assert parse("time", "9 in the morning").value == "09:00"
    assert parse("time", "17:45").value == "17:45"
    assert parse("date", "at 3 pm").code == "no_date"
    assert parse("time", "tomorrow").code == "no_time"


# ---------------------------------------------------------------- numbers, yes/no, choice, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("twenty five", 25), ("3", 3), ("about forty", 40), ("two point five", 2.5), ("1,200", 1200), ("-4", -4)],
)
def test_number(text, expected):
    assert parse("number", text).value == expected


def test_number_errors():
    assert parse("number", "a few").code == "not_a_number"
    assert parse("number", "2 or 3").code == "ambiguous"
    assert parse("number", "12", min=1, max=10).code == "out_of_range"
    assert parse("number", "ten", min=1, max=10).value == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yeah sure", True),
        ("yep that's right", True),
        ("correct", True),
        ("of course", True),
        ("no", False),
        ("Nope.", False),
        ("no that's wrong", False),
        ("not really", False),
        ("I don't", False),
    ],
)
def test_yes_no(text, expected):
    assert parse("yes_no", text).value is expected


@pytest.mark.parametrize("text", ["not sure", "maybe", "blue", "yes no"])
def test_yes_no_unclear(text):
    assert not parse("yes_no", text).ok


CHOICES = ["Cleaning", "Deep cleaning", "Whitening", "Check-up"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cleaning", "Cleaning"),
        ("deep cleaning please", "Deep cleaning"),
        ("I'd like the whitening", "Whitening"),
        ("a checkup", "Check-up"),
        ("check up", "Check-up"),
        ("whitenning", "Whitening"),
        ("the second one", "Deep cleaning"),
        ("option 3", "Whitening"),
        ("4", "Check-up"),
        ("the last one", "Check-up"),
    ],
)
def test_choice(text, expected):
    assert parse("choice", text, choices=CHOICES).value == expected


def test_choice_no_match():
    res = parse("choice", "something else", choices=CHOICES)
    assert not res.ok and res.code == "no_match"
    assert "Whitening" in res.error
    assert parse("choice", "option 9", choices=CHOICES).code == "no_match"


def test_text():
    assert parse("text", "  my tooth   hurts ").value == "my tooth hurts"


def test_unknown_slot_type():
    with pytest.raises(ValueError):
        parse("colour", "blue")
