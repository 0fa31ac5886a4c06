/**
 * Errors of the API client. Two kinds, never mixed:
 *
 * - `ApiError`: the server answered, with a non-2xx status (or a watch ERROR event).
 *   `code` is the HTTP status, `reason` / `message` / `details` come from the Kubernetes
 *   `Status` in the body when there is one. Callers switch on the `isNotFound(e)`… helpers,
 *   which follow client-go's rules (reason first, HTTP code when the reason is unknown).
 * - `ClientError`: the request never got an answer we can use (bad kubeconfig, connection
 *   refused, TLS failure, timeout, a body that is not JSON). Stable `PODNET_…` codes.
 *
 * Aborts (an AbortSignal fired) are neither: they propagate as the platform's AbortError;
 * `isAbortError(e)` recognises them.
 */
import type { Status, StatusCause } from './types.js';

/** Stable codes of ClientError. */
export const ClientErrorCodes = {
  /** The kubeconfig (or flags) could not be loaded or is incomplete; `context.field` names the field. */
  KUBECONFIG: 'PODNET_KUBECONFIG',
  /** A call was made with arguments that cannot form a request (e.g. a namespaced get without a namespace). */
  INVALID_ARGUMENT: 'PODNET_INVALID_ARGUMENT',
  /** Connecting, TLS, or reading the response failed. */
  TRANSPORT: 'PODNET_TRANSPORT',
  /** No response headers or body data within the timeout. */
  TIMEOUT: 'PODNET_TIMEOUT',
  /** A 2xx response (or a watch line) was not the JSON we expected. */
  DECODE: 'PODNET_DECODE',
} as const;

export type ClientErrorCode = (typeof ClientErrorCodes)[keyof typeof ClientErrorCodes];

/** Context carried by a ClientError: small, JSON-serialisable facts. */
export type ClientErrorContext = Record<string, string | number | boolean | undefined>;

/** A failure on our side of the wire. Same shape as util/errors.ts' PodnetError. */
export class ClientError extends Error {
  readonly code: ClientErrorCode;
  readonly context: ClientErrorContext;

  constructor(code: ClientErrorCode, message: string, context: ClientErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClientError';
    this.code = code;
    this.context = context;
  }

