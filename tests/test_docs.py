"""The API reference covers the whole public surface and reads as a reference: links, not
Sphinx roles; fields with their types; no tracker language. `.ci/run` builds it in strict
mode too."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

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


_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|mod|attr|exc|obj|const|ref|term):")
_TRACKER = re.compile(r"\bissues? \d+|\bthe issue'?s?\b", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation built as `.ci/run` builds it (strict: an unresolved reference fails)."""
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    return out


def _text(page: Path) -> str:
    """A page's visible text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def test_no_sphinx_role_shows_literally_in_the_built_site(site: Path) -> None:
    """A `:class:`/`:meth:`/... left in a docstring renders as literal text; none may."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    shown = {
        str(page.relative_to(site)): _ROLE.findall(_text(page))
        for page in pages
        if _ROLE.search(_text(page))
    }
    assert shown == {}
    assert _ROLE.search(" see :meth: aclose ")  # the check finds what it looks for


def test_cross_references_render_as_links(site: Path) -> None:
    """Names in docstrings link to their entries (the Clients page links Timeout's)."""
    clients = (site / "reference" / "clients" / "index.html").read_text(encoding="utf-8")
    assert 'href="../configuration/#accountapi.Timeout"' in clients


def test_models_and_errors_list_their_fields_with_types(site: Path) -> None:
    """Every Profile field, and the attributes a handler reads on a status error (its
    own and inherited), have an entry; AccountClient shows its constructor's signature."""
    profile = (site / "reference" / "profile" / "index.html").read_text(encoding="utf-8")
    for field in attrs.fields(accountapi.Profile):
        assert f'id="accountapi.Profile.{field.name}"' in profile, field.name
    errors = (site / "reference" / "errors" / "index.html").read_text(encoding="utf-8")
    for name in (
        "status",
        "code",
        "headers",
        "request_id",
        "retry_after",
        "attempts",
        "key_hint",
        "retryable",
    ):
        assert f'id="accountapi.APIStatusError.{name}"' in errors, name
        assert f'id="accountapi.RateLimitError.{name}"' in errors, name
    clients = _text(site / "reference" / "clients" / "index.html")
    assert re.search(r"AccountClient\s*\(\s*api_key\s*:", clients)


def test_user_docs_speak_no_tracker_language() -> None:
    """README and the pages under docs/ are for users: no "issue 13", no "the issue's"."""
    sources = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    sources += [p for p in (ROOT / "docs").rglob("*.md") if p.name != "CHANGELOG.md"]
    found = {
        str(p.relative_to(ROOT)): _TRACKER.findall(p.read_text(encoding="utf-8"))
        for p in sources
        if _TRACKER.search(p.read_text(encoding="utf-8"))
    }
    assert found == {}
    assert _TRACKER.search("after issue 13's changes")  # the check finds what it looks for
