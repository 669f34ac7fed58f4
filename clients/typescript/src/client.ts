/**
 * The workflow-engine client for Node (20.3+), Deno, Bun and browsers: nothing but the platform's
 * `fetch`, `WebSocket` and (where present) `EventSource`.
 *
 *     const client = new WorkflowEngineClient("http://127.0.0.1:8000", { apiKey });
 *     const { executionId } = await client.execute(definition, { total: 20 });
 *     for await (const event of client.events(executionId)) console.log(event.type, event.data);
 *     const final = await client.status(executionId, { nodes: true });
 *
 * `events()` and `clientEvents()` reconnect by themselves (with backoff) when the connection
 * drops, falls silent or the API restarts, and resume after the last event they delivered:
 * nothing twice, nothing missed (see `clientEvents` for its one limit).
 */
import { errorFromResponse, UnauthorizedError, UnreachableError, WorkflowEngineError } from "./errors.js";
import { SseParser } from "./sse.js";
import {
  isFinalEvent,
  streamIdAfter,
  type ActiveExecution,
  type Cancelled,
  type Context,
  type ExecutionFilters,
  type ExecutionPage,
  type Health,
  type QueueOverview,
  type RepeatOptions,
  type Resumed,
  type Schedule,
  type ScheduleCreated,
  type ScheduleDeleted,
  type ScheduleDetail,
  type Stats,
  type Status,
  type StoredWorkflow,
  type Submitted,
  type WorkflowDefinition,
  type WorkflowDeleted,
  type WorkflowEvent,
  type WorkflowSaved,
  type WorkflowSummary,
  type WorkflowVersion,
} from "./types.js";

export const DEFAULT_URL = "http://127.0.0.1:8000";

type WebSocketLike = {
  readyState: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
};
type WebSocketConstructor = new (url: string) => WebSocketLike;
type EventSourceLike = {
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  addEventListener(type: string, listener: (ev: any) => void): void;
  close(): void;
};
type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface ReconnectOptions {
  /** The first wait before reconnecting (doubles each failed try). Default 100 ms. */
  initialDelayMs?: number;
  /** The longest wait between tries. Default 3000 ms. */
  maxDelayMs?: number;
  /** Give up (throw the last error) after this many tries in a row. Default: never. */
  maxAttempts?: number;
  /** A connection that receives nothing for this long is taken for dead and reconnected.
   * Default: 45 s for SSE (the API sends a keep-alive comment every 15 s), 75 s for the
   * WebSocket (a heartbeat every 25 s, `WFE_WS_HEARTBEAT_S`). Not for `transport: "eventsource"`
   * (an EventSource hides keep-alive comments). */
  idleTimeoutMs?: number;
}

export interface ClientOptions {
  /** An API key (`WFE_API_KEYS`): sent as `Authorization: Bearer`, and as `?token=` where a
   * header cannot be sent (WebSocket, EventSource). */
  apiKey?: string;
  /** Per-request timeout of the plain HTTP calls (not of event streams). Default 30 s. */
  timeoutMs?: number;
  /** Another `fetch` (a test double, a proxy agent…). Default: the global one. */
  fetch?: typeof fetch;
  /** Another WebSocket class (the `ws` package on Node < 22 without --experimental-websocket). */
  WebSocket?: WebSocketConstructor;
  /** Another EventSource class; used only with `events(id, {transport: "eventsource"})`. */
  EventSource?: EventSourceConstructor;
  /** Extra headers for every HTTP request. */
  headers?: Record<string, string>;
  reconnect?: ReconnectOptions;
}

/** Options of `execute` (and of `schedule`, `workflows.execute`). */
export interface ExecuteOptions {
  type?: "realtime" | "workflow" | "scheduled" | "background";
  /** A queue by business type (the server's WFE_NAMED_QUEUES), or a class; `type` is its class. */
  queue?: string;
  priority?: number;
  /** Start it after this many ms. */
  delay?: number;
  clientId?: string;
  userId?: string;
  metadata?: Record<string, unknown>;
  idempotencyKey?: string;
  callbackUrl?: string;
  /** `fastgpt` when the definition is a FastGPT export (detected when absent). */
  format?: "native" | "fastgpt";
  signal?: AbortSignal;
}

