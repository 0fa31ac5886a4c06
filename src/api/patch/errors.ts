/**
 * The one error every patch failure raises. `reason` is the Kubernetes Status reason the
 * server answers with and `code` its HTTP status:
 *
 * - `BadRequest` (400): the patch document itself is malformed — not an object, an
 *   unknown `$patch` directive, a merge-list element without its merge key, a JSON patch
 *   operation without `path`…
 * - `Invalid` (422): a well-formed patch that cannot be applied to this object — a JSON
 *   patch `test` that fails, a `remove` / `replace` / `move` of a path that does not exist.
 *   kube-apiserver answers 422 Invalid for both (never 409 Conflict), and so do we.
 * - `UnsupportedMediaType` (415): the Content-Type is none of the three patch types.
 */

export type PatchErrorReason = 'BadRequest' | 'Invalid' | 'UnsupportedMediaType';

const CODES: Record<PatchErrorReason, 400 | 415 | 422> = { BadRequest: 400, Invalid: 422, UnsupportedMediaType: 415 };

export class PatchError extends Error {
  readonly reason: PatchErrorReason;
  /** Where in the object (or in the patch) it went wrong, in Kubernetes form: `spec.ports[1]`. */
  readonly field: string | undefined;

  constructor(reason: PatchErrorReason, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PatchError';
    this.reason = reason;
    this.field = opts.field === '' ? undefined : opts.field;
  }

  /** The HTTP status for `reason`: 400, 415 or 422. */
  get code(): 400 | 415 | 422 {
    return CODES[this.reason];
  }
}

export function isPatchError(e: unknown, reason?: PatchErrorReason): e is PatchError {
  return e instanceof PatchError && (reason === undefined || e.reason === reason);
}

/** A malformed patch (400), optionally at a field. */
export function badPatch(message: string, field?: string): PatchError {
  return new PatchError('BadRequest', field ? `${field}: ${message}` : message, field === undefined ? {} : { field });
}
