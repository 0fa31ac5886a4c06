/**
 * Typed errors with stable codes. Every error podnet raises on purpose is a PodnetError:
 * a stable `code` (PODNET_…), a clear sentence as `message`, and the context that
 * produced it (namespace, object, field…). Codes never change meaning once released;
 * callers and tests switch on `code`, never on message text.
 */

export const ErrorCodes = {
  /** A name (interface, namespace, file) failed validation. */
  INVALID_NAME: 'PODNET_INVALID_NAME',
  /** An argument or field failed validation (not a name). */
  INVALID_ARGUMENT: 'PODNET_INVALID_ARGUMENT',
  INVALID_IP: 'PODNET_INVALID_IP',
  INVALID_CIDR: 'PODNET_INVALID_CIDR',
  INVALID_MAC: 'PODNET_INVALID_MAC',
  NETNS_NOT_FOUND: 'PODNET_NETNS_NOT_FOUND',
  NETNS_EXISTS: 'PODNET_NETNS_EXISTS',
  NOT_A_NETNS: 'PODNET_NOT_A_NETNS',
  LINK_NOT_FOUND: 'PODNET_LINK_NOT_FOUND',
  LINK_EXISTS: 'PODNET_LINK_EXISTS',
  ADDR_EXISTS: 'PODNET_ADDR_EXISTS',
  ROUTE_EXISTS: 'PODNET_ROUTE_EXISTS',
  NEIGH_EXISTS: 'PODNET_NEIGH_EXISTS',
  /** The kernel refused a netlink request; `errno` says why. */
  NETLINK: 'PODNET_NETLINK',
  NETLINK_TIMEOUT: 'PODNET_NETLINK_TIMEOUT',
  /** nf_tables refused (part of) a transaction, or a transaction refers to what does not exist; `errno` says why. */
  NFT: 'PODNET_NFT',
  /** A dump kept being interrupted by concurrent changes; retries exhausted. */
  DUMP_INTERRUPTED: 'PODNET_DUMP_INTERRUPTED',
  /** A system call in the native addon failed. */
  NATIVE: 'PODNET_NATIVE',
  /** The native addon is not built. */
  NATIVE_MISSING: 'PODNET_NATIVE_MISSING',
  /** An external tool failed. */
  EXEC: 'PODNET_EXEC',
  PERMISSION: 'PODNET_PERMISSION',
  TIMEOUT: 'PODNET_TIMEOUT',
  /** The running kernel lacks a feature (a link kind, a module). */
  UNSUPPORTED: 'PODNET_UNSUPPORTED',
  /** A node subnet has no free pod address left, or a cluster CIDR no free node subnet. */
  IPAM_EXHAUSTED: 'PODNET_IPAM_EXHAUSTED',
  /** Another live process holds the IPAM state dir's lock; `pid` names it. */
  IPAM_LOCKED: 'PODNET_IPAM_LOCKED',
  /** The IPAM state records other subnets than the ones given; reconfigure explicitly. */
  IPAM_SUBNET_MISMATCH: 'PODNET_IPAM_SUBNET_MISMATCH',
  /** The IPAM journal is damaged in a way a crash cannot explain (not a torn last write). */
  IPAM_CORRUPT: 'PODNET_IPAM_CORRUPT',
  /** Writing or syncing the IPAM journal failed; the store refuses work until reopened. */
  IPAM_IO: 'PODNET_IPAM_IO',
  /** The IPAM store or allocator was used after close(). */
  IPAM_CLOSED: 'PODNET_IPAM_CLOSED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Context carried by an error: small, JSON-serialisable facts. */
export type ErrorContext = Record<string, string | number | boolean | undefined>;

export class PodnetError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  /** Kernel errno name (EEXIST, ENODEV...) when the error came from the kernel. */
  readonly errno: string | undefined;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown; errno?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PodnetError';
    this.code = code;
    this.context = context;
    this.errno = options?.errno;
  }

  /** One line: `PODNET_X: sentence (key=value, ...)`. */
  override toString(): string {
    return formatError(this);
  }

  toJSON(): { code: ErrorCode; message: string; context: ErrorContext; errno?: string } {
    return { code: this.code, message: this.message, context: this.context, ...(this.errno ? { errno: this.errno } : {}) };
  }
}

export function isPodnetError(e: unknown, code?: ErrorCode): e is PodnetError {
  return e instanceof PodnetError && (code === undefined || e.code === code);
}

/** Formats any thrown value as one line for logs and the CLI. */
export function formatError(e: unknown): string {
  if (e instanceof PodnetError) {
    const ctx = Object.entries(e.context)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${k}=${typeof v === 'string' && /[\s=,()]/.test(v) ? JSON.stringify(v) : String(v)}`);
    return `${e.code}: ${e.message}${ctx.length ? ` (${ctx.join(', ')})` : ''}`;
  }
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}

/** The errno name of a Node/addon error (EEXIST, ENOENT...), if any. */
export function errnoOf(e: unknown): string | undefined {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    const code = (e as { code: string }).code;
    return /^E[A-Z0-9]+$/.test(code) ? code : undefined;
  }
  return undefined;
}
