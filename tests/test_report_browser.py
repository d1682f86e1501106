"""The report in a real browser: Debian's chromium, headless, with networking off, opens a report
from disk (file://) and must make no network request, log no console error, draw plotly's SVG
roots for every figure, animate and recolour the J&R embedding on click, and look like something
(a screenshot with pixel variance, the WebGL 3-D surface included).

By default the report is of a synthetic run holding every kind of product (so every figure type
is drawn), with hostile names; ``LOSSATLAS_REPORT_RUN=DIR`` checks the report of an existing run
instead (e.g. ``lossatlas demo --quick --out DIR``). Needs ``chromium``, ``chromedriver``
(``.ci/install-browser.sh``) and ``selenium``; without them the test skips, naming what is absent.
"""

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from lossatlas.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (run .ci/install-browser.sh)")
# URL schemes a self-contained page may use: itself, and what it builds in memory.
LOCAL = ("data:", "blob:", "about:")


def _browser(profile: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                # Any request that still tried to leave would go to a closed port and a resolver
                # that knows no host.
                "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                # WebGL (plotly's 3-D surface) in software: the GPU is off.
                "--enable-unsafe-swiftshader"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _requests(driver) -> list:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _variance(png: bytes) -> tuple[float, int]:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    return float(img.std()), len(np.unique(img.reshape(-1, 3), axis=0))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    given = os.environ.get("LOSSATLAS_REPORT_RUN")
    if given:
        return build_report(given, path=tmp_path_factory.mktemp("given") / "report.html")
    from test_report import full_run

    root = tmp_path_factory.mktemp("browser") / "run <b>&'"
    full_run(root)
    return build_report(root)


def test_report_in_headless_chromium(page, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path / "profile")
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                               {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
        driver.get("about:blank")
        driver.get_log("performance"), driver.get_log("browser")  # drop the start page's entries
        url = page.resolve().as_uri()
        driver.get(url)
        # Every plotly figure has drawn its SVG root.
        WebDriverWait(driver, 120, poll_frequency=0.5).until(lambda d: d.execute_script(
            "const g = document.querySelectorAll('.plotly-graph-div');"
            "return g.length > 0 && [...g].every(x => x.querySelector('svg.main-svg'));"))
        figures = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
        roots = driver.find_elements(By.CSS_SELECTOR, "svg.main-svg")
        assert len(figures) >= 1 and len(roots) >= len(figures)
        with pytest.raises(NoAlertPresentException):  # no hostile name ran as script
            driver.switch_to.alert.text
        if not os.environ.get("LOSSATLAS_REPORT_RUN"):
            from test_report import HOSTILE

            # ... and in the figures the names read as the user wrote them, character for character.
            texts = driver.execute_script("return [...document.querySelectorAll('svg text')].map(t => t.textContent);")
            assert any(HOSTILE in t for t in texts), [t for t in texts if "alert" in t][:3]

        # The (first) J&R figure: colour by loss, then play; the animation runs through its epochs.
        if '"colour: loss"' in page.read_text():
            animated = next(f for f in figures if "colour: loss" in f.text)
            buttons = {b.text.strip(): b for b in animated.find_elements(By.CSS_SELECTOR, "g.updatemenu-button")}
            assert {"colour: loss", "play", "pause"} <= set(buttons), sorted(buttons)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", animated)
            buttons["colour: loss"].click()
            WebDriverWait(driver, 10).until(lambda d: d.execute_script(
                "return arguments[0].data.some(t => t.marker && t.marker.coloraxis === 'coloraxis');", animated))
            active = "return arguments[0]._fullLayout.sliders[0].active;"
            last = driver.execute_script(active, animated)
            buttons["play"].click()
            WebDriverWait(driver, 10, poll_frequency=0.05).until(lambda d: d.execute_script(active, animated) != last)
            WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: d.execute_script(active, animated) == last)

        # A screenshot of the window and of the first (WebGL 3-D) figure are not blank.
        driver.execute_script("window.scrollTo(0, 0);")
        time.sleep(0.5)
        std, colours = _variance(driver.get_screenshot_as_png())
        assert std > 10 and colours > 50, (std, colours)
        index = driver.execute_script("return [...document.querySelectorAll('.plotly-graph-div')]"
                                      ".findIndex(g => g._fullLayout && g._fullLayout.scene);")
        if '"type":"surface"' in page.read_text():
            assert index >= 0, "no 3-D scene was laid out"
            surface = figures[index]
            assert surface.find_elements(By.CSS_SELECTOR, "canvas"), "the 3-D surface drew no canvas"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", surface)
            time.sleep(1.0)
            std, colours = _variance(surface.screenshot_as_png)
            assert std > 10 and colours > 50, ("the 3-D surface looks blank", std, colours)

        requests = _requests(driver)
        remote = [u for u in requests if u != url and not u.startswith(LOCAL)]
        assert not remote, f"the report made network requests: {remote[:5]}"
        assert url in requests
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"console errors: {errors[:5]}"
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    """A report shaped as the quick demo's (a caveat, a summary of minima and barriers, a plane per
    minimum), or the report of ``LOSSATLAS_REPORT_RUN`` (e.g. the quick demo itself)."""
    given = os.environ.get("LOSSATLAS_REPORT_RUN")
    if given:
        return build_report(given, path=tmp_path_factory.mktemp("given-demo") / "report.html")
    from test_report_overview import demo_like

    root = tmp_path_factory.mktemp("demo-like") / "run"
    demo_like(root)
    return build_report(root)


def test_summary_and_contour_colourbars_render(demo_page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path / "profile")
    try:
        driver.get(demo_page.resolve().as_uri())
        # plotly.js is inflated by the page, then every figure draws its SVG root.
        WebDriverWait(driver, 120, poll_frequency=0.5).until(lambda d: d.execute_script(
            "const g = document.querySelectorAll('.plotly-graph-div');"
            "return g.length > 0 && [...g].every(x => x.querySelector('svg.main-svg'));"))
        summary = driver.find_element(By.ID, "summary")
        assert summary.is_displayed()
        text = summary.text
        for words in ("The minima", "test acc.", "Barriers between minima", "barrier:"):
            assert words in text, (words, text[:400])
        if not os.environ.get("LOSSATLAS_REPORT_RUN"):
            assert "Read with care" in text and "51.6 %" in text
        # The summary sits at the top of the window, before any figure.
        top = driver.execute_script("return arguments[0].getBoundingClientRect().top;", summary)
        assert 0 <= top < 600, top
        # Every contour trace drew its colourbar, with its title, beside its panel.
        found = driver.execute_script(
            "return [...document.querySelectorAll('.plotly-graph-div')].map(g => ["
            "  g.data.filter(t => t.type === 'contour').length,"
            "  g.querySelectorAll('g.colorbar').length,"
            "  [...g.querySelectorAll('g.colorbar .cbtitle text')].map(t => t.textContent)]);")
        contours = [f for f in found if f[0] > 0]
        assert contours, found
        for n, bars, titles in contours:
            assert bars >= n and len(titles) >= n, (n, bars, titles)
            assert all("loss" in t or "accuracy" in t for t in titles), titles
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"console errors: {errors[:5]}"
    finally:
        driver.quit()
