// Reconnection rules of events() and clientEvents() against fakes (no server needed): what a
// reconnection lists, a bounded buffer, silent connections, 429s, a finished execution with
// nothing after lastEventId.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";
import { RateLimitedError, WorkflowEngineClient, errorFromResponse, isFinalEvent } from "../dist/index.js";
import { collect, eventually, within } from "./env.mjs";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const iso = (ms) => new Date(ms).toISOString();
const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
const event = (executionId, id, type = "node.completed") => ({
  id,
  executionId,
  type,
  timestamp: iso(T0),
  data: {},
});
const sse = (events) =>
  new Response(
    new ReadableStream({
      start(controller) {
        for (const e of events) controller.enqueue(new TextEncoder().encode(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`));
        controller.close();
      },
    }),
    { headers: { "Content-Type": "text/event-stream" } },
  );

/** A WebSocket class whose sockets the test drives: `deliver(event)`, `drop()`. */
function fakeSockets() {
  const all = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = undefined;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      all.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.({});
      }, 0);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.closedWith = code;
      setTimeout(() => this.onclose?.({ code, reason }), 0);
    }
    drop() {
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: "" });
    }
    deliver(e) {
      this.onmessage?.({ data: JSON.stringify(e) });
    }
  }
  return { FakeSocket, all };
}

/** Follows `iterator` in the background: `got` fills up; `done` settles when it ends. */
function follow(iterator, onEvent = () => {}) {
  const got = [];
  const done = (async () => {
    for await (const e of iterator) {
      got.push(e);
      await onEvent(e, got);
    }
    return got;
  })();
  done.catch(() => {});
  return { got, done };
}

describe("clientEvents on reconnection", () => {
  test("lists back from the last connection (moving forward), a whole page older at most, 10 pages at most", async () => {
    let serverNow = T0;
    let pages = () => ({ items: [], nextCursor: null });
    const listings = []; // [connection number, cursor, has a signal]
    const { FakeSocket, all } = fakeSockets();
    const fakeFetch = async (url, init) => {
      const { pathname, searchParams } = new URL(url);
      if (pathname === "/health") return json({ status: "ok", timestamp: iso(serverNow) });
      if (pathname.startsWith("/api/workflow/reconnect/")) return json([]);
      if (pathname === "/api/workflow/executions") {
        assert.equal(searchParams.get("clientId"), "tab");
        const cursor = searchParams.get("cursor") ?? undefined;
        listings.push([all.length, cursor, init.signal instanceof AbortSignal]);
        return json(pages(cursor));
      }
      throw new Error(`unexpected ${url}`);
    };
    const wfe = new WorkflowEngineClient("http://api.test", {
      fetch: fakeFetch,
      WebSocket: FakeSocket,
      reconnect: { initialDelayMs: 1, maxDelayMs: 5 },
    });
    const controller = new AbortController();
    const { got, done } = follow(wfe.clientEvents("tab", { signal: controller.signal }));
    const context = (executionId, createdAt) => ({ executionId, createdAt: iso(createdAt) });
    try {
      // 1. the first connection lists nothing
      await eventually(() => all.length === 1 && all[0].sent.length === 1, { what: "the first subscription" });
      assert.deepEqual(all[0].sent, [{ type: "subscribe" }]);
      assert.equal(listings.length, 0);

      // 2. a reconnection lists what was submitted since the first connection (less 5 s): ids a
      // producer chose are in no order, so an older item does not stop it; a page older throughout does
      serverNow = T0 + 60_000;
      pages = (cursor) =>
        ({
          undefined: { items: [context("old-1", T0 - 3_600_000), context("new-1", T0 + 10_000)], nextCursor: "c1" },
          c1: { items: [context("new-2", T0 - 4_000), context("old-2", T0 - 6_000)], nextCursor: "c2" },
          c2: { items: [context("old-3", T0 - 7_000), context("old-4", T0 - 3_600_000)], nextCursor: "c3" },
        })[cursor] ?? { items: [context("new-never", T0 + 1)], nextCursor: "more" };
      all[0].drop();
      await eventually(() => all.length === 2 && all[1].sent.length === 3, { what: "the second connection's subscriptions" });
      assert.deepEqual(
        listings.map(([, cursor]) => cursor),
        [undefined, "c1", "c2"],
      );
      assert.ok(listings.every(([, , signal]) => signal), "the listing is given the signal");
      assert.deepEqual(all[1].sent, [
        { type: "subscribe" },
        { type: "subscribe", executionId: "new-1" },
        { type: "subscribe", executionId: "new-2" },
      ]);
      for (const id of ["new-1", "new-2"]) all[1].deliver(event(id, "5-0", "execution.completed"));
      await eventually(() => got.length === 2, { what: "the replayed executions' final events" });

      // 3. the next reconnection lists from the second connection on: one page, all older
      serverNow = T0 + 120_000;
      listings.length = 0;
      pages = () => ({ items: [context("new-1", T0 + 10_000), context("new-2", T0 - 4_000)], nextCursor: "again" });
      all[1].drop();
      await eventually(() => all.length === 3 && listings.length === 1 && all[2].sent.length === 1, {
        what: "the third connection",
      });
      await new Promise((resolve) => setTimeout(resolve, 50)); // (nothing more comes)
      assert.equal(listings.length, 1);
      assert.deepEqual(all[2].sent, [{ type: "subscribe" }]);

      // 4. however many executions were submitted meanwhile: 10 pages of 100 at most
      serverNow = T0 + 180_000;
      listings.length = 0;
      let n = 0;
      pages = () => ({ items: [context(`flood-${n++}`, T0 + 170_000)], nextCursor: `p${n}` });
      all[2].drop();
      await eventually(() => all.length === 4 && all[3].sent.length === 11, { what: "the fourth connection" });
      await new Promise((resolve) => setTimeout(resolve, 50)); // (nothing more comes)
      assert.equal(listings.length, 10);
    } finally {
      controller.abort();
    }
    await within(done, 2_000, "the iterator ends once aborted");
  });

  test("an abort during the reconnection's listing ends the iterator at once", async () => {
    const { FakeSocket, all } = fakeSockets();
    let listing = false;
    let serverNow = T0;
    const fakeFetch = (url, init) => {
      const { pathname } = new URL(url);
      if (pathname === "/health") return Promise.resolve(json({ status: "ok", timestamp: iso((serverNow += 1000)) }));
      if (pathname.startsWith("/api/workflow/reconnect/")) return Promise.resolve(json([]));
      listing = true; // never answers: only its signal ends it
      return new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    };
    const wfe = new WorkflowEngineClient("http://api.test", { fetch: fakeFetch, WebSocket: FakeSocket, reconnect: { initialDelayMs: 1 } });
    const controller = new AbortController();
    const { done } = follow(wfe.clientEvents("tab", { signal: controller.signal }));
    try {
      await eventually(() => all.length === 1 && all[0].sent.length === 1, { what: "the first connection" });
      all[0].drop();
      await eventually(() => listing, { what: "the listing" });
    } finally {
      controller.abort();
    }
    await within(done, 2_000, "the iterator ends once aborted");
  });

  test("a consumer too slow for the buffer: the socket closes, and the next one resumes after what it consumed", async () => {
    const { FakeSocket, all } = fakeSockets();
    const fakeFetch = async (url) => {
      const { pathname } = new URL(url);
      if (pathname === "/health") return json({ status: "ok", timestamp: iso(T0) });
      if (pathname.startsWith("/api/workflow/reconnect/")) return json([]);
      if (pathname === "/api/workflow/executions") return json({ items: [], nextCursor: null });
      throw new Error(`unexpected ${url}`);
    };
    const wfe = new WorkflowEngineClient("http://api.test", { fetch: fakeFetch, WebSocket: FakeSocket, reconnect: { initialDelayMs: 1 } });
    const controller = new AbortController();
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const { got, done } = follow(wfe.clientEvents("tab", { signal: controller.signal, maxBufferedEvents: 3 }), async (e, got) => {
      if (got.length === 1) await gate; // a slow consumer
      if (isFinalEvent(e)) controller.abort();
    });
    const ids = Array.from({ length: 10 }, (_, i) => `${i + 1}-0`);
    const events = ids.map((id, i) => event("exec-x", id, i === 9 ? "execution.completed" : "node.completed"));
    try {
      await eventually(() => all.length === 1 && all[0].sent.length === 1, { what: "the socket" });
      all[0].deliver(events[0]);
      await eventually(() => got.length === 1, { what: "the first event" });
      for (const e of events.slice(1)) all[0].deliver(e); // 3 fit; the 4th closes the socket
      await eventually(() => all[0].readyState === 3, { what: "the socket closed" });
      assert.equal(all[0].closedWith, 1000);
      release();
      await eventually(() => all.length === 2 && all[1].sent.length >= 2, { what: "a new socket" });
      assert.deepEqual(all[1].sent[0], { type: "subscribe", executionId: "exec-x", lastEventId: "4-0" });
      all[1].deliver(events[2]); // 3-0 and 4-0 again: not repeated
      all[1].deliver(events[3]);
      for (const e of events.slice(4)) {
        all[1].deliver(e);
        await eventually(() => got.at(-1).id === e.id, { what: e.id }); // consumed, one by one
      }
      await within(done, 2_000, () => `the final event; got ${got.map((e) => e.id)}; sent ${JSON.stringify(all.map((s) => s.sent))}`);
    } finally {
      release();
      controller.abort();
    }
    assert.deepEqual(
      got.map((e) => e.id),
      ids,
    );
  });

  test("a silent socket is closed and replaced; heartbeats keep it", async () => {
    const { FakeSocket, all } = fakeSockets();
    const fakeFetch = async (url) => {
      const { pathname } = new URL(url);
      if (pathname === "/health") return json({ status: "ok", timestamp: iso(T0) });
      if (pathname.startsWith("/api/workflow/reconnect/")) return json([]);
      if (pathname === "/api/workflow/executions") return json({ items: [], nextCursor: null });
      throw new Error(`unexpected ${url}`);
    };
    const wfe = new WorkflowEngineClient("http://api.test", {
      fetch: fakeFetch,
      WebSocket: FakeSocket,
      reconnect: { initialDelayMs: 1, idleTimeoutMs: 300 },
    });
    const controller = new AbortController();
    const { done } = follow(wfe.clientEvents("tab", { signal: controller.signal }));
    try {
      await eventually(() => all.length === 1 && all[0].readyState === 1, { what: "the socket" });
      const heartbeats = setInterval(() => all[0].onmessage?.({ data: '{"type":"heartbeat"}' }), 50);
      await new Promise((resolve) => setTimeout(resolve, 900)); // 3 x the idle timeout, heard from
      clearInterval(heartbeats);
      assert.equal(all.length, 1, "a socket with heartbeats is kept");
      await eventually(() => all.length === 2, { what: "the silent socket replaced", timeoutMs: 3_000 });
      assert.equal(all[0].readyState, 3);
    } finally {
      controller.abort();
    }
    await within(done, 2_000, "the iterator ends once aborted");
  });
});

describe("events() on reconnection", () => {
  test("a connection silent past the idle timeout is dropped and resumed; keep-alive comments keep it", async () => {
    const requests = [];
    const server = createServer((request, response) => {
      requests.push({ at: Date.now(), lastEventId: request.headers["last-event-id"] });
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      const write = (e) => response.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      if (requests.length === 1) {
        write(event("exec-1", "1-0"));
        const pings = setInterval(() => response.write(": ping\n\n"), 100);
        setTimeout(() => clearInterval(pings), 800); // then silence, the connection left open
        response.on("close", () => clearInterval(pings));
      } else {
        write(event("exec-1", "2-0", "execution.completed"));
        response.end();
      }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const controller = new AbortController();
    try {
      const wfe = new WorkflowEngineClient(`http://127.0.0.1:${server.address().port}`, {
        reconnect: { initialDelayMs: 1, idleTimeoutMs: 500 },
      });
      const events = await within(collect(wfe.events("exec-1", { signal: controller.signal })), 5_000, "the final event");
      assert.deepEqual(
        events.map((e) => e.id),
        ["1-0", "2-0"],
      );
      assert.equal(requests.length, 2);
      assert.equal(requests[1].lastEventId, "1-0");
      assert.ok(requests[1].at - requests[0].at >= 800, "the keep-alive comments kept the first connection");
    } finally {
      controller.abort();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test("a 429 is retried after its Retry-After (10 times in a row at most); plain calls throw it", async () => {
    let calls = 0;
    const started = Date.now();
    const limited = (retryAfter) => json({ error: { code: "rate_limited", message: "busy" } }, 429, { "Retry-After": retryAfter });
    const wfe = new WorkflowEngineClient("http://api.test", {
      fetch: async () => (++calls <= 2 ? limited(calls === 1 ? "1" : "0") : sse([event("e", "1-0", "execution.completed")])),
      reconnect: { initialDelayMs: 1, maxDelayMs: 1 },
    });
    const events = await within(collect(wfe.events("e")), 5_000, "the events after two 429s");
    assert.deepEqual(
      events.map((e) => e.id),
      ["1-0"],
    );
    assert.equal(calls, 3);
    assert.ok(Date.now() - started >= 1_000, "Retry-After: 1 was waited for");

    let tries = 0;
    const always = new WorkflowEngineClient("http://api.test", {
      fetch: async () => (++tries, limited("0")),
      reconnect: { initialDelayMs: 1, maxDelayMs: 1 },
    });
    await assert.rejects(within(collect(always.events("e")), 5_000, "giving up"), RateLimitedError);
    assert.equal(tries, 11);

    const plain = await always.status("e").catch((e) => e);
    assert.ok(plain instanceof RateLimitedError);
    assert.equal(plain.status, 429);
    assert.equal(plain.retryAfter, 0);
    const dated = errorFromResponse(429, {}, new Date(Date.now() + 30_000).toUTCString());
    assert.ok(dated.retryAfter > 25 && dated.retryAfter <= 30, String(dated.retryAfter));
  });

  test("an ended execution with nothing after lastEventId: the iterator ends (fetch and EventSource)", async () => {
    let streams = 0;
    let status = "running";
    const fakeFetch = async (url) => {
      const { pathname } = new URL(url);
      if (pathname.startsWith("/api/workflow/status/")) return json({ context: { executionId: "e", status } });
      streams += 1;
      return sse([]); // the API sends nothing after the final event
    };
    const wfe = new WorkflowEngineClient("http://api.test", { fetch: fakeFetch, reconnect: { initialDelayMs: 1, maxDelayMs: 5 } });
    status = "completed";
    assert.deepEqual(await within(collect(wfe.events("e", { lastEventId: "9-0" })), 2_000, "the end"), []);
    assert.equal(streams, 1);

    // not ended yet: an empty stream is tried again
    status = "running";
    streams = 0;
    const controller = new AbortController();
    try {
      const following = collect(wfe.events("e", { lastEventId: "9-0", signal: controller.signal }));
      await eventually(() => streams >= 3, { what: "retries" });
      status = "cancelled";
      assert.deepEqual(await within(following, 2_000, "the end once cancelled"), []);
    } finally {
      controller.abort();
    }

    class ClosingEventSource {
      constructor() {
        this.onmessage = this.onerror = null;
        setTimeout(() => this.onerror?.({}), 0); // the server closed the stream at once
      }
      addEventListener() {}
      close() {}
    }
    status = "failed";
    const viaEventSource = new WorkflowEngineClient("http://api.test", { fetch: fakeFetch, EventSource: ClosingEventSource });
    assert.deepEqual(
      await within(collect(viaEventSource.events("e", { lastEventId: "9-0", transport: "eventsource" })), 2_000, "the end"),
      [],
    );
  });
});
