"""A real browser for the console tests: Debian's Chromium, headless, driven by Playwright.

The app is served by werkzeug on 127.0.0.1 in a thread, on the suite's own database. Chromium is started with
its background networking off, so nothing leaves the machine. Screenshots go to tests/.screenshots/, emptied at
the start of every run, so what is there is what the last run saw.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / ".screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
_CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free port of 127.0.0.1; answers its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium. Missing Chromium fails the tests: `make test-all` (and `make chromium`) installs it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `make chromium` installs Debian's (apt-get install "
                    f"chromium), or LOYALTY_CHROMIUM names another", pytrace=False)
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=_CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _tab(browser, live_server: str, **options):
    context = browser.new_context(base_url=live_server, **options)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def desktop(browser, live_server):
    """A fresh desktop-sized browser tab with its own cookies."""
    yield from _tab(browser, live_server, viewport=DESKTOP)


@pytest.fixture
def phone(browser, live_server):
    """A fresh phone-sized browser tab (390 by 844, touch) with its own cookies."""
    yield from _tab(browser, live_server, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)


def screenshot(page, name: str) -> Path:
    """Save the whole page as tests/.screenshots/<name>.png."""
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Checked in the page itself: what an automated accessibility audit would flag first.
_AUDIT = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("<html> has no lang");
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) problems.push(`${h1} h1 headings`);
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
      problems.push(`unlabelled ${el.tagName.toLowerCase()} name=${el.name}`);
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    const name = (el.innerText || el.getAttribute("aria-label") || "").trim();
    if (!name) problems.push(`empty ${el.outerHTML.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll("svg:not([aria-hidden=true])")) {
    if (!el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")) problems.push("svg without a name");
  }
  for (const el of document.querySelectorAll("table")) {
    if (!el.querySelector("th")) problems.push("table without headers");
  }
  const ids = [...document.querySelectorAll("[id]")].map(e => e.id);
  const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dupes.length) problems.push(`duplicate ids ${[...new Set(dupes)].join(", ")}`);
  return problems;
}"""


def audit(page) -> list[str]:
    """Accessibility problems on the page: lang, one h1, labelled inputs, named buttons, links and charts,
    tables with headers, unique ids. An empty list passes."""
    return page.evaluate(_AUDIT)


def look(page, name: str) -> None:
    """Screenshot the page and check its markup: every page a browser test visits goes through here."""
    screenshot(page, name)
    assert audit(page) == [], f"{name}: {audit(page)}"
    # Against the tab's own width: on a phone Chromium zooms out, so window.innerWidth grows with the page.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, f"{name}: the page is {width}px wide and scrolls sideways"