export interface EventsOptions {
  /** Resume after this event id (default: from the first event). */
  lastEventId?: string;
  /** Stop following (the iterator ends). */
  signal?: AbortSignal;
  /** `fetch` (SSE read from a fetch stream: the key as `Authorization`, the position as
   * `Last-Event-ID`, API errors typed; the default wherever fetch streams, as in Node and
   * today's browsers) or `eventsource` (the platform's `EventSource`: the key as `?token=`;
   * the default where fetch cannot stream). */
  transport?: "fetch" | "eventsource";
}

export interface ClientEventsOptions {
  signal?: AbortSignal;
  /** Events received but not yet consumed, at most (default 10,000): past that, the socket is
   * closed and reconnected later, resuming after the last events consumed (nothing is lost;
   * the memory of a slow consumer stays bounded). */
  maxBufferedEvents?: number;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Throw a `TimeoutError` (DOMException) after this many ms. */
  timeoutMs?: number;
}

interface Call {
  method: string;
  path: string;
  query?: Record<string, unknown> | undefined;
  body?: unknown;
  signal?: AbortSignal | undefined;
}

const RETRYABLE = new Set([502, 503, 504]);
/** A 429 of an event stream is retried after its Retry-After this many times in a row, then thrown. */
const MAX_RATE_LIMITED_RETRIES = 10;
/** The longest Retry-After obeyed (ms); a longer one is waited for this long. */
const MAX_RETRY_AFTER_MS = 60_000;
const SSE_IDLE_TIMEOUT_MS = 45_000; // 3 x the API's SSE keep-alive (15 s)
const SOCKET_IDLE_TIMEOUT_MS = 75_000; // 3 x the API's WebSocket heartbeat (25 s)
const MAX_BUFFERED_EVENTS = 10_000;
/** On reconnect, clientEvents() looks back through at most this many pages of the listing. */
const LOOKBACK_PAGES = 10;
const LOOKBACK_PAGE_SIZE = 100;
/** How far before a connection's server time the next listing starts: the lag between an
 * execution's createdAt and its record being visible, and the clock skew between API replicas. */
const LOOKBACK_MARGIN_MS = 5_000;
const FINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

function enc(part: string): string {
  return encodeURIComponent(part);
}

function compact<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

class Backoff {
  private delay = 0;
  attempts = 0;
  private rateLimited = 0;
  constructor(private readonly options: ReconnectOptions = {}) {}
  reset(): void {
    this.delay = 0;
    this.attempts = 0;
    this.rateLimited = 0;
  }
  next(error: unknown): number {
    this.attempts += 1;
    if (this.options.maxAttempts !== undefined && this.attempts > this.options.maxAttempts) throw error;
    const first = this.options.initialDelayMs ?? 100;
    this.delay = Math.min(this.options.maxDelayMs ?? 3000, this.delay ? this.delay * 2 : first);
    return this.delay;
  }
  /** How long to wait before the next try after `error`; throws `error` when a retry cannot
   * help: an API error other than 429, 502, 503, 504 (or an unreachable API), more than
   * MAX_RATE_LIMITED_RETRIES 429s in a row, or `maxAttempts` reached. Waits at least the
   * error's Retry-After (up to a minute). */
  retry(error: unknown): number {
    if (!(error instanceof WorkflowEngineError)) throw error; // a bug or a misconfiguration
    const limited = error.status === 429;
    if (!limited && !(error instanceof UnreachableError) && !RETRYABLE.has(error.status)) throw error;
    if (limited && ++this.rateLimited > MAX_RATE_LIMITED_RETRIES) throw error;
    const delay = this.next(error);
    const asked = error.retryAfter === undefined ? 0 : Math.min(error.retryAfter * 1000, MAX_RETRY_AFTER_MS);
    return Math.max(delay, asked);
  }
}

