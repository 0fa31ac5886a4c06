/**
 * The storage contract of `podnet api`: an ordered key-value store with a global,
 * strictly increasing revision, compare-and-swap writes and watch-from-revision — the
 * subset of etcd v3 that Kubernetes semantics need. Two backends implement it (SQLite in
 * the kine model, and etcd) and both pass ./contract.ts.
 *
 * Values are opaque strings (the API stores JSON without resourceVersion; the server
 * fills resourceVersion from modRevision on read). Keys are "/registry/..." paths.
 */

export interface KV {
  key: string;
  value: string;
  /** Revision of the write that created this key (its current incarnation). */
  createRevision: number;
  /** Revision of the last write to this key. The API's resourceVersion. */
  modRevision: number;
}

export type StoreEventType = 'create' | 'update' | 'delete';

export interface StoreEvent {
  type: StoreEventType;
  key: string;
  /** The value after the event; for a delete, the last value before it. */
  value: string;
  /** The value before the event (update and delete). */
  prevValue?: string;
  /** Revision of this event (for a delete, the revision of the deletion). */
  revision: number;
  createRevision: number;
}

export interface ListOptions {
  /** Maximum number of keys returned (0 / undefined = all). */
  limit?: number;
  /** Only keys strictly greater than this (for pagination). */
  startAfter?: string;
  /**
   * Read the state as of this revision (for consistent pages). Undefined = now.
   * A revision older than the compacted one fails with StoreError 'Compacted'.
   */
  revision?: number;
}

export interface ListResult {
  /** In key order. */
  kvs: KV[];
  /** The revision the list was read at. */
  revision: number;
  /** True when more keys follow the last one returned. */
  more: boolean;
}

export interface WatchHandler {
  /**
   * Events in revision order, never repeated, never skipped (the events of one etcd
   * transaction share a revision). Called with batches.
   */
  onEvents(events: StoreEvent[]): void;
  /** The watch has ended (Compacted: the start revision is gone; Unavailable: backend lost). */
  onError(err: StoreError): void;
}

export interface WatchHandle {
  cancel(): void;
}

/** One write of a multi-key transaction. */
export type TxnOp =
  | { kind: 'create'; key: string; value: string }
  | { kind: 'update'; key: string; value: string; expectedModRevision: number }
  | { kind: 'delete'; key: string; expectedModRevision?: number }
  /**
   * Writes nothing: the transaction applies only if `key` exists at exactly this
   * revision (a read made earlier, e.g. from a cache, still holds). Its KV is the current one.
   */
  | { kind: 'check'; key: string; expectedModRevision: number };

export interface Store {
  /** "sqlite" or "etcd". */
  readonly backend: string;
  /** The newest revision (0 or 1 for an empty store; on a shared etcd it counts every prefix). */
  currentRevision(): Promise<number>;
  get(key: string): Promise<KV | undefined>;
  /** Keys starting with `prefix`, in key order. */
  list(prefix: string, opts?: ListOptions): Promise<ListResult>;
  /** Number of keys with `prefix` now. */
  count(prefix: string): Promise<number>;
  /** Fails with 'KeyExists' if the key exists. Resolves once the write is durable. */
  create(key: string, value: string): Promise<KV>;
  /** Compare-and-swap on modRevision: 'NotFound' or 'Conflict' (with the current KV). */
  update(key: string, value: string, expectedModRevision: number): Promise<KV>;
  /**
   * Deletes; with `expectedModRevision` only if it matches ('Conflict').
   * Resolves with the deleted value and modRevision = the deletion's revision.
   */
  delete(key: string, expectedModRevision?: number): Promise<KV>;
  /**
   * Applies every op or none (keys must be distinct). Resolves with one KV per op, in op
   * order (a delete's KV as for delete(); a check's the current KV, and a check consumes
   * no revision). Fails with the StoreError of the first op whose
   * precondition does not hold ('KeyExists', 'NotFound' or 'Conflict', with its `key`).
   * Revisions: all later than anything before; etcd gives every op of a transaction the
   * same revision, SQLite consecutive ones.
   */
  transaction(ops: TxnOp[]): Promise<KV[]>;
  /** Every event on keys with `prefix` whose revision is greater than `afterRevision`. */
  watch(prefix: string, afterRevision: number, handler: WatchHandler): WatchHandle;
  /** Forgets history up to `revision` (the latest value of every live key is kept). */
  compact(revision: number): Promise<void>;
  /**
   * The revision history was compacted to: reads at it or later still work, watches
   * from it deliver what came after it; anything older fails with 'Compacted'.
   */
  compactedRevision(): Promise<number>;
  close(): Promise<void>;
}

export type StoreErrorCode = 'KeyExists' | 'NotFound' | 'Conflict' | 'Compacted' | 'Unavailable' | 'Closed';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly key: string | undefined;
  /** For 'Conflict': what is stored now. For 'Compacted': the compacted revision. */
  readonly current: KV | undefined;
  readonly compactedRevision: number | undefined;

  constructor(code: StoreErrorCode, message: string, extra: { key?: string; current?: KV; compactedRevision?: number; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'StoreError';
    this.code = code;
    this.key = extra.key;
    this.current = extra.current;
    this.compactedRevision = extra.compactedRevision;
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}
