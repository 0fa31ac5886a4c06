/**
 * The etcd v3 backend of the store contract (./types.ts), over etcd's gRPC API (KV.Range,
 * KV.Txn, KV.Compact, Watch) spoken by ./etcd/: a lean gRPC client on node:http2 and
 * hand-written protobuf for exactly these messages. Revisions are etcd's own:
 * `modRevision`/`createRevision` are the key's mod_revision/create_revision and
 * `currentRevision()` is the header revision of a linearizable read, so a resourceVersion
 * means the same thing to podnet and to `etcdctl`. Every key is stored under an optional
 * prefix, so several podnet clusters can share one etcd.
 *
 * Failure model (the same split as etcd's Go client):
 * - Reads, and compactions, are retried on transient errors (no connection, no leader,
 *   timeouts) until `requestTimeoutMs` has passed, then fail with StoreError 'Unavailable'.
 * - Writes (create, update, delete) are retried only when the request cannot have been
 *   applied: no connection to the member, a stream the member refused, or the member
 *   reported it has no leader. Any other transient failure (a dropped connection, a
 *   deadline, "request timed out") fails at once with 'Unavailable', whose message says the
 *   outcome is unknown: the write may have been applied. Retrying a create then gives
 *   'KeyExists' if the first one landed.
 * - A watch survives the loss of its member: it reconnects (to any endpoint) and resumes
 *   after the last revision it delivered (or that etcd's progress notifications vouched
 *   for), so events are never repeated or skipped. It ends with 'Compacted' when the
 *   revision it needs is gone, and with 'Unavailable' when no member could serve it for
 *   `watchRetryMs`.
 *
 * All calls carry etcd's `hasleader` metadata (clientv3's WithRequireLeader): a member that
 * has lost its leader refuses requests at once instead of holding them, and closes the
 * watch streams it holds, so they move to a member that is part of the quorum.
 */
import { channel } from 'node:diagnostics_channel';
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import { EtcdClient } from './etcd/client.js';
import type { WatchStream } from './etcd/client.js';
import { GrpcClosedError, GrpcError } from './etcd/grpc.js';
import { CompareResult, CompareTarget, EventType } from './etcd/proto.js';
import type { Compare, KeyValue, RequestOp, TxnRequest, TxnResponse, WatchCreateRequest, WatchResponse } from './etcd/proto.js';
import { StoreError } from './types.js';
import type { KV, ListOptions, ListResult, Store, StoreEvent, TxnOp, WatchHandle, WatchHandler } from './types.js';

/**
 * TLS material, as PEM contents (not paths). Given (even empty), every endpoint is reached
 * over TLS, `host:port` and `http://` ones too; without it, `https://` endpoints use TLS
 * with the system roots.
 */
export interface EtcdTlsOptions {
  /** CA bundle that signed the members' certificates. Default: the system roots. */
  ca?: string | Buffer;
  /** Client certificate (chain) and its key, for members that require client auth. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to check the members' certificates against instead of the endpoint host. */
  serverName?: string;
}

export interface EtcdStoreOptions {
  /** Client URLs of the members: `http://127.0.0.1:2379`, `https://etcd-0:2379` or `host:port`. */
  endpoints: string[];
  /**
   * Prepended to every key (default ''), stripped on the way out. Used verbatim, like
   * clientv3's namespace: with keys that start with '/', prefixes '/a' and '/ab' are
   * disjoint except for a list or watch of the whole keyspace (prefix ''); give clusters
   * prefixes that do not extend each other.
   */
  prefix?: string;
  /** How long `open()` keeps trying to reach a member before failing with 'Unavailable'. Default 5000 ms. */
  dialTimeoutMs?: number;
  /** Budget of one store call, retries included. Default 10000 ms. */
  requestTimeoutMs?: number;
  /** How long a watch keeps trying to re-establish its stream before it ends with 'Unavailable'. Default 60000 ms. */
  watchRetryMs?: number;
  tls?: EtcdTlsOptions;
}

/**
 * Diagnostics channels (node:diagnostics_channel), for logs, metrics and tests:
 * - `podnet:store:etcd:retry` — `{ op, attempt, error }` before a request is retried;
 * - `podnet:store:etcd:watch-reconnect` — `{ prefix, afterRevision, attempt, error }` when a
 *   watch lost its stream (attempt 0) or failed to re-establish it (attempt 1, 2...), before
 *   it tries again to resume after `afterRevision`.
 */
