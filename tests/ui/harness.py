"""What the browser tests stand on: the API served by uvicorn on a real socket (in a thread
of its own, so that the blocking Selenium calls of a test never stall it), a `wfe worker`
process, and headless Chromium driven by Selenium through Debian's chromedriver (never a
driver Selenium Manager would download)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.processes import start_worker
from tests.support.served import served
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRE_BROWSER = os.environ.get("WFE_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("WFE_UI_SCREENSHOTS") == "1"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "ui"
DESKTOP = (1280, 800)
PHONE = (390, 844)

T = TypeVar("T")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def need_browser() -> None:
    missing = browser_missing()
    if missing is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"WFE_REQUIRE_BROWSER=1 but {missing}")
    pytest.skip(missing)


class ThreadedApi:
    """``create_app`` over ``served(...)`` on an event loop in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._address: Future[str] = Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="ui-test-api", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._address.done():
                self._address.set_exception(exc)
            raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        services = await Services.open(self.settings)
        try:
            async with served(create_app(self.settings, services)) as address:
                self._address.set_result(address)
                await self._stop.wait()
        finally:
            await services.close()

    def start(self) -> str:
        self._thread.start()
        return self._address.result(timeout=30)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


class Deployment:
    """The API at ``url`` (a thread), a worker process, and an HTTP client with ``key``."""

    def __init__(self, settings: Settings, key: str | None = None, **worker_env: str) -> None:
        self.settings = settings
        self.api = ThreadedApi(settings)
        self.worker = start_worker(settings, **worker_env)
        self.url = f"http://{self.api.start()}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.api.stop()
        self.worker.stop()

    def submit(self, definition: dict[str, Any], **extra: Any) -> str:
        answer = self.http.post(
            "/api/workflow/execute", json={"workflowDefinition": definition, **extra}
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["executionId"])

    def status(self, execution_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/api/workflow/status/{execution_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def wait(check: Callable[[], T | None], timeout: float = 20, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Browser:
    """Headless Chromium with its console collected (``goog:loggingPrefs``)."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(
            service=Service(executable_path=CHROMEDRIVER), options=options
        )
        self.size(*DESKTOP)

    def quit(self) -> None:
        self.driver.quit()

    def size(self, width: int, height: int) -> None:
        """The viewport exactly (the window's own size would include whatever frame it has)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str, timeout: float = 20) -> Any:
        from selenium.webdriver.common.by import By

        def found() -> Any:
            elements = self.driver.find_elements(By.CSS_SELECTOR, css)
            return elements[0] if elements else None

        try:
            return wait(found, timeout, f"{css!r} on the page")
        except AssertionError as exc:
            shown = self.js("return document.body ? document.body.innerText : ''")
            raise AssertionError(f"{exc}; the page shows:\n{shown[:1500]}") from None

    def all(self, css: str) -> list[Any]:
        """The elements ``css`` selects now (none: an empty list)."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def press_enter(self, element: Any) -> None:
        from selenium.webdriver.common.keys import Keys

        element.send_keys(Keys.ENTER)

    def attribute(self, css: str, name: str, value: str, timeout: float = 20) -> None:
        """Wait until the element ``css`` has ``name`` == ``value``."""
        from selenium.webdriver.common.by import By

        def there() -> bool:
            for element in self.driver.find_elements(By.CSS_SELECTOR, css):
                try:
                    if element.get_attribute(name) == value:
                        return True
                except Exception:  # re-rendered between the find and the read
                    continue
            return False

        try:
            wait(there, timeout, f"{css} [{name}={value!r}]")
        except AssertionError:
            shown = [e.get_attribute(name) for e in self.driver.find_elements(By.CSS_SELECTOR, css)]
            raise AssertionError(f"{css} [{name}] is {shown}, not {value!r}") from None

    def console_errors(self, *expected: str) -> list[str]:
        """The console's errors since the last call (every entry is consumed), but those
        holding one of ``expected`` (the browser logs each 4xx answer the test asked for)."""
        entries = self.driver.get_log("browser")
        errors = [e["message"] for e in entries if e["level"] in {"SEVERE", "ERROR"}]
        return [m for m in errors if not any(x in m for x in expected)]

    def foreign_resources(self) -> list[str]:
        """Every URL the page loaded that is not on its own origin."""
        origin = self.js("return location.origin")
        urls = self.js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls, "the performance API lists no resource"
        return [u for u in urls if f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" != origin]

    def screenshot(self, name: str) -> None:
        """docs/ui/<name>.png, at 1280x800, only when WFE_UI_SCREENSHOTS=1 (CI keeps the tree)."""
        if not SCREENSHOTS:
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOT_DIR / f"{name}.png"))


@contextmanager
def deployment(
    settings: Settings, key: str | None = None, **worker_env: str
) -> Iterator[Deployment]:
    deployed = Deployment(settings, key, **worker_env)
    try:
        yield deployed
    finally:
        deployed.close()
