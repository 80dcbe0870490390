"""The web page at / in a real browser (Debian's chromium driven by selenium) against a live server: upload a
Kodak crop, wait for the encode, check the numbers shown against the API, zoom, and save a screenshot."""

from __future__ import annotations

import importlib.util
import os
import shutil

import httpx
import pytest

from svc_helpers import REPO, LiveServer

CROP = REPO / "tests" / "fixtures" / "kodim23_crop96x64.png"
ITERATIONS = "100"  # a fast, rough encode: the page is under test, not the codec
BPP = "1.0"  # enough Gaussians on the 96x64 crop for the screenshot to show a picture


def _browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    reason = None
    if not (chromium and driver):
        reason = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    elif importlib.util.find_spec("selenium") is None:
        reason = "selenium is not installed (pip install -e '.[test]')"
    if reason is None:
        return chromium, driver
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs what it needs)")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = _browser_paths()
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,1300", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _browser_paths()  # no server to start when the browser test cannot run
    root = tmp_path_factory.mktemp("page")
    with LiveServer(root / "data", root / "server.log") as live:
        yield live


def _encode_in_page(browser, url: str):
    """Open the page, encode the crop at BPP and ITERATIONS, wait until everything is shown; the result panel."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(url + "/")
    assert "gsic" in browser.title
    browser.find_element(By.ID, "file").send_keys(str(CROP))
    assert not browser.find_element(By.ID, "bpp").is_displayed()
    Select(browser.find_element(By.ID, "rate")).select_by_value("bpp")
    bpp = browser.find_element(By.ID, "bpp")
    bpp.clear()
    bpp.send_keys(BPP)
    browser.find_element(By.ID, "iterations").send_keys(ITERATIONS)
    browser.find_element(By.ID, "encode").click()

    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 120, poll_frequency=0.2).until(
        lambda d: result.get_attribute("data-ready") == "true" or d.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    return result


def test_the_page_encodes_shows_the_api_numbers_and_zooms_from_the_gaussians(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    result = _encode_in_page(browser, server.url)
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731

    with httpx.Client(base_url=server.url, timeout=30) as http:
        job = http.get(f"/jobs/{result.get_attribute('data-job')}").json()
        assert job["status"] == "succeeded" and job["parameters"]["iterations"] == int(ITERATIONS)
        assert job["parameters"]["bpp"] == float(BPP) and job["parameters"]["preset"] is None
        shown = (text("gsic-bytes"), text("gsic-bpp"), text("gsic-psnr"))
        assert shown == (f"{job['result']['bytes']} B", f"{job['result']['bpp']:.4f}", f"{job['result']['psnr']:.2f} dB")
        rivals = http.post("/compare", files={"file": ("crop.png", CROP.read_bytes(), "image/png")},
                           data={"max_bytes": str(job["result"]["bytes"])}).json()["rivals"]
    for rival in rivals:
        assert text(f"{rival['format']}-bytes") == f"{rival['bytes']} B"
        assert text(f"{rival['format']}-psnr") == f"{rival['psnr']:.2f} dB"
    assert browser.find_element(By.ID, "download").get_attribute("download") == "kodim23_crop96x64.gsi"

    # The decoded view is rendered at the size on screen (the 96-px crop shown ~740 px wide), not upscaled.
    decoded = browser.find_element(By.ID, "decoded-view")
    shown_width = browser.execute_script("return Math.round(arguments[0].getBoundingClientRect().width * "
                                         "window.devicePixelRatio)", decoded)
    assert decoded.get_property("naturalWidth") == shown_width > 96
    assert decoded.get_attribute("data-box") == "0.000,0.000,96.000,64.000"

    Select(browser.find_element(By.ID, "zoom")).select_by_value("4")
    WebDriverWait(browser, 30).until(lambda d: decoded.get_attribute("data-box") == "36.000,24.000,60.000,40.000")
    assert decoded.get_property("naturalWidth") == shown_width
    browser.execute_script("document.getElementById('split').value = 50;"
                           "document.getElementById('split').dispatchEvent(new Event('input'))")
    Select(browser.find_element(By.ID, "zoom")).select_by_value("2")
    WebDriverWait(browser, 30).until(lambda d: decoded.get_attribute("data-box") == "24.000,16.000,72.000,48.000")
    Select(browser.find_element(By.ID, "zoom")).select_by_value("1")  # the whole picture for the screenshot
    WebDriverWait(browser, 30).until(lambda d: decoded.get_attribute("data-box") == "0.000,0.000,96.000,64.000")

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    screenshot = tmp_path / "page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_the_api_docs_render_from_local_assets(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/docs")
    title = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    assert "gsic encoder service" in title[0].text
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/decode']")
    scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script") if s.get_attribute("src")]
    assert scripts and all(src.startswith(server.url + "/docs/assets/") for src in scripts)


def test_a_refused_comparison_shows_its_reason_not_an_error(browser, tmp_path):
    from selenium.webdriver.common.by import By

    with LiveServer(tmp_path / "data", tmp_path / "server.log", GSIC_COMPARE_MAX_PIXELS="1000") as live:
        _encode_in_page(browser, live.url)  # the page shows no error, and the result
        gsic_bytes = browser.find_element(By.ID, "gsic-bytes").text
        for row in ("jpeg", "webp"):
            note = browser.find_element(By.ID, f"{row}-note").text
            assert note.startswith("not compared: ") and "GSIC_COMPARE_MAX_PIXELS" in note, note
            assert browser.find_element(By.ID, f"{row}-bytes").text == ""
    assert gsic_bytes.endswith(" B")