/** A push-to-pull queue: callbacks push, an async generator awaits. Holds at most `limit`. */
class Inbox<T> {
  private items: T[] = [];
  private head = 0;
  private waiting: ((value: void) => void) | undefined;
  ended: unknown = undefined;
  constructor(private readonly limit = Infinity) {}
  /** False (the item dropped) once ended or full. */
  push(item: T): boolean {
    if (this.ended !== undefined || this.items.length - this.head >= this.limit) return false;
    this.items.push(item);
    this.wake();
    return true;
  }
  end(reason: unknown): void {
    if (this.ended === undefined) this.ended = reason ?? new Error("closed");
    this.wake();
  }
  private wake(): void {
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve?.();
  }
  /** The next item; undefined once ended and drained. */
  async next(): Promise<T | undefined> {
    for (;;) {
      if (this.head < this.items.length) {
        const item = this.items[this.head++] as T;
        if (this.head >= 1024 && this.head * 2 >= this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        return item;
      }
      if (this.ended !== undefined) return undefined;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }
}

/** Pages of a listing, iterable item by item (`for await (const x of list)`) or page by page
 * (`for await (const page of list.pages())`). */
export class Paged<Item, Page extends { items: Item[]; nextCursor?: string | null }> implements AsyncIterable<Item> {
  constructor(private readonly fetchPage: (cursor: string | undefined) => Promise<Page>) {}

  async *pages(): AsyncGenerator<Page, void, undefined> {
    let cursor: string | undefined = undefined;
    for (;;) {
      const page: Page = await this.fetchPage(cursor);
      yield page;
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Item, void, undefined> {
    for await (const page of this.pages()) yield* page.items;
  }

  /** Every item of every page, in an array. */
  async all(): Promise<Item[]> {
    const out: Item[] = [];
    for await (const item of this) out.push(item);
    return out;
  }
}

export class WorkflowEngineClient {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  private readonly options: ClientOptions;

  /** Cron and interval schedules: `schedules.create/list/get/delete`. */
  readonly schedules: {
    create(
      definition: WorkflowDefinition | Record<string, unknown>,
      inputs: Record<string, unknown> | undefined,
      repeat: RepeatOptions,
      options?: ExecuteOptions,
    ): Promise<ScheduleCreated>;
    list(options?: { signal?: AbortSignal }): Promise<Schedule[]>;
    get(scheduleId: string, options?: { signal?: AbortSignal }): Promise<ScheduleDetail>;
    delete(scheduleId: string, options?: { signal?: AbortSignal }): Promise<ScheduleDeleted>;
  };

  /** Stored workflows (versioned, per tenant): `workflows.push/list/get/versions/delete/execute`. */
  readonly workflows: {
    push(
      definition: WorkflowDefinition | Record<string, unknown>,
      options?: { id?: string; name?: string; format?: "native" | "fastgpt"; signal?: AbortSignal },
    ): Promise<WorkflowSaved>;
    list(options?: { limit?: number }): Paged<WorkflowSummary, { items: WorkflowSummary[]; nextCursor?: string | null }>;
    get(workflowId: string, options?: { version?: number; signal?: AbortSignal }): Promise<StoredWorkflow>;
    versions(workflowId: string, options?: { signal?: AbortSignal }): Promise<WorkflowVersion[]>;
    delete(workflowId: string, options?: { signal?: AbortSignal }): Promise<WorkflowDeleted>;
    execute(
      workflowId: string,
      inputs?: Record<string, unknown>,
      options?: ExecuteOptions & { version?: number },
    ): Promise<Submitted>;
  };

  /** Queue administration (an `admin` key). */
  readonly queues: {
    list(): Promise<QueueOverview[]>;
    pause(name: string): Promise<{ name: string; paused: boolean }>;
    resume(name: string): Promise<{ name: string; paused: boolean }>;
    clean(name: string, body: { state: "completed" | "failed" | "delayed" | "wait"; graceMs?: number; limit?: number }): Promise<Record<string, unknown>>;
    retryFailed(name: string): Promise<{ name: string; retried: number }>;
  };

  constructor(baseUrl: string = DEFAULT_URL, options: ClientOptions | string = {}) {
    this.options = typeof options === "string" ? { apiKey: options } : options;
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = this.options.apiKey;
    const queue = (name: string, action: string, body?: unknown) =>
      this.call<any>({ method: "POST", path: `/api/admin/queues/${enc(name)}/${action}`, body });
    this.schedules = {
      create: (definition, inputs, repeat, options = {}) =>
        this.call({
          method: "POST",
          path: "/api/workflow/execute",
          body: { ...this.submitBody({ workflowDefinition: definition }, inputs, options), repeat: compact(repeat) },
          signal: options.signal,
        }),
      list: async (options = {}) =>
        (await this.call<{ items: Schedule[] }>({ method: "GET", path: "/api/workflow/schedules", signal: options.signal })).items,
      get: (scheduleId, options = {}) =>
        this.call({ method: "GET", path: `/api/workflow/schedules/${enc(scheduleId)}`, signal: options.signal }),
      delete: (scheduleId, options = {}) =>
        this.call({ method: "DELETE", path: `/api/workflow/schedules/${enc(scheduleId)}`, signal: options.signal }),
    };
    this.workflows = {
      push: (definition, options = {}) =>
        this.call({
          method: "POST",
          path: "/api/workflows",
          body: compact({ id: options.id, name: options.name, format: options.format, definition }),
          signal: options.signal,
        }),
      list: (options = {}) =>
        new Paged((cursor) =>
          this.call({ method: "GET", path: "/api/workflows", query: { limit: options.limit, cursor } }),
        ),
      get: (workflowId, options = {}) =>
        this.call({
          method: "GET",
          path: `/api/workflows/${enc(workflowId)}`,
          query: { version: options.version },
          signal: options.signal,
        }),
      versions: async (workflowId, options = {}) =>
        (
          await this.call<{ items: WorkflowVersion[] }>({
            method: "GET",
            path: `/api/workflows/${enc(workflowId)}/versions`,
            signal: options.signal,
          })
        ).items,
      delete: (workflowId, options = {}) =>
        this.call({ method: "DELETE", path: `/api/workflows/${enc(workflowId)}`, signal: options.signal }),
      execute: (workflowId, inputs, options = {}) => {
        const { version, ...rest } = options;
        return this.call({
          method: "POST",
          path: "/api/workflow/execute",
          body: this.submitBody({ workflowId, version }, inputs, rest),
          signal: options.signal,
        });
      },
    };
    this.queues = {
      list: async () => (await this.call<{ queues: QueueOverview[] }>({ method: "GET", path: "/api/admin/queues" })).queues,
      pause: (name) => queue(name, "pause"),
      resume: (name) => queue(name, "resume"),
      clean: (name, body) => queue(name, "clean", body),
      retryFailed: (name) => queue(name, "retry-failed"),
    };
  }

  // -- plain calls ------------------------------------------------------------------------

  private get fetcher(): typeof fetch {
    const found = this.options.fetch ?? globalThis.fetch;
    if (!found) throw new Error("no fetch: use Node 18+ or pass {fetch}");
    return found;
  }

  private get hasEventSource(): boolean {
    return typeof (this.options.EventSource ?? (globalThis as any).EventSource) === "function";
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { ...this.options.headers, ...extra };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    return headers;
  }

  private url(path: string, query?: Record<string, unknown>): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** One HTTP call: its JSON answer, or the API's error as a `WorkflowEngineError`. */
  async call<T>(call: Call): Promise<T> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetcher(this.url(call.path, call.query), {
        method: call.method,
        headers: this.headers(call.body === undefined ? {} : { "Content-Type": "application/json" }),
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
        signal,
      });
    } catch (error) {
      if (call.signal?.aborted) throw call.signal.reason ?? error;
      throw new UnreachableError(`cannot reach ${this.baseUrl}: ${describe(error)}`, { cause: error });
    }
    const text = await response.text();
    let body: unknown = undefined;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    if (response.status >= 400) throw errorFromResponse(response.status, body, response.headers.get("retry-after"));
    return body as T;
  }

  private submitBody(
    what: Record<string, unknown>,
    inputs: Record<string, unknown> | undefined,
    options: ExecuteOptions,
  ): Record<string, unknown> {
    const { signal: _signal, ...rest } = options;
    return compact({ ...what, inputs: inputs ?? {}, ...rest });
  }

  /** Submit a definition: `{executionId, jobId, status}` once the record and the job exist. */
  execute(
    definition: WorkflowDefinition | Record<string, unknown>,
    inputs?: Record<string, unknown>,
    options: ExecuteOptions = {},
  ): Promise<Submitted> {
    return this.call({
      method: "POST",
      path: "/api/workflow/execute",
      body: this.submitBody({ workflowDefinition: definition }, inputs, options),
      signal: options.signal,
    });
  }

  /** `{context, progress, result, variables?, callback?, nodes?}`; `nodes: true` adds node results. */
  status(executionId: string, options: { nodes?: boolean; signal?: AbortSignal } = {}): Promise<Status> {
    return this.call({
      method: "GET",
      path: `/api/workflow/status/${enc(executionId)}`,
      query: options.nodes ? { nodes: "true" } : {},
      signal: options.signal,
    });
  }

  /** One page of the tenant's executions, newest first. */
  executions(filters: ExecutionFilters = {}, options: { signal?: AbortSignal } = {}): Promise<ExecutionPage> {
    return this.call({ method: "GET", path: "/api/workflow/executions", query: filters, signal: options.signal });
  }

  /** Every execution matching `filters`, newest first, fetching pages as you iterate:
   * `for await (const context of client.list({status: "failed"}))`, or `.pages()`. */
  list(filters: Omit<ExecutionFilters, "cursor"> = {}): Paged<Context, ExecutionPage> {
    return new Paged((cursor) => this.executions({ ...filters, cursor }));
  }

  /** Stop an execution: `{executionId, status: "cancelled"}`; a `ConflictError` if it finished first. */
  cancel(executionId: string, options: { signal?: AbortSignal } = {}): Promise<Cancelled> {
    return this.call({ method: "POST", path: `/api/workflow/cancel/${enc(executionId)}`, signal: options.signal });
  }

  /** Answer the `wait_input` node the execution waits on (`nodeId` when several wait). */
  resume(executionId: string, input: unknown, options: { nodeId?: string; signal?: AbortSignal } = {}): Promise<Resumed> {
    return this.call({
      method: "POST",
      path: `/api/workflow/resume/${enc(executionId)}`,
      body: compact({ input, nodeId: options.nodeId }),
      signal: options.signal,
    });
  }

  /** A new execution reusing the results of every node upstream of `fromNode`. */
  rerun(
    executionId: string,
    fromNode: string,
    options: { inputs?: Record<string, unknown>; signal?: AbortSignal } = {},
  ): Promise<Submitted> {
    return this.call({
      method: "POST",
      path: `/api/workflow/rerun/${enc(executionId)}`,
      body: compact({ fromNode, inputs: options.inputs }),
      signal: options.signal,
    });
  }

  /** The client's pending and running executions, each with its `lastEventId`. */
  reconnect(clientId: string, options: { signal?: AbortSignal } = {}): Promise<ActiveExecution[]> {
    return this.call({ method: "GET", path: `/api/workflow/reconnect/${enc(clientId)}`, signal: options.signal });
  }

  stats(options: { signal?: AbortSignal } = {}): Promise<Stats> {
    return this.call({ method: "GET", path: "/api/workflow/stats", signal: options.signal });
  }

  health(options: { signal?: AbortSignal } = {}): Promise<Health> {
    return this.call({ method: "GET", path: "/health", signal: options.signal });
  }

  /** Run `definition` on a cron (`{cron, tz?, limit?}`) or every `every` ms: `{scheduleId, nextRunAt}`. */
  schedule(
    definition: WorkflowDefinition | Record<string, unknown>,
    inputs: Record<string, unknown> | undefined,
    repeat: RepeatOptions,
    options: ExecuteOptions = {},
  ): Promise<ScheduleCreated> {
    return this.schedules.create(definition, inputs, repeat, options);
  }

  // -- events -----------------------------------------------------------------------------

  /**
   * One execution's events (SSE): replayed from the first (or after `lastEventId`), then live,
   * up to its final event (`execution.completed|failed|cancelled`), where the iterator ends; it
   * also ends when the execution has ended and has nothing after `lastEventId` (you gave the
   * final event's id). A dropped or silent connection (see `reconnect.idleTimeoutMs`), a
   * restarting API, a 502/503/504 and a 429 (after its Retry-After, 10 times in a row at most)
   * are retried with backoff, resuming after the last event delivered. Other API errors (404,
   * 401…) are thrown.
   */
  async *events(executionId: string, options: EventsOptions = {}): AsyncGenerator<WorkflowEvent, void, undefined> {
    let last = options.lastEventId;
    const signal = options.signal;
    const backoff = new Backoff(this.options.reconnect);
    const useEventSource =
      options.transport === "eventsource" ||
      (options.transport === undefined && typeof ReadableStream !== "function" && this.hasEventSource);
    while (!signal?.aborted) {
      const connection = useEventSource
        ? this.eventSourceStream(executionId, last, signal)
        : this.fetchStream(executionId, last, signal);
      let failure: unknown = undefined;
      let received = 0;
      try {
        for await (const event of connection) {
          received += 1;
          backoff.reset();
          const final = isFinalEvent(event);
          // nothing twice: a reconnection resumes after `last`; a final event made up from
          // the record (its stream expired) may carry an older id, and still ends the stream
          if (!streamIdAfter(event.id, last) && !final) continue;
          last = streamIdAfter(event.id, last) ? event.id : last;
          yield event;
          if (final) return;
        }
        if (signal?.aborted) return;
        // the stream ended without its final event. Nothing at all: the execution may have
        // ended with nothing after `last` (the API then sends nothing); then we are done.
        // (Some events and no final one: the API cut a slow reader off; resume.)
        if (received === 0) {
          const status = await this.status(executionId, signal ? { signal } : {});
          if (FINAL_STATUSES.has(status.context.status)) return;
        }
      } catch (error) {
        if (signal?.aborted) return;
        failure = error;
      }
      await sleep(backoff.retry(failure ?? new UnreachableError("the event stream ended early")), signal);
    }
  }

  /** One SSE connection read from a fetch body; ends when the server closes it. Throws an
   * `UnreachableError` when it receives nothing (not even a keep-alive) for the idle timeout. */
  private async *fetchStream(
    executionId: string,
    last: string | undefined,
    outer: AbortSignal | undefined,
  ): AsyncGenerator<WorkflowEvent, void, undefined> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer?.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    const idleMs = this.options.reconnect?.idleTimeoutMs ?? SSE_IDLE_TIMEOUT_MS;
    let idle = false;
    let timer: ReturnType<typeof setTimeout> | undefined = undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        idle = true;
        controller.abort();
      }, idleMs);
    };
    const silent = () => new UnreachableError(`event stream of ${executionId}: nothing received for ${idleMs} ms`);
    try {
      const headers = this.headers({ Accept: "text/event-stream" });
      if (last) headers["Last-Event-ID"] = last;
      let response: Response;
      arm();
      try {
        response = await this.fetcher(this.url(`/api/workflow/events/${enc(executionId)}`), {
          headers,
          signal: controller.signal,
        });
      } catch (error) {
        if (outer?.aborted) return;
        if (idle) throw silent();
        throw new UnreachableError(`cannot reach ${this.baseUrl}: ${describe(error)}`, { cause: error });
      } finally {
        clearTimeout(timer);
      }
      if (response.status >= 400) {
        arm();
        const text = await response.text().catch(() => "");
        let body: unknown = undefined;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        throw errorFromResponse(response.status, body, response.headers.get("retry-after"));
      }
      if (!response.body) throw new Error("this fetch gives no response stream: use {transport: 'eventsource'}");
      const parser = new SseParser();
      const reader = response.body.getReader();
      try {
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          arm();
          try {
            chunk = await reader.read();
          } catch (error) {
            if (outer?.aborted) return;
            if (idle) throw silent();
            throw new UnreachableError(`event stream of ${executionId} dropped: ${describe(error)}`, { cause: error });
          } finally {
            clearTimeout(timer); // not while the consumer holds an event
          }
          if (chunk.done) return;
          for (const message of parser.feed(chunk.value)) {
            const event = parseEvent(message.data);
            if (event) yield event;
          }
        }
      } finally {
        clearTimeout(timer);
        controller.abort();
        reader.releaseLock();
      }
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
      controller.abort();
    }
  }

  /** One SSE connection through the platform's EventSource (the key as `?token=`, the position
   * as `?lastEventId=`); its own reconnection is turned off: ours resumes after our last event.
   * Ends without an error when it failed before any event (`events` then asks the status, which
   * throws the API's typed error for a refused key or an unknown execution). */
  private async *eventSourceStream(
    executionId: string,
    last: string | undefined,
    outer: AbortSignal | undefined,
  ): AsyncGenerator<WorkflowEvent, void, undefined> {
    const EventSourceClass = this.options.EventSource ?? (globalThis as any).EventSource;
    if (!EventSourceClass) throw new Error("no EventSource here: use the default transport");
    const url = this.url(`/api/workflow/events/${enc(executionId)}`, { token: this.apiKey, lastEventId: last });
    const inbox = new Inbox<WorkflowEvent>(MAX_BUFFERED_EVENTS);
    const source: EventSourceLike = new EventSourceClass(url);
    const onMessage = (message: { data: string }) => {
      const event = parseEvent(message.data);
      if (event && !inbox.push(event) && inbox.ended === undefined) {
        // a slow reader: stop here, and resume after what it read
        source.close();
        inbox.end(new UnreachableError(`event stream of ${executionId}: more than ${MAX_BUFFERED_EVENTS} events unread`));
      }
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onMessage);
    source.onmessage = onMessage;
    source.onerror = () => {
      source.close();
      inbox.end(new UnreachableError(`event stream of ${executionId} dropped`));
    };
    const onAbort = () => inbox.end(outer?.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    let yielded = 0;
    try {
      for (;;) {
        const event = await inbox.next();
        if (event === undefined) {
          if (outer?.aborted || yielded === 0) return;
          throw inbox.ended;
        }
        yielded += 1;
        yield event;
      }
    } finally {
      outer?.removeEventListener("abort", onAbort);
      source.close();
    }
  }

  /**
   * Every event of every execution submitted with `clientId` (WebSocket `/ws/{clientId}`),
   * until you stop iterating (or `signal` aborts): those running when it starts (from their
   * first event), and each one submitted after. On reconnect, executions seen but not finished
   * resume after their last event; those submitted while it was away are replayed from their
   * first (found with `GET /api/workflow/executions?clientId=`, looking back 10 pages of 100:
   * past 1,000 executions submitted while away, the older ones are not replayed); nothing
   * comes twice.
   */
  async *clientEvents(clientId: string, options: ClientEventsOptions = {}): AsyncGenerator<WorkflowEvent, void, undefined> {
    const WebSocketClass = this.options.WebSocket ?? (globalThis as any).WebSocket;
    if (!WebSocketClass) {
      throw new Error(
        "no WebSocket here: Node 20 needs --experimental-websocket (Node 22+ has it), or pass {WebSocket} (the `ws` package)",
      );
    }
    const signal = options.signal;
    const base = this.baseUrl.replace(/^http/, "ws");
    const url = `${base}/ws/${enc(clientId)}${this.apiKey ? `?token=${enc(this.apiKey)}` : ""}`;
    const backoff = new Backoff(this.options.reconnect);
    const idleMs = this.options.reconnect?.idleTimeoutMs ?? SOCKET_IDLE_TIMEOUT_MS;
    const limit = options.maxBufferedEvents ?? MAX_BUFFERED_EVENTS;
    // executions asked for and not finished -> the last event id delivered (undefined: none
    // yet, replay from the first): each is asked for again after a reconnection
    const unfinished = new Map<string, string | undefined>();
    const finished = new Set<string>(); // the latest 10,000
    // server time (ms) from which a reconnection lists what was submitted meanwhile: that of
    // the last connection made, less a margin; every execution submitted before it that a
    // connection was to deliver is in `unfinished` or `finished`
    let since: number | undefined = undefined;
    const follow = (socket: WebSocketLike, executionId: string) => {
      if (finished.has(executionId) || unfinished.has(executionId)) return;
      unfinished.set(executionId, undefined);
      socket.send(JSON.stringify({ type: "subscribe", executionId }));
    };
    while (!signal?.aborted) {
      const inbox = new Inbox<WorkflowEvent>(limit);
      let failure: unknown = undefined;
      let socket: WebSocketLike | undefined = undefined;
      let watchdog: ReturnType<typeof setInterval> | undefined = undefined;
      const onAbort = () => inbox.end(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const serverTime = Date.parse((await this.health(signal ? { signal } : {})).timestamp);
        const connectedAt = Number.isFinite(serverTime) ? serverTime : Date.now();
        // those active now, before the socket subscribes: followed from their first event
        // (again after a reconnection), even if none of their events gets through this time
        const active = await this.reconnect(clientId, signal ? { signal } : {});
        socket = await openSocket(WebSocketClass, url, signal);
        const open = socket;
        let heard = Date.now();
        open.onmessage = (message: { data: unknown }) => {
          heard = Date.now();
          if (typeof message.data !== "string") return;
          const event = parseEvent(message.data); // heartbeats and errors have no executionId
          if (event && !inbox.push(event) && inbox.ended === undefined) {
            // a slow consumer: close, and resume after what it consumed (on reconnection)
            inbox.end(new UnreachableError(`websocket: more than ${limit} events unread; reconnecting`));
            open.close(1000, "slow consumer");
          }
        };
        open.onclose = (close: { code?: number; reason?: string }) => {
          const error =
            close.code === 1008
              ? new UnauthorizedError(close.reason || "key refused", { status: 401, code: "unauthorized" })
              : new UnreachableError(`websocket closed (${close.code ?? "?"} ${close.reason ?? ""})`);
          inbox.end(error);
        };
        // onclose follows an error, except where it does not (undici, Node 20): end anyway
        open.onerror = () => setTimeout(() => inbox.end(new UnreachableError("websocket error")), 50);
        watchdog = setInterval(() => {
          if (Date.now() - heard < idleMs || inbox.ended !== undefined) return;
          inbox.end(new UnreachableError(`websocket: nothing received for ${idleMs} ms`));
          open.close(1000, "silent");
        }, Math.max(10, Math.min(1000, idleMs / 4)));
        // 1. resume what was cut off, after the last event delivered
        for (const { executionId } of active) {
          if (!finished.has(executionId) && !unfinished.has(executionId)) unfinished.set(executionId, undefined);
        }
        for (const [executionId, lastEventId] of unfinished) {
          open.send(JSON.stringify(compact({ type: "subscribe", executionId, lastEventId })));
        }
        // 2. the client's executions: active ones and every one submitted from now on
        open.send(JSON.stringify({ type: "subscribe" }));
        // 3. those submitted while away that ended before this subscription: the listing is by
        // execution id, newest first for the API's ids, in any order for ids a producer chose;
        // stop at a page older than `since` throughout
        if (since !== undefined) {
          let cursor: string | undefined = undefined;
          for (let page = 0; page < LOOKBACK_PAGES; page++) {
            const listed: ExecutionPage = await this.executions(
              { clientId, limit: LOOKBACK_PAGE_SIZE, cursor },
              signal ? { signal } : {},
            );
            let recent = false;
            for (const context of listed.items) {
              if (!(Date.parse(context.createdAt) >= since)) continue;
              recent = true;
              follow(open, context.executionId);
            }
            if (!recent || !listed.nextCursor) break;
            cursor = listed.nextCursor;
          }
        }
        since = connectedAt - LOOKBACK_MARGIN_MS;
        for (;;) {
          const event = await inbox.next();
          if (event === undefined || signal?.aborted) break;
          backoff.reset();
          if (finished.has(event.executionId)) continue;
          const last = unfinished.get(event.executionId);
          if (!streamIdAfter(event.id, last)) continue;
          if (isFinalEvent(event)) {
            unfinished.delete(event.executionId);
            finished.add(event.executionId);
            if (finished.size > 10_000) finished.delete(finished.values().next().value as string);
          } else {
            unfinished.set(event.executionId, event.id);
          }
          yield event;
        }
        failure = inbox.ended;
      } catch (error) {
        failure = error;
      } finally {
        clearInterval(watchdog);
        signal?.removeEventListener("abort", onAbort);
        if (socket && socket.readyState <= 1) socket.close(1000);
      }
      if (signal?.aborted) return;
      await sleep(backoff.retry(failure), signal); // throws a 401 (close code 1008), a 404…
    }
  }

  /** Follow the execution's events until it ends; then its final status, with node results. */
  async wait(executionId: string, options: WaitOptions = {}): Promise<Status> {
    const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)]
      .filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length ? AbortSignal.any(signals) : undefined;
    let ended = false;
    for await (const event of this.events(executionId, signal ? { signal } : {})) {
      if (isFinalEvent(event)) ended = true;
    }
    if (!ended) throw signal?.reason ?? new Error("stopped before the execution ended");
    return this.status(executionId, signal ? { nodes: true, signal } : { nodes: true });
  }
}

