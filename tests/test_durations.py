"""A pause's duration: what the OpenAPI document's pattern says is exactly what is accepted."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.durations import PAUSE_PATTERN, parse_duration
from bot.errors import BadInput

MATCHES = re.compile(PAUSE_PATTERN)


@given(st.from_regex(PAUSE_PATTERN, fullmatch=True))
def test_every_duration_the_pattern_allows_is_a_pause_longer_than_zero(text: str) -> None:
    assert parse_duration(text).total_seconds() > 0


@given(st.text(alphabet="0123456789dhmsDHMS .-x", max_size=14))
def test_a_word_the_pattern_refuses_is_refused_and_one_it_allows_is_taken(text: str) -> None:
    if MATCHES.match(text):
        assert parse_duration(text).total_seconds() > 0
    else:
        with pytest.raises(BadInput):
            parse_duration(text)


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("1h30m", 5400), ("0h30m", 1800), ("2H", 7200),
                                                ("999d", 999 * 86400), ("1d2h3m4s", 93784)])
def test_the_forms_people_type(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(("text", "why"), [("0", "not a duration"), ("0m", "longer than zero"),
                                           ("1000d", "too long a pause"), ("1.5h", "not a duration"),
                                           (" 2h", "without spaces"), ("90min", "not a duration"),
                                           ("", "not a duration")])
def test_what_is_refused_says_why(text: str, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        parse_duration(text)
