/**
 * CNI errors: the numeric codes of the CNI spec (1.1, "Error" result type), the error
 * class every layer of src/cni throws, and the documented mapping from podnet's own
 * errors to CNI codes (README.md, "Error codes").
 */
import { PodnetError, formatError } from '../util/errors.js';

/** Well-known CNI error codes (0–99 reserved by the spec) and podnet's own (100+). */
export const CniErrorCode = {
  /** The configuration's cniVersion is not supported, or lacks the requested command. */
  INCOMPATIBLE_VERSION: 1,
  /** The configuration has a field this plugin does not support (msg names key and value). */
  UNSUPPORTED_FIELD: 2,
  /** The container is unknown or does not exist: no network cleanup is needed. */
  UNKNOWN_CONTAINER: 3,
  /** A CNI_* environment variable is missing or invalid (msg names it). */
  INVALID_ENV: 4,
  /** I/O failure, e.g. reading stdin. */
  IO_FAILURE: 5,
  /** Content could not be decoded, e.g. stdin is not JSON. */
  DECODING_FAILURE: 6,
  /** The network configuration failed validation. */
  INVALID_CONFIG: 7,
  /** A transient condition: the runtime should retry later. */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  PLUGIN_NOT_AVAILABLE: 50,
  /** STATUS: not available, and existing containers may have limited connectivity. */
  LIMITED_CONNECTIVITY: 51,
  /** podnet: the agent failed to apply or check the attachment (details hold the PODNET_ code). */
  PODNET_FAILURE: 100,
  /** podnet: the node's pod subnet has no free address. */
  ADDRESSES_EXHAUSTED: 101,
  /** An unexpected internal error (the code libcni uses for untyped plugin errors). */
  INTERNAL: 999,
} as const;

/** An error answered to the runtime as a CNI error object. */
export class CniError extends Error {
  /** The CNI error code. */
  readonly code: number;
  /** The longer explanation (`details` in the error object), when there is one. */
  readonly details: string | undefined;

  constructor(code: number, msg: string, details?: string, options?: { cause?: unknown }) {
    super(msg, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export function isCniError(e: unknown): e is CniError {
  return e instanceof CniError;
}

/**
 * PODNET_ codes with a CNI code other than the default 100. Keyed by the code string so
 * the table never breaks on a code another room adds or retires.
 */
const PODNET_TO_CNI: Readonly<Record<string, number>> = {
  PODNET_INVALID_NAME: CniErrorCode.INVALID_CONFIG,
  PODNET_INVALID_ARGUMENT: CniErrorCode.INVALID_CONFIG,
  PODNET_INVALID_IP: CniErrorCode.INVALID_CONFIG,
  PODNET_INVALID_CIDR: CniErrorCode.INVALID_CONFIG,
  PODNET_INVALID_MAC: CniErrorCode.INVALID_CONFIG,
  PODNET_NETNS_NOT_FOUND: CniErrorCode.UNKNOWN_CONTAINER,
  PODNET_NOT_A_NETNS: CniErrorCode.INVALID_ENV,
  PODNET_NETLINK_TIMEOUT: CniErrorCode.TRY_AGAIN_LATER,
  PODNET_DUMP_INTERRUPTED: CniErrorCode.TRY_AGAIN_LATER,
  PODNET_IPAM_LOCKED: CniErrorCode.TRY_AGAIN_LATER,
  PODNET_IPAM_CLOSED: CniErrorCode.TRY_AGAIN_LATER,
  PODNET_IPAM_EXHAUSTED: CniErrorCode.ADDRESSES_EXHAUSTED,
};

/** Kernel errnos that mean "busy right now", whatever PODNET_ code carries them. */
const TRANSIENT_ERRNOS = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT']);

/**
 * Turns anything a handler threw into a CniError:
 * - a CniError is kept as it is;
 * - a PodnetError gets its code from PODNET_TO_CNI (a transient errno makes it 11,
 *   everything else is 100), msg = its sentence, details = `PODNET_X: ... (context)`;
 * - anything else is 999 with its message.
 * For STATUS every failure that is not already a CniError becomes 50: STATUS reports
 * readiness, and a plugin that fails to tell is not ready.
 */
export function toCniError(e: unknown, command?: string): CniError {
  if (e instanceof CniError) return e;
  let code: number;
  let msg: string;
  if (e instanceof PodnetError) {
    code = PODNET_TO_CNI[e.code] ?? (e.errno && TRANSIENT_ERRNOS.has(e.errno) ? CniErrorCode.TRY_AGAIN_LATER : CniErrorCode.PODNET_FAILURE);
    msg = e.message;
  } else {
    code = CniErrorCode.INTERNAL;
    msg = e instanceof Error ? e.message : String(e);
  }
  if (command === 'STATUS') code = CniErrorCode.PLUGIN_NOT_AVAILABLE;
  return new CniError(code, msg || 'unknown error', formatError(e), { cause: e });
}
