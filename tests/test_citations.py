"""Comments and docs cite what a reader of the repository can open: public sources, or this repository's files.

The project's design notes outside the repository (its reference shelf) are not cited by name; a fact taken from
them is restated in `docs/` and cited there. Every `docs/<file>.md` that is cited exists, and every section of
`docs/tgi-wire.md` that is cited by number exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Documents that live outside this repository; a citation of one cannot be followed.
ELSEWHERE = re.compile(
    r"\b(tgi-protocol|openai-contract|PRODUCT|easyllm|peers|BENCHMARK|apis-2026|ARCHITECTURE|style-anchors)\.md\b"
    r"|shared/(docs|fixtures)"
)
DOCS_CITATION = re.compile(r"\bdocs/([\w.-]+\.md)(?: §(\d+))?")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".jinja", ".sh", ".cfg", ""}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / name for name in listed.splitlines()]
    return [
        path for path in paths if path.suffix in TEXT_SUFFIXES and path.is_file() and path.name != "test_citations.py"
    ]


def lines_of(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:  # a binary file without a suffix
        return []


def sections(doc: Path) -> set[str]:
    return {match.group(1) for match in re.finditer(r"^## (\d+)\.", doc.read_text(), flags=re.MULTILINE)}


def test_no_citation_of_a_document_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked_text_files()
        for number, line in enumerate(lines_of(path), start=1)
        if ELSEWHERE.search(line)
    ]
    assert hits == []


def test_every_cited_repository_doc_and_section_exists() -> None:
    missing = []
    cited = 0
    for path in tracked_text_files():
        for number, line in enumerate(lines_of(path), start=1):
            for match in DOCS_CITATION.finditer(line):
                cited += 1
                doc = ROOT / "docs" / match.group(1)
                if not doc.is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{match.group(1)}")
                elif match.group(2) is not None and match.group(2) not in sections(doc):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: docs/{match.group(1)} §{match.group(2)}")
    assert cited > 10  # the pattern still finds the citations there are
    assert missing == []


def test_the_check_finds_a_citation_of_an_outside_document() -> None:
    assert ELSEWHERE.search("(see tgi-protocol.md §2.5)")
    assert ELSEWHERE.search("as PRODUCT.md says")
    assert not ELSEWHERE.search("see docs/tgi-wire.md §2 and README.md")