const EVENT_TYPES = [
  "execution.queued",
  "execution.started",
  "execution.progress",
  "execution.waiting",
  "execution.completed",
  "execution.failed",
  "execution.cancelled",
  "node.started",
  "node.completed",
  "node.failed",
  "node.skipped",
  "node.retrying",
  "node.stream",
  "node.log",
];

function parseEvent(text: string): WorkflowEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== "object") return undefined;
  const event = value as Partial<WorkflowEvent>;
  if (typeof event.executionId !== "string" || typeof event.id !== "string" || typeof event.type !== "string") {
    return undefined;
  }
  return event as WorkflowEvent;
}

function openSocket(WebSocketClass: WebSocketConstructor, url: string, signal?: AbortSignal): Promise<WebSocketLike> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocketClass(url);
    const onAbort = () => {
      socket.onerror = socket.onclose = socket.onopen = null;
      socket.close();
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.onopen = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(socket);
    };
    // a refused connection: undici (Node 20) fires `error` only, and stays CONNECTING
    const failed = (code?: number) => {
      signal?.removeEventListener("abort", onAbort);
      socket.onerror = socket.onclose = socket.onopen = null;
      try {
        socket.close();
      } catch {
        // not open: nothing to close
      }
      reject(new UnreachableError(`websocket ${url.split("?")[0]} failed${code ? ` (${code})` : ""}`));
    };
    socket.onerror = () => failed();
    socket.onclose = (close: { code?: number }) => failed(close.code);
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}