  /** One line: `PODNET_X: sentence (key=value, ...)`. */
  override toString(): string {
    const ctx = Object.entries(this.context)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${k}=${typeof v === 'string' && /[\s=,()]/.test(v) ? JSON.stringify(v) : String(v)}`);
    return `${this.code}: ${this.message}${ctx.length ? ` (${ctx.join(', ')})` : ''}`;
  }

  toJSON(): { code: ClientErrorCode; message: string; context: ClientErrorContext } {
    return { code: this.code, message: this.message, context: this.context };
  }
}

export function isClientError(e: unknown, code?: ClientErrorCode): e is ClientError {
  return e instanceof ClientError && (code === undefined || e.code === code);
}

/**
 * Status reasons and the HTTP code each implies (metav1.StatusReason*). A reason in this
 * table decides the helpers on its own; an unknown reason falls back to the HTTP code.
 */
export const STATUS_REASONS: Readonly<Record<string, number>> = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  NotAcceptable: 406,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  Expired: 410,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  Invalid: 422,
  TooManyRequests: 429,
  InternalError: 500,
  ServerTimeout: 500,
  ServiceUnavailable: 503,
  Timeout: 504,
};

const REASON_FOR_CODE: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  406: 'NotAcceptable',
  409: 'Conflict',
  410: 'Gone',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** Where a request went, for messages. */
export interface RequestTarget {
  method: string;
  /** Path and query, without the server. */
  path: string;
}

/** The server said no: a non-2xx answer or a watch ERROR event. */
export class ApiError extends Error {
  /** HTTP status code (for a watch ERROR event: the Status' code). */
  readonly code: number;
  /** Status.reason, or the reason implied by the HTTP code ("" when none). */
  readonly reason: string;
  /** The Status from the body; synthesised from code and body text when the body was not one. */
  readonly status: Status;
  readonly method: string | undefined;
  readonly path: string | undefined;
  /** From Status.details.retryAfterSeconds or the Retry-After header. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: Status, target?: RequestTarget, options?: { retryAfterSeconds?: number }) {
    super(status.message || `${target ? `${target.method} ${target.path}: ` : ''}the server answered ${status.code}${status.reason ? ` (${status.reason})` : ''}`);
    this.name = 'ApiError';
    this.code = status.code;
    this.reason = status.reason ?? '';
    this.status = status;
    this.method = target?.method;
    this.path = target?.path;
    this.retryAfterSeconds = status.details?.retryAfterSeconds ?? options?.retryAfterSeconds;
  }

  get details(): Status['details'] {
    return this.status.details;
  }

  /** Field-level causes (validation errors), if the server gave any. */
  get causes(): StatusCause[] {
    return this.status.details?.causes ?? [];
  }

  override toString(): string {
    return `ApiError ${this.code}${this.reason ? ` ${this.reason}` : ''}: ${this.message}`;
  }

  toJSON(): { code: number; reason: string; message: string; method?: string; path?: string } {
    return { code: this.code, reason: this.reason, message: this.message, ...(this.method ? { method: this.method, path: this.path } : {}) };
  }

  /**
   * Builds the error for an HTTP answer: uses the body when it is a Status, otherwise a
   * Status synthesised from the code and the first 300 characters of the body.
   */
  static fromResponse(opts: { statusCode: number; body: string; target?: RequestTarget; retryAfter?: string | undefined }): ApiError {
    const status = parseStatus(opts.body) ?? synthesizeStatus(opts.statusCode, opts.body);
    // A Status' own code can be 0 or missing on odd servers: the HTTP code wins then.
    if (!status.code) status.code = opts.statusCode;
    const ra = opts.retryAfter !== undefined ? Number.parseInt(opts.retryAfter, 10) : Number.NaN;
    return new ApiError(status, opts.target, Number.isFinite(ra) ? { retryAfterSeconds: ra } : undefined);
  }
}

/** `body` parsed as a metav1 Status, or undefined when it is not one. */
export function parseStatus(body: string): Status | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  return isStatus(v) ? v : undefined;
}

/** True for a `{"kind":"Status", ...}` object. */
export function isStatus(v: unknown): v is Status {
  return typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'Status';
}

function synthesizeStatus(code: number, body: string): Status {
  const text = body.trim().slice(0, 300);
  const reason = REASON_FOR_CODE[code];
  return {
    apiVersion: 'v1',
    kind: 'Status',
    metadata: {},
    status: 'Failure',
    code,
    ...(reason ? { reason } : {}),
    message: text ? `the server answered ${code}: ${text}` : `the server answered ${code}${reason ? ` (${reason})` : ''}`,
  };
}

function matches(e: unknown, reason: string, code: number | undefined): boolean {
  if (!(e instanceof ApiError)) return false;
  if (e.reason === reason) return true;
  return code !== undefined && !(e.reason in STATUS_REASONS) && e.code === code;
}

/** 404 / NotFound. */
export function isNotFound(e: unknown): e is ApiError {
  return matches(e, 'NotFound', 404);
}
/** 409 / AlreadyExists (a create of a name that exists). Only the reason decides. */
export function isAlreadyExists(e: unknown): e is ApiError {
  return matches(e, 'AlreadyExists', undefined);
}
/** 409 / Conflict: a write with a stale resourceVersion (re-read and retry). */
export function isConflict(e: unknown): e is ApiError {
  return matches(e, 'Conflict', 409);
}
/**
 * 410: Gone or Expired — the resourceVersion a watch or a continue token points at has
 * been compacted away. The only cure is a fresh list.
 */
export function isGone(e: unknown): e is ApiError {
  return matches(e, 'Gone', 410) || matches(e, 'Expired', 410);
}
/** 403 / Forbidden. */
export function isForbidden(e: unknown): e is ApiError {
  return matches(e, 'Forbidden', 403);
}
/** 401 / Unauthorized. */
export function isUnauthorized(e: unknown): e is ApiError {
  return matches(e, 'Unauthorized', 401);
}
/** 422 / Invalid (validation failed; see `causes`). */
export function isInvalid(e: unknown): e is ApiError {
  return matches(e, 'Invalid', 422);
}
/** 429 / TooManyRequests. */
export function isTooManyRequests(e: unknown): e is ApiError {
  return matches(e, 'TooManyRequests', 429);
}

/** True for the error an aborted AbortSignal produces (DOMException AbortError, undici's RequestAbortedError). */
export function isAbortError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const { name, code } = e as { name?: unknown; code?: unknown };
  return name === 'AbortError' || code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR';
}
