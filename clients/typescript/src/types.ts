/** The API's types, from the generated `openapi.ts`, under friendly names. */
import type { components, paths } from "./openapi.js";

export type { components, paths, operations } from "./openapi.js";

type Schemas = components["schemas"];

/** A workflow graph (see the README's "Workflow definitions"); YAML is the CLI's business. */
export interface WorkflowDefinition {
  id?: string;
  name?: string;
  description?: string;
  version?: string | number;
  input_schema?: Record<string, unknown>;
  variables?: Record<string, unknown>;
  max_parallel?: number;
  nodes: Array<{ id: string; type: string; inputs?: Record<string, unknown>; [key: string]: unknown }>;
  edges?: Array<{ source: string; target: string; branch?: string; [key: string]: unknown }>;
  [key: string]: unknown;
}

export type ExecuteRequest = Schemas["ExecuteRequest"];
export type Submitted = Schemas["Accepted"];
export type ScheduleCreated = Schemas["ScheduleCreated"];
export type Status = Schemas["ExecutionState"];
export type Context = Schemas["ExecutionContext"];
export type Progress = Schemas["Progress"];
export type NodeResult = Schemas["NodeResult"];
export type ExecutionStatus = Schemas["ExecutionStatus"];
export type ExecutionPage = Schemas["ExecutionPage"];
export type ActiveExecution = Schemas["ActiveExecution"];
export type Cancelled = Schemas["Cancelled"];
export type Resumed = Schemas["Resumed"];
export type Stats = Schemas["Stats"];
export type Health = Schemas["Health"];
export type Schedule = Schemas["Schedule"];
export type ScheduleDetail = Schemas["ScheduleDetail"];
export type ScheduleDeleted = Schemas["ScheduleDeleted"];
export type RepeatOptions = Schemas["RepeatOptions"];
export type WorkflowSaved = Schemas["WorkflowSaved"];
export type WorkflowSummary = Schemas["WorkflowSummary"];
export type WorkflowList = Schemas["WorkflowList"];
export type StoredWorkflow = Schemas["StoredWorkflow"];
export type WorkflowVersion = Schemas["WorkflowVersion"];
export type WorkflowDeleted = Schemas["WorkflowDeleted"];
export type QueueOverview = Schemas["QueueOverview"];
export type ApiErrorBody = Schemas["Error"];

/** Filters of `GET /api/workflow/executions`. */
export type ExecutionFilters = NonNullable<paths["/api/workflow/executions"]["get"]["parameters"]["query"]>;

export type EventType =
  | "execution.queued"
  | "execution.started"
  | "execution.progress"
  | "execution.waiting"
  | "execution.completed"
  | "execution.failed"
  | "execution.cancelled"
  | "node.started"
  | "node.completed"
  | "node.failed"
  | "node.skipped"
  | "node.retrying"
  | "node.stream"
  | "node.log"
  | (string & {});

/** One event of an execution, the same JSON on SSE and WebSocket (README "Live events"). */
export interface WorkflowEvent<Data = Record<string, any>> {
  /** The Redis stream id (`<ms>-<seq>`): ids grow; resume after any of them. */
  id: string;
  executionId: string;
  type: EventType;
  timestamp: string;
  data: Data;
}

/** The event types that end an execution's stream. */
export const FINAL_EVENT_TYPES: ReadonlySet<string> = new Set([
  "execution.completed",
  "execution.failed",
  "execution.cancelled",
]);

export function isFinalEvent(event: { type: string }): boolean {
  return FINAL_EVENT_TYPES.has(event.type);
}

/** Whether stream id `a` comes after `b` (`<ms>-<seq>` compared as numbers). */
export function streamIdAfter(a: string, b: string | undefined): boolean {
  if (b === undefined) return true;
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return am > bm || (am === bm && as > bs);
}

function parseId(id: string): [number, number] {
  const dash = id.indexOf("-");
  return dash === -1 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}
