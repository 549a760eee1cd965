"""The page in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium.

* a live ``tape paper --dashboard`` session: the page shows the same cash, reserved, positions, PnL at the mid and
  fill count as ``tape replay run`` of the same log at the seq the page says it shows;
* ``tape dashboard`` on a finished session, scrubbed to a seq: the page shows what ``tape replay run --to SEQ``
  prints, and an order's decision trace is one click away.

Without chromium and chromedriver these tests skip, saying how to install them; in CI (``CI=true``) they fail.
``TAPE_DASHBOARD_SCREENSHOT=PATH`` saves the live page's screenshot there (docs/dashboard.png is made so).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from runtime.units import format_count, format_money, format_price

from .test_stream import ENV, TAPE, fills_through, finished  # noqa: F401  (the module's finished session)

INSTALL = "apt-get install -y chromium chromium-driver (Debian), and pip install selenium (the dev extra)"


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for name in ("chromium", "chromedriver"):
        if shutil.which(name) is None:
            return f"{name} is not on PATH"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _browser_missing()
    if why is not None:
        message = f"the browser tests need headless Chromium: {why}; {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — in CI these tests must run, not skip", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1500"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


READ_PAGE = """
const text = (id) => document.getElementById(id).textContent;
const rows = {};
for (const tr of document.querySelectorAll('#positions tbody tr')) {
  const cell = (c) => tr.querySelector('td.' + c).textContent;
  rows[tr.dataset.market] = {bid: cell('bid'), ask: cell('ask'), position: cell('position'), cost: cell('cost'),
                             realized: cell('realized'), fees: cell('fees'), pnl: cell('pnl')};
}
return {through: Number(text('through')), head: Number(text('head')), mode: text('mode'), message: text('message'), cash: text('cash'), reserved: text('reserved'),
        fills: text('fills'), open: text('open-count'), positions: rows, status: text('status')};
"""


def wait_for(driver, predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        page = driver.execute_script(READ_PAGE)  # one script: every figure from one moment of the page
        if predicate(page):
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed what was expected: {page}")
        time.sleep(0.2)


def usd(units: int) -> str:
    return ("-$" if units < 0 else "$") + format_money(abs(units))


def assert_page_shows(page: dict, printed: dict, fills: int) -> None:
    """The page's figures are what `tape replay run --json` reports, formatted as `tape replay run` prints them."""
    cash = printed["cash"]
    assert (page["cash"], page["reserved"]) == (usd(cash["cash"]), usd(cash["reserved"]))
    assert page["fills"] == str(fills)
    assert page["open"] == str(len(printed["open_orders"]))
    for m in printed["markets"]:
        shown = page["positions"][m["market"]]
        price = lambda u: "-" if u is None else format_price(u)  # noqa: E731
        assert shown == {"bid": price(m["best_bid"]), "ask": price(m["best_ask"]), "position": format_count(m["position"]),
                         "cost": format_money(m["cost_basis"]), "realized": format_money(m["realized_pnl"]),
                         "fees": format_money(m["fees"]),
                         "pnl": "-" if m["pnl_at_mid"] is None else format_money(m["pnl_at_mid"])}, m["market"]


def replay_run(run: Path, seq: int) -> dict:
    done = subprocess.run([TAPE, "replay", "run", str(run), "--to", str(seq), "--json"], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_live_paper_session_shows_what_replay_rebuilds_at_the_same_seq(browser, tmp_path):
    child = subprocess.Popen([TAPE, "paper", "--runner", "inprocess", "--duration", "10", "--speed", "50", "--seed", "5",
                              "--markets", "3", "--dashboard", "127.0.0.1:0", "--log", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        url = None
        for line in child.stdout:
            match = re.match(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, child.stderr.read()
        browser.get(url)
        wait_for(browser, lambda p: p["through"] > 50 and p["status"] == "live", timeout=30)
        time.sleep(5)  # let it trade a while
        page = wait_for(browser, lambda p: p["through"] > 50)
        shot = os.environ.get("TAPE_DASHBOARD_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "replay verify: ok" in out
    assert_page_shows(page, replay_run(run, page["through"]), asyncio.run(fills_through(run, page["through"])))


def test_a_recorded_session_scrubbed_to_a_seq_shows_what_replay_run_prints(browser, finished):  # noqa: F811
    from selenium.webdriver.common.by import By

    child = subprocess.Popen([TAPE, "dashboard", str(finished), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        url = re.match(r"dashboard: (http://\S+/)", child.stdout.readline()).group(1)
        browser.get(url)
        last = wait_for(browser, lambda p: p["status"] == "session ended: completed" and p["through"] == p["head"] > 0
                        )["through"]
        for seq in (last // 2, last - 3):
            field = browser.find_element(By.ID, "seek-seq")
            field.clear()
            field.send_keys(str(seq))
            browser.find_element(By.ID, "seek-go").click()
            page = wait_for(browser, lambda p, seq=seq: p["through"] == seq and p["mode"] == "scrubbed")
            assert_page_shows(page, replay_run(finished, seq), asyncio.run(fills_through(finished, seq)))
        browser.find_element(By.ID, "live").click()
        wait_for(browser, lambda p: p["through"] == last and p["mode"] == "live view")
        order = browser.execute_script(  # the table is redrawn as data comes: find and click the row in one go
            "const tr = document.querySelector('#orders tbody tr[data-order]'); tr.click(); return tr.dataset.order")
        trace = wait_for_text(browser, "trace", "Caused by seq")
        assert order in trace and ("entry" in trace or "exit" in trace)
        browser.find_element(By.ID, "tab-models").click()
        assert "No model registry" in wait_for_text(browser, "models-registries", "No model registry")
    finally:
        child.terminate()
        child.communicate(timeout=30)


def wait_for_text(driver, element_id: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = driver.execute_script(f"return document.getElementById('{element_id}').textContent")
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"#{element_id} never said {needle!r}: {text!r}")
        time.sleep(0.2)
