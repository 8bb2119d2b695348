"""Open notebook 04 in a real JupyterLab in a real (headless) Chromium, run it, move the explorer.

    python scripts/browser_check.py [--screenshot PATH] [--timeout SECONDS]

What it checks, in order (the first failure prints one ``error:`` line and exits 1):
1. JupyterLab starts headless on a free local port with a random token (serving a temporary
   copy of the notebook, so the committed file is never autosaved over).
2. Debian's Chromium, driven by Playwright through ``executable_path`` (no browser is
   downloaded), opens the notebook and runs all its cells from the Run menu.
3. The explorer widget renders; its picture is captured; the "layer" slider is moved one
   step with the keyboard; the picture must change within the timeout.
4. No cell shows a traceback and no widget shows an error.
A screenshot of JupyterLab showing the explorer is saved (default:
``figures/04_explorer_in_jupyterlab.png``, or ``$ANSE_FIGURES_DIR``). JupyterLab is stopped
on success and on failure.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_seeing_attention_uncertainty.ipynb"
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


class CheckFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str:
    for path in CHROMIUM:
        if os.access(path, os.X_OK):
            return path
    raise CheckFailed(f"no Chromium found at {', '.join(CHROMIUM)}; install Debian's package: apt-get install chromium")


#: user settings for this run only: every cell stays in the page (JupyterLab 4 otherwise
#: detaches cells scrolled out of view), and no news prompt covers the notebook
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false"}',
}


def start_lab(root: Path, port: int, token: str, log) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel draws inline, as for a reader
    settings = root / ".lab-settings"
    for rel, text in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(text)
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for_lab(port: int, token: str, proc: subprocess.Popen, timeout: float = 60):
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise CheckFailed(f"JupyterLab exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise CheckFailed(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def stop_lab(proc: subprocess.Popen):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def dismiss_dialogs(page):
    """Accept any JupyterLab dialog in the way (e.g. a kernel choice), saying what it asked."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        print("JupyterLab dialog:", " | ".join(dialog.first.inner_text().split("\n"))[:300], flush=True)
        accept = dialog.first.locator(".jp-Dialog-button.jp-mod-accept")
        (accept if accept.count() else dialog.first.locator(".jp-Dialog-button")).first.click()
        page.wait_for_timeout(500)


def run_all(page, attempts: int = 5):
    """Run > Run All Cells, until a cell is seen executing (the menu item is inert until the kernel is ready)."""
    for _ in range(attempts):
        page.keyboard.press("Escape")
        dismiss_dialogs(page)
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        item = page.locator(".lm-Menu-item", has_text="Run All Cells").first
        item.wait_for(state="visible", timeout=10_000)
        item.click()
        for _ in range(20):
            page.wait_for_timeout(500)
            if page.locator(".jp-InputArea-prompt", has_text="[*]").count():
                return
    raise CheckFailed(f"Run > Run All Cells did not start the notebook ({attempts} attempts)")


def run_in_browser(port: int, token: str, name: str, screenshot: Path, timeout: float):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
            try:
                page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            except PlaywrightTimeout:
                raise CheckFailed("JupyterLab did not open the notebook with an idle kernel within 60 s")
            t0 = time.time()
            run_all(page)
            explorer = page.locator(".anse-explorer")
            try:
                explorer.wait_for(state="visible", timeout=timeout * 1000)
            except PlaywrightTimeout:
                raise CheckFailed(f"the explorer widget did not render within {timeout:.0f} s of Run All")
            print(f"notebook ran to the explorer in {time.time() - t0:.0f} s", flush=True)
            picture = explorer.locator(".anse-explorer-picture").first
            picture.wait_for(state="visible", timeout=30_000)
            picture.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            before = picture.screenshot()
            slider = explorer.locator(".widget-slider", has=page.locator("label", has_text="layer")).first
            handle = slider.locator(".noUi-handle").first
            start = handle.get_attribute("aria-valuenow")
            handle.focus()
            handle.press("ArrowRight")
            t1 = time.time()
            while True:
                page.wait_for_timeout(500)
                after = picture.screenshot()
                if after != before:
                    break
                if time.time() - t1 > 30:
                    raise CheckFailed("moving the 'layer' slider did not change the explorer's picture within 30 s")
            print(f"the picture changed {time.time() - t1:.1f} s after moving the layer slider from "
                  f"{start} to {handle.get_attribute('aria-valuenow')}", flush=True)
            text = explorer.inner_text()
            if "error:" in text:
                raise CheckFailed(f"the explorer shows an error: {text[text.index('error:'):][:200]!r}")
            for bad in ("Traceback", "Error displaying widget"):
                n = page.locator(".jp-OutputArea-output", has_text=bad).count()
                if n:
                    raise CheckFailed(f"{n} cell output(s) show {bad!r}")
            explorer.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.mouse.wheel(0, -60)
            page.wait_for_timeout(800)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            tmp = screenshot.with_suffix(".tmp.png")
            page.screenshot(path=str(tmp))
            os.replace(tmp, screenshot)
            print(f"screenshot: {screenshot}")
        finally:
            browser.close()


def main(argv=None) -> int:
    figures = Path(os.environ.get("ANSE_FIGURES_DIR") or ROOT / "figures")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=figures / "04_explorer_in_jupyterlab.png")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the notebook to reach the explorer")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="anse-browser-check-"))
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    log_path = work / "jupyterlab.log"
    os.environ["ANSE_FIGURES_DIR"] = str(work / "figures")  # the notebook's own figures go to the copy
    with open(log_path, "w") as log:
        proc = start_lab(work, port, token, log)
        try:
            wait_for_lab(port, token, proc)
            print(f"JupyterLab serving a copy of {NOTEBOOK.name} on 127.0.0.1:{port}", flush=True)
            run_in_browser(port, token, NOTEBOOK.name, args.screenshot, args.timeout)
        except CheckFailed as e:
            print(f"error: {e} (JupyterLab log: {log_path})", file=sys.stderr)
            return 1
        finally:
            stop_lab(proc)
    shutil.rmtree(work, ignore_errors=True)
    print("browser check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
