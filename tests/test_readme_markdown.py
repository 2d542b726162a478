"""The README and a benchmark's tables.md parse as Markdown (CommonMark + GFM tables, as GitHub renders):
no unbalanced emphasis left as literal asterisks, table titles spelled as the tables name them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]


def literal_emphasis(text: str) -> list[str]:
    """Text (outside code) where ``**`` or ``__`` survived parsing: emphasis that did not close."""
    md = MarkdownIt("commonmark").enable("table")
    bad = []
    for token in md.parse(text):
        for child in token.children or []:
            if child.type == "text" and ("**" in child.content or "__" in child.content):
                bad.append(child.content)
    return bad


def test_the_checker_finds_unbalanced_emphasis():
    assert literal_emphasis("**Table 1: fine** and **a bold cell**") == []
    assert literal_emphasis("**Table 1: opened, never closed\n\n| a |\n|---|\n| **b |") != []


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_readme_emphasis_is_balanced_and_titles_are_spelled(page):
    text = (ROOT / page).read_text()
    assert literal_emphasis(text) == []
    assert not re.search(r"Table \d:\S", text)  # "Table 2:multi-modal"
    # every table title as tables.md writes it
    for title in re.findall(r"\*\*(Table \d: [^*]+)\*\*", text):
        from cmkd.results.cells import TITLES

        assert title in TITLES.values(), title


def test_every_relative_link_of_the_readme_and_docs_resolves():
    """The short README sends readers to docs/: every relative link (and image) there points at a file."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
