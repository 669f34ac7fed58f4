"""How long the web UI takes to show an execution of 1,000 nodes (SPEC section 12), in headless
Chromium: `wfe api` and `wfe worker` on a private Redis, one 1,000-node execution run to the
end, then its page opened, timed by the page's own marks (ms since navigation start):

- ``graph``: the graph laid out (dagre, left to right) and drawn with every node's status,
  from the status snapshot;
- ``layout``: of which the dagre layout alone;
- ``events``: the replay of the execution's events over the WebSocket applied (the page live).

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium``. Run:
``python -m benchmarks.ui_render [--nodes 1000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from workflow_engine.embedded_redis import EmbeddedRedis, free_port

WFE = str(Path(sys.executable).with_name("wfe"))
WIDTH = 20
"""Nodes per layer of the benchmark graph: 1,000 nodes make 50 layers of 20."""


def layered(nodes: int) -> dict[str, Any]:
    """``nodes`` transform nodes in layers of WIDTH; each reads one or two of the layer before."""
    defined: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for i in range(nodes):
        node_id = f"n{i}"
        layer, slot = divmod(i, WIDTH)
        sources = (
            []
            if layer == 0
            else sorted({(layer - 1) * WIDTH + slot, (layer - 1) * WIDTH + (slot * 7 + 3) % WIDTH})
        )
        reads = " + ".join(f"nodes.n{s}.output" for s in sources)
        value = f"{{{{ {reads} }}}}" if sources else 1
        defined.append({"id": node_id, "type": "transform", "inputs": {"value": value}})
        edges.extend({"source": f"n{s}", "target": node_id} for s in sources)
    return {"id": f"ui_render_{nodes}", "nodes": defined, "edges": edges}


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


MARKS = """
const at = (name) => {
  const m = performance.getEntriesByName(name);
  return m.length ? m[m.length - 1] : null;
};
const graph = at('wfe:graph-drawn'), events = at('wfe:events-applied'), layout = at('wfe:layout');
return {graph: graph && graph.startTime, events: events && events.startTime,
        layout: layout && layout.duration,
        drawn: document.querySelectorAll('svg.graph g.node[data-status="completed"]').length};
"""


def measure(
    url: str, execution_id: str, nodes: int, rounds: int, screenshot: str | None = None
) -> list[dict[str, float]]:
    driver = browser()
    samples = []
    try:
        for _ in range(rounds):
            driver.get("about:blank")
            driver.get(f"{url}/ui#/executions/{execution_id}")

            def settled() -> dict[str, float] | None:
                marks: dict[str, float] = driver.execute_script(MARKS)
                if marks["drawn"] < nodes or marks["events"] is None:
                    return None
                return marks

            wait(settled, 60, "the page to draw every node")
            time.sleep(1)  # the replay may still be arriving: take its last batch
            samples.append(driver.execute_script(MARKS))
        if screenshot:
            driver.save_screenshot(screenshot)
    finally:
        driver.quit()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--screenshot", help="save the page (1280x800 PNG) there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis", persist=False).start()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
        env.update(
            WFE_REDIS_URL=redis.url,
            WFE_STORE_URL=f"sqlite:///{tmp}/wfe.db",
            WFE_QUEUE_PREFIX=f"uib{uuid.uuid4().hex[:8]}",
            WFE_LOG_LEVEL="WARNING",
            WFE_PORT=str(port),
            WFE_HOST="127.0.0.1",
            WFE_METRICS_PORT="0",
            WFE_MAX_NODES=str(max(1000, args.nodes)),
        )
        procs = [
            subprocess.Popen([WFE, "api"], env=env, stderr=subprocess.DEVNULL),
            subprocess.Popen([WFE, "worker"], env=env, stderr=subprocess.DEVNULL),
        ]
        url = f"http://127.0.0.1:{port}"
        try:
            wait(lambda: httpx.get(f"{url}/health").status_code == 200, 30, "the API")
            submitted = httpx.post(
                f"{url}/api/workflow/execute",
                json={"workflowDefinition": layered(args.nodes)},
                timeout=30,
            )
            submitted.raise_for_status()
            execution_id = submitted.json()["executionId"]

            def ended() -> bool:
                status = httpx.get(f"{url}/api/workflow/status/{execution_id}").json()
                return str(status["context"]["status"]) == "completed"

            wait(ended, 120, "the execution to complete")
            samples = measure(url, execution_id, args.nodes, args.rounds, args.screenshot)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            redis.stop()
    print(f"UI render of a {args.nodes}-node execution, headless Chromium, {len(samples)} rounds")
    for key, what in (
        ("graph", "graph drawn with statuses (ms from navigation start)"),
        ("layout", "  of which the dagre layout (ms)"),
        ("events", "event replay applied, page live (ms from navigation start)"),
    ):
        values = sorted(s[key] for s in samples)
        print(f"{what}: median {values[len(values) // 2]:.0f}, worst {values[-1]:.0f}")


if __name__ == "__main__":
    main()
