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
        "has the same name (hierbayes.inference.sampling, hierbayes.summaries.prediction: mkdocstrings takes the module)."
    )


def test_api_pages_are_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in API.glob("*.md"):
        assert f"api/{page.name}" in config, f"docs/api/{page.name} is not in the nav of mkdocs.yml"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for page in ("index.html", "api/fitting/index.html", "models/glmm/index.html"):
        assert (tmp_path / "site" / page).is_file()
