"""End to end in a real headless browser: create a study of 3 examples, rate them as two raters on the
page served by `bgm-jax study serve`, and check the report's numbers.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and selenium.
Skips when they are absent; under CI (BGM_REQUIRE_BROWSER=1, set by .ci/run) their absence fails.
The browser's screenshot of the page and the report's chart are docs/study.png and
docs/study-chart.png: set BGM_STUDY_DOCS=docs to write them there.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from study_data import make_study_folders

from bgm_jax.cli import main
from bgm_jax.study.storage import Study

KEYS = ["shots/kitchen", "shots/office", "street"]
# what each rater means to say, as scores about the methods (-10 = A much better ... +10 = B much better)
PLAN = {
    "alice": {"shots/kitchen": -10, "shots/office": 5, "street": 0},
    "bob": {"shots/kitchen": -5, "shots/office": 10, "street": 5},
}
FIRST_THOUGHTS = {"alice": {"street": 10}}  # voted first, then changed to the plan's score
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")


def browser_paths() -> tuple[str, str]:
    """chromium and chromedriver, or a skip (a failure under BGM_REQUIRE_BROWSER=1) saying what is missing."""
    missing = []
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        reason = f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("BGM_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (BGM_REQUIRE_BROWSER=1: a missing browser is a failure here)")
        pytest.skip(reason)
    return chromium, driver


def start_server(study: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgm_jax", "study", "serve", str(study), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            found = re.search(r"rating page at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                return proc, found.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


def test_two_raters_rate_three_examples_in_chromium(tmp_path):
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folders = make_study_folders(tmp_path / "images", KEYS, size=(320, 240))
    files = {k: {r: (folders[r] / f"{k}.png").read_bytes() for r in ("original", "a", "b")} for k in KEYS}
    study = tmp_path / "study.sqlite"
    assert main(["study", "create", str(study), "--originals", str(folders["original"]),
                 "--results-a", str(folders["a"]), "--results-b", str(folders["b"]),
                 "--name-a", "BGM", "--name-b", "Ours"]) == 0

    proc, url = start_server(study)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    wait = WebDriverWait(browser, 15)
    screenshot = tmp_path / "study.png"
    try:
        def fetch(element_id: str) -> bytes:  # what the page shows, fetched by its own URL
            with urllib.request.urlopen(browser.find_element(By.ID, element_id).get_attribute("src")) as r:
                return r.read()

        def showing(position: int) -> None:
            wait.until(lambda b: b.find_element(By.ID, "position").text == f"Example {position} of 3")

        def images_loaded(b) -> bool:
            return b.execute_script(
                "return ['img-original','img-left','img-right'].every(i => {"
                "const e = document.getElementById(i); return e.complete && e.naturalWidth > 0; })")

        def click_choice(choice: int) -> None:
            selector = f'#scale button[data-choice="{choice}"]'
            browser.find_element(By.CSS_SELECTOR, selector).click()
            wait.until(lambda b: b.find_element(By.CSS_SELECTOR, selector).get_attribute("aria-pressed") == "true"
                       and b.find_element(By.ID, "saved").text == "Saved")

        browser.get(url)
        for rater, plan in PLAN.items():
            if rater != "alice":
                browser.find_element(By.ID, "switch").click()  # "not you?" on the thank-you page
            wait.until(lambda b: b.find_element(By.ID, "rater").is_displayed())
            browser.find_element(By.ID, "rater").send_keys(rater)
            browser.find_element(By.ID, "start").click()
            for position in (1, 2, 3):
                showing(position)
                original = fetch("img-original")
                key = next(k for k in KEYS if files[k]["original"] == original)
                left = fetch("img-left")
                assert left in (files[key]["a"], files[key]["b"]) and fetch("img-right") != left
                a_is_left = left == files[key]["a"]
                for score in [FIRST_THOUGHTS.get(rater, {}).get(key), plan[key]]:
                    if score is not None:
                        click_choice(score if a_is_left else -score)  # the button that says `score` here
                if rater == "alice" and position == 2:
                    # a reload shows the same example, the same placement and the vote
                    browser.refresh()
                    showing(2)
                    assert fetch("img-left") == left and fetch("img-original") == original
                    choice = plan[key] if a_is_left else -plan[key]
                    pressed = browser.find_element(By.CSS_SELECTOR, f'#scale button[data-choice="{choice}"]')
                    assert pressed.get_attribute("aria-pressed") == "true"
                if rater == "bob" and position == 2:
                    wait.until(images_loaded)
                    browser.save_screenshot(str(screenshot))
                assert browser.find_element(By.ID, "rated").text == f"{position} rated"
                browser.find_element(By.ID, "next").click()
            wait.until(lambda b: b.find_element(By.ID, "done").is_displayed())
    finally:
        browser.quit()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped; 6 votes from 2 raters" in out

    with Image.open(screenshot) as shot:
        assert shot.format == "PNG" and shot.width >= 1000

    votes = {(v.rater, Study(study).examples[v.example_id].key): v for v in Study(study).votes()}
    assert {k: v.score for k, v in votes.items()} == {(r, k): s for r, p in PLAN.items() for k, s in p.items()}
    assert votes[("alice", "street")].revisions == 1  # changed once, counted once

    out_dir = tmp_path / "report"
    assert main(["study", "report", str(study), "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    examples = {e["key"]: e for e in report["examples"]}
    assert {k: (e["votes"], e["mean"]) for k, e in examples.items()} == {
        "shots/kitchen": (2, -7.5), "shots/office": (2, 7.5), "street": (2, 2.5)}
    assert examples["street"]["counts"] == {"-10": 0, "-5": 0, "0": 1, "5": 1, "10": 0}
    assert report["mean"] == pytest.approx((-7.5 + 7.5 + 2.5) / 3)
    assert report["mean_of_votes"] == pytest.approx(5 / 6)
    assert -7.5 <= report["ci_low"] < report["mean"] < report["ci_high"] <= 7.5
    assert [(r["rater"], r["votes"]) for r in report["raters"]] == [("alice", 3), ("bob", 3)]
    assert (report["method_a"], report["method_b"], report["votes"]) == ("BGM", "Ours", 6)
    if os.environ.get("BGM_STUDY_DOCS"):
        shutil.copyfile(screenshot, Path(os.environ["BGM_STUDY_DOCS"]) / "study.png")
        shutil.copyfile(out_dir / "chart.png", Path(os.environ["BGM_STUDY_DOCS"]) / "study-chart.png")
