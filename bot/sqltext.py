"""Splitting the body of an SQL job file (one or more PostgreSQL statements) into statements.

The job runner sends all statements but the last in one round trip and fetches the rows of the
last, so it needs to know where each statement ends. A ``;`` ends a statement only where
PostgreSQL's lexer would see it: not inside a single-quoted string (``'it''s'``, or ``E'\\''``
where a backslash escapes the next character), a double-quoted identifier (``"a;b"``), a
dollar-quoted string (``$$ … $$``, ``$tag$ … $tag$``), a line comment (``-- …``) or a block
comment (``/* … */``, which nests). Plain strings follow ``standard_conforming_strings = on``, the
default since PostgreSQL 9.1: a backslash in ``'…'`` is an ordinary character.

A statement's text runs from its first to its last character that is not whitespace or comment:
comments between them are kept, those before or after it are not (a trailing ``-- …`` kept in the
text would swallow a ``;`` put after it). Statements that are only whitespace and comments are
dropped.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# "$tag$" or "$$"; "$1" (a parameter) does not match.
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters that continue an identifier. PostgreSQL allows "$" in identifiers, so the "$" of
# "a$b$" and the quote of "name'x'" follow an identifier rather than open a quote.
_IDENT_CHARS = frozenset(string.ascii_letters + string.digits + "_$")


@dataclass(frozen=True)
class Statement:
    line: int  # 1-based line in the file of the statement's first character that is not blank or comment
    text: str  # without its terminating ";", leading and trailing whitespace and comments
    keyword: str  # its first word, upper-cased ("SELECT", "WITH", "BEGIN"); "" if it starts otherwise, as "(SELECT 1)"


def split_statements(text: str, first_line: int = 1) -> list[Statement]:
    """The statements of ``text``, whose first line is line ``first_line`` of its file.

    The last statement needs no ``;``. Raises ValueError for an unterminated string, quoted
    identifier, dollar-quoted string or block comment, naming the line where it began.
    """
    statements: list[Statement] = []
    start: int | None = None  # index of the current statement's first significant character
    end = 0  # index just past its last significant character
    i = 0
    while i < len(text):
        char = text[i]
        if char == ";":
            if start is not None:
                statements.append(_statement(text, start, end, first_line))
                start = None
            i += 1
        elif char.isspace():
            i += 1
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif text.startswith("/*", i):
            i = _block_comment_end(text, i, first_line)
        else:
            if start is None:
                start = i
            i = end = _token_end(text, i, first_line)
    if start is not None:
        statements.append(_statement(text, start, end, first_line))
    return statements


def _statement(text: str, start: int, end: int, first_line: int) -> Statement:
    word = _WORD.match(text, start)
    return Statement(_line(text, start, first_line), text[start:end], word.group().upper() if word else "")


def _line(text: str, index: int, first_line: int) -> int:
    return first_line + text.count("\n", 0, index)


def _token_end(text: str, i: int, first_line: int) -> int:
    """The index just past the quoted token starting at ``i``, or past ``text[i]`` if none does."""
    after_ident = i > 0 and text[i - 1] in _IDENT_CHARS
    char = text[i]
    if char == "'":
        # E'…' (or e'…') is an escape string, unless the E ends a longer identifier ("time'…'").
        escape = after_ident and text[i - 1] in "Ee" and (i < 2 or text[i - 2] not in _IDENT_CHARS)
        return _quoted_end(text, i, first_line, escape, "quoted string")
    if char == '"':
        return _quoted_end(text, i, first_line, False, "quoted identifier")
    if char == "$" and not after_ident and (match := _DOLLAR_QUOTE.match(text, i)):
        close = text.find(match.group(), match.end())
        if close < 0:
            raise ValueError(f"unterminated dollar-quoted string starting on line {_line(text, i, first_line)}")
        return close + len(match.group())
    return i + 1


def _quoted_end(text: str, i: int, first_line: int, backslash_escapes: bool, what: str) -> int:
    quote = text[i]
    j = i + 1
    while j < len(text):
        if backslash_escapes and text[j] == "\\":
            j += 2
        elif text[j] != quote:
            j += 1
        elif text.startswith(quote, j + 1):  # a doubled quote stands for one
            j += 2
        else:
            return j + 1
    raise ValueError(f"unterminated {what} starting on line {_line(text, i, first_line)}")


def _block_comment_end(text: str, i: int, first_line: int) -> int:
    # Block comments nest in PostgreSQL (unlike in C): count the depth.
    depth, j = 0, i
    while j < len(text):
        if text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise ValueError(f"unterminated /* comment starting on line {_line(text, i, first_line)}")
