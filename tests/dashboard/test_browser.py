"""The dashboard in a real browser: headless Chromium loads each page from a running
``platform serve`` with nothing on its console, the matrix is read from the rendered DOM and
photographed, the HTMX refresh swaps the table in place, dark mode follows the user's
preference, and without JavaScript the pages, their forms and the table still work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PLATFORM_BINARY, run_platform
from tests.release.fleet import Fleet, make_pipeline
from tests.support import browser as support
from tests.support.browser import (
    CHROMEDRIVER,
    TIMEOUT,
    BrowserMissing,
    browser,
    browser_without_javascript,
    chromium,
    console,
    dashboard,
    open_page,
    png_size,
    severe,
    wait,
)

# the session's two Chromiums (fixtures): imported into this module only
__all__ = ["browser", "browser_without_javascript"]

SERVICES = ["alpha", "bravo", "charlie"]
HOLD_REASON = "INC-7 error budget spent"
ERROR_HEADING = "This page cannot be shown"


@dataclass(frozen=True)
class Served:
    fleet: Fleet
    url: str
    held: tuple[str, str]  # (service, environment)


def _pipeline_with_a_hold(path: Path) -> tuple[Fleet, tuple[str, str]]:
    """make_pipeline's steady state (bravo ahead in the second stage) and charlie held in
    the last stage, so the columns differ and one cell is held; the first stage verified,
    so the findings page has a result to show."""
    fleet = make_pipeline(path, SERVICES, ahead=["bravo"])
    held = ("charlie", fleet.stages[-1])
    hold = run_platform(fleet.root, "hold", held[0], "-e", held[1], "--reason", HOLD_REASON)
    assert hold.returncode == 0, hold.stderr
    verify = run_platform(fleet.root, "verify", "-e", fleet.stages[0])
    assert verify.returncode == 0, verify.stderr
    return fleet, held


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``platform serve`` for the tests that only read (the refresh test has its own)."""
    folder = tmp_path_factory.mktemp("browser")
    fleet, held = _pipeline_with_a_hold(folder / "repo")
    with dashboard(PLATFORM_BINARY, fleet.root, folder / "serve.log") as url:
        yield Served(fleet, url, held)


def unexpected(entries: list[dict[str, Any]], driver: WebDriver, *allowed: str) -> list[str]:
    """The SEVERE console entries but those naming one of ``allowed``. Chromium asks for
    /favicon.ico on its own when a page declares no icon (base.html declares none yet); that
    404 is tolerated only then."""
    icons = driver.find_elements(By.CSS_SELECTOR, "link[rel~='icon']")
    tolerated = [*allowed, *([] if icons else ["/favicon.ico - "])]
    return [message for message in severe(entries) if not any(t in message for t in tolerated)]


def text_of(element: WebElement) -> str:
    """All the text of ``element``, visually hidden parts included (WebElement.text is only
    what is rendered visibly)."""
    return " ".join((element.get_attribute("textContent") or "").split())


@dataclass(frozen=True)
class Matrix:
    environments: list[str]
    rows: dict[str, list[WebElement]]  # service -> its cells, in the environments' order
    links: dict[str, str]  # service -> href of its row header's link


