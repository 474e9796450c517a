"""The API reference covers the whole public surface; `.ci/run` builds it in strict mode."""

from __future__ import annotations

import re
from pathlib import Path

import accountapi
import accountapi.gates
import accountapi.testing

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(r"^::: (\S+)$", re.M)


def _documented() -> set[str]:
    found: set[str] = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        found.update(_DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def test_every_public_name_has_a_reference_entry() -> None:
    """A name added to __all__ without a `::: accountapi.Name` entry fails here."""
    documented = _documented()
    public = {f"accountapi.{name}" for name in accountapi.__all__}
    public |= {f"accountapi.testing.{name}" for name in accountapi.testing.__all__}
    public |= {f"accountapi.gates.{name}" for name in accountapi.gates.__all__}
    assert sorted(public - documented) == []
    assert sorted(documented - public) == []  # nothing documented that is not public


def test_the_guide_is_the_readme_and_every_page_is_in_the_nav() -> None:
    assert '--8<-- "README.md"' in (ROOT / "docs" / "index.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, page
