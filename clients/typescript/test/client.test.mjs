// The package (dist/, built by tsc) against a real API with keys.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  SseParser,
  UnauthorizedError,
  UnreachableError,
  WorkflowEngineClient,
  WorkflowEngineError,
  isFinalEvent,
} from "../dist/index.js";
import { approval, assertIncreasing, collect, double, env, eventually, needs, slow, unique, within } from "./env.mjs";

/** A small EventSource (no headers: the key goes in the URL) over fetch, for a Node that has
 * none; `dropAfter` cuts each connection after that many events, as a flaky network would. */
class MiniEventSource {
  static dropAfter = Infinity;
  static opened = 0;
  constructor(url) {
    MiniEventSource.opened += 1;
    assert.match(url, /[?&]token=/);
    this.onmessage = null;
    this.onerror = null;
    this.listeners = new Map();
    this.controller = new AbortController();
    this.run(url).catch(() => this.onerror?.({ type: "error" }));
  }
  addEventListener(type, listener) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  close() {
    this.controller.abort();
  }
  async run(url) {
    const response = await fetch(url, { signal: this.controller.signal });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const parser = new SseParser();
    let delivered = 0;
    for await (const chunk of response.body) {
      for (const message of parser.feed(chunk)) {
        const listeners = this.listeners.get(message.event) ?? [];
        for (const listener of listeners) listener({ data: message.data, lastEventId: message.id });
        if (message.event === "message") this.onmessage?.({ data: message.data });
        if (++delivered >= MiniEventSource.dropAfter) throw new Error("dropped");
      }
    }
    throw new Error("closed by the server");
  }
}

/** The platform's WebSocket, with a switch to take the network down (tests of reconnection). */
class FlakyWebSocket extends WebSocket {
  static down = false;
  static refused = 0;
  static open = new Set();
  constructor(url) {
    super(FlakyWebSocket.down ? url.replace(/:\/\/[^/]+/, "://127.0.0.1:9") : url);
    if (FlakyWebSocket.down) FlakyWebSocket.refused += 1;
    this.addEventListener("open", () => FlakyWebSocket.open.add(this));
    this.addEventListener("close", () => FlakyWebSocket.open.delete(this));
  }
}

const client = () => new WorkflowEngineClient(env.url, { apiKey: env.key });

