/**
 * The embedded store of `podnet api`: one SQLite file in the kine model. Every write
 * appends a row to one table whose row id is the revision, so "now", "as of revision R"
 * and "every change after R" are all queries over the same rows. Deletes are rows too
 * (tombstones). Compaction removes rows that a newer row of the same key made invisible.
 *
 * Writes are group-committed: every write requested before the event loop next reaches
 * its check phase is validated one after another (so compare-and-swap and KeyExists are
 * decided per write) inside ONE transaction, and all of them are acknowledged after its
 * single fsync. With WAL and `synchronous = FULL` an acknowledged write survives `kill -9`
 * and power loss.
 *
 * The process that opens the file owns it (SQLite's EXCLUSIVE locking mode): the
 * revision counter and the watch fan-out live in this process, so a second writer would
 * make both wrong. A second `open` of the same directory fails with 'Unavailable'.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, isStoreError } from './types.js';
import type { KV, ListOptions, ListResult, Store, StoreEvent, TxnOp, WatchHandle, WatchHandler } from './types.js';
import { ErrorCodes, PodnetError } from '../../util/errors.js';

export interface SqliteStoreOptions {
  /** How often the policy started by startCompaction() runs (default 5 minutes). */
  compactEveryMs?: number;
  /** How many of the newest revisions automatic compaction keeps readable (default 10000). */
  keepRevisions?: number;
  /** Most writes committed in one transaction (default 1000). */
  maxBatch?: number;
  /** How long open() waits for a database held by another process (default 1000 ms). */
  lockTimeoutMs?: number;
  /** Told when an automatic compaction fails; without it such failures are silent. */
  onCompactionError?: (err: StoreError) => void;
}

export interface SqliteStoreStats {
  /** Write transactions committed. */
  commits: number;
  /** Rows written by them (creates, updates, deletes that succeeded). */
  writes: number;
}

/** The file inside the store directory. */
export const SQLITE_FILE = 'podnet.db';

const SCHEMA_VERSION = 1;
const DEFAULT_COMPACT_EVERY_MS = 5 * 60_000;
const DEFAULT_KEEP_REVISIONS = 10_000;
const DEFAULT_MAX_BATCH = 1000;
const DEFAULT_LOCK_TIMEOUT_MS = 1000;
/** A batch also stops growing at this many bytes of values (one 3 MiB object is fine). */
const MAX_BATCH_CHARS = 64 * 1024 * 1024;
/** Revisions compacted per transaction, so compaction never blocks writes for long. */
const COMPACT_STEP = 1000;
/** A watch replays history in chunks of at most this many rows / characters of values. */
const REPLAY_ROWS = 500;
const REPLAY_CHARS = 16 * 1024 * 1024;

/*
 * kine's table, minus two columns: `lease` (leases are API objects here, not store
 * features) and `old_value`. kine copies the previous value into every update row; here
 * the previous value is read from the row at prev_revision instead, which halves what an
 * update writes. That row is always there when it is needed: compaction deletes a row
 * only when its successor is itself compacted, and no event at a compacted revision is
 * ever delivered.
 *
 * (name, prev_revision) is unique: two writes that start from the same row of a key
 * cannot both be stored, whatever the application code above does.
 * (name, id, deleted) serves get (newest row of a key), list and count (newest row at or
 * below a revision, from the index alone).
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS kine (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  name            TEXT    NOT NULL,
  created         INTEGER NOT NULL,
  deleted         INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  prev_revision   INTEGER NOT NULL,
  value           TEXT    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);
CREATE INDEX IF NOT EXISTS kine_name_id_deleted_index ON kine (name, id, deleted);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
`;

type SingleOp =
  | { kind: 'create'; key: string; value: string }
  | { kind: 'update'; key: string; value: string; expected: number }
  | { kind: 'delete'; key: string; expected: number | undefined }
  | { kind: 'check'; key: string; expected: number };

/** A single write, or a transaction of several (all or none). */
type WriteOp = SingleOp | { kind: 'txn'; ops: SingleOp[] };

