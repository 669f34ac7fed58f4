// A server killed with SIGKILL while events() and clientEvents() follow a running execution:
// `wfe dev` is started again on the same port with the same data dir (.wfe: the embedded
// Redis's AOF and the SQLite store), another worker takes the stalled job over, and both
// iterators go on to the final event, with no event twice and none missing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { WorkflowEngineClient, isFinalEvent } from "../dist/index.js";
import { assertIncreasing, collect, env, eventually, needs, slow, unique, within } from "./env.mjs";

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `wfe dev` in `dir` on `port`, once it says it is running. */
async function startDev(dir, port) {
  const serverEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("WFE_") && !k.startsWith("TEST_WFE_")));
  Object.assign(serverEnv, {
    WFE_PORT: String(port),
    WFE_HOST: "127.0.0.1",
    WFE_METRICS_PORT: "0",
    // a killed worker's job is another's 2-3 s later (defaults: 30 s)
    WFE_LOCK_DURATION_MS: "2000",
    WFE_STALLED_INTERVAL_MS: "1000",
  });
  const child = spawn(env.wfe, ["dev"], { cwd: dir, env: serverEnv, stdio: ["ignore", "pipe", "pipe"] });
  let said = "";
  const running = new Promise((resolve, reject) => {
    const listen = (chunk) => {
      said += chunk;
      if (said.includes("workflow-engine dev is running")) resolve();
    };
    child.stdout.on("data", listen);
    child.stderr.on("data", listen);
    child.once("exit", (code) => reject(new Error(`wfe dev exited (${code}):\n${said}`)));
  });
  await within(running, 30_000, () => `wfe dev did not start:\n${said}`);
  return { child, output: () => said };
}

/** The processes `pid` started (the embedded redis-server of a `wfe dev`). */
async function children(pid) {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  return text.split(/\s+/).filter(Boolean).map(Number);
}

async function cmdline(pid) {
  return (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", resolve));
}

test("events() and clientEvents() go on across a SIGKILL and restart of wfe dev", needs("wfe"), async () => {
  const dir = await mkdtemp(join(tmpdir(), "wfe-dev-restart-"));
  const port = await freePort();
  let dev = await startDev(dir, port);
  const controller = new AbortController(); // stops both iterators, whatever happens
  try {
    // the iterators' failed tries while the server is down: events() fetches that throw, sockets closed
    let failedFetches = 0;
    let socketsClosed = 0;
    class CountingWebSocket extends WebSocket {
      constructor(url) {
        super(url);
        let counted = false;
        const ended = () => {
          if (!counted) socketsClosed += 1;
          counted = true;
        };
        // (undici on Node 20 may fire `error` only)
        this.addEventListener("close", ended);
        this.addEventListener("error", ended);
      }
    }
    const countingFetch = (url, init) =>
      fetch(url, init).catch((error) => {
        if (String(url).includes("/api/workflow/events/")) failedFetches += 1;
        throw error;
      });
    const client = new WorkflowEngineClient(`http://127.0.0.1:${port}`, {
      fetch: countingFetch,
      WebSocket: CountingWebSocket,
      reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    });
    const clientId = unique("restart-tab");
    const socketSeen = [];
    const viaSocket = collect(client.clientEvents(clientId, { signal: controller.signal }), (e) => {
      socketSeen.push(e);
      return isFinalEvent(e);
    });
    const { executionId } = await client.execute(slow(3), {}, { clientId });
    const seen = [];
    const viaSse = collect(client.events(executionId, { signal: controller.signal }), (e) => {
      seen.push(e);
      return false;
    });
    const delayStarted = (events) => events.some((e) => e.type === "node.started" && e.data.nodeId === "wait");
    await eventually(() => delayStarted(seen) && delayStarted(socketSeen), {
      what: "the delay node started, on SSE and on the socket",
    });

    // the box dies: wfe dev and its Redis (left running, a second redis-server would share its AOF)
    const redisPids = [];
    for (const pid of await children(dev.child.pid)) {
      if ((await cmdline(pid)).includes("redis-server")) redisPids.push(pid);
    }
    assert.equal(redisPids.length, 1, "wfe dev runs one redis-server");
    const [fetchesBefore, closedBefore] = [failedFetches, socketsClosed];
    dev.child.kill("SIGKILL");
    await exited(dev.child);
    for (const pid of redisPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone with its parent
      }
    }
    const before = seen.length;
    // both clients have noticed: a try of events() failed, the socket closed
    await eventually(() => failedFetches > fetchesBefore && socketsClosed > closedBefore, {
      what: "both iterators noticed the server gone",
      detail: () => `events() fetches failed: ${failedFetches - fetchesBefore}, sockets ended: ${socketsClosed - closedBefore}`,
    });
    dev = await startDev(dir, port);

    const events = await within(viaSse, 40_000, () => `the final event; got ${seen.map((e) => e.type)}`);
    const socketEvents = await within(viaSocket, 20_000, "the socket's final event");
    controller.abort();
    assert.ok(before < events.length, "events came after the restart");
    assert.equal(events.at(-1).type, "execution.completed");
    assertIncreasing(assert, events);
    const replay = await collect(client.events(executionId));
    assert.deepEqual(
      events.map((e) => e.id),
      replay.map((e) => e.id),
      "SSE: no gap, no duplicate",
    );
    assert.deepEqual(
      socketEvents.map((e) => e.id),
      replay.map((e) => e.id),
      "WebSocket: no gap, no duplicate",
    );
    const restarted = replay.filter((e) => e.type === "execution.started");
    assert.deepEqual(
      restarted.map((e) => [e.data.attempt, e.data.resumed]),
      [
        [1, false],
        [2, true],
      ],
    );
    const status = await client.status(executionId);
    assert.equal(status.context.status, "completed");
    assert.equal(status.result, "done");
  } finally {
    controller.abort();
    dev.child.kill("SIGTERM"); // stops its Redis too
    await within(exited(dev.child), 20_000, "wfe dev stopped").catch(() => dev.child.kill("SIGKILL"));
    await rm(dir, { recursive: true, force: true });
  }
});
