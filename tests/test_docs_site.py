"""The docs site as a reader opens it: ``site/index.html`` from the file system, no network.

The site is built once per test session (``mkdocs build --strict``, as ``make docs``) into a temporary folder.
The file checks read the built HTML; the browser tests (marked ``browser``, run by ``make test``) open every page
in headless Chromium from ``file://`` with every other request aborted, and use the navigation and the search.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs")  # the docs extra (make install); make test runs these
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
#: Sphinx's cross-reference roles, as they would show in a page's text
RAW_ROLE = re.compile(r":(?:py:)?(?:func|meth|mod|class|data|attr|exc|obj|const|ref):\s*`?")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site, once for the session (the xdist workers share it under a lock)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's, never an older one
    out = shared / "docs-site"
    with FileLock(str(shared / "docs-site.lock")):
        if not (out / "index.html").is_file():
            env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
            r = subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert r.returncode == 0, r.stderr[-4000:]
    return out


def pages(site: Path) -> list[Path]:
    """Every page a reader opens (404.html is for a web server, whose root is the site's: absolute links)."""
    return sorted(p for p in site.rglob("*.html") if p != site / "404.html")


class _Refs(HTMLParser):
    """The URLs a page loads or links to, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.loads: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag in ("script", "img", "iframe", "source") and a.get("src"):
            self.loads.append(a["src"] or "")
        if tag == "link" and a.get("href"):
            self.loads.append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def _read(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(encoding="utf-8"))
    return refs


def test_the_api_reference_shows_cross_references_not_sphinx_roles(site: Path) -> None:
    raw = {}
    for page in pages(site):
        found = RAW_ROLE.findall(" ".join(_read(page).text))
        if found:
            raw[str(page.relative_to(site))] = found[:5]
    assert not raw, raw
    # the roles became links where their target is on the site: report()'s :func:`compare_html`, for one
    runs = (site / "api" / "runs.html").read_text(encoding="utf-8")
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#graphtrace\.report\.compare_html"', runs)
    links = sum(
        len(re.findall(r'class="autorefs autorefs-internal"', p.read_text(encoding="utf-8")))
        for p in (site / "api").glob("*.html")
    )
    assert links >= 50, links


def test_every_link_of_every_page_names_a_file_of_the_site(site: Path) -> None:
    # from file:// a link to a folder opens a directory listing: every link must name its .html file
    docs = ROOT / "docs"
    sources = [s for s in docs.rglob("*.md") if "vendor" not in s.parts] + list(docs.glob("notebooks/*.ipynb"))
    built = {p.relative_to(site).with_suffix("") for p in pages(site)}
    assert built == {s.relative_to(docs).with_suffix("") for s in sources}
    bad = []
    for page in pages(site):
        refs = _read(page)
        for url in refs.links + refs.loads:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                if url in refs.loads:
                    bad.append(f"{page.relative_to(site)} loads {url}")
                continue  # a link a reader may follow (the changelog's, an issue's), never loaded by the page
            if parts.scheme or not parts.path:
                continue  # mailto:, data:, javascript: or a #fragment of the page itself
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.is_file():
                bad.append(f"{page.relative_to(site)} -> {url} ({'a folder' if target.is_dir() else 'missing'})")
    assert not bad, "\n".join(bad[:40])


#: nbconvert's loader in each notebook page: it imports mermaid from a CDN only when the page has a diagram
MERMAID_LOADER = re.compile(
    r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded", async \(\) => \{\s*'
    r'const diagrams = document\.querySelectorAll\("\.jp-Mermaid > pre\.mermaid"\);.*?</script>',
    flags=re.S,
)


def test_no_page_or_stylesheet_names_a_font_service_or_a_cdn(site: Path) -> None:
    hosts = re.compile(
        r"fonts\.googleapis|fonts\.gstatic|unpkg\.com|cdn\.jsdelivr|cdnjs\.cloudflare"
        r"|https?://[^\s\"')]*\.(?:js|mjs|css|woff2?)\b"  # any other script, stylesheet or font
    )
    bad = []
    for f in site.rglob("*"):
        if f.suffix not in (".html", ".css"):
            continue
        text = f.read_text(encoding="utf-8")
        assert 'class="jp-Mermaid' not in text, f"{f}: a mermaid diagram would load mermaid from a CDN"
        if hosts.search(MERMAID_LOADER.sub("", text)):
            bad.append(str(f.relative_to(site)))
    assert not bad, bad
    # the search works from file://: its index travels as a script, the worker through the vendored shim
    assert (site / "search" / "search_index.js").is_file()
    assert '<script src="vendor/iframe-worker/shim.js">' in (site / "index.html").read_text(encoding="utf-8")


# ---- in Chromium ------------------------------------------------------------------------------------------


class Tab:
    """A page whose every non-file request is aborted and recorded, with its console errors."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 800) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


@pytest.mark.browser
def test_every_page_opens_from_file_with_no_request_out_and_no_console_error(browser: Any, site: Path) -> None:
    tab = Tab(browser)
    seen = {}
    for page in pages(site):
        tab.page.goto(page.as_uri(), wait_until="load")
        tab.page.wait_for_timeout(50)
        seen[str(page.relative_to(site))] = tab.page.title()
    assert len(seen) == len(pages(site)) >= 24
    assert tab.blocked == [], tab.blocked[:10]
    assert tab.errors == [], tab.errors[:10]
    assert [u for u in tab.failed if not u.startswith("file:") or "404" not in u] == [], tab.failed[:10]
    tab.page.close()


@pytest.mark.browser
@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_navigation_and_the_search_work_from_file(browser: Any, site: Path, size: tuple[int, int]) -> None:
    tab = Tab(browser, *size)
    tab.page.goto((site / "index.html").as_uri())
    # the sidebar's link to a guide page opens that page (not a folder listing)
    tab.page.locator("nav.md-nav--primary a.md-nav__link", has_text="A training run as a dataset").first.click()
    tab.page.wait_for_load_state("load")
    assert tab.page.url.endswith("/guide/runs.html"), tab.page.url
    assert tab.page.locator("article h1").first.inner_text().startswith("A training run as a dataset")
    # the search box is shown and finds pages: type, read the results, follow one
    box = tab.page.locator("input.md-search__input")
    assert box.is_visible()  # in the header at these widths
    box.click()
    tab.page.keyboard.type("topological", delay=30)  # as a person types (the search reads key events)
    results = tab.page.locator("li.md-search-result__item a")
    results.first.wait_for(state="visible", timeout=30_000)
    assert results.count() >= 1
    hrefs = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
    assert all(".html" in h for h in hrefs), hrefs
    results.first.click()
    tab.page.wait_for_load_state("load")
    url = urlsplit(tab.page.url)
    assert url.scheme == "file" and Path(unquote(url.path)).is_file(), tab.page.url
    assert tab.blocked == [] and tab.errors == [], (tab.blocked, tab.errors)
    tab.page.close()
