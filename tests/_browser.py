"""What the browser tests (tests/test_browser.py, tests/test_hub.py) share: Debian's Chromium and its flags, lab
settings that keep a test deterministic, finding a code cell, and running one from JupyterLab's toolbar.

Playwright is imported where it is used, so a test module that only talks HTTP can import this without it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-proxy-server", "--disable-dev-shm-usage"]
# no news pop-up over the notebook, every cell in the DOM (no virtual scrolling)
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def write_lab_settings(folder: Path) -> None:
    """Write LAB_SETTINGS into a JupyterLab user-settings folder."""
    for plugin, values in LAB_SETTINGS.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def code_index(notebook: dict, test: Callable[[str, list], bool]) -> int:
    """Index, among code cells, of the first cell for which test(source, tags) holds."""
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    return next(i for i, c in enumerate(code) if test(_text(c["source"]), c.get("metadata", {}).get("tags", [])))


def run_cell(page, index: int, wait_ms: int = 30_000) -> None:
    """Make code cell `index` active and press the toolbar's Run button, retrying until its prompt changes."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    for _attempt in range(5):
        cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)  # afresh: JupyterLab may re-render
        prompt = cell.locator(".jp-InputPrompt").first
        try:
            before = prompt.inner_text(timeout=30_000)
            cell.scroll_into_view_if_needed(timeout=30_000)
            cell.locator(".jp-InputArea-editor").first.click(timeout=30_000)
            page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']").first.click(
                timeout=30_000)
            expect(prompt).not_to_have_text(before, timeout=wait_ms)  # "[*]:" while running, "[n]:" when done
            return
        except (AssertionError, PlaywrightError):
            page.wait_for_timeout(1000)  # the click landed while the notebook was (re)rendering: try again
    raise AssertionError(f"code cell {index} did not start running after five tries")
