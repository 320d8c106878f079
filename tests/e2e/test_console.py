"""The live web console in headless Chromium (Debian's package, driven by Playwright): an order
submitted through the page reaches ``confirmed`` with its route shown, an invalid one gets the API's
error in plain words, and the page logs no error. A screenshot is kept as an artifact."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import ROOT
from tests.engine_process import EngineProcess

CHROMIUM = os.environ.get("OEE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("OEE_TEST_ARTIFACTS", ROOT / ".artifacts"))
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
WAIT_MS = 180_000  # a generous bound on the order's whole life: the machine may be loaded


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, engine: EngineProcess) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(f"{engine.url}/console/")
    expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
    try:
        yield page, problems
    finally:
        context.close()


def test_an_order_submitted_in_the_page_confirms_with_its_route(page: tuple[Page, list[str]]) -> None:
    view, problems = page
    view.fill("input[name=amount]", "1.5")
    view.click("#submit-button")
    expect(view.locator("#detail-status")).to_have_text("confirmed", timeout=WAIT_MS)
    route = view.locator("#route tbody")
    expect(route).to_contain_text("RAYDIUM")
    expect(route).to_contain_text("METEORA")
    expect(route.locator(".chosen")).to_have_count(1)
    expect(view.locator("#route-reason")).not_to_be_empty()
    expect(view.locator("#fill")).to_contain_text("against the quoted")
    expect(view.locator("#timeline tbody tr")).to_have_count(5)  # pending, routing, building, submitted, confirmed
    order_id = view.locator("#detail-id").inner_text()
    expect(view.locator(f'#orders tr[data-order="{order_id}"] td.status')).to_have_text("confirmed")
    expect(view.locator("#chart polyline")).to_have_count(2, timeout=WAIT_MS)  # both venues' prices for SOL/USDC
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    view.screenshot(path=str(shot), full_page=True)
    print(f"\nconsole screenshot: {shot}")
    assert problems == []


def test_a_refused_order_shows_the_apis_error_in_plain_words(page: tuple[Page, list[str]]) -> None:
    view, problems = page
    view.fill("input[name=tokenOut]", "SOL")
    view.click("#submit-button")
    error = view.locator("#form-error")
    expect(error).to_be_visible(timeout=WAIT_MS)
    expect(error).to_contain_text("Validation failed")
    expect(error).to_contain_text("tokenIn and tokenOut must differ")
    assert [p for p in problems if "400" not in p] == []  # the browser reports the 400 itself; nothing else
