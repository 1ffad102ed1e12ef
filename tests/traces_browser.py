"""Headless Chromium for the trace viewer's browser tests and benchmark (not a test module).

Uses the system's Chromium and chromedriver (Debian packages `chromium`, `chromium-driver`)
through Selenium; nothing is downloaded. `chromium_missing()` says why a test must skip.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> str | None:
    found = [p for p in paths if Path(p).exists()]
    return found[0] if found else shutil.which(name)


def chromium_missing() -> str | None:
    """None when a browser test can run, else the reason it cannot."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev])"
    if not _first(CHROMIUM, "chromium"):
        return "no Chromium found (apt-get install chromium)"
    if not _first(CHROMEDRIVER, "chromedriver"):
        return "no chromedriver found (apt-get install chromium-driver)"
    return None


class Browser:
    """One headless Chromium with a fresh profile, closed on exit."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="leanstar-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = _first(CHROMIUM, "chromium")
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        service = Service(_first(CHROMEDRIVER, "chromedriver"))
        self.driver = webdriver.Chrome(service=service, options=options)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- the viewer's own signals --------------------------------------------------
    def seq(self) -> int:
        return int(self.js("return document.body.dataset.seq || '0'"))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def open(self, url: str, timeout: float = 60.0) -> dict[str, Any]:
        """Load the viewer and wait until its first view is drawn; returns that timing."""
        self.driver.get(url)
        self.wait_ready(0, timeout)
        return self.js("return window.leanstarTimings[window.leanstarTimings.length - 1]")

    def wait_ready(self, after_seq: int, timeout: float = 60.0) -> None:
        """Wait for a view drawn after render number `after_seq`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.js(
                "return [document.body.dataset.state, document.body.dataset.seq || '0']"
            )
            if state[0] == "ready" and int(state[1]) > after_seq:
                return
            time.sleep(0.02)
        raise TimeoutError(f"the viewer did not finish drawing within {timeout} s")

    def act(self, action, timeout: float = 60.0) -> dict[str, Any]:
        """Run `action()` (a click, a choice, typing) and wait for the view it causes."""
        before = self.seq()
        action()
        self.wait_ready(before, timeout)
        return self.js("return window.leanstarTimings[window.leanstarTimings.length - 1]")

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def one(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def choose(self, name: str, value: str) -> dict[str, Any]:
        """Pick `value` in the filter <select name=...>."""
        from selenium.webdriver.support.ui import Select

        return self.act(lambda: Select(self.one(f"select[name={name}]")).select_by_value(value))

    def search(self, words: str) -> dict[str, Any]:
        """Type into the search box and press Enter."""
        from selenium.webdriver.common.keys import Keys

        def typing() -> None:
            box = self.one("input[name=q]")
            box.clear()
            box.send_keys(words + Keys.ENTER)

        return self.act(typing)

    def errors(self) -> list[str]:
        """Severe messages from the page's console (script errors)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path