def read_matrix(driver: WebDriver) -> Matrix:
    """The matrix as the browser rendered it: the column headers, then per body row its row
    header (the service) and its cells."""
    table = driver.find_element(By.CSS_SELECTOR, "main table")
    columns = [text_of(th) for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows: dict[str, list[WebElement]] = {}
    links: dict[str, str] = {}
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        header = row.find_element(By.CSS_SELECTOR, "th[scope='row']")
        name = text_of(header).split(" ")[0]
        rows[name] = row.find_elements(By.CSS_SELECTOR, "td")
        anchors = header.find_elements(By.CSS_SELECTOR, "a[href]")
        if anchors:
            links[name] = anchors[0].get_attribute("href") or ""
    return Matrix(columns, rows, links)


def test_the_error_page_loads_its_static_files_under_the_csp(
    browser: WebDriver, served: Served
) -> None:
    """The harness on a page every build has: the 404 page, with Pico, our CSS and htmx
    loaded from /static and nothing refused by the Content-Security-Policy."""
    url = served.url + "no-such-page"
    entries = open_page(browser, url)
    assert browser.find_element(By.TAG_NAME, "h1").text == ERROR_HEADING
    assert browser.title == "Error · platform"
    assert "no such page" in browser.find_element(By.CSS_SELECTOR, "main").text
    # the page's own 404 is logged (it is the status it should have), nothing else
    assert any(url in m and "404" in m for m in severe(entries)), entries
    assert unexpected(entries, browser, url) == []
    loaded = browser.execute_script(
        "return {htmx: typeof window.htmx,"
        " sheets: Array.from(document.styleSheets, s => [s.href, s.cssRules.length]),"
        " pico: getComputedStyle(document.documentElement).getPropertyValue('--pico-font-family')}"
    )
    assert loaded["htmx"] == "object"
    assert loaded["pico"].strip()
    sheets = {href.rsplit("/", 1)[-1]: rules for href, rules in loaded["sheets"]}
    assert sheets.keys() == {"pico.min.css", "dashboard.css"}
    assert all(rules > 0 for rules in sheets.values()), sheets


def links_in(driver: WebDriver, selector: str, site: str) -> list[str]:
    """The distinct same-site page URLs of the links under ``selector`` (no static files,
    no fragments), in the page's order."""
    hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.CSS_SELECTOR, selector)]
    pages = [href.split("#")[0] for href in hrefs if href.startswith(site)]
    return list(dict.fromkeys(p for p in pages if not p.startswith(f"{site}static/")))


def test_every_page_in_the_nav_and_the_pages_they_link_load_without_console_errors(
    browser: WebDriver, served: Served
) -> None:
    """The nav's links as the browser finds them, and the same-site links in each of those
    pages' main content (a service's page, a stage's plan...): pages added later are covered
    without naming them here."""
    open_page(browser, served.url)
    nav = links_in(browser, "header nav a[href]", served.url)
    assert served.url in nav, nav
    pages = dict.fromkeys(nav)
    for page in nav:
        open_page(browser, page)
        pages.update(dict.fromkeys(links_in(browser, "main a[href]", served.url)))
    assert f"{served.url}services/{SERVICES[0]}" in pages  # through the matrix's link
    problems: dict[str, object] = {}
    for page in pages:
        entries = open_page(browser, page)
        errors = unexpected(entries, browser)
        headings = [text_of(h1) for h1 in browser.find_elements(By.TAG_NAME, "h1")]
        title = browser.title
        if errors or not headings or not all(headings) or ERROR_HEADING in headings:
            problems[page] = {"console": errors, "h1": headings}
        elif not title.strip() or title.startswith("·"):
            problems[page] = {"title": title}
    assert problems == {}, f"of {len(pages)} pages: {list(pages)}"


def test_the_matrix_table_as_rendered_and_its_screenshot(
    browser: WebDriver, served: Served, tmp_path: Path
) -> None:
    fleet = served.fleet
    assert unexpected(open_page(browser, served.url), browser) == []
    matrix = read_matrix(browser)
    # one column per environment in the pipeline's order (after the services' column)
    assert matrix.environments[-len(fleet.stages) :] == list(fleet.stages)
    assert len(matrix.environments) in (len(fleet.stages), len(fleet.stages) + 1)
    assert sorted(matrix.rows) == sorted(fleet.services)
    for service, cells in matrix.rows.items():
        assert len(cells) == len(fleet.stages), service
        for stage, cell in zip(fleet.stages, cells, strict=True):
            image = fleet.image(stage, service)
            shown = text_of(cell)
            assert image.tag in shown, (service, stage, shown)
            if image.digest is not None:
                assert image.digest.split(":")[1][:12] in shown, (service, stage, shown)
    # the held cell says why, on hover (title) or in its text
    service, stage = served.held
    cell = matrix.rows[service][fleet.stages.index(stage)]
    titles = [e.get_attribute("title") or "" for e in cell.find_elements(By.CSS_SELECTOR, "*")]
    assert HOLD_REASON in " ".join([text_of(cell), cell.get_attribute("title") or "", *titles])
    others = [c for cells in matrix.rows.values() for c in cells if c != cell]
    assert not [c for c in others if HOLD_REASON in (c.get_attribute("innerHTML") or "")]

    screenshot = tmp_path / "matrix.png"
    assert browser.save_screenshot(str(screenshot))
    data = screenshot.read_bytes()
    width, height = png_size(data)
    assert width >= 800
    assert height >= 400
    assert len(data) > 10_000  # a rendered page: a blank one compresses to a few KB