describe("the client", needs("url", "key"), () => {
  test("execute, events (replayed, then live, up to the final event), status, wait", async () => {
    const wfe = client();
    const submitted = await wfe.execute(double, { total: 20 }, { clientId: unique("tab"), metadata: { from: "node" } });
    assert.match(submitted.executionId, /^exec_/);
    assert.equal(submitted.status, "pending");
    const events = await collect(wfe.events(submitted.executionId));
    assert.equal(events[0].type, "execution.queued");
    assert.equal(events.at(-1).type, "execution.completed");
    assert.ok(events.every((e) => e.executionId === submitted.executionId));
    assert.deepEqual(events.at(-1).data.result, { doubled: 40 });
    assertIncreasing(assert, events);

    const status = await wfe.wait(submitted.executionId);
    assert.equal(status.context.status, "completed");
    assert.equal(status.context.userId, "acme");
    assert.deepEqual(status.context.metadata, { from: "node" });
    assert.deepEqual(status.result, { doubled: 40 });
    assert.deepEqual(
      status.nodes.map((n) => [n.nodeId, n.status]),
      [
        ["calc", "completed"],
        ["result", "completed"],
      ],
    );
    assert.equal((await wfe.status(submitted.executionId)).nodes, undefined);

    // resume after any event: exactly the rest
    const rest = await collect(wfe.events(submitted.executionId, { lastEventId: events[2].id }));
    assert.deepEqual(
      rest.map((e) => e.id),
      events.slice(3).map((e) => e.id),
    );
    // after the final event: nothing, and the iterator ends (the API sends an empty stream)
    const after = await within(collect(wfe.events(submitted.executionId, { lastEventId: events.at(-1).id })), 10_000, "the end");
    assert.deepEqual(after, []);
  });

  test("typed errors carry status, code, message and details", async () => {
    const wfe = client();
    const invalid = await wfe.execute({ id: "bad", nodes: [{ id: "a", type: "nope" }] }).catch((e) => e);
    assert.ok(invalid instanceof InvalidRequestError);
    assert.ok(invalid instanceof WorkflowEngineError);
    assert.equal(invalid.status, 422);
    assert.equal(invalid.code, "invalid_definition");
    assert.match(invalid.message, /problem/);
    assert.ok(invalid.details.some((d) => d.path === "workflowDefinition.nodes[0].type"), JSON.stringify(invalid.details));

    const missing = await wfe.status("exec_nothing_here").catch((e) => e);
    assert.ok(missing instanceof NotFoundError);
    assert.equal(missing.status, 404);
    assert.equal(typeof missing.code, "string");

    await assert.rejects(collect(wfe.events("exec_nothing_here")), NotFoundError);

    const stranger = new WorkflowEngineClient(env.url, { apiKey: "not-a-key" });
    const refused = await stranger.stats().catch((e) => e);
    assert.ok(refused instanceof UnauthorizedError);
    assert.equal(refused.status, 401);
    const anonymous = new WorkflowEngineClient(env.url);
    await assert.rejects(anonymous.stats(), UnauthorizedError);
    await assert.rejects(collect(stranger.clientEvents("tab")), UnauthorizedError); // ?token= refused

    const nowhere = new WorkflowEngineClient("http://127.0.0.1:9", { apiKey: env.key });
    const unreachable = await nowhere.health().catch((e) => e);
    assert.ok(unreachable instanceof UnreachableError);
    assert.equal(unreachable.status, 0);
  });

  test("list: every execution of a filter, newest first, page by page", async () => {
    const wfe = client();
    const clientId = unique("lister");
    const ids = [];
    for (const total of [1, 2, 3]) ids.push((await wfe.execute(double, { total }, { clientId })).executionId);
    for (const id of ids) await wfe.wait(id);
    const pages = await collect(wfe.list({ clientId, limit: 2 }).pages());
    assert.deepEqual(
      pages.map((p) => p.items.length),
      [2, 1],
    );
    assert.equal(pages[1].nextCursor, null);
    const all = await wfe.list({ clientId, limit: 2 }).all();
    assert.deepEqual(
      all.map((c) => c.executionId),
      [...ids].reverse(),
    );
    assert.deepEqual(
      (await collect(wfe.list({ clientId, status: "completed" }))).length,
      3,
    );
  });

  test("cancel, then a ConflictError for an execution that ended", async () => {
    const wfe = client();
    const { executionId } = await wfe.execute(slow(30), {});
    const seen = [];
    const controller = new AbortController();
    const following = collect(wfe.events(executionId, { signal: controller.signal }), (e) => {
      seen.push(e);
      return false;
    });
    let events;
    try {
      await eventually(() => seen.some((e) => e.type === "node.started" && e.data.nodeId === "wait"), { what: "the delay" });
      const cancelled = await wfe.cancel(executionId);
      assert.deepEqual(cancelled, { executionId, status: "cancelled" });
      events = await within(following, 10_000, "execution.cancelled");
    } finally {
      controller.abort();
    }
    assert.equal(events.at(-1).type, "execution.cancelled");
    const again = await wfe.cancel(executionId).catch((e) => e);
    assert.ok(again instanceof ConflictError);
    assert.equal(again.status, 409);
  });

  test("resume a wait_input, then rerun from a node", async () => {
    const wfe = client();
    const { executionId } = await wfe.execute(approval, {});
    let waiting;
    for await (const event of wfe.events(executionId)) {
      if (event.type === "execution.waiting") {
        waiting = event;
        break;
      }
    }
    assert.equal(waiting.data.nodes[0].nodeId, "ask");
    const invalid = await wfe.resume(executionId, { approved: "yes" }).catch((e) => e);
    assert.ok(invalid instanceof InvalidRequestError);
    assert.ok(invalid.details.length > 0);
    const resumed = await wfe.resume(executionId, { approved: true }, { nodeId: "ask" });
    assert.deepEqual(resumed, { executionId, nodeId: "ask", status: "resumed" });
    const done = await wfe.wait(executionId, { timeoutMs: 20_000 });
    assert.equal(done.context.status, "completed");
    assert.deepEqual(done.result, { approved: true });

    const first = await wfe.execute(double, { total: 5 });
    await wfe.wait(first.executionId);
    const again = await wfe.rerun(first.executionId, "result", { inputs: { total: 5 } });
    assert.notEqual(again.executionId, first.executionId);
    const rerun = await wfe.wait(again.executionId);
    assert.equal(rerun.context.status, "completed");
    assert.equal(rerun.context.metadata.rerunOf, first.executionId);
    assert.deepEqual(rerun.result, { doubled: 10 });
    await assert.rejects(wfe.rerun(first.executionId, "no_such_node"), InvalidRequestError);
  });

  test("schedules: create, list, get, delete", async () => {
    const wfe = client();
    const created = await wfe.schedule(double, { total: 1 }, { every: 3_600_000 }, { clientId: unique("cron") });
    assert.ok(created.scheduleId);
    assert.ok(created.nextRunAt);
    const listed = await wfe.schedules.list();
    assert.ok(listed.some((s) => s.scheduleId === created.scheduleId));
    const one = await wfe.schedules.get(created.scheduleId);
    assert.equal(one.repeat.every, 3_600_000);
    assert.deepEqual(one.inputs, { total: 1 });
    assert.equal(one.workflowDefinition.id, "double");
    assert.deepEqual(await wfe.schedules.delete(created.scheduleId), { scheduleId: created.scheduleId, status: "deleted" });
    assert.ok(!(await wfe.schedules.list()).some((s) => s.scheduleId === created.scheduleId));
    await assert.rejects(wfe.schedules.get(created.scheduleId), NotFoundError);
  });

  test("stored workflows: push, list, get, versions, execute, delete", async () => {
    const wfe = client();
    const id = unique("stored");
    assert.deepEqual(await wfe.workflows.push(double, { id, name: "Double" }), { workflowId: id, version: 1 });
    const second = { ...double, nodes: [double.nodes[0], { ...double.nodes[1], inputs: { value: { v2: "{{ nodes.calc.output.doubled }}" } } }] };
    assert.deepEqual(await wfe.workflows.push(second, { id }), { workflowId: id, version: 2 });
    const listed = await wfe.workflows.list({ limit: 200 }).all();
    const summary = listed.find((w) => w.workflowId === id);
    assert.equal(summary.version, 2);
    const v1 = await wfe.workflows.get(id, { version: 1 });
    assert.equal(v1.name, "Double");
    assert.deepEqual(v1.definition.nodes, double.nodes);
    assert.equal((await wfe.workflows.get(id)).version, 2);
    assert.deepEqual(
      (await wfe.workflows.versions(id)).map((v) => v.version),
      [1, 2],
    );
    const latest = await wfe.workflows.execute(id, { total: 4 });
    assert.deepEqual((await wfe.wait(latest.executionId)).result, { v2: 8 });
    const first = await wfe.workflows.execute(id, { total: 4 }, { version: 1 });
    const firstDone = await wfe.wait(first.executionId);
    assert.deepEqual(firstDone.result, { doubled: 8 });
    assert.equal(firstDone.context.workflowVersion, 1);
    assert.deepEqual(await wfe.workflows.delete(id), { workflowId: id, status: "deleted" });
    await assert.rejects(wfe.workflows.execute(id, { total: 1 }), NotFoundError);
  });

  test("clientEvents: every event of the client's executions, each once, in order", async () => {
    const wfe = client();
    const clientId = unique("tab");
    const controller = new AbortController();
    const byExecution = new Map();
    let finals = 0;
    const following = (async () => {
      for await (const event of wfe.clientEvents(clientId, { signal: controller.signal })) {
        if (!byExecution.has(event.executionId)) byExecution.set(event.executionId, []);
        byExecution.get(event.executionId).push(event);
        if (isFinalEvent(event) && ++finals === 2) return;
      }
    })();
    let a, b;
    try {
      // the subscription is made once the socket is open; an execution submitted before that
      // and still running is followed from its first event too
      a = await wfe.execute(slow(0.5), {}, { clientId });
      await eventually(() => byExecution.has(a.executionId), { what: "a's first event" }); // subscribed
      b = await wfe.execute(double, { total: 3 }, { clientId });
      await wfe.execute(double, { total: 3 }, { clientId: unique("someone-else") });
      await within(following, 20_000, () => `two final events; got ${JSON.stringify([...byExecution.keys()])}`);
    } finally {
      controller.abort();
    }
    assert.deepEqual([...byExecution.keys()].sort(), [a.executionId, b.executionId].sort());
    for (const [executionId, events] of byExecution) {
      const replay = await collect(wfe.events(executionId));
      assert.deepEqual(
        events.map((e) => e.id),
        replay.map((e) => e.id),
        `the socket's events of ${executionId} are its stream's`,
      );
    }
  });

  test("clientEvents across a dropped socket: resumed, and what ran meanwhile replayed", async () => {
    const wfe = new WorkflowEngineClient(env.url, { apiKey: env.key, WebSocket: FlakyWebSocket, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    const clientId = unique("flaky-tab");
    const controller = new AbortController();
    const got = [];
    let finals = 0;
    const following = (async () => {
      for await (const event of wfe.clientEvents(clientId, { signal: controller.signal })) {
        got.push(event);
        if (isFinalEvent(event) && ++finals === 2) return;
      }
    })();
    let a, b;
    try {
      await eventually(() => FlakyWebSocket.open.size === 1, { what: "the socket" });
      a = await wfe.execute(slow(1), {}, { clientId });
      await eventually(() => got.some((e) => e.type === "node.started" && e.data.nodeId === "wait"), { what: "a's delay" });
      FlakyWebSocket.down = true; // the network goes: every socket drops, none connects
      for (const socket of FlakyWebSocket.open) socket.close(4000, "network down");
      b = await wfe.execute(double, { total: 6 }, { clientId });
      await wfe.wait(b.executionId); // b runs and ends while the client is away
      await eventually(() => FlakyWebSocket.refused > 0, { what: "a try while the network is down" });
      FlakyWebSocket.down = false;
      await within(following, 20_000, () => `two final events; got ${got.map((e) => e.type)}`);
    } finally {
      FlakyWebSocket.down = false;
      controller.abort();
    }
    for (const { executionId } of [a, b]) {
      const replay = await collect(wfe.events(executionId));
      assert.deepEqual(
        got.filter((e) => e.executionId === executionId).map((e) => e.id),
        replay.map((e) => e.id),
        `every event of ${executionId}, once`,
      );
    }
  });

  test("stats and health", async () => {
    const wfe = client();
    assert.equal((await wfe.health()).status, "ok");
    const stats = await wfe.stats();
    assert.ok(stats.executions.completed >= 1);
    assert.ok("workflow" in stats.queues); // an admin key sees the queues
    const queues = await wfe.queues.list();
    assert.deepEqual(queues.map((q) => q.name).sort(), ["background", "realtime", "scheduled", "workflow"]);
  });

  test("events through an EventSource (the key as ?token=), resumed after a drop", async () => {
    const constructors = [MiniEventSource, ...(typeof EventSource === "function" ? [EventSource] : [])];
    for (const EventSourceClass of constructors) {
      const wfe = new WorkflowEngineClient(env.url, { apiKey: env.key, EventSource: EventSourceClass });
      const { executionId } = await wfe.execute(double, { total: 2 });
      const events = await collect(wfe.events(executionId, { transport: "eventsource" }));
      assert.equal(events.at(-1).type, "execution.completed", EventSourceClass.name);
      assertIncreasing(assert, events);
      const replay = await collect(wfe.events(executionId));
      assert.deepEqual(events.map((e) => e.id), replay.map((e) => e.id));
    }
    const viaEventSource = new WorkflowEngineClient(env.url, { apiKey: env.key, EventSource: MiniEventSource });
    await assert.rejects(collect(viaEventSource.events("exec_nothing_here", { transport: "eventsource" })), NotFoundError);
    const { executionId: ended } = await viaEventSource.execute(double, { total: 1 });
    const all = await collect(viaEventSource.events(ended, { transport: "eventsource" }));
    const after = viaEventSource.events(ended, { transport: "eventsource", lastEventId: all.at(-1).id });
    assert.deepEqual(await within(collect(after), 10_000, "the end after the final event"), []);
    // a source that drops after each event: the client reconnects after the last one
    MiniEventSource.dropAfter = 1;
    try {
      const wfe = new WorkflowEngineClient(env.url, { apiKey: env.key, EventSource: MiniEventSource, reconnect: { initialDelayMs: 10 } });
      const { executionId } = await wfe.execute(double, { total: 2 });
      await wfe.wait(executionId);
      const events = await collect(wfe.events(executionId, { transport: "eventsource" }));
      const replay = await collect(wfe.events(executionId));
      assert.deepEqual(events.map((e) => e.id), replay.map((e) => e.id));
      assert.ok(MiniEventSource.opened >= replay.length);
    } finally {
      MiniEventSource.dropAfter = Infinity;
    }
  });
});