interface PendingWrite {
  op: WriteOp;
  resolve(kvs: KV[]): void;
  reject(err: StoreError): void;
}

type Outcome = { ok: true; kv: KV } | { ok: false; err: StoreError };
type BatchOutcome = { ok: true; kvs: KV[] } | { ok: false; err: StoreError };

/** Thrown inside a transaction's savepoint to roll it back. */
class TxnAbort extends Error {
  constructor(readonly err: StoreError) {
    super(err.message);
  }
}

interface Watcher {
  prefix: string;
  range: KeyRange;
  handler: WatchHandler;
  /** Every event up to this revision has been delivered (or did not match). */
  last: number;
  /** False while history is replayed from the table; live events are ignored then. */
  live: boolean;
  done: boolean;
}

interface HeadRow {
  id: number;
  deleted: number;
  create_revision: number;
}
interface KVRow {
  id: number;
  name: string;
  create_revision: number;
  value: string;
}
interface GetRow extends HeadRow {
  value: string;
}
interface HistoryRow {
  id: number;
  name: string;
  created: number;
  deleted: number;
  create_revision: number;
  value: string;
  prev_value: string | null;
}

/** Keys starting with a prefix, as bounds in SQLite's (UTF-8 byte) order. */
interface KeyRange {
  lo: string;
  /** Exclusive; undefined when no string is greater than every key with the prefix. */
  hi: string | undefined;
}

export class SqliteStore implements Store {
  readonly backend = 'sqlite';
  /** The database file. */
  readonly path: string;

  readonly #db: Database.Database;
  readonly #compactEveryMs: number;
  readonly #keepRevisions: number;
  readonly #maxBatch: number;
  readonly #onCompactionError: ((err: StoreError) => void) | undefined;
  readonly #stmts = new Map<string, Database.Statement>();
  /** The newest committed revision. */
  #rev: number;
  #compacted: number;
  #queue: PendingWrite[] = [];
  #flushScheduled = false;
  readonly #watchers = new Set<Watcher>();
  /** Serialises compactions; never rejects. */
  #compaction: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #stats: SqliteStoreStats = { commits: 0, writes: 0 };

  private constructor(db: Database.Database, path: string, rev: number, compacted: number, opts: SqliteStoreOptions) {
    this.#db = db;
    this.path = path;
    this.#rev = rev;
    this.#compacted = compacted;
    this.#compactEveryMs = opts.compactEveryMs ?? DEFAULT_COMPACT_EVERY_MS;
    this.#keepRevisions = opts.keepRevisions ?? DEFAULT_KEEP_REVISIONS;
    this.#maxBatch = Math.max(1, opts.maxBatch ?? DEFAULT_MAX_BATCH);
    this.#onCompactionError = opts.onCompactionError;
  }

