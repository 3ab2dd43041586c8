"""The README and docs/: short enough to read, every link goes somewhere, and every environment
variable the code reads is documented in docs/configuration.md — and none that it does not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Names the code reads from the environment: quoted, with the prefixes foojob's variables have.
READ = re.compile(r"\"((?:FOOJOB|SLACK|DATABASE|LOG|CONTROL)_[A-Z_]+|PORT|HOST|DYNO)\"")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, in_code = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#+ (.*)$", line)):
            anchors.add(_slug(m.group(1)))
    return anchors


def _links(page: Path) -> list[str]:
    text, in_code, out = page.read_text(), False, []
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            out += LINK.findall(line)
    return out


def test_the_readme_is_short_and_every_document_is_there() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= 15_000, f"README.md is {size} bytes"
    names = {p.name for p in DOCS}
    assert names >= {"configuration.md", "slack.md", "http-api.md", "cli.md", "jobs.md", "schedules.md",
                     "operations.md", "guarantees.md", "performance.md", "design.md"}
    readme = (ROOT / "README.md").read_text()
    assert all(f"docs/{name}" in readme for name in names)  # the README's table links each


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for link in _links(page):
            if re.match(r"^[a-z]+:", link):  # https:, mailto:
                continue
            target, _, fragment = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
                broken.append(f"{page.name}: {link} (no such heading)")
    assert not broken, broken


def test_every_variable_the_code_reads_is_documented_and_only_those() -> None:
    read = set()
    for source in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]:
        read |= set(READ.findall(source.read_text()))
    documented = set()
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    assert read - documented == set(), f"read but not in docs/configuration.md: {sorted(read - documented)}"
    assert documented - read == set(), f"in docs/configuration.md but never read: {sorted(documented - read)}"


# The surfaces, each with the modules that make it up (which may import each other).
SURFACES = {"http": {"http", "openapi"}, "cli": {"cli", "__main__"}, "slack": {"slack"}}


def _imports() -> dict[str, set[str]]:
    """Each module of bot/ (``slack`` for bot/slack/*), and the modules of bot/ it imports."""
    graph: dict[str, set[str]] = {}
    for source in (ROOT / "bot").rglob("*.py"):
        parts = source.relative_to(ROOT / "bot").with_suffix("").parts
        name = parts[0]
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bot.")}
        found.discard(name)
    return graph


def test_the_rooms_of_design_md_hold() -> None:
    graph = _imports()
    every_surface = set().union(*SURFACES.values())
    assert set(graph) >= every_surface | {"app", "control", "runner"}
    for module, imported in graph.items():
        if module == "app":
            continue
        own = next((members for members in SURFACES.values() if module in members), set())
        others = imported & (every_surface - own)
        assert not others, f"bot/{module} imports {sorted(others)}, of another surface"
