from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.support.services import RedisServer
from tests.ui.harness import Browser, Deployment, deployment, need_browser


@pytest.fixture(scope="session")
def browser_session() -> Iterator[Browser]:
    need_browser()
    browser = Browser()
    yield browser
    browser.quit()


@pytest.fixture
def browser(browser_session: Browser) -> Iterator[Browser]:
    """The session's browser, its console emptied, at the desktop size; a test that leaves
    errors on the console fails."""
    browser_session.size(1280, 800)
    browser_session.console_errors()
    yield browser_session
    browser_session.open("about:blank")


@pytest.fixture
def open_server(redis_server: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    """A server with no keys (as `wfe dev`), and a worker that runs a delay of up to a minute
    itself (the execution stays `running`) rather than parking it."""
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    with deployment(settings, WFE_PARK_AFTER_S="60") as d:
        yield d


KEYS = "acme=key-acme,ops:admin=key-admin"


@pytest.fixture
def keyed_server(redis_server: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    """A server with API keys (tenant ``acme``; ``ops`` is an admin), and a worker."""
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys=KEYS)
    with deployment(settings, key="key-admin") as d:
        yield d
