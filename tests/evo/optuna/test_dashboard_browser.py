"""evo dashboard as a user sees it: a finished synthetic run's page loaded in a real headless
Chromium (Debian's, installed here when missing), showing the study and its trial count.

optuna-dashboard is a single-page app: the page is drawn by JavaScript after it asks the
server for the studies, so the test waits for the text to appear rather than reading the
first HTML. The screenshot is left in the test's temporary folder to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from evo import RunStore, parse_config, start_run
from evo.trial import TrialStatus
from fitness import make_fitness
from tests.evo.optuna.test_dashboard import dashboard

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ["chromium", "chromium-driver"]
# the network is closed: nothing may reach out (updates, sync, QUIC probes), and no GPU is there
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000  # the app's first draw on a busy 2-core machine


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing; skips only if that cannot be done."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.skip("no /usr/bin/chromium and no apt-get to install it")
        steps = [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]]
        for step in steps:
            done = subprocess.run(
                step,
                capture_output=True,
                text=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                pytest.skip(f"cannot install {' '.join(PACKAGES)}: {' '.join(step)}: {done.stderr.strip()[-300:]}")
    assert CHROMIUM.exists()
    return CHROMIUM


@pytest.mark.slow
def test_the_dashboard_shows_a_finished_run_in_a_real_browser(chromium, tmp_path, synthetic_config):
    from playwright.sync_api import sync_playwright

    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "browser-run")
    with RunStore.open(tmp_path / "browser-run") as store:
        finished = sum(1 for t in store.trials() if t.status is not TrialStatus.RUNNING)

    profile = tmp_path / "profile"  # a new, empty user data dir
    profile.mkdir()
    with dashboard([str(tmp_path / "browser-run")]) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(url, timeout=RENDER_TIMEOUT_MS)
            study = page.get_by_text("browser-run").first  # the study list: the run's study
            study.wait_for(timeout=RENDER_TIMEOUT_MS)
            page.screenshot(path=tmp_path / "studies.png")
            study.click()  # the study's page, then its list of trials (the side menu is folded to icons)
            page.wait_for_url("**/studies/*", timeout=RENDER_TIMEOUT_MS)
            page.goto(page.url.rstrip("/") + "/trials", timeout=RENDER_TIMEOUT_MS)
            page.get_by_text(f"{finished} Trials", exact=True).wait_for(timeout=RENDER_TIMEOUT_MS)
            page.screenshot(path=tmp_path / "trials.png", full_page=True)
        finally:
            browser.close()
    for shot in ("studies.png", "trials.png"):
        assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
