"""GET /report in a real browser: headless Chromium (Debian's package, driven through Debian's
chromium-driver by selenium) loads the page from a service on a loopback port, over a database
seeded with 320 issues (tests/report_support.py). It checks the figures shown, numbers on the bars,
against the outcomes the issues were built with; that the page does not scroll sideways at 1200 px
nor on a 390 px phone; and saves full-page screenshots as artefacts (the test's tmp dir, or
SOPGUARD_TEST_ARTEFACTS). SOPGUARD_REPORT_SCREENSHOT=docs/report.png refreshes the README's (the first 1200 x 1500 px).

Skipped, saying why, where Chromium, its driver or selenium is not installed
(`bash tests/servers/install.sh` installs them), or with SOPGUARD_TEST_BROWSER=0.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from app import create_app
from config.settings import Settings
from runtime.store import Store
from tests.report_support import SINCE, UNTIL, Expected, Figures, seed

TOKEN = "browser-token"
JIRA = "https://acme.atlassian.net"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTEFACTS = os.environ.get("SOPGUARD_TEST_ARTEFACTS", "")
SCREENSHOT = os.environ.get("SOPGUARD_REPORT_SCREENSHOT", "")

if os.environ.get("SOPGUARD_TEST_BROWSER") == "0":
    pytest.skip("browser tests off (SOPGUARD_TEST_BROWSER=0)", allow_module_level=True)
if not CHROMIUM or not DRIVER:
    pytest.skip(
        "needs chromium and chromedriver (Debian: chromium, chromium-driver; bash tests/servers/install.sh)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Expected]]:
    """A service on a loopback port over the seeded database, in a thread of this process."""
    data_dir = tmp_path_factory.mktemp("browser")
    expected = seed(Store(f"sqlite:///{data_dir / 'sopguard.db'}"))
    settings = Settings(data_dir=data_dir, report_token=TOKEN, insecure_dev=True, jira_url=JIRA)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="report-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", expected
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
    yield driver
    driver.quit()


def _open(browser: Any, url: str, width: int, height: int, *, mobile: bool) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.get(url)


def _overflow(browser: Any) -> int:
    """How far the page reaches past the viewport's width, in CSS pixels (0: no sideways scroll)."""
    return int(browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth"))


def _screenshot(browser: Any, width: int, name: str, tmp_path: Path) -> Path:
    """The whole page, at `width`, saved under the artefacts directory."""
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    folder = Path(ARTEFACTS) if ARTEFACTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert browser.save_screenshot(str(path)), f"could not write {path}"
    return path


def _bar(browser: Any, figure: str) -> list[tuple[str, str]]:
    """The segments of the bar beside a figure: (met | breached | running, the count shown on it)."""
    value = browser.find_element(By.CSS_SELECTOR, f'[data-figure="{figure}"]')
    bar = value.find_element(By.XPATH, "preceding-sibling::div[contains(@class, 'bar')][1]")
    return [(s.get_attribute("data-kind"), s.text) for s in bar.find_elements(By.CSS_SELECTOR, ".seg")]


def _expected_bar(clocks: Figures, kind: str) -> list[tuple[str, str]]:
    counts = clocks.first_response if kind == "first-response" else clocks.resolution
    return [(k, str(counts[k])) for k in ("met", "breached", "running") if counts[k]]


def test_the_page_shows_the_seeded_figures_and_fits_a_desktop_and_a_phone(
    served: tuple[str, Expected], browser: Any, tmp_path: Path
) -> None:
    base, expected = served
    url = f"{base}/report?since={SINCE}&until={UNTIL}"

    _open(browser, url, 1200, 1500, mobile=False)

    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Service report" in text and "Oct 12, 2026 to Nov 8, 2026" in text
    figure = browser.find_element(By.CSS_SELECTOR, '[data-figure="issues.total"]')
    assert figure.text == str(expected.total.issues)
    for kind in ("first-response", "resolution"):
        assert _bar(browser, f"{kind}.total") == _expected_bar(expected.total, kind)
        for (scope, level), figures in expected.groups.items():
            assert _bar(browser, f"{kind}.{scope}.{level}") == _expected_bar(figures, kind)
    for name, count in (("rejections", expected.total.rejections), ("reopens", expected.total.reopens)):
        assert browser.find_element(By.CSS_SELECTOR, f'[data-figure="{name}.total"]').text == str(count)
    assert expected.stage_most in browser.find_element(By.CSS_SELECTOR, '[data-figure="stage-most"]').text
    assert expected.guard_most in browser.find_element(By.CSS_SELECTOR, '[data-figure="guard-most"]').text
    links = {
        a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "tr[data-breach] a")
    }
    assert links and set(links) <= expected.breached_refs
    assert links.get("acme/desk#4", "https://github.com/acme/desk/issues/4").endswith("/acme/desk/issues/4")
    clipped = browser.execute_script(
        "return [...document.querySelectorAll('.seg')].filter(s => s.scrollWidth > s.clientWidth).length"
    )
    assert clipped == 0, "a number on a bar is cut off"
    assert _overflow(browser) <= 0
    if SCREENSHOT:  # the README's: the first screen, charts and figures
        browser.save_screenshot(SCREENSHOT)
    _screenshot(browser, 1200, "report-1200.png", tmp_path)

    _open(browser, url, 390, 844, mobile=True)

    assert _overflow(browser) <= 0
    assert browser.find_element(By.CSS_SELECTOR, '[data-figure="issues.total"]').text == str(
        expected.total.issues
    )
    _screenshot(browser, 390, "report-390.png", tmp_path)
