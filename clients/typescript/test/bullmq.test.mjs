// A Node service as a producer: the npm `bullmq` package's Queue.add puts a job straight into
// our queue (no HTTP); our worker adopts it (creates its execution record, id = jobId) and
// runs it. Bull Board's BullMQAdapter lists the jobs of each queue with their data.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createRequire } from "node:module";
import { Job, Queue } from "bullmq";
import { WorkflowEngineClient } from "../dist/index.js";
import { double, env, eventually, needs, unique } from "./env.mjs";

const require = createRequire(import.meta.url);
const QUEUES = ["realtime", "workflow", "scheduled", "background"];

/** The job once it failed, as stored then (a Job object read earlier has no failedReason). */
function failedJob(queue, jobId) {
  return eventually(
    async () => {
      const job = await Job.fromId(queue, jobId);
      return job?.failedReason && (await job.getState()) === "failed" && job;
    },
    { what: `job ${jobId} failed` },
  );
}

function connection() {
  const url = new URL(env.redisUrl);
  return { host: url.hostname, port: Number(url.port), db: Number(url.pathname.slice(1) || 0), maxRetriesPerRequest: null };
}

describe("Node BullMQ producers", needs("url", "key", "redisUrl"), () => {
  const queues = {};
  const wfe = () => new WorkflowEngineClient(env.url, { apiKey: env.key });

  before(() => {
    for (const name of QUEUES) queues[name] = new Queue(name, { connection: connection(), prefix: env.prefix });
  });
  after(async () => {
    await Promise.all(Object.values(queues).map((q) => q.close()));
  });

  test("queue.add('execute', data, {jobId}) runs, with jobId as the execution id", async () => {
    const jobId = unique("order");
    const clientId = unique("node-svc");
    const job = await queues.workflow.add(
      "execute",
      { workflowDefinition: double, inputs: { total: 50 }, tenantId: "acme", clientId, metadata: { source: "node" } },
      { jobId },
    );
    assert.equal(job.id, jobId);
    const client = wfe();
    const status = await eventually(
      async () => {
        const found = await client.status(jobId, { nodes: true });
        return found.context.status === "completed" && found;
      },
      { what: `execution ${jobId} completed` },
    );
    assert.equal(status.context.executionId, jobId);
    assert.equal(status.context.userId, "acme");
    assert.equal(status.context.clientId, clientId);
    assert.equal(status.context.type, "workflow");
    assert.deepEqual(status.context.metadata, { source: "node" });
    assert.deepEqual(status.result, { doubled: 100 });
    assert.equal(status.nodes.length, 2);
    // its events are the API's as for any execution
    const events = [];
    for await (const event of client.events(jobId)) events.push(event.type);
    assert.equal(events[0], "execution.queued");
    assert.equal(events.at(-1), "execution.completed");
    // the job completes once the outcome is committed: just after the record says so
    await eventually(async () => (await Job.fromId(queues.workflow, jobId)).getState().then((state) => state === "completed"), {
      what: "the job completed",
    });
  });

  test("every queue class; a job without a jobId of its own fails, saying so", async () => {
    const client = wfe();
    const ids = {};
    for (const name of ["realtime", "scheduled", "background"]) {
      ids[name] = unique(`job-${name}`);
      await queues[name].add("execute", { workflowDefinition: double, inputs: { total: 2 }, tenantId: "acme" }, { jobId: ids[name] });
    }
    for (const [name, jobId] of Object.entries(ids)) {
      const done = await eventually(async () => {
        const found = await client.status(jobId);
        return found.context.status === "completed" && found;
      }, { what: `${name} job ${jobId}` });
      assert.equal(done.context.type, name);
      assert.deepEqual(done.result, { doubled: 4 });
    }
    const numbered = await queues.realtime.add("execute", { workflowDefinition: double, inputs: { total: 1 }, tenantId: "acme" });
    assert.match(numbered.id, /^\d+$/); // BullMQ numbered it
    const failed = await failedJob(queues.realtime, numbered.id);
    assert.match(failed.failedReason, /jobId/);
  });

  test("an invalid job fails at once, its failedReason naming every problem", async () => {
    const jobId = unique("broken");
    await queues.workflow.add(
      "execute",
      { workflowDefinition: { id: "bad", nodes: [{ id: "a", type: "no_such_type" }] }, tenantId: "acme" },
      { jobId },
    );
    const job = await failedJob(queues.workflow, jobId);
    assert.match(job.failedReason, /cannot run/);
    assert.match(job.failedReason, /nodes\[0\]\.type/);
    assert.equal(job.attemptsMade <= 1, true, "not retried");
    const notAnObject = unique("broken");
    await queues.workflow.add("execute", { workflowDefinition: "nodes", inputs: "total=1" }, { jobId: notAnObject });
    const second = await failedJob(queues.workflow, notAnObject);
    assert.match(second.failedReason, /workflowDefinition must be an object/);
    assert.match(second.failedReason, /inputs must be an object/);
  });

  test("Bull Board's BullMQAdapter lists each queue's jobs with their data", async () => {
    const { BullMQAdapter } = require("@bull-board/api/bullMQAdapter");
    const jobId = unique("board");
    await queues.scheduled.add("execute", { workflowDefinition: double, inputs: { total: 7 }, tenantId: "acme" }, { jobId });
    await eventually(async () => (await wfe().status(jobId)).context.status === "completed");
    const adapters = QUEUES.map((name) => new BullMQAdapter(queues[name]));
    assert.deepEqual(adapters.map((a) => a.getQueueName()), QUEUES);
    assert.deepEqual(adapters.map((a) => a.getQueuePrefix()), QUEUES.map(() => env.prefix));
    const seen = {};
    for (const adapter of adapters) {
      const counts = await adapter.getJobCounts();
      assert.equal(typeof counts.completed, "number");
      const jobs = await adapter.getJobs(["completed", "failed", "waiting", "active", "delayed"], 0, 200);
      seen[adapter.getQueueName()] = jobs;
      for (const job of jobs) assert.equal(job.name, "execute");
    }
    const board = seen.scheduled.find((j) => j.id === jobId);
    assert.ok(board, `job ${jobId} listed by the adapter of "scheduled"`);
    assert.deepEqual(board.data.inputs, { total: 7 });
    assert.equal(board.data.workflowDefinition.id, "double");
    assert.ok(seen.workflow.length >= 1);
    // jobs submitted over HTTP are listed too: the API's job data
    const { executionId } = await wfe().execute(double, { total: 9 });
    await wfe().wait(executionId);
    const viaApi = await new BullMQAdapter(queues.workflow).getJob(executionId);
    assert.equal(viaApi.name, "execute");
    assert.deepEqual(viaApi.data.inputs, { total: 9 });
    await eventually(async () => (await viaApi.getState()) === "completed", { what: "the API's job completed" });
  });
});
