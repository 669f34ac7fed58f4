// What the tests talk to: servers started by tests/clients/test_typescript.py, named by
// environment variables (not WFE_*: every WFE_ variable is the server's configuration).
//
//   TEST_WFE_URL        an API with keys (`wfe api` + `wfe worker`), tenant acme
//   TEST_WFE_KEY        acme's key (with the admin scope)
//   TEST_WFE_OPEN_URL   an API without keys on the same Redis and store (the seed's client)
//   TEST_WFE_REDIS_URL  their Redis; TEST_WFE_PREFIX: the BullMQ prefix (WFE_QUEUE_PREFIX)
//   TEST_WFE_BIN        the `wfe` command (the restart test runs a `wfe dev` of its own)
import { randomUUID } from "node:crypto";

export const env = {
  url: process.env.TEST_WFE_URL,
  key: process.env.TEST_WFE_KEY,
  openUrl: process.env.TEST_WFE_OPEN_URL,
  redisUrl: process.env.TEST_WFE_REDIS_URL,
  prefix: process.env.TEST_WFE_PREFIX ?? "wfe",
  wfe: process.env.TEST_WFE_BIN,
};

/** `{skip}` for a test that needs these variables, when one is missing. */
export function needs(...names) {
  const missing = names.filter((name) => !env[name]);
  return missing.length ? { skip: `no server (set ${missing.join(", ")}; tests/clients/test_typescript.py does)` } : {};
}

export const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** transform -> output: `{doubled: total * 2}`. */
export const double = {
  id: "double",
  input_schema: { type: "object", properties: { total: { type: "number" } }, required: ["total"] },
  nodes: [
    { id: "calc", type: "transform", inputs: { value: { doubled: "{{ inputs.total * 2 }}" } } },
    { id: "result", type: "output", inputs: { value: "{{ nodes.calc.output }}" } },
  ],
  edges: [{ source: "calc", target: "result" }],
};

/** first -> wait (`seconds`) -> out. */
export function slow(seconds) {
  return {
    id: "slow",
    nodes: [
      { id: "first", type: "transform", inputs: { value: { step: 1 } } },
      { id: "wait", type: "delay", inputs: { seconds } },
      { id: "out", type: "output", inputs: { value: "done" } },
    ],
    edges: [
      { source: "first", target: "wait" },
      { source: "wait", target: "out" },
    ],
  };
}

/** ask (wait_input) -> out: the answer's `approved`. */
export const approval = {
  id: "approval",
  nodes: [
    {
      id: "ask",
      type: "wait_input",
      inputs: {
        prompt: "Approve?",
        schema: { type: "object", properties: { approved: { type: "boolean" } }, required: ["approved"] },
      },
    },
    { id: "out", type: "output", inputs: { value: { approved: "{{ nodes.ask.output.approved }}" } } },
  ],
  edges: [{ source: "ask", target: "out" }],
};

export async function collect(iterable, until = () => false) {
  const out = [];
  for await (const item of iterable) {
    out.push(item);
    if (until(item, out)) break;
  }
  return out;
}

/** Poll `check` until it returns something truthy. */
export async function eventually(check, { timeoutMs = 20_000, everyMs = 50, what = "condition", detail } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const more = detail ? ` (${detail()})` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${more}${lastError ? `: ${lastError}` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Ids strictly increasing: no duplicate, in stream order. */
export function assertIncreasing(assert, events) {
  for (let i = 1; i < events.length; i++) {
    const [am, as] = events[i - 1].id.split("-").map(Number);
    const [bm, bs] = events[i].id.split("-").map(Number);
    assert.ok(bm > am || (bm === am && bs > as), `event ${i} (${events[i].id}) after ${events[i - 1].id}`);
  }
}

/** `promise`, or an error naming `what` after `ms` (the timer does not outlive it). */
export async function within(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${typeof what === "function" ? what() : what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
