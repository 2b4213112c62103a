"""Headless Debian chromium driven by selenium, for the web console's tests."""
import os
import shutil

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "build", "screenshots")


def available():
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def start(downloads, scratch):
    """A headless chromium whose profile and temporary files live in `scratch`."""
    if not available():
        pytest.skip("chromium is not installed (make test-deps installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860",
                     "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-first-run",
                     "--user-data-dir=%s" % os.path.join(scratch, "profile")):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    service = Service(CHROMEDRIVER, env=dict(os.environ, TMPDIR=str(scratch)))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SCREENSHOTS, name + ".png"))


def keep_readme_image(name):
    """`CXS_README_IMAGES=1 make test` refreshes the README's images from this run."""
    if os.environ.get("CXS_README_IMAGES"):
        target = os.path.join(os.path.dirname(SCREENSHOTS), "..", "docs", "img", name + ".png")
        shutil.copyfile(os.path.join(SCREENSHOTS, name + ".png"), target)
