"""The HTML report: content, determinism, and what a user sees in a real browser (headless Chromium)."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.report.page import _effects_fit, render_report, report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ----------------------------------------------------------------------------- content


@pytest.fixture(scope="module")
def html_path(tiny_nested_fit, tmp_path_factory):
    return report(tiny_nested_fit, tmp_path_factory.mktemp("report") / "report.html")


@pytest.mark.slow
def test_report_is_self_contained(html_path):
    text = html_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, flags=re.IGNORECASE)
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:image/png;base64,|#)""", text)
    assert "Content-Security-Policy" in text
    assert text.count('src="data:image/png;base64,') >= 5


@pytest.mark.slow
def test_report_sections(tiny_nested_fit, html_path):
    text = html_path.read_text(encoding="utf-8")
    for section in ("model", "data", "summary", "diagnostics", "ppc", "fit-quality", "conditional", "variance",
                    "shrinkage", "effects", "settings"):
        assert f'<section id="{section}">' in text
    for table in ("priors", "data-groups", "summary-random", "summary-fixed", "diagnostics", "variance-partition",
                  "settings", "versions", "loo", "pareto-k", "bayes-r2"):
        assert f'<table id="{table}">' in text
    assert "<math" in text and "school:child" in text
    s = hb.summary(tiny_nested_fit)
    for name in s.fixed.index:
        assert f'<td class="l">{name}</td>' in text
    for problem in tiny_nested_fit.diagnostics.problems:
        assert problem.split(":")[0] in text
    assert "random_seed" in text and tiny_nested_fit.settings["versions"]["pymc"] in text
    # a Gaussian model has no odds-ratio section
    assert "E-BFMI" in text and "Rank plots of the fixed effects" in text and "baseline" not in text


@pytest.mark.slow
def test_report_is_deterministic_and_rebuilt_identically_from_a_saved_fit(tiny_nested_fit, html_path, tmp_path):
    first = html_path.read_bytes()
    assert render_report(tiny_nested_fit).encode("utf-8") == first
    hb.save(tiny_nested_fit, tmp_path / "posterior.nc")
    rebuilt = report(hb.load(tmp_path / "posterior.nc"), tmp_path / "report.html").read_bytes()
    assert rebuilt == first


@pytest.mark.slow
def test_report_of_a_collapsed_fit_without_stored_effects(tiny_nested_fit):
    post = tiny_nested_fit.posterior
    kept = post.drop_vars([v for v in post.data_vars if str(v).startswith("u_")])
    fit = dataclasses.replace(
        tiny_nested_fit,
        idata=xr.DataTree.from_dict({"posterior": kept}),
        settings={**tiny_nested_fit.settings, "method": "collapsed"},
    )
    text = render_report(fit)
    assert "saved without its random effects" in text
    assert '<section id="effects">' in text and '<section id="ppc">' in text
    again, _ = _effects_fit(fit)  # the effects drawn for the report are seeded
    first, _ = _effects_fit(fit)
    assert again.posterior["u_school:child"].equals(first.posterior["u_school:child"])


# ----------------------------------------------------------------------------- a real browser


class _DevTools:
    """Minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (fds 3 and 4).

    Messages are JSON objects separated by NUL bytes; no port, no websocket library needed.
    """

    def __init__(self, profile: str) -> None:
        read_end, self._to_chrome = os.pipe()
        self._from_chrome, write_end = os.pipe()
        # Chromium's ends, moved to fds >= 10 (never 3 or 4), which bash then puts at the fds 3 and 4
        # that --remote-debugging-pipe reads and writes.
        to_chrome_r = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, 10)
        from_chrome_w = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(read_end)
        os.close(write_end)
        redirect = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", redirect, "bash", CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._next_id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait(self, match, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if match(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk

    def close(self) -> None:
        try:
            os.write(self._to_chrome, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)


_PAGE_CHECK = """JSON.stringify({
  images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth})),
  fixedRows: document.querySelectorAll('#summary-fixed tbody tr').length,
  fixedText: (document.querySelector('#summary-fixed') || {}).innerText || '',
  randomRows: document.querySelectorAll('#summary-random tbody tr').length,
  math: document.querySelectorAll('math').length,
  resources: performance.getEntriesByType('resource').map(e => e.name.slice(0, 60)),
})"""


def open_in_chromium(path: Path) -> dict:
    """Load ``path`` in headless Chromium; return what the page did (requests, console, DOM facts)."""
    with tempfile.TemporaryDirectory(prefix="hb-chromium-") as profile:
        tools = _DevTools(profile)
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                tools.send(f"{domain}.enable", session=session)
            url = path.resolve().as_uri()
            tools.send("Page.navigate", {"url": url}, session=session)
            tools.wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session, 60)
            facts = json.loads(
                tools.send("Runtime.evaluate", {"expression": _PAGE_CHECK, "returnByValue": True}, session=session)[
                    "result"
                ]["value"]
            )
        finally:
            tools.close()
    events = [e for e in tools.events if e.get("sessionId") == session]
    requests = [e["params"]["request"]["url"][:100] for e in events if e["method"] == "Network.requestWillBeSent"]
    errors = [json.dumps(e["params"])[:300] for e in events if (
        e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    )]
    return {"url": url, "requests": requests, "errors": errors, **facts}


needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (make dev does when it can)",
)


@needs_chromium
def test_browser_check_detects_network_requests_and_errors(tmp_path):
    """The harness itself: a page that loads an external image must be caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>'
        '<img src="http://127.0.0.1:9/missing.png"><script>console.error("boom")</script></body></html>'
    )
    seen = open_in_chromium(page)
    assert any(u.startswith("http://127.0.0.1:9/") for u in seen["requests"])
    assert seen["errors"]
    assert any(img["width"] == 0 for img in seen["images"])


@needs_chromium
@pytest.mark.slow
def test_report_in_headless_chromium(tiny_nested_fit, html_path):
    seen = open_in_chromium(html_path)
    assert seen["errors"] == []
    external = [u for u in seen["requests"] if u != seen["url"] and not u.startswith("data:")]
    assert external == [], f"the report made network requests: {external}"
    assert [u for u in seen["resources"] if not u.startswith("data:")] == []
    assert seen["images"] and all(img["complete"] and img["width"] > 0 for img in seen["images"])
    s = hb.summary(tiny_nested_fit)
    assert seen["fixedRows"] == len(s.fixed)
    assert all(name in seen["fixedText"] for name in s.fixed.index)
    assert seen["randomRows"] >= len(tiny_nested_fit.design.groups)
    assert seen["math"] >= 3


def test_makefile_dev_installs_chromium():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert "apt-get install -y chromium" in makefile
