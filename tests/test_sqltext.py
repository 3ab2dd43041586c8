"""Splitting an SQL job file into statements the way PostgreSQL's lexer sees them (no database)."""

from __future__ import annotations

import re

import pytest

from bot.sqltext import Statement, split_statements


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_splits_on_semicolons_and_keeps_a_last_statement_without_one() -> None:
    assert texts("SELECT 1; SELECT 2;\nSELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"]
    assert texts("  SELECT 1  ;  ") == ["SELECT 1"]
    assert texts("") == []


def test_drops_empty_and_comment_only_statements() -> None:
    assert texts(";;SELECT 1;; ;\n;") == ["SELECT 1"]
    assert texts("SELECT 1;\n-- the end\n") == ["SELECT 1"]
    assert texts("SELECT 1; /* nothing */ ; -- more nothing") == ["SELECT 1"]
    assert texts("-- only a comment\n/* and another */") == []


def test_leading_and_trailing_comments_are_not_part_of_the_text_but_inner_ones_are() -> None:
    sql = "-- the report\nSELECT 1, -- one\n  2 /* two */ -- done\n;"
    assert texts(sql) == ["SELECT 1, -- one\n  2"]
    assert texts("SELECT /* a */ 1") == ["SELECT /* a */ 1"]


def test_single_quoted_strings() -> None:
    assert texts("SELECT 'a;b'; SELECT 'it''s; fine'") == ["SELECT 'a;b'", "SELECT 'it''s; fine'"]
    assert texts("SELECT '';SELECT ''''") == ["SELECT ''", "SELECT ''''"]


def test_a_backslash_is_ordinary_in_a_plain_string() -> None:
    # standard_conforming_strings = on: 'a\' is a whole string.
    assert texts("SELECT 'a\\'; SELECT 2") == ["SELECT 'a\\'", "SELECT 2"]


def test_escape_strings() -> None:
    assert texts("SELECT E'\\''; SELECT 2") == ["SELECT E'\\''", "SELECT 2"]
    assert texts("SELECT e'a\\';b'; SELECT 2") == ["SELECT e'a\\';b'", "SELECT 2"]
    assert texts("SELECT E'\\\\'; SELECT 2") == ["SELECT E'\\\\'", "SELECT 2"]
    assert texts("SELECT E'it''s;'; SELECT 2") == ["SELECT E'it''s;'", "SELECT 2"]


def test_an_identifier_ending_in_e_does_not_make_an_escape_string() -> None:
    # time'…' is a typed literal; its string is a plain one, so the backslash does not escape.
    assert texts("SELECT time'12:00\\'; SELECT 2") == ["SELECT time'12:00\\'", "SELECT 2"]


def test_double_quoted_identifiers() -> None:
    assert texts('SELECT 1 AS "a;b"; SELECT 2') == ['SELECT 1 AS "a;b"', "SELECT 2"]
    assert texts('SELECT 1 AS "say ""hi"";"; SELECT 2') == ['SELECT 1 AS "say ""hi"";"', "SELECT 2"]
    assert texts("SELECT 1 AS \"it's\"; SELECT 2") == ["SELECT 1 AS \"it's\"", "SELECT 2"]


def test_dollar_quoted_strings() -> None:
    assert texts("SELECT $$a;'b$$; SELECT 2") == ["SELECT $$a;'b$$", "SELECT 2"]
    body = "CREATE FUNCTION f() RETURNS int AS $fn$\nBEGIN\n  RETURN 1; -- $$ ; $x$\nEND;\n$fn$ LANGUAGE plpgsql"
    assert texts(body + ";\nSELECT f()") == [body, "SELECT f()"]
    assert texts("DO $_a1$ BEGIN PERFORM 1; END $_a1$; SELECT 2") == ["DO $_a1$ BEGIN PERFORM 1; END $_a1$", "SELECT 2"]


