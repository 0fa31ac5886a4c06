/**
 * API errors as Kubernetes Status objects. Every failure the server reports is an
 * ApiStatusError carrying the HTTP code, the Status `reason`, a sentence, and details
 * (name, kind, causes with field paths) — the same shapes kube-apiserver returns, so
 * kubectl and client libraries print and classify them correctly.
 */
import type { Status, StatusCause } from '../../client/types.js';

export type StatusReason =
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Gone'
  | 'Expired'
  | 'Invalid'
  | 'MethodNotAllowed'
  | 'NotAcceptable'
  | 'RequestEntityTooLarge'
  | 'UnsupportedMediaType'
  | 'TooManyRequests'
  | 'InternalError'
  | 'ServiceUnavailable'
  | 'Timeout';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export class ApiStatusError extends Error {
  readonly code: number;
  readonly reason: StatusReason;
  readonly details: StatusDetails | undefined;

  constructor(code: number, reason: StatusReason, message: string, details?: StatusDetails) {
    super(message);
    this.name = 'ApiStatusError';
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): Status {
    return {
      apiVersion: 'v1',
      kind: 'Status',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

/** What a resource is called in messages: `services "web"`, `services.discovery.k8s.io`... */
export interface Target {
  group: string;
  resource: string;
  kind?: string;
  name?: string;
}

function qualified(t: Target): string {
  return t.group ? `${t.resource}.${t.group}` : t.resource;
}

export const errors = {
  badRequest(message: string, causes?: StatusCause[]): ApiStatusError {
    return new ApiStatusError(400, 'BadRequest', message, causes ? { causes } : undefined);
  },
  unauthorized(message = 'Unauthorized'): ApiStatusError {
    return new ApiStatusError(401, 'Unauthorized', message);
  },
  /**
   * As kube-apiserver's responsewriters.Forbidden: the object is named by its resource
   * (`nodes "n2" is forbidden`, details.kind "nodes"); a subresource appears only in the
   * "cannot <verb> resource" phrase (`resource "nodes/status"`).
   */
  forbidden(user: string, verb: string, t: Target & { subresource?: string | undefined }, namespace: string | undefined, why: string): ApiStatusError {
    const what = t.name ? `${qualified(t)} "${t.name}"` : qualified(t);
    const scope = namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope';
    const resource = t.subresource ? `${t.resource}/${t.subresource}` : t.resource;
    return new ApiStatusError(403, 'Forbidden', `${what} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "${t.group}"${scope}: ${why}`, {
      ...(t.name ? { name: t.name } : {}),
      group: t.group,
      kind: t.resource,
    });
  },
  notFound(t: Target): ApiStatusError {
    return new ApiStatusError(404, 'NotFound', `${qualified(t)} "${t.name ?? ''}" not found`, { ...(t.name ? { name: t.name } : {}), group: t.group, kind: t.resource });
  },
  notFoundPath(path: string): ApiStatusError {
    return new ApiStatusError(404, 'NotFound', `the server could not find the requested resource (${path})`);
  },
  alreadyExists(t: Target): ApiStatusError {
    return new ApiStatusError(409, 'AlreadyExists', `${qualified(t)} "${t.name ?? ''}" already exists`, { ...(t.name ? { name: t.name } : {}), group: t.group, kind: t.resource });
  },
  conflict(t: Target, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiStatusError {
    return new ApiStatusError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(t)} "${t.name ?? ''}": ${why}`, { ...(t.name ? { name: t.name } : {}), group: t.group, kind: t.resource });
  },
  /** 422: validation failed; each cause names its field. */
  invalid(kind: string, group: string, name: string, causes: StatusCause[]): ApiStatusError {
    const list = causes.map((c) => `${c.field ? `${c.field}: ` : ''}${c.message ?? ''}`).join(', ');
    const shown = causes.length > 1 ? `[${list}]` : list;
    return new ApiStatusError(422, 'Invalid', `${kind} "${name}" is invalid: ${shown}`, { name, group, kind, causes });
  },
  gone(message: string): ApiStatusError {
    return new ApiStatusError(410, 'Expired', message);
  },
  methodNotAllowed(method: string, path: string): ApiStatusError {
    return new ApiStatusError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method} ${path})`);
  },
  tooLarge(limit: number): ApiStatusError {
    return new ApiStatusError(413, 'RequestEntityTooLarge', `the request body is larger than the limit of ${limit} bytes`);
  },
  unsupportedMediaType(type: string, allowed: string[]): ApiStatusError {
    return new ApiStatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${allowed.join(', ')} (got ${JSON.stringify(type)})`);
  },
  notAcceptable(accept: string): ApiStatusError {
    return new ApiStatusError(406, 'NotAcceptable', `only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io (got ${JSON.stringify(accept)})`);
  },
  internal(message: string): ApiStatusError {
    return new ApiStatusError(500, 'InternalError', `Internal error occurred: ${message}`);
  },
  unavailable(message: string): ApiStatusError {
    return new ApiStatusError(503, 'ServiceUnavailable', message, { retryAfterSeconds: 1 });
  },
};

/** A Status for successful deletes of collections etc. */
export function successStatus(details?: StatusDetails): Status {
  return { apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Success', ...(details ? { details } : {}), code: 200 };
}
