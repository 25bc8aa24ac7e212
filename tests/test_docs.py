"""The documentation: the API reference lists every public name, and the site builds with --strict."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hierbayes as hb

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^::: (\S+)\s*$", re.MULTILINE)


def documented() -> dict[str, str]:
    """``{identifier: page}`` for every mkdocstrings directive of the API reference."""
    out = {}
    for page in sorted(API.glob("*.md")):
        for ident in DIRECTIVE.findall(page.read_text()):
            out[ident] = page.name
    return out


def resolve(identifier: str) -> object:
    """The object an identifier names, resolved as griffe does: submodules before attributes."""
    parts = identifier.split(".")
    obj: object = importlib.import_module(parts[0])
    path = parts[0]
    for part in parts[1:]:
        path = f"{path}.{part}"
        if hasattr(obj, "__path__") and importlib.util.find_spec(path) is not None:
            obj = importlib.import_module(path)
        else:
            obj = getattr(obj, part)
    return obj


def test_every_directive_resolves():
    for ident, page in documented().items():
        try:
            resolve(ident)
        except (ImportError, AttributeError) as err:
            pytest.fail(f"docs/api/{page}: '::: {ident}' names nothing ({err}); fix or remove it")


def test_every_public_name_is_in_the_api_reference():
    objects = [resolve(ident) for ident in documented()]
    missing = [name for name in hb.__all__ if not any(getattr(hb, name) is obj for obj in objects)]
    assert not missing, (
        f"hierbayes.__all__ names missing from the API reference: {missing}. Add '::: hierbayes.<name>' "
        "to the page of docs/api/ where it belongs, or '::: hierbayes.<module>.<name>' when a submodule "
        "has the same name (hierbayes.inference.sampling, hierbayes.summaries.prediction: mkdocstrings "
        "takes the module)."
    )


def test_api_pages_are_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in API.glob("*.md"):
        assert f"api/{page.name}" in config, f"docs/api/{page.name} is not in the nav of mkdocs.yml"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built with ``mkdocs build --strict`` (as ``make docs``); the test fails if it does not build."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return out


@pytest.mark.slow
def test_mkdocs_build_strict(site):
    for page in ("index.html", "api/fitting/index.html", "models/glmm/index.html", "migration/index.html"):
        assert (site / page).is_file()


_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
_SRC = re.compile(r"<(?:script|img|iframe|embed|source|audio|video|track)\b[^>]*?\bsrc=[\"']([^\"']+)", re.IGNORECASE)
_LINK = re.compile(r"<link\b([^>]*)>", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*[\"']?([^)\"']+)|@import\s+[\"']([^\"']+)", re.IGNORECASE)
_NAVIGATION_RELS = {"canonical", "prev", "next", "alternate", "author", "license"}


def external_resources(site_dir: Path) -> list[str]:
    """Scripts, style sheets, fonts, images and other loaded resources of the site that come from another server.

    Links a reader follows (``<a href>``, ``<link rel="prev">``) are not resources and are not listed.
    """
    found = []
    for path in sorted(site_dir.rglob("*")):
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            urls = _SRC.findall(text) + _CSS_URL.findall(text)
            for attrs in _LINK.findall(text):
                rel = re.search(r"\brel=[\"']([^\"']+)", attrs)
                href = re.search(r"\bhref=[\"']([^\"']+)", attrs)
                if href and not (rel and set(rel[1].lower().split()) <= _NAVIGATION_RELS):
                    urls.append(href[1])
        elif path.suffix in (".css", ".js"):
            urls = _CSS_URL.findall(path.read_text(encoding="utf-8", errors="replace")) if path.suffix == ".css" else []
        else:
            continue
        for url in urls:
            url = "".join(url) if isinstance(url, tuple) else url
            if _EXTERNAL.match(url.strip()):
                found.append(f"{path.relative_to(site_dir)}: {url}")
    return found


def test_external_resources_are_found(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="https://cdn.example/x.css"><script src="//cdn.example/m.js"></script>'
        '<link rel="prev" href="https://example.org/"><a href="https://github.com/">ok</a>'
        '<style>@font-face{src:url("https://fonts.example/f.woff2")}</style>'
    )
    (tmp_path / "b.css").write_text("@import 'https://fonts.example/css'; .k{src:url(fonts/local.woff2)}")
    assert external_resources(tmp_path) == [
        "a.html: //cdn.example/m.js",
        "a.html: https://fonts.example/f.woff2",
        "a.html: https://cdn.example/x.css",
        "b.css: https://fonts.example/css",
    ]


@pytest.mark.slow
def test_site_loads_nothing_from_another_server(site):
    """Readable offline: math by the vendored KaTeX, no web fonts, no CDN script or style sheet."""
    assert not external_resources(site), external_resources(site)
    assert (site / "vendor" / "katex" / "katex.min.js").is_file()


@pytest.mark.slow
def test_math_renders_offline(site):
    """Every formula of a page becomes KaTeX markup in a browser with no network (skipped without Chromium)."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("headless Chromium is not installed (make dev installs it where it can)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    page = site / "models" / "glmm" / "index.html"
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    n_math = dom.count('class="arithmatex"')
    assert n_math > 5
    assert dom.count('class="katex"') == n_math, "some formulas were not rendered by KaTeX"
    assert "katex-error" not in dom