def test_parameters_and_identifiers_with_dollars_are_not_dollar_quotes() -> None:
    assert texts("SELECT $1; SELECT $2") == ["SELECT $1", "SELECT $2"]
    assert texts("SELECT a$b$c FROM t; SELECT 2") == ["SELECT a$b$c FROM t", "SELECT 2"]


def test_line_comments() -> None:
    sql = "SELECT 1 -- not the end; really\n, 2; SELECT 3"
    assert texts(sql) == ["SELECT 1 -- not the end; really\n, 2", "SELECT 3"]
    assert texts("SELECT 1; -- it's \"open\n SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert texts("SELECT 1 - -2; SELECT 2") == ["SELECT 1 - -2", "SELECT 2"]


def test_block_comments_nest() -> None:
    assert texts("/* a /* b */ still; comment */ SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert texts("SELECT /* x /* y */ ; */ 1; SELECT 2") == ["SELECT /* x /* y */ ; */ 1", "SELECT 2"]
    assert texts("SELECT 1 /* it's $$ \" -- */; SELECT 2") == ["SELECT 1", "SELECT 2"]


def test_comment_markers_inside_quotes_are_text() -> None:
    sql = "SELECT '--;', '/*;', \"--\", $$/*$$; SELECT 2"
    assert texts(sql) == ["SELECT '--;', '/*;', \"--\", $$/*$$", "SELECT 2"]


def test_line_numbers_count_from_first_line() -> None:
    sql = "\n\n  -- a comment\n  /* and\n another */ SELECT 1;\nSELECT\n2; SELECT 'a\nb'; SELECT 4"
    assert split_statements(sql, first_line=10) == [
        Statement(line=14, text="SELECT 1", keyword="SELECT"),
        Statement(line=15, text="SELECT\n2", keyword="SELECT"),
        Statement(line=16, text="SELECT 'a\nb'", keyword="SELECT"),
        Statement(line=17, text="SELECT 4", keyword="SELECT"),
    ]
    assert [s.line for s in split_statements("SELECT 1;\r\nSELECT 2")] == [1, 2]


def test_keyword_is_the_first_word_upper_cased() -> None:
    sql = "/* x */ begin; -- y\nwith t AS (SELECT 1) SELECT * FROM t; insert_things(); (SELECT 1); Commit"
    assert [s.keyword for s in split_statements(sql)] == ["BEGIN", "WITH", "INSERT_THINGS", "", "COMMIT"]
    assert split_statements('"select" 1')[0].keyword == ""


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1;\nSELECT 'abc;\n", "unterminated quoted string starting on line 8"),
        ("SELECT 1;\nSELECT 'it''s", "unterminated quoted string starting on line 8"),
        ("SELECT 1;\nSELECT E'\\'", "unterminated quoted string starting on line 8"),
        ('\n\nSELECT "a;b', "unterminated quoted identifier starting on line 9"),
        ("SELECT 1;\nDO $x$ BEGIN END $y$;", "unterminated dollar-quoted string starting on line 8"),
        ("SELECT $$\n;", "unterminated dollar-quoted string starting on line 7"),
        ("SELECT 1; /* a /* b */\n SELECT 2;", "unterminated /* comment starting on line 7"),
    ],
)
def test_unterminated_quotes_and_comments_name_the_line_where_they_began(sql: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        split_statements(sql, first_line=7)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",
        "-- head\nBEGIN; UPDATE t SET a = 'x;y' -- why\n WHERE b = $$;$$; COMMIT; -- tail",
        "SELECT E'\\';' AS \"a;\"\"b\" /* c /* d */ ; */ FROM t WHERE x = $1 ;;; SELECT 2 -- last",
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT f()\n/* done */",
        "SELECT 1 - -- minus\n 1",
    ],
)
def test_joining_the_statements_and_splitting_again_gives_the_same_texts(sql: str) -> None:
    first = texts(sql)
    assert first
    assert texts(";\n".join(first)) == first