  /**
   * Opens (creating if missing) `dir/podnet.db` and takes ownership of it. Throws
   * StoreError 'Unavailable' when the file cannot be opened or another process holds it.
   */
  static open(dir: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const path = join(dir, SQLITE_FILE);
    let db: Database.Database | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      db = new Database(path, { timeout: opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS });
      // Before the first access: the lock is then held until close, and the WAL index
      // lives in this process's memory (no -shm file).
      db.pragma('locking_mode = EXCLUSIVE');
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
      db.pragma('synchronous = FULL');
      db.pragma('cache_size = -16384'); // KiB: 16 MiB holds the name index of 100k+ keys; the OS page cache holds the rest
      db.pragma('journal_size_limit = 67108864'); // a burst of big values leaves no huge WAL behind
      const d = db;
      const init = d.transaction(() => {
        d.exec(SCHEMA);
        const version = d.prepare<[], number>(`SELECT value FROM meta WHERE key = 'schema'`).pluck().get();
        if (version === undefined) d.prepare(`INSERT INTO meta (key, value) VALUES ('schema', ?)`).run(SCHEMA_VERSION);
        else if (version !== SCHEMA_VERSION) throw new Error(`schema version ${version}, this build reads ${SCHEMA_VERSION}`);
      });
      init.immediate();
      // sqlite_sequence keeps the highest id ever used, even when compaction has deleted
      // that row: revisions never go back.
      const seq = db.prepare<[], number>(`SELECT seq FROM sqlite_sequence WHERE name = 'kine'`).pluck().get() ?? 0;
      const compacted = db.prepare<[], number>(`SELECT value FROM meta WHERE key = 'compact_rev'`).pluck().get() ?? 0;
      return new SqliteStore(db, path, Math.max(seq, compacted), compacted, opts);
    } catch (e) {
      db?.close();
      const busy = (e as { code?: unknown }).code === 'SQLITE_BUSY';
      const why = busy ? 'it is held by another process' : e instanceof Error ? e.message : String(e);
      throw new StoreError('Unavailable', `cannot open the store ${path}: ${why}`, { cause: e });
    }
  }

  /** Counters for tests and metrics: how well group commit batches. */
  stats(): SqliteStoreStats {
    return { ...this.#stats };
  }

  async currentRevision(): Promise<number> {
    this.#assertOpen();
    return this.#rev;
  }

  async compactedRevision(): Promise<number> {
    this.#assertOpen();
    return this.#compacted;
  }

  async get(key: string): Promise<KV | undefined> {
    this.#assertOpen();
    const row = this.#sql(
      'get',
      () => this.#stmt<[string], GetRow>('SELECT id, deleted, create_revision, value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1').get(key),
    );
    if (row === undefined || row.deleted) return undefined;
    return { key, value: row.value, createRevision: row.create_revision, modRevision: row.id };
  }

  /**
   * The newest row at or below the revision of every key in the range, unless that row
   * is a tombstone. Walks the (name, id, deleted) index in key order (forced: without
   * ANALYZE statistics SQLite may pick the unique index and read every row to test
   * `deleted`), so a page costs its own rows plus index entries of their history.
   * A revision newer than the newest reads (and reports) the newest.
   */
  async list(prefix: string, opts: ListOptions = {}): Promise<ListResult> {
    this.#assertOpen();
    const revision = opts.revision === undefined ? this.#rev : Math.min(opts.revision, this.#rev);
    this.#assertNotCompacted(revision);
    const range = keyRange(prefix);
    const after = opts.startAfter !== undefined && utf8Compare(opts.startAfter, range.lo) >= 0 ? opts.startAfter : undefined;
    const limit = opts.limit !== undefined && opts.limit > 0 ? Math.floor(opts.limit) : -1;
    const sql =
      `SELECT k.id, k.name, k.create_revision, k.value FROM kine AS k INDEXED BY kine_name_id_deleted_index ` +
      `WHERE k.name ${after === undefined ? '>=' : '>'} @lo${range.hi === undefined ? '' : ' AND k.name < @hi'} ` +
      `AND k.id <= @rev AND k.deleted = 0 ` +
      `AND NOT EXISTS (SELECT 1 FROM kine AS n WHERE n.name = k.name AND n.id > k.id AND n.id <= @rev) ` +
      `ORDER BY k.name LIMIT @limit`;
    const params: Record<string, string | number> = { lo: after ?? range.lo, rev: revision, limit: limit < 0 ? -1 : limit + 1 };
    if (range.hi !== undefined) params['hi'] = range.hi;
    const rows = this.#sql('list', () => this.#stmt<[Record<string, string | number>], KVRow>(sql).all(params));
    const more = limit >= 0 && rows.length > limit;
    if (more) rows.length = limit;
    return {
      kvs: rows.map((r) => ({ key: r.name, value: r.value, createRevision: r.create_revision, modRevision: r.id })),
      revision,
      more,
    };
  }

  /** Live keys with the prefix, counted from the index alone. */
  async count(prefix: string): Promise<number> {
    this.#assertOpen();
    const range = keyRange(prefix);
    const sql =
      `SELECT COUNT(*) FROM kine AS k WHERE k.name >= @lo${range.hi === undefined ? '' : ' AND k.name < @hi'} AND k.deleted = 0 ` +
      `AND NOT EXISTS (SELECT 1 FROM kine AS n WHERE n.name = k.name AND n.id > k.id)`;
    const params: Record<string, string> = { lo: range.lo };
    if (range.hi !== undefined) params['hi'] = range.hi;
    return this.#sql('count', () => this.#stmt<[Record<string, string>], number>(sql).pluck().get(params) ?? 0);
  }

  async create(key: string, value: string): Promise<KV> {
    return (await this.#enqueue({ kind: 'create', key, value }))[0]!;
  }

  async update(key: string, value: string, expectedModRevision: number): Promise<KV> {
    return (await this.#enqueue({ kind: 'update', key, value, expected: expectedModRevision }))[0]!;
  }

  async delete(key: string, expectedModRevision?: number): Promise<KV> {
    return (await this.#enqueue({ kind: 'delete', key, expected: expectedModRevision }))[0]!;
  }

  /** Several writes in one savepoint of the batch's transaction: all or none. */
  async transaction(ops: TxnOp[]): Promise<KV[]> {
    if (!ops.length) return [];
    if (new Set(ops.map((o) => o.key)).size !== ops.length) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'a transaction may write each key only once', {});
    const single = ops.map((o): SingleOp => {
      switch (o.kind) {
        case 'create':
          return o;
        case 'update':
          return { kind: 'update', key: o.key, value: o.value, expected: o.expectedModRevision };
        case 'delete':
          return { kind: 'delete', key: o.key, expected: o.expectedModRevision };
        case 'check':
          return { kind: 'check', key: o.key, expected: o.expectedModRevision };
      }
    });
    return this.#enqueue({ kind: 'txn', ops: single });
  }

  /**
   * Replays history after `afterRevision` from the table, in chunks, then switches to
   * live events from each commit. Everything runs on the event loop thread and each
   * chunk reads up to the newest committed revision, so nothing written while the
   * replay runs is missed or sent twice. Nothing is delivered before this returns. A
   * compaction that passes the replay's position ends the watch with 'Compacted'.
   */
  watch(prefix: string, afterRevision: number, handler: WatchHandler): WatchHandle {
    const w: Watcher = { prefix, range: keyRange(prefix), handler, last: afterRevision, live: false, done: false };
    if (this.#closed) {
      setImmediate(() => this.#endWatch(w, closedError()));
    } else {
      this.#watchers.add(w);
      setImmediate(() => this.#replay(w));
    }
    return {
      cancel: () => {
        w.done = true;
        this.#watchers.delete(w);
      },
    };
  }

  /**
   * Forgets history up to `revision` (clamped to the newest), in steps of
   * COMPACT_STEP revisions, each its own transaction that also records how far it got:
   * a crash or close() in the middle leaves a consistent, smaller compaction. kine's
   * rule: a row goes when a newer row of its key is at or below the step's end, and
   * tombstones at or below it go too. The newest row of a live key always stays.
   */
  compact(revision: number): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    const run = this.#compaction.then(() => this.#compactTo(revision));
    this.#compaction = run.catch(() => undefined);
    return run;
  }

  /**
   * Starts the automatic policy: every compactEveryMs, compact everything older than
   * the newest keepRevisions revisions. Stopped by close().
   */
  startCompaction(): void {
    if (this.#closed || this.#timer !== undefined) return;
    let running = false;
    this.#timer = setInterval(() => {
      const target = this.#rev - this.#keepRevisions;
      if (running || target <= this.#compacted) return;
      running = true;
      this.compact(target)
        .catch((e: unknown) => {
          if (isStoreError(e, 'Closed')) return;
          this.#onCompactionError?.(isStoreError(e) ? e : unavailable('compaction', e));
        })
        .finally(() => (running = false));
    }, this.#compactEveryMs);
    this.#timer.unref();
  }

  /**
   * Refuses new calls at once, commits the writes already requested, stops compaction
   * between two steps, ends every watch with 'Closed' and closes the file. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#closing = (async () => {
      while (this.#queue.length > 0 || this.#flushScheduled) await new Promise((r) => setImmediate(r));
      await this.#compaction;
      for (const w of [...this.#watchers]) this.#endWatch(w, closedError());
      this.#stmts.clear();
      this.#db.close();
    })();
    return this.#closing;
  }

  // ---- writes -------------------------------------------------------------------------

  #enqueue(op: WriteOp): Promise<KV[]> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<KV[]>((resolve, reject) => {
      this.#queue.push({ op, resolve, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  /** Applies one batch in one transaction, then acknowledges it and fans its events out. */
  #flush(): void {
    this.#flushScheduled = false;
    let n = 0;
    let chars = 0;
    while (n < this.#queue.length && n < this.#maxBatch && (n === 0 || chars < MAX_BATCH_CHARS)) {
      const op = this.#queue[n]!.op;
      for (const o of op.kind === 'txn' ? op.ops : [op]) chars += o.kind === 'create' || o.kind === 'update' ? o.value.length : 0;
      n++;
    }
    const batch = this.#queue.splice(0, n);
    if (this.#queue.length > 0) this.#scheduleFlush();
    if (batch.length === 0) return;

    const outcomes: BatchOutcome[] = [];
    const events: StoreEvent[] = [];
    let rev = this.#rev;
    try {
      this.#db.transaction(() => {
        for (const p of batch) {
          if (p.op.kind === 'txn') {
            const txn = p.op;
            const local: StoreEvent[] = [];
            const kvs: KV[] = [];
            let r = rev;
            try {
              // A nested better-sqlite3 transaction is a SAVEPOINT: rolled back alone on abort.
              this.#db.transaction(() => {
                for (const sub of txn.ops) {
                  const out = this.#apply(sub, r + 1, local);
                  if (!out.ok) throw new TxnAbort(out.err);
                  kvs.push(out.kv);
                  if (sub.kind !== 'check') r++;
                }
              })();
            } catch (e) {
              if (!(e instanceof TxnAbort)) throw e;
              outcomes.push({ ok: false, err: e.err });
              continue;
            }
            rev = r;
            events.push(...local);
            outcomes.push({ ok: true, kvs });
            continue;
          }
          const out = this.#apply(p.op, rev + 1, events);
          if (out.ok) rev++;
          outcomes.push(out.ok ? { ok: true, kvs: [out.kv] } : out);
        }
      })();
    } catch (e) {
      const err = unavailable('commit', e);
      for (const p of batch) p.reject(err);
      return;
    }
    const written = rev - this.#rev;
    this.#rev = rev;
    if (written > 0) {
      this.#stats.commits++;
      this.#stats.writes += written;
    }
    batch.forEach((p, i) => {
      const out = outcomes[i]!;
      if (out.ok) p.resolve(out.kvs);
      else p.reject(out.err);
    });
    if (written > 0) this.#fanOut(events, rev);
  }

  /** Validates one write against the rows written so far (this batch included) and stores it as revision `id`. */
  #apply(op: SingleOp, id: number, events: StoreEvent[]): Outcome {
    const head = this.#stmt<[string], HeadRow>('SELECT id, deleted, create_revision FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1').get(op.key);
    const live = head !== undefined && !head.deleted ? head : undefined;
    const insert = this.#stmt<[number, string, number, number, number, number, string]>(
      'INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    if (op.kind === 'create') {
      if (live) return { ok: false, err: new StoreError('KeyExists', `${op.key} already exists`, { key: op.key }) };
      insert.run(id, op.key, 1, 0, id, head?.id ?? 0, op.value);
      events.push({ type: 'create', key: op.key, value: op.value, revision: id, createRevision: id });
      return { ok: true, kv: { key: op.key, value: op.value, createRevision: id, modRevision: id } };
    }
    if (!live) return { ok: false, err: new StoreError('NotFound', `${op.key} not found`, { key: op.key }) };
    const prevValue = this.#stmt<[number], string>('SELECT value FROM kine WHERE id = ?').pluck().get(live.id)!;
    if (op.expected !== undefined && op.expected !== live.id) {
      const current = { key: op.key, value: prevValue, createRevision: live.create_revision, modRevision: live.id };
      const msg = `${op.key} was modified: expected revision ${op.expected}, stored ${live.id}`;
      return { ok: false, err: new StoreError('Conflict', msg, { key: op.key, current }) };
    }
    if (op.kind === 'check') return { ok: true, kv: { key: op.key, value: prevValue, createRevision: live.create_revision, modRevision: live.id } };
    if (op.kind === 'update') {
      insert.run(id, op.key, 0, 0, live.create_revision, live.id, op.value);
      events.push({ type: 'update', key: op.key, value: op.value, prevValue, revision: id, createRevision: live.create_revision });
      return { ok: true, kv: { key: op.key, value: op.value, createRevision: live.create_revision, modRevision: id } };
    }
    insert.run(id, op.key, 0, 1, live.create_revision, live.id, prevValue);
    events.push({ type: 'delete', key: op.key, value: prevValue, prevValue, revision: id, createRevision: live.create_revision });
    return { ok: true, kv: { key: op.key, value: prevValue, createRevision: live.create_revision, modRevision: id } };
  }

  // ---- watch --------------------------------------------------------------------------

  /** Hands one commit's events to every live watcher, as one batch each. */
  #fanOut(events: StoreEvent[], rev: number): void {
    for (const w of this.#watchers) {
      if (!w.live || w.done) continue;
      const mine = events.filter((e) => e.revision > w.last && e.key.startsWith(w.prefix));
      w.last = Math.max(w.last, rev);
      if (mine.length > 0) this.#deliver(w, mine);
    }
  }

  /** One chunk of history; schedules the next one, or turns the watcher live. */
  #replay(w: Watcher): void {
    if (w.done) return;
    if (this.#closed) return this.#endWatch(w, closedError());
    if (w.last < this.#compacted) {
      const msg = `cannot watch from revision ${w.last + 1}: compacted up to ${this.#compacted}`;
      return this.#endWatch(w, new StoreError('Compacted', msg, { compactedRevision: this.#compacted }));
    }
    const upTo = this.#rev;
    const sql =
      `SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.value, p.value AS prev_value ` +
      `FROM kine AS k LEFT JOIN kine AS p ON p.id = k.prev_revision AND k.created = 0 AND k.deleted = 0 ` +
      `WHERE k.id > @after AND k.id <= @upTo AND +k.name >= @lo${w.range.hi === undefined ? '' : ' AND +k.name < @hi'} ` +
      `ORDER BY k.id`;
    const params: Record<string, string | number> = { after: w.last, upTo, lo: w.range.lo };
    if (w.range.hi !== undefined) params['hi'] = w.range.hi;
    const events: StoreEvent[] = [];
    let full = false;
    try {
      let chars = 0;
      for (const r of this.#stmt<[Record<string, string | number>], HistoryRow>(sql).iterate(params)) {
        events.push(historyEvent(r));
        chars += r.value.length + (r.prev_value?.length ?? 0);
        if (events.length >= REPLAY_ROWS || chars >= REPLAY_CHARS) {
          full = true;
          break;
        }
      }
    } catch (e) {
      return this.#endWatch(w, unavailable('watch replay', e));
    }
    if (full) {
      w.last = events[events.length - 1]!.revision;
      setImmediate(() => this.#replay(w));
    } else {
      w.last = Math.max(w.last, upTo); // a watch may start after the newest revision
      w.live = true;
    }
    if (events.length > 0) this.#deliver(w, events);
  }

  #deliver(w: Watcher, events: StoreEvent[]): void {
    if (w.done) return;
    try {
      w.handler.onEvents(events);
    } catch (e) {
      // A handler's bug is the handler's: surface it, but keep the store and the other watchers going.
      process.nextTick(() => {
        throw e;
      });
    }
  }

  #endWatch(w: Watcher, err: StoreError): void {
    if (w.done) return;
    w.done = true;
    this.#watchers.delete(w);
    try {
      w.handler.onError(err);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
  }

  // ---- compaction ---------------------------------------------------------------------

  async #compactTo(revision: number): Promise<void> {
    const target = Math.min(Math.floor(revision), this.#rev);
    while (this.#compacted < target) {
      // Let writes that queued up meanwhile commit between two steps.
      await new Promise((r) => setImmediate(r));
      if (this.#closed) throw closedError();
      const from = this.#compacted;
      const to = Math.min(from + COMPACT_STEP, target);
      this.#sql('compaction', () =>
        this.#db.transaction(() => {
          // Rows superseded by a row in (from, to]: each row names its predecessor.
          this.#stmt<[number, number]>('DELETE FROM kine WHERE id IN (SELECT prev_revision FROM kine WHERE id > ? AND id <= ? AND prev_revision != 0)').run(from, to);
          this.#stmt<[number, number]>('DELETE FROM kine WHERE deleted = 1 AND id > ? AND id <= ?').run(from, to);
          this.#stmt<[number]>(`INSERT INTO meta (key, value) VALUES ('compact_rev', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(to);
        })(),
      );
      this.#compacted = to;
    }
  }

  // ---- helpers ------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw closedError();
  }

  #assertNotCompacted(revision: number): void {
    if (revision < this.#compacted) {
      const msg = `revision ${revision} is compacted (compacted up to ${this.#compacted})`;
      throw new StoreError('Compacted', msg, { compactedRevision: this.#compacted });
    }
  }

  /** A prepared statement, cached by its text. */
  #stmt<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let s = this.#stmts.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s as unknown as Database.Statement<P, R>;
  }

  /** Runs a read or maintenance statement, turning SQLite failures into 'Unavailable'. */
  #sql<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw isStoreError(e) ? e : unavailable(what, e);
    }
  }
}

function historyEvent(r: HistoryRow): StoreEvent {
  const base = { key: r.name, value: r.value, revision: r.id, createRevision: r.create_revision };
  if (r.created) return { type: 'create', ...base };
  if (r.deleted) return { type: 'delete', ...base, prevValue: r.value };
  return r.prev_value === null ? { type: 'update', ...base } : { type: 'update', ...base, prevValue: r.prev_value };
}

function closedError(): StoreError {
  return new StoreError('Closed', 'the store is closed');
}

function unavailable(what: string, cause: unknown): StoreError {
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new StoreError('Unavailable', `SQLite ${what} failed: ${msg}`, { cause });
}

/**
 * The keys that start with `prefix` are exactly those in [prefix, hi) in UTF-8 byte
 * order (SQLite's BINARY collation), where hi is the prefix with its last code point
 * incremented. Appending '\uffff' instead would miss keys with characters above U+FFFF
 * (they encode to bytes greater than EF BF BF).
 */
export function keyRange(prefix: string): KeyRange {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return { lo: prefix, hi: cps.join('') + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1) };
  }
  return { lo: prefix, hi: undefined };
}

/** Compares as SQLite's BINARY collation does (UTF-8 bytes), not as JS does (UTF-16 units). */
function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
