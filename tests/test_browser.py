"""A real browser: JupyterLab in headless Chromium runs lesson 01 and its temperature slider works.

The test starts JupyterLab on localhost (on a temporary copy of the lesson, so autosave never
touches the repository), opens lesson 01 in Debian's Chromium driven by Playwright, runs every
cell, moves the temperature slider and checks that the figure under it is redrawn. It saves a
screenshot under test-artifacts/. It is skipped only when no Chromium is installed
(`.ci/run` installs one: apt-get install chromium).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01_soft_targets.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = next((p for p in (os.environ.get("MINICOMP_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("JupyterLab did not start within 90 s")


@pytest.fixture
def lab(tmp_path):
    work = tmp_path / "course"
    work.mkdir()
    shutil.copy(ROOT / "lessons" / LESSON, work / LESSON)
    # no "get notified about Jupyter news?" pop-up over the screenshot
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    port, token = _free_port(), "minicomp-browser-test"
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"), MINICOMP_DEVICE="cpu")
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={work}", f"--port={port}",
           "--no-browser", "--expose-app-in-browser", "--ServerApp.ip=127.0.0.1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", time.monotonic() + 90)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# The figure drawn by the interact() output area, as the data URL of its image ("" if none yet).
FIGURE_JS = """() => {
  const out = document.querySelector('.widget-interact .widget-output img');
  return out ? out.getAttribute('src') : '';
}"""
# True when no cell is queued or running ("[*]") and the kernel is idle.
SETTLED_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  const running = [...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('*'));
  return !!k && k.status === 'idle' && !running;
}"""


def _settle(page, timeout_ms: int) -> None:
    """Wait until the notebook has been settled (idle, nothing queued) for two polls in a row."""
    end = time.monotonic() + timeout_ms / 1000
    calm = 0
    while calm < 2:
        if time.monotonic() > end:
            raise AssertionError(f"the notebook was still busy after {timeout_ms / 1000:.0f} s")
        calm = calm + 1 if page.evaluate(SETTLED_JS) else 0
        time.sleep(0.5)


def _drag_to_left(page, handle, track) -> None:
    hb, tb = handle.bounding_box(), track.bounding_box()
    y = hb["y"] + hb["height"] / 2
    page.mouse.move(hb["x"] + hb["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(tb["x"] + 2, y, steps=10)
    page.mouse.up()


def _changes(page, readout, before_text: str, timeout_ms: int) -> bool:
    """True once the slider's readout shows something other than `before_text`."""
    end = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < end:
        if readout.inner_text().strip() != before_text.strip():
            return True
        time.sleep(0.25)
    return False


def test_temperature_slider_redraws_the_figure(lab):
    # not skipped when missing: playwright is in the dev extra, so `make test` installs it
    from playwright.sync_api import sync_playwright

    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_01_soft_targets.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=FLAGS)  # playwright gives it a fresh profile
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{base}/lab/tree/{LESSON}?token={token}", wait_until="domcontentloaded")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell"
                                   " && document.querySelector('.jp-Notebook .jp-Cell')", timeout=90_000)
            _settle(page, 90_000)  # the kernel has started
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            slider = page.locator(".widget-interact .widget-slider").first
            slider.wait_for(state="attached", timeout=120_000)
            page.wait_for_function(f"() => ({FIGURE_JS})() !== ''", timeout=60_000)
            _settle(page, 120_000)  # lesson 01 has run to the end (about half a minute)
            slider.scroll_into_view_if_needed()
            before = page.evaluate(FIGURE_JS)
            readout = slider.locator(".widget-readout")
            before_text = readout.inner_text()

            # move the slider towards T = 0.1: drag its handle to the far left of its track, and if
            # the drag did not register (a busy machine can drop pointer events), use the keyboard
            handle = slider.locator(".noUi-handle").first
            track = slider.locator(".noUi-target").first
            _drag_to_left(page, handle, track)
            if not _changes(page, readout, before_text, 15_000):
                handle.focus()
                for key in ["Home"] + ["ArrowLeft"] * 10:
                    handle.press(key)
            assert _changes(page, readout, before_text, 30_000), \
                f"the slider's readout stayed at {before_text} after a drag and key presses"

            page.wait_for_function(f"(b) => {{ const a = ({FIGURE_JS})(); return a !== '' && a !== b; }}",
                                   arg=before, timeout=120_000)
            _settle(page, 60_000)  # every redraw the drag asked for has finished
            after_text = readout.inner_text()
            after = page.evaluate(FIGURE_JS)
            page.locator(".widget-interact .widget-output img").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            assert float(after_text) < float(before_text), (before_text, after_text)
            assert after and after != before, "the figure under the slider was not redrawn"
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_01_soft_targets_failure.png"))
            raise
        finally:
            browser.close()
    assert shot.exists() and shot.stat().st_size > 10_000