def _cell(driver: WebDriver, service: str, stage_index: int) -> str:
    return text_of(read_matrix(driver).rows[service][stage_index])


# what htmx asked the server for, by the element that made the request: the refresh control
# (a click) or the polled table's container (its timer)
RECORD_REQUESTS = """
window.__requests = [];
document.body.addEventListener('htmx:afterRequest', event => {
  window.__requests.push({tag: event.detail.elt.tagName.toLowerCase(),
                          ok: event.detail.successful});
});
"""


def test_the_refresh_control_swaps_the_new_image_in_without_a_navigation(
    browser: WebDriver, tmp_path: Path
) -> None:
    fleet = make_pipeline(tmp_path / "repo", SERVICES[:2], ahead=[])
    with dashboard(PLATFORM_BINARY, fleet.root, tmp_path / "serve.log") as url:
        assert unexpected(open_page(browser, url), browser) == []
        first = fleet.stages[0]
        before = fleet.image(first, "alpha").tag
        assert before in _cell(browser, "alpha", 0)
        controls = [
            element
            for element in browser.find_elements(
                By.CSS_SELECTOR, "main a[hx-get], main button[hx-get]"
            )
            if "refresh" in text_of(element).lower() and element.is_displayed()
        ]
        assert controls, "no refresh control with hx-get in the page"
        control = controls[0]
        heading = browser.find_element(By.TAG_NAME, "h1")
        browser.execute_script("window.__marker = 1;" + RECORD_REQUESTS)

        fleet.set_image(first, "alpha", 9, pinned=False)
        after = fleet.image(first, "alpha").tag
        assert after != before
        control.click()
        WebDriverWait(
            browser,
            TIMEOUT,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException, KeyError),
        ).until(lambda d: after in _cell(d, "alpha", 0))
        # the same document: its script state and the elements outside the table survive
        assert browser.execute_script("return window.__marker") == 1, "the page was reloaded"
        assert heading.is_displayed()
        assert browser.current_url == url
        # the click made a request (the table's timer may have made one too, even first)
        clicked = {"tag": control.tag_name, "ok": True}
        wait(browser).until(lambda d: clicked in d.execute_script("return window.__requests"))
        assert unexpected(console(browser), browser) == []
        browser.get("about:blank")  # no more polling of a server about to stop


def luminance(css_colour: str) -> float:
    """0 (black) to 1 (white): the relative luminance of an ``rgb()``/``rgba()`` colour as
    getComputedStyle gives it, linearised as WCAG defines it."""
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css_colour)[:3])

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


COLOURS = """
const cell = document.querySelector('main table td');
return [getComputedStyle(document.documentElement).backgroundColor,
        getComputedStyle(document.body).color, getComputedStyle(cell).color];
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_matrix_follows_the_colour_scheme_the_user_prefers(
    browser: WebDriver, served: Served, scheme: str
) -> None:
    """Pico's dark mode: with ``prefers-color-scheme: dark`` the page is light text on a dark
    background, readable (WCAG's 4.5:1 contrast at least); with light, the reverse."""
    feature = {"name": "prefers-color-scheme", "value": scheme}
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [feature]})
    try:
        assert unexpected(open_page(browser, served.url), browser) == []
        background, text, cell = map(luminance, browser.execute_script(COLOURS))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert (background < 0.2) == (scheme == "dark"), background
    for colour in (text, cell):
        lighter, darker = max(colour, background), min(colour, background)
        assert (lighter + 0.05) / (darker + 0.05) >= 4.5, (scheme, colour, background)


