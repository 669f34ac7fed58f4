export {
  DEFAULT_URL,
  Paged,
  WorkflowEngineClient,
  type ClientEventsOptions,
  type ClientOptions,
  type EventsOptions,
  type ExecuteOptions,
  type ReconnectOptions,
  type WaitOptions,
} from "./client.js";
export {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitedError,
  ServiceUnavailableError,
  UnauthorizedError,
  UnreachableError,
  WorkflowEngineError,
  errorFromResponse,
  type ErrorDetail,
} from "./errors.js";
export { SseParser, type SseMessage } from "./sse.js";
export * from "./types.js";
