/** Errors of the workflow-engine API: one class per status code, under `WorkflowEngineError`. */

/** One problem of a refused request, e.g. `{path: "workflowDefinition.nodes[2].type", message}`. */
export interface ErrorDetail {
  path?: string;
  message?: string;
  [key: string]: unknown;
}

/** The API answered with an error (`{"error": {code, message, details}}`), or could not be
 * reached (`UnreachableError`, `status` 0). */
export class WorkflowEngineError extends Error {
  /** The HTTP status (0: no answer). */
  readonly status: number;
  /** The API's error code, e.g. `invalid`, `not_found`, `conflict`. */
  readonly code: string;
  /** Every problem, each with its path, when the API lists them (422). */
  readonly details: ErrorDetail[];
  /** `Retry-After`, in seconds, when the API sent one (429, 503); an HTTP date is made seconds. */
  readonly retryAfter: number | undefined;

  constructor(
    message: string,
    options: { status?: number; code?: string; details?: ErrorDetail[]; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status ?? 0;
    this.code = options.code ?? "error";
    this.details = options.details ?? [];
    this.retryAfter = options.retryAfter;
  }
}

/** 400: malformed JSON. */
export class BadRequestError extends WorkflowEngineError {}
/** 401: missing or unknown API key. */
export class UnauthorizedError extends WorkflowEngineError {}
/** 403: not allowed (another tenant's `userId`, an admin route without the `admin` scope). */
export class ForbiddenError extends WorkflowEngineError {}
/** 404: unknown id, or another tenant's. */
export class NotFoundError extends WorkflowEngineError {}
/** 409: a finished execution cancelled, an idempotency key reused for another request, … */
export class ConflictError extends WorkflowEngineError {}
/** 413: a body over the server's limit (10 MiB). */
export class PayloadTooLargeError extends WorkflowEngineError {}
/** 422: an invalid request, definition or inputs; `details` lists every problem with its path. */
export class InvalidRequestError extends WorkflowEngineError {}
/** 429: back-pressure or the tenant's limits; retry after `retryAfter` seconds. */
export class RateLimitedError extends WorkflowEngineError {}
/** 503: Redis or the store is unreachable; retry later. */
export class ServiceUnavailableError extends WorkflowEngineError {}
/** The API could not be reached at all (connection refused, reset, DNS): `status` 0. */
export class UnreachableError extends ServiceUnavailableError {}

const BY_STATUS: Record<number, typeof WorkflowEngineError> = {
  400: BadRequestError,
  401: UnauthorizedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  422: InvalidRequestError,
  429: RateLimitedError,
  503: ServiceUnavailableError,
};

/** The error for an answer with status >= 400 and its parsed body (if JSON). */
export function errorFromResponse(status: number, body: unknown, retryAfter?: string | null): WorkflowEngineError {
  const error =
    body && typeof body === "object" && "error" in body && body.error && typeof body.error === "object"
      ? (body.error as { code?: unknown; message?: unknown; details?: unknown })
      : {};
  const Class = BY_STATUS[status] ?? WorkflowEngineError;
  return new Class(typeof error.message === "string" && error.message ? error.message : `HTTP ${status}`, {
    status,
    code: typeof error.code === "string" ? error.code : "error",
    details: Array.isArray(error.details) ? (error.details as ErrorDetail[]) : [],
    retryAfter: retryAfterSeconds(retryAfter),
  });
}

/** `Retry-After` in seconds: delay-seconds, or an HTTP date (seconds from now, at least 0). */
function retryAfterSeconds(value: string | null | undefined): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, (at - Date.now()) / 1000) : undefined;
}