def test_without_javascript_the_matrix_still_shows_the_table(
    browser_without_javascript: WebDriver, served: Served
) -> None:
    driver = browser_without_javascript
    entries = open_page(driver, served.url)
    assert driver.execute_script("return typeof window.htmx") == "undefined"
    assert unexpected(entries, driver) == []
    matrix = read_matrix(driver)
    assert sorted(matrix.rows) == sorted(served.fleet.services)
    stage = served.fleet.stages[-1]
    for service, cells in matrix.rows.items():
        assert served.fleet.image(stage, service).tag in text_of(cells[-1])
    # the refresh is a plain link there: following it loads the matrix again
    refresh = [
        a
        for a in driver.find_elements(By.CSS_SELECTOR, "main a[href]")
        if "refresh" in text_of(a).lower()
    ]
    assert refresh, "no refresh link in the page"
    assert refresh[0].get_attribute("href") == served.url
    table = driver.find_element(By.CSS_SELECTOR, "main table")
    refresh[0].click()
    wait(driver).until(staleness_of(table))
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "main table tbody tr"))


def test_without_javascript_every_page_in_the_nav_loads_and_its_forms_submit(
    browser_without_javascript: WebDriver, served: Served
) -> None:
    """Each page of the nav, and each of its forms submitted as it comes (the user's first
    click on its button): the answer is a page of the site, not an error, nothing logged."""
    driver = browser_without_javascript
    open_page(driver, served.url)
    problems: dict[str, object] = {}
    submitted = 0
    for page in links_in(driver, "header nav a[href]", served.url):
        entries = open_page(driver, page)
        if errors := unexpected(entries, driver):
            problems[page] = errors
        for index in range(len(driver.find_elements(By.CSS_SELECTOR, "main form"))):
            open_page(driver, page)
            form = driver.find_elements(By.CSS_SELECTOR, "main form")[index]
            form.find_element(By.CSS_SELECTOR, "[type='submit'], button:not([type])").click()
            wait(driver).until(staleness_of(form))
            wait(driver).until(
                lambda d: d.execute_script("return document.readyState") == "complete"
            )
            headings = [text_of(h1) for h1 in driver.find_elements(By.TAG_NAME, "h1")]
            errors = unexpected(console(driver), driver)
            if errors or ERROR_HEADING in headings or not driver.current_url.startswith(served.url):
                problems[f"{page} form {index}"] = {"console": errors, "h1": headings}
            submitted += 1
    assert problems == {}
    assert submitted >= 1  # there are forms (the plan's stage, the metrics' window)


def test_a_missing_browser_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing is downloaded in its place (Selenium Manager is never asked): the test fails
    with the apt-get command, as tests/support/components.py does for the other binaries."""
    absent = tmp_path / "chromium"
    monkeypatch.setattr(support, "PACKAGES", {absent: "chromium", CHROMEDRIVER: "chromium-driver"})
    with pytest.raises(BrowserMissing) as raised, chromium():
        pytest.fail("a browser started without its binary")
    assert str(raised.value) == (
        f"{absent} not installed; install with: apt-get install -y chromium (.ci/run does this)"
    )


def test_the_browser_starts_without_asking_selenium_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver's path is given, so Selenium never runs its manager (which would look for
    a driver to download on a machine that has Debian's)."""

    def refuse(*_: object) -> dict[str, str]:
        raise AssertionError("Selenium Manager was asked for a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)
    with chromium() as driver:
        assert driver.capabilities["browserName"] in {"chrome", "chromium"}
