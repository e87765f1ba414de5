"""The docs stay where readers look and stay true to the tree: every relative link in README.md
and docs/*.md resolves (file and heading), the README links every docs page and stays short,
its layout names exactly the modules of src/movierec, its configuration every setting, its
command table every `movierec` command, and `make help` every target of the Makefile."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from movierec.cli.main import build_parser
from movierec.core.sections import SECTIONS

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PACKAGE = REPO / "src" / "movierec"

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _links(path: Path) -> list[str]:
    """Relative link targets of a markdown file (code blocks and URLs left out)."""
    text = _FENCE.sub("", path.read_text())
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a markdown file, as GitHub spells them."""
    text = _FENCE.sub("", path.read_text())
    out = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def broken_links(path: Path) -> list[str]:
    """Each relative link of `path` whose file, or heading, does not exist."""
    broken = []
    for target in _links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        missing_heading = anchor and dest.suffix == ".md" and anchor not in _anchors(dest)
        if not dest.exists() or missing_heading:
            broken.append(target)
    return broken


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    assert broken_links(doc) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading) [web](https://example.org/x.md)\n"
        "[gone](missing.md) [no heading](there.md#nothing)\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md", "there.md#nothing"]


def test_readme_is_short_and_links_every_docs_page() -> None:
    assert len(README.read_text().splitlines()) <= 250
    linked = {(REPO / t.partition("#")[0]).resolve() for t in _links(README)}
    assert {p.resolve() for p in DOCS} - linked == set()


def _layout_block() -> list[str]:
    text = README.read_text()
    block = re.search(r"^```\nsrc/movierec/\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "README's layout block (```, then src/movierec/) is missing"
    return block.group(1).splitlines()


def layout_modules(lines: list[str]) -> set[str]:
    """The module paths a layout block names: two spaces of indent per level, a package as
    `name/`, a module as `name.py`, each followed by its description."""
    listed: set[str] = set()
    packages: list[str] = []
    for line in lines:
        entry = re.match(r"^((?:  )+)(\w+/|\w+\.py)(?:\s|$)", line)
        if not entry:
            continue
        depth = len(entry.group(1)) // 2
        name = entry.group(2)
        if name.endswith("/"):
            packages = [*packages[: depth - 1], name[:-1]]
        else:
            listed.add("/".join([*packages[: depth - 1], name]))
    return listed


def test_layout_modules_follow_the_indent() -> None:
    lines = ["  core/   x", "    a.py  y", "  serve/", "    live/  z", "      b.py", "    c.py  w"]
    assert layout_modules(lines) == {"core/a.py", "serve/live/b.py", "serve/c.py"}


def test_readme_layout_names_exactly_the_modules() -> None:
    listed = layout_modules(_layout_block())
    on_disk = {
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    }
    assert {"missing": on_disk - listed, "stale": listed - on_disk} == {
        "missing": set(),
        "stale": set(),
    }


def test_readme_configuration_names_every_setting() -> None:
    text = README.read_text()
    missing = [
        f.name
        for section in SECTIONS.values()
        for f in fields(section)
        if f"`_{f.name.upper()}`" not in text and f"`MOVIEREC_{f.name.upper()}`" not in text
    ]
    assert missing == []


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    out = []
    for action in parser._actions:  # argparse keeps its subcommands here, nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix}{name} ")
                out.extend(nested or [f"{prefix}{name}"])
    return out


def test_readme_command_table_names_every_command() -> None:
    text = README.read_text()
    commands = _commands(build_parser())
    assert "release evaluate" in commands and "data fetch" in commands
    missing = [c for c in commands if f"movierec {c}" not in text and f"`{c} " not in text]
    assert missing == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony
    targets = phony.group(1).split()
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(REPO), "help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = re.findall(r"^make (\S+)\s+- ", shown, re.MULTILINE)
    assert sorted(listed) == sorted(targets)
