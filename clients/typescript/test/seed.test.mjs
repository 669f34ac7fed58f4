// The seed's own WorkflowEngineClient (test/fixtures/seed-client.ts, verbatim), its type
// annotations stripped and nothing else, run on this Node against a real server: it submits
// with {userId, clientId}, reads the status, and its WebSocket, which never sends a message,
// receives every event of the client's execution up to execution.completed.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import ts from "typescript";
import { assertIncreasing, double, env, needs, unique, within } from "./env.mjs";

async function seedClientClass() {
  const source = await readFile(new URL("./fixtures/seed-client.ts", import.meta.url), "utf8");
  const { outputText, diagnostics } = ts.transpileModule(source, {
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  });
  assert.deepEqual(diagnostics ?? [], [], "the seed's code is valid TypeScript");
  const dir = await mkdtemp(join(tmpdir(), "seed-client-"));
  const file = join(dir, "seed-client.mjs");
  await writeFile(file, `${outputText}\nexport { WorkflowEngineClient };\n`);
  try {
    return (await import(pathToFileURL(file).href)).WorkflowEngineClient;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("the seed's client: executeWorkflow, getExecutionStatus, connectToUpdates", needs("openUrl"), async () => {
  assert.equal(typeof WebSocket, "function", "a global WebSocket (Node 20: --experimental-websocket)");
  const WorkflowEngineClient = await seedClientClass();
  const client = new WorkflowEngineClient(env.openUrl, "any-key");
  const clientId = unique("seed-tab");
  const updates = [];
  let finished;
  const completed = new Promise((resolve) => (finished = resolve));
  const ws = client.connectToUpdates(clientId, (data) => {
    updates.push(data);
    if (data.type === "execution.completed") finished();
  });
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", reject, { once: true });
  });
  try {
    // at once: the socket follows its client's executions from the moment it connected
    const submitted = await client.executeWorkflow(double, { inputs: { total: 21 }, userId: "host-user-1", clientId });
    assert.match(submitted.executionId, /^exec_/);
    assert.equal(submitted.jobId, submitted.executionId);
    assert.equal(submitted.status, "pending");
    await within(completed, 20_000, () => `no execution.completed; got ${JSON.stringify(updates)}`);
    const events = updates.filter((u) => u.executionId === submitted.executionId);
    assert.deepEqual(
      events.map((e) => e.type),
      [
        "execution.queued",
        "execution.started",
        "node.started",
        "node.completed",
        "execution.progress",
        "node.started",
        "node.completed",
        "execution.progress",
        "execution.completed",
      ],
    );
    assertIncreasing(assert, events);
    assert.deepEqual(events.at(-1).data.result, { doubled: 42 });
    const status = await client.getExecutionStatus(submitted.executionId);
    assert.equal(status.context.status, "completed");
    assert.equal(status.context.clientId, clientId);
    assert.deepEqual(status.result, { doubled: 42 });
    assert.equal(status.progress.percentage, 100);
  } finally {
    ws.close();
  }
});

test("the seed's socket also gets an execution submitted a while after it connected", needs("openUrl"), async () => {
  const WorkflowEngineClient = await seedClientClass();
  const client = new WorkflowEngineClient(env.openUrl, "any-key");
  const clientId = unique("seed-tab");
  const updates = [];
  const ws = client.connectToUpdates(clientId, (data) => updates.push(data));
  await new Promise((resolve) => ws.addEventListener("open", resolve, { once: true }));
  try {
    await new Promise((resolve) => setTimeout(resolve, 800)); // past the 0.5 s of silence
    const submitted = await client.executeWorkflow(double, { inputs: { total: 1 }, clientId });
    const deadline = Date.now() + 20_000;
    while (!updates.some((u) => u.type === "execution.completed") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const types = updates.filter((u) => u.executionId === submitted.executionId).map((u) => u.type);
    assert.equal(types[0], "execution.queued");
    assert.equal(types.at(-1), "execution.completed");
  } finally {
    ws.close();
  }
});
