"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``), driven by Selenium with the
system's chromedriver: nothing is downloaded at run time. ``.ci/run`` installs both packages."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def have_browser() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def require_browser() -> None:
    """Skip with the install line on a developer machine without Chromium; fail under CI, which must have it."""
    if have_browser():
        return
    message = "headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def chromium(width: int = 1400, height: int = 1000):
    """A headless Chromium whose console messages ``browser_log`` can read; closed by the caller."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # as root in a closed network: no sandbox, no background connections that the network refuses
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp(prefix='cmkd-chromium-')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


def console_errors(driver) -> list[str]:
    """The page's console messages at level SEVERE (errors, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