export const etcdDiagnostics = {
  retry: channel('podnet:store:etcd:retry'),
  watchReconnect: channel('podnet:store:etcd:watch-reconnect'),
} as const;

const DEFAULTS = { dialTimeoutMs: 5000, requestTimeoutMs: 10_000, watchRetryMs: 60_000 } as const;

/** Retry delays: 20 ms doubling to 500 ms, with jitter. */
function backoffMs(attempt: number): number {
  const base = Math.min(500, 20 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * (base / 2);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- error classification -------------------------------------------------------------

/**
 * What a failed etcd call means for the store:
 * - `compacted`: the requested revision is older than etcd's compaction;
 * - `future`: the requested revision is newer than etcd's newest;
 * - `notSent`: transient and certainly not applied (safe to retry even for a write);
 * - `transient`: transient, and a write may or may not have been applied;
 * - `invalid`: etcd refused the request itself (too large, bad argument);
 * - `other`: anything else.
 */
type Failure = 'compacted' | 'future' | 'notSent' | 'transient' | 'invalid' | 'other';

/** gRPC codes after which a request may have reached the leader: CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE. */
const TRANSIENT_CODES = new Set([1, 2, 4, 8, 10, 13, 14]);

function classify(e: unknown): Failure {
  if (!(e instanceof Error)) return 'other';
  const msg = e.message;
  if (msg.includes('required revision has been compacted')) return 'compacted';
  if (msg.includes('required revision is a future revision')) return 'future';
  // Refused before anything was proposed to raft: no connection, a refused stream, or etcd
  // saying so.
  if (
    (e instanceof GrpcError && e.notSent) ||
    msg.includes('etcdserver: no leader') ||
    msg.includes('raft proposal dropped') ||
    msg.includes('etcdserver: too many requests')
  ) {
    return 'notSent';
  }
  const code = e instanceof GrpcError ? e.code : undefined;
  if (code !== undefined && TRANSIENT_CODES.has(code)) return 'transient';
  if (msg.includes('etcdserver: request timed out') || msg.includes('etcdserver: leader changed')) return 'transient';
  // INVALID_ARGUMENT, OUT_OF_RANGE.
  if (code === 3 || code === 11) return 'invalid';
  return 'other';
}

// ---- key helpers ------------------------------------------------------------------------

/** The range start for a prefix: etcd refuses an empty key, and "\0" is the first key. */
function rangeStart(prefix: Buffer): Buffer {
  return prefix.length ? prefix : Buffer.from([0]);
}

/** The first key after every key that starts with `prefix` (etcd's prefix range end). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key is >= prefix: no end ("\0" means "to the end")
}

// ---- the store --------------------------------------------------------------------------

const closedError = (cause?: unknown) => new StoreError('Closed', 'etcd store is closed', cause === undefined ? {} : { cause });

/** `key` exists: create_revision(key) > 0. */
const exists = (key: string): Compare => ({ key, result: CompareResult.Greater, target: CompareTarget.Create, createRevision: 0 });
/** `key` does not exist: create_revision(key) == 0. */
const absent = (key: string): Compare => ({ key, result: CompareResult.Equal, target: CompareTarget.Create, createRevision: 0 });
/** mod_revision(key) == revision. */
const modIs = (key: string, revision: number): Compare => ({ key, result: CompareResult.Equal, target: CompareTarget.Mod, modRevision: revision });

export class EtcdStore implements Store {
  readonly backend = 'etcd';
  readonly prefix: string;
  private readonly client: EtcdClient;
  /** UTF-8 length of the prefix (stripped from returned keys). */
  private readonly prefixBytes: number;
  private readonly requestTimeoutMs: number;
  private readonly watchRetryMs: number;
  private readonly watches = new Set<EtcdWatch>();
  /** Highest compaction revision known to this client (own compactions, and etcd's errors). */
  private knownCompacted = 0;
  private closed = false;

  private constructor(client: EtcdClient, opts: EtcdStoreOptions) {
    this.client = client;
    this.prefix = opts.prefix ?? '';
    this.prefixBytes = Buffer.byteLength(this.prefix, 'utf8');
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.watchRetryMs = opts.watchRetryMs ?? DEFAULTS.watchRetryMs;
  }

  /**
   * Connects to etcd and checks that a member answers (a linearizable read, so a quorum
   * exists), retrying for `dialTimeoutMs`. Fails with StoreError 'Unavailable'.
   */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    if (opts.endpoints.length === 0) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'etcd store: no endpoints given');
    let client: EtcdClient;
    try {
      client = new EtcdClient({
        endpoints: opts.endpoints,
        ...(opts.tls ? { tls: opts.tls } : {}),
        metadata: { hasleader: 'true' },
        connectTimeoutMs: Math.min(opts.dialTimeoutMs ?? DEFAULTS.dialTimeoutMs, DEFAULTS.dialTimeoutMs),
        // Notice a member that vanished without closing the connection (a partition).
        // etcd refuses pings more often than every 5 s, or without an active stream.
        keepaliveTimeMs: 10_000,
        keepaliveTimeoutMs: 5000,
      });
    } catch (e) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `etcd store: ${(e as Error).message}`, {}, { cause: e });
    }
    const store = new EtcdStore(client, opts);
    try {
      await store.retrying('open', 'read', opts.dialTimeoutMs ?? DEFAULTS.dialTimeoutMs, (deadline) => store.client.range({ key: store.probeKey(), countOnly: true }, deadline));
    } catch (e) {
      await store.close();
      if (e instanceof StoreError) throw new StoreError('Unavailable', `etcd store: no member of ${opts.endpoints.join(', ')} answered: ${e.message}`, { cause: e });
      throw e;
    }
    return store;
  }

  /** Equivalent to `etcdctl get --count-only` on a key the store never writes: its header revision. */
  async currentRevision(): Promise<number> {
    const res = await this.retrying('currentRevision', 'read', this.requestTimeoutMs, (deadline) => this.client.range({ key: this.probeKey(), countOnly: true }, deadline));
    return res.header.revision;
  }

  /** Equivalent to `etcdctl get KEY`. */
  async get(key: string): Promise<KV | undefined> {
    const res = await this.retrying('get', 'read', this.requestTimeoutMs, (deadline) => this.client.range({ key: this.k(key) }, deadline));
    const kv = res.kvs[0];
    return kv ? this.toKV(kv) : undefined;
  }

  /**
   * Equivalent to `etcdctl get PREFIX --prefix [--limit N] [--rev R]`, starting after
   * `startAfter`. `more` is etcd's own flag; `revision` is the revision read at (R, or the
   * header revision), to pass back for the next page.
   */
  async list(prefix: string, opts: ListOptions = {}): Promise<ListResult> {
    const full = this.kb(prefix);
    let start = rangeStart(full);
    if (opts.startAfter !== undefined) {
      const after = Buffer.concat([this.kb(opts.startAfter), Buffer.from([0])]);
      if (Buffer.compare(after, start) > 0) start = after;
    }
    const req = {
      key: start,
      rangeEnd: prefixEnd(full),
      ...(opts.limit ? { limit: opts.limit } : {}),
      ...(opts.revision ? { revision: opts.revision } : {}),
    };
    let res;
    try {
      res = await this.retrying('list', 'read', this.requestTimeoutMs, (deadline) => this.client.range(req, deadline), opts.revision);
    } catch (e) {
      if (!(e instanceof StoreError && e.code === 'Compacted')) throw e;
      // Rare (a client paging or relisting from too old a resourceVersion): worth the few
      // reads that find the exact compaction revision.
      const compactedRevision = await this.compactedRevision().catch(() => e.compactedRevision);
      throw new StoreError('Compacted', `list: revision ${opts.revision} has been compacted (compacted revision ${compactedRevision})`, { cause: e.cause, ...(compactedRevision !== undefined ? { compactedRevision } : {}) });
    }
    return { kvs: res.kvs.map((kv) => this.toKV(kv)), revision: opts.revision || res.header.revision, more: res.more };
  }

  /** Equivalent to `etcdctl get PREFIX --prefix --count-only`. */
  async count(prefix: string): Promise<number> {
    const full = this.kb(prefix);
    const res = await this.retrying('count', 'read', this.requestTimeoutMs, (deadline) => this.client.range({ key: rangeStart(full), rangeEnd: prefixEnd(full), countOnly: true }, deadline));
    return res.count;
  }

  /** A transaction: `create_revision(KEY) == 0` → put. Fails with 'KeyExists'. */
  async create(key: string, value: string): Promise<KV> {
    const k = this.k(key);
    const res = await this.txn('create', { compare: [absent(k)], success: [{ put: { key: k, value } }], failure: [] });
    if (!res.succeeded) throw new StoreError('KeyExists', `${key} already exists`, { key });
    const r = res.header.revision;
    return { key, value, createRevision: r, modRevision: r };
  }

  /**
   * A transaction: `mod_revision(KEY) == expected` (and the key exists) → put, else read
   * the key. Fails with 'NotFound', or 'Conflict' carrying the stored KV.
   */
  async update(key: string, value: string, expectedModRevision: number): Promise<KV> {
    const k = this.k(key);
    const res = await this.txn('update', {
      compare: [modIs(k, expectedModRevision), exists(k)],
      success: [{ put: { key: k, value, prevKv: true } }],
      failure: [{ range: { key: k } }],
    });
    if (!res.succeeded) throw this.preconditionFailed(key, res, expectedModRevision);
    const prev = res.responses[0]?.put?.prevKv;
    const r = res.header.revision;
    return { key, value, createRevision: prev ? prev.createRevision : r, modRevision: r };
  }

  /**
   * A transaction: the key exists (and `mod_revision(KEY) == expected` when given) →
   * delete it returning the previous KV, else read the key. Resolves with the deleted value
   * and modRevision = the deletion's revision.
   */
  async delete(key: string, expectedModRevision?: number): Promise<KV> {
    const k = this.k(key);
    const compare = [exists(k)];
    if (expectedModRevision !== undefined) compare.push(modIs(k, expectedModRevision));
    const res = await this.txn('delete', {
      compare,
      success: [{ deleteRange: { key: k, prevKv: true } }],
      failure: [{ range: { key: k } }],
    });
    if (!res.succeeded) throw this.preconditionFailed(key, res, expectedModRevision);
    const prev = res.responses[0]?.deleteRange?.prevKvs[0];
    // A concurrent delete between compare and delete cannot happen: a txn is atomic.
    if (!prev) throw new StoreError('NotFound', `${key} not found`, { key });
    return { ...this.toKV(prev), key, modRevision: res.header.revision };
  }

  /**
   * One etcd transaction: a compare per op (absent for creates, present — and at the
   * expected revision when given — for updates and deletes), then every put / delete. On
   * failure the else branch reads every key, to name the first op that did not hold.
   */
  async transaction(ops: TxnOp[]): Promise<KV[]> {
    if (!ops.length) return [];
    if (ops.length > 1 && new Set(ops.map((o) => o.key)).size !== ops.length) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'a transaction may write each key only once', {});
    const compare: Compare[] = [];
    const success: RequestOp[] = [];
    const failure: RequestOp[] = [];
    for (const op of ops) {
      const k = this.k(op.key);
      failure.push({ range: { key: k } });
      if (op.kind === 'create') {
        compare.push(absent(k));
        success.push({ put: { key: k, value: op.value } });
        continue;
      }
      compare.push(exists(k));
      if (op.expectedModRevision !== undefined) compare.push(modIs(k, op.expectedModRevision));
      success.push(op.kind === 'update' ? { put: { key: k, value: op.value, prevKv: true } } : op.kind === 'check' ? { range: { key: k } } : { deleteRange: { key: k, prevKv: true } });
    }
    const res = await this.txn('transaction', { compare, success, failure });
    if (!res.succeeded) {
      for (const [i, op] of ops.entries()) {
        const cur = res.responses[i]?.range?.kvs[0];
        if (op.kind === 'create') {
          if (cur) throw new StoreError('KeyExists', `${op.key} already exists`, { key: op.key });
          continue;
        }
        if (!cur) throw new StoreError('NotFound', `${op.key} not found`, { key: op.key });
        if (op.expectedModRevision !== undefined && cur.modRevision !== op.expectedModRevision) {
          throw new StoreError('Conflict', `${op.key} was modified: expected revision ${op.expectedModRevision}, stored ${cur.modRevision}`, { key: op.key, current: { ...this.toKV(cur), key: op.key } });
        }
      }
      throw new StoreError('Conflict', 'the transaction\'s preconditions changed while it ran; try again', {});
    }
    const r = res.header.revision;
    return ops.map((op, i): KV => {
      const resp = res.responses[i];
      if (op.kind === 'create') return { key: op.key, value: op.value, createRevision: r, modRevision: r };
      if (op.kind === 'check') {
        const cur = resp?.range?.kvs[0];
        if (!cur) throw new StoreError('NotFound', `${op.key} not found`, { key: op.key });
        return { ...this.toKV(cur), key: op.key };
      }
      if (op.kind === 'update') {
        const prev = resp?.put?.prevKv;
        return { key: op.key, value: op.value, createRevision: prev ? prev.createRevision : r, modRevision: r };
      }
      const prev = resp?.deleteRange?.prevKvs[0];
      if (!prev) throw new StoreError('NotFound', `${op.key} not found`, { key: op.key });
      return { ...this.toKV(prev), key: op.key, modRevision: r };
    });
  }

  /**
   * An etcd watch on the prefix from `afterRevision + 1`, with previous values. The stream
   * is re-established after failures, resuming after the last delivered revision.
   */
  watch(prefix: string, afterRevision: number, handler: WatchHandler): WatchHandle {
    const full = this.kb(prefix);
    const w = new EtcdWatch({
      store: this,
      prefix,
      request: { key: rangeStart(full), rangeEnd: prefixEnd(full), prevKv: true, progressNotify: true },
      afterRevision,
      handler,
      retryMs: this.watchRetryMs,
      onEnd: () => this.watches.delete(w),
    });
    if (this.closed) {
      queueMicrotask(() => w.fail(closedError()));
      return w;
    }
    this.watches.add(w);
    w.connect();
    return w;
  }

  /**
   * Equivalent to `etcdctl compact REV --physical`: returns once the serving member has
   * removed the history. Like the SQLite store, a revision newer than the newest is
   * clamped to the newest, and compacting at or below an existing compaction succeeds and
   * changes nothing. etcd has one history: this compacts it for every prefix (every
   * cluster sharing the etcd).
   */
  async compact(revision: number): Promise<void> {
    const once = async (r: number) => {
      try {
        await this.retrying('compact', 'read', this.requestTimeoutMs, (deadline) => this.client.compact({ revision: r, physical: true }, deadline));
      } catch (e) {
        if (!(e instanceof StoreError && e.code === 'Compacted')) throw e;
      }
      this.noteCompacted(r);
    };
    try {
      await once(revision);
    } catch (e) {
      if (!(e instanceof PodnetError && classify(e.cause) === 'future')) throw e;
      await once(Math.min(revision, await this.currentRevision()));
    }
  }

  /**
   * etcd's compaction revision C: the revision of the last `compact` (0 if none). History
   * before C is gone; C itself can still be read and watched from, so this is one more than
   * the contract's "oldest readable revision, minus one" — the conservative side, and what
   * the contract's own compaction case expects (compact(R) → at least R).
   *
   * etcd does not report C directly. The store keeps the highest revision it knows to be
   * compacted (its own compactions, watch cancellations, 'compacted' errors), checks it
   * with one read at that revision, and only if someone else (another client, etcd's
   * `--auto-compaction-*`) compacted further, finds C by bisecting reads up to the newest
   * revision (about log2(revisions) cheap reads).
   */
  async compactedRevision(): Promise<number> {
    let lo = Math.max(1, this.knownCompacted);
    if (await this.readableAt(lo)) return this.knownCompacted;
    // lo is not readable (lo < C); the newest revision always is.
    let hi = await this.currentRevision();
    while (lo + 1 < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (await this.readableAt(mid)) hi = mid;
      else lo = mid;
    }
    this.noteCompacted(hi);
    return this.knownCompacted;
  }

  /** Ends every watch (their handlers get 'Closed') and the client; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.fail(closedError());
    this.watches.clear();
    this.client.close();
  }

  // ---- internals, used by EtcdWatch too ---------------------------------------------------

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal Opens a raw watch stream on some member. */
  openWatchStream(handlers: { onResponse(res: WatchResponse): void; onEnd(err: GrpcError | undefined): void }): WatchStream {
    return this.client.watch(handlers);
  }

  /** @internal */
  noteCompacted(revision: number): void {
    if (revision > this.knownCompacted) this.knownCompacted = revision;
  }

  /** @internal */
  unprefix(key: Buffer): string {
    return key.toString('utf8', this.prefixBytes);
  }

  /** @internal */
  toKV(kv: KeyValue): KV {
    return { key: this.unprefix(kv.key), value: kv.value.toString('utf8'), createRevision: kv.createRevision, modRevision: kv.modRevision };
  }

  /** The stored key (the encoder writes strings as UTF-8). */
  private k(key: string): string {
    return this.prefix + key;
  }

  /** The stored key as bytes (for range ends, which are computed on bytes). */
  private kb(key: string): Buffer {
    return Buffer.from(this.prefix + key, 'utf8');
  }

  /** A key the store never writes (its keys have no NUL): cheap reads for the header revision. */
  private probeKey(): string {
    return `${this.prefix}\0podnet-probe`;
  }

  private async readableAt(revision: number): Promise<boolean> {
    try {
      await this.retrying('compactedRevision', 'read', this.requestTimeoutMs, (deadline) => this.client.range({ key: this.probeKey(), countOnly: true, revision }, deadline), revision);
      return true;
    } catch (e) {
      if (e instanceof StoreError && e.code === 'Compacted') return false;
      throw e;
    }
  }

  private txn(op: string, req: TxnRequest): Promise<TxnResponse> {
    return this.retrying(op, 'write', this.requestTimeoutMs, (deadline) => this.client.txn(req, deadline));
  }

  private preconditionFailed(key: string, res: TxnResponse, expected: number | undefined): StoreError {
    const cur = res.responses[0]?.range?.kvs[0];
    if (!cur) return new StoreError('NotFound', `${key} not found`, { key });
    const current = this.toKV(cur);
    return new StoreError('Conflict', `${key} was modified: expected revision ${expected}, stored ${current.modRevision}`, { key, current });
  }

  /**
   * Runs one etcd call with the retry policy of `kind` (see the module comment) within
   * `budgetMs`, mapping failures to StoreErrors. `atRevision` is the revision a read asked
   * for, to record a compaction that made it fail.
   */
  private async retrying<T>(op: string, kind: 'read' | 'write', budgetMs: number, call: (deadline: number) => Promise<T>, atRevision?: number): Promise<T> {
    const deadline = Date.now() + budgetMs;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw closedError();
      try {
        return await call(deadline);
      } catch (e) {
        if (this.closed || e instanceof GrpcClosedError) throw closedError(e);
        const f = classify(e);
        const msg = e instanceof Error ? e.message : String(e);
        if (f === 'compacted') {
          // The request was for a revision below C, so C >= atRevision + 1: a lower bound.
          if (atRevision) this.noteCompacted(atRevision + 1);
          throw new StoreError('Compacted', `${op}: revision ${atRevision ?? '?'} has been compacted`, { cause: e, compactedRevision: this.knownCompacted });
        }
        if (f === 'future') throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${op}: revision ${atRevision ?? '?'} is newer than etcd's newest revision`, {}, { cause: e });
        if (f === 'invalid') throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${op}: etcd refused the request: ${msg}`, {}, { cause: e });
        if (f === 'other') throw e;
        const retryable = f === 'notSent' || kind === 'read';
        const wait = backoffMs(attempt);
        if (!retryable || Date.now() + wait >= deadline) {
          const unknown = kind === 'write' && f === 'transient' ? ' (the write may or may not have been applied)' : '';
          throw new StoreError('Unavailable', `${op}: etcd is unavailable${unknown}: ${msg}`, { cause: e });
        }
        if (etcdDiagnostics.retry.hasSubscribers) etcdDiagnostics.retry.publish({ op, attempt, error: msg });
        await sleep(wait);
      }
    }
  }
}

// ---- watch ------------------------------------------------------------------------------

interface EtcdWatchInit {
  store: EtcdStore;
  prefix: string;
  request: WatchCreateRequest;
  afterRevision: number;
  handler: WatchHandler;
  retryMs: number;
  onEnd: () => void;
}

/**
 * One store watch = one etcd watch stream. `last` is the revision up to which every event
 * has been delivered: every (re)connection asks for `last + 1`, and events at or below
 * `last` (a member replaying what another one already sent) are dropped, so delivery stays
 * exactly-once. Ending a watch cancels its stream (RST_STREAM), which makes etcd drop the
 * stream's watchers.
 */
class EtcdWatch implements WatchHandle {
  private readonly init: EtcdWatchInit;
  private last: number;
  private stream: WatchStream | undefined;
  private ended = false;
  private attempt = 0;
  /** When the current run of failed (re)connections began. */
  private failingSince: number | undefined;

  constructor(init: EtcdWatchInit) {
    this.init = init;
    this.last = init.afterRevision;
  }

  cancel(): void {
    this.end();
  }

  /** Ends the watch and reports `err` to the handler (once). */
  fail(err: StoreError): void {
    if (this.ended) return;
    this.end();
    this.init.handler.onError(err);
  }

  connect(): void {
    if (this.ended) return;
    const store = this.init.store;
    if (store.isClosed) {
      this.fail(closedError());
      return;
    }
    const stream: WatchStream = store.openWatchStream({
      onResponse: (res) => this.onResponse(stream, res),
      onEnd: (err) => this.stream === stream && this.lost(err ?? new Error('watch stream ended')),
    });
    this.stream = stream;
    stream.send({ create: { ...this.init.request, startRevision: this.last + 1 } });
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    const s = this.stream;
    this.stream = undefined;
    s?.close();
    this.init.onEnd();
  }

  private onResponse(stream: WatchStream, res: WatchResponse): void {
    if (this.ended || stream !== this.stream) return;
    const compacted = res.compactRevision;
    if (compacted > 0) {
      this.init.store.noteCompacted(compacted);
      this.fail(new StoreError('Compacted', `watch ${this.init.prefix}: revision ${this.last + 1} has been compacted (compacted revision ${compacted})`, { compactedRevision: compacted }));
      return;
    }
    if (res.canceled) {
      // Not a compaction: the member dropped the watch (lost its leader...). Try again.
      this.lost(new Error(`watch canceled by etcd: ${res.cancelReason || 'no reason given'}`));
      return;
    }
    if (res.created) {
      this.attempt = 0;
      this.failingSince = undefined;
    }
    if (!res.events.length) {
      // A progress notification (no events, neither created nor canceled). etcd sends one
      // only to a watcher that has been sent every event up to the header revision, so a
      // later resume may start after it: an idle watch survives compactions beyond its
      // last event instead of ending with 'Compacted' at its next reconnection.
      if (!res.created) this.last = Math.max(this.last, res.header.revision);
      return;
    }
    const events: StoreEvent[] = [];
    let last = this.last;
    for (const ev of res.events) {
      const r = ev.kv.modRevision;
      // Events of one revision always come in one response, so `> this.last` keeps them all.
      if (r <= this.last) continue;
      events.push(this.toEvent(ev.type, ev.kv, ev.prevKv));
      if (r > last) last = r;
    }
    if (!events.length) return;
    this.last = last;
    try {
      this.init.handler.onEvents(events);
    } catch (e) {
      // A handler bug must not look like a stream failure.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private toEvent(type: number, kv: KeyValue, prev: KeyValue | undefined): StoreEvent {
    const store = this.init.store;
    const key = store.unprefix(kv.key);
    const revision = kv.modRevision;
    const prevValue = prev ? prev.value.toString('utf8') : undefined;
    if (type === EventType.Delete) {
      return { type: 'delete', key, value: prevValue ?? '', ...(prevValue !== undefined ? { prevValue } : {}), revision, createRevision: prev ? prev.createRevision : 0 };
    }
    const createRevision = kv.createRevision;
    const value = kv.value.toString('utf8');
    if (createRevision === revision) return { type: 'create', key, value, revision, createRevision };
    return { type: 'update', key, value, ...(prevValue !== undefined ? { prevValue } : {}), revision, createRevision };
  }

  /** The stream failed (or could not be opened): reconnect after a backoff, or give up. */
  private lost(e: unknown): void {
    if (this.ended) return;
    const s = this.stream;
    this.stream = undefined;
    s?.close();
    const store = this.init.store;
    if (store.isClosed) {
      this.fail(closedError());
      return;
    }
    const msg = e instanceof Error ? e.message : String(e);
    const f = classify(e);
    const now = Date.now();
    this.failingSince ??= now;
    if (f === 'invalid' || now - this.failingSince > this.init.retryMs) {
      this.fail(new StoreError('Unavailable', `watch ${this.init.prefix}: etcd is unavailable: ${msg}`, { cause: e }));
      return;
    }
    const attempt = this.attempt++;
    if (etcdDiagnostics.watchReconnect.hasSubscribers) etcdDiagnostics.watchReconnect.publish({ prefix: this.init.prefix, afterRevision: this.last, attempt, error: msg });
    setTimeout(() => this.connect(), backoffMs(attempt));
  }
}
