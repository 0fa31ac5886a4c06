/**
 * The IPAM state dir: a crash-safe, write-ahead journal of IpamOps (see journal.ts for
 * the line format and README.md for the durability argument).
 *
 *   STATEDIR/ipam.lock          exclusive lock of the owning process (lock.ts)
 *   STATEDIR/ipam.journal       header line, then one line per op, append-only
 *   STATEDIR/ipam.journal.tmp   a compaction in progress (removed on open)
 *
 * Appends are group-committed: every append() made while the previous group is being
 * written (or in the same tick) shares one write(2) and one fdatasync(2); each append
 * resolves only after that sync. When the journal holds `compactRatio` times more
 * records than the live state needs, the live state is written to the .tmp file, synced,
 * renamed over the journal and the directory synced.
 */
import { mkdir, open, readFile, rename, truncate, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errnoOf, ErrorCodes, PodnetError } from '../util/errors.js';
import { validateNetnsName } from '../util/validate.js';
import { decodeJournal, encodeHeader, encodeLine } from './journal.js';
import { acquireLock } from './lock.js';
import type { DirLock, LockOwner } from './lock.js';
import { applyOp, cloneState, emptyState, snapshotOps } from './state.js';
import type { IpamOp, IpamState, IpamStore } from './state.js';

export const JOURNAL_FILE = 'ipam.journal';
export const LOCK_FILE = 'ipam.lock';

export interface FileStoreOptions {
  /** Compact when the journal holds more than this many times the live records (default 4). */
  compactRatio?: number;
  /** ...and more than this many records (default 1024). */
  compactMinRecords?: number;
  /** Most ops in one commit group (default 4096); an append call is never split. */
  maxBatch?: number;
}

export interface FileStoreStats {
  /** Commit groups written (one write + one fdatasync each). */
  commits: number;
  /** append() calls resolved. */
  appends: number;
  /** Ops in the journal file now (header excluded). */
  journalRecords: number;
  journalBytes: number;
  compactions: number;
}

/** What open() found and repaired. */
export interface FileStoreRecovery {
  /** Bytes of a torn last write that were truncated (0 after a clean shutdown). */
  tornBytes: number;
  /** The dead holder whose stale lock was taken over, if any. */
  tookOverLock: LockOwner | undefined;
  /** Ops replayed from the journal. */
  replayed: number;
}

interface Pending {
  ops: readonly IpamOp[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** The agent's IpamStore: one state dir, owned by one process. */
export class FileStore implements IpamStore {
  readonly dir: string;
  readonly recovery: FileStoreRecovery;
  private readonly journalPath: string;
  private readonly compactRatio: number;
  private readonly compactMinRecords: number;
  private readonly maxBatch: number;
  private fh: FileHandle;
  private readonly lock: DirLock;
  private readonly st: IpamState;
  private group: number;
  private queue: Pending[] = [];
  private loop: Promise<void> | undefined;
  private failure: PodnetError | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private nextCompactAt = 0;
  private readonly counters: FileStoreStats;

  private constructor(init: {
    dir: string;
    fh: FileHandle;
    lock: DirLock;
    state: IpamState;
    group: number;
    records: number;
    bytes: number;
    recovery: FileStoreRecovery;
    opts: FileStoreOptions;
  }) {
    this.dir = init.dir;
    this.journalPath = stateFile(init.dir, JOURNAL_FILE);
    this.fh = init.fh;
    this.lock = init.lock;
    this.st = init.state;
    this.group = init.group;
    this.recovery = init.recovery;
    this.compactRatio = init.opts.compactRatio ?? 4;
    this.compactMinRecords = init.opts.compactMinRecords ?? 1024;
    this.maxBatch = init.opts.maxBatch ?? 4096;
    this.counters = { commits: 0, appends: 0, journalRecords: init.records, journalBytes: init.bytes, compactions: 0 };
  }

  /**
   * Opens (creating if needed) the state dir `dir`: takes the lock (PODNET_IPAM_LOCKED if
   * a live process holds it), truncates a torn last write, replays the journal.
   * Damage a crash cannot explain is PODNET_IPAM_CORRUPT.
   */
  static async open(dir: string, opts: FileStoreOptions = {}): Promise<FileStore> {
    if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0')) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `stateDir ${JSON.stringify(dir)} must be a non-empty path`, { field: 'stateDir' });
    }
    const abs = resolve(dir);
    await io(`create the IPAM state dir ${abs}`, abs, () => mkdir(abs, { recursive: true, mode: 0o700 }));
    const lock = await acquireLock(stateFile(abs, LOCK_FILE));
    try {
      const path = stateFile(abs, JOURNAL_FILE);
      await unlinkQuiet(`${path}.tmp`);
      const buf = await readFile(path).catch((e: unknown) => {
        if (errnoOf(e) === 'ENOENT') return undefined;
        throw ioError(`read the IPAM journal ${path}`, path, e);
      });
      const decoded = buf ? decodeJournal(buf, path) : undefined;
      let bytes: number;
      let tornBytes = 0;
      if (!decoded || !decoded.hasHeader) {
        // New (or its very first write was torn: nothing was ever acknowledged).
        tornBytes = buf?.length ?? 0;
        bytes = await writeWhole(abs, path, encodeHeader());
      } else {
        bytes = decoded.validBytes;
        if (decoded.tornBytes > 0) {
          tornBytes = decoded.tornBytes;
          await io(`truncate the torn tail of ${path}`, path, async () => {
            await truncate(path, decoded.validBytes);
            const fh = await open(path, 'r+');
            await fh.sync().finally(() => fh.close());
          });
        }
      }
      const state = emptyState();
      for (const e of decoded?.hasHeader ? decoded.entries : []) applyOp(state, e.op);
      const fh = await io(`open the IPAM journal ${path}`, path, () => open(path, 'a', 0o600));
      const records = decoded?.hasHeader ? decoded.entries.length : 0;
      return new FileStore({
        dir: abs,
        fh,
        lock,
        state,
        group: decoded?.lastGroup ?? 0,
        records,
        bytes,
        recovery: { tornBytes, tookOverLock: lock.tookOver, replayed: records },
        opts,
      });
    } catch (e) {
      await lock.release().catch(() => undefined);
      throw e;
    }
  }

  state(): IpamState {
    return cloneState(this.st);
  }

  append(ops: readonly IpamOp[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.dir));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops: [...ops], resolve, reject });
      // setImmediate, not a microtask: appends made by callbacks of the same turn (e.g.
      // many pods' promises resolving together) still join the group.
      this.loop ??= new Promise<void>((r) => setImmediate(r)).then(() => this.flush());
    });
  }

  /** Compacts now, after pending appends (normally automatic). */
  async compact(): Promise<void> {
    await this.drain();
    if (this.closed) throw closedError(this.dir);
    if (this.failure) throw this.failure;
    await this.compactNow(true);
  }

  stats(): FileStoreStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true; // new appends fail; queued ones are still written
      await this.drain();
      await this.fh.close().catch(() => undefined);
      await this.lock.release();
    })();
    return this.closing;
  }

  private async drain(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Writes queued appends group by group until the queue is empty. */
  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failure) {
        let n = 0;
        let take = 0;
        while (take < this.queue.length && (take === 0 || n + this.queue[take]!.ops.length <= this.maxBatch)) n += this.queue[take++]!.ops.length;
        const batch = this.queue.splice(0, take);
        await this.commit(batch);
        if (!this.failure) await this.maybeCompact();
      }
    } finally {
      this.loop = undefined;
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const g = ++this.group;
    const lines = batch.flatMap((p) => p.ops.map((op) => encodeLine(g, op)));
    const count = lines.length;
    const buf = Buffer.from(lines.join(''), 'utf8');
    try {
      await writeAll(this.fh, buf);
      await this.fh.datasync();
    } catch (e) {
      this.failure = ioError(`write the IPAM journal ${this.journalPath}`, this.journalPath, e);
      // Best effort: drop the partial group so a reopen does not find half of it. Either
      // way nothing of it was acknowledged.
      await this.fh.truncate(this.counters.journalBytes).catch(() => undefined);
      for (const p of [...batch, ...this.queue.splice(0)]) p.reject(this.failure);
      return;
    }
    for (const p of batch) for (const op of p.ops) applyOp(this.st, op);
    this.counters.commits++;
    this.counters.appends += batch.length;
    this.counters.journalRecords += count;
    this.counters.journalBytes += buf.length;
    for (const p of batch) p.resolve();
  }

  private async maybeCompact(): Promise<void> {
    const records = this.counters.journalRecords;
    if (records <= this.compactMinRecords || records < this.nextCompactAt) return;
    const live = this.st.allocations.size + 2;
    if (records <= this.compactRatio * live) return;
    await this.compactNow(false).catch(() => undefined); // a failure is recorded in this.failure
  }

  /**
   * Rewrites the journal as the live state: .tmp written and synced, renamed over the
   * journal, directory synced. A failure before the rename leaves the old journal in use
   * (retried after compactMinRecords more records, or thrown when `explicit`); after it,
   * the store fails.
   */
  private async compactNow(explicit: boolean): Promise<void> {
    const tmp = `${this.journalPath}.tmp`;
    const ops = snapshotOps(this.st);
    const g = ++this.group;
    const text = encodeHeader() + ops.map((op) => encodeLine(g, op)).join('');
    let bytes: number;
    try {
      bytes = await writeFileSynced(tmp, text);
    } catch (e) {
      await unlinkQuiet(tmp).catch(() => undefined);
      this.nextCompactAt = this.counters.journalRecords + this.compactMinRecords;
      if (explicit) throw ioError(`write the IPAM journal snapshot ${tmp}`, tmp, e);
      return;
    }
    try {
      await rename(tmp, this.journalPath);
      await syncDir(this.dir);
      const old = this.fh;
      this.fh = await open(this.journalPath, 'a', 0o600);
      await old.close().catch(() => undefined);
    } catch (e) {
      this.failure = ioError(`replace the IPAM journal ${this.journalPath} with its snapshot`, this.journalPath, e);
      for (const p of this.queue.splice(0)) p.reject(this.failure);
      throw this.failure;
    }
    this.counters.journalRecords = ops.length;
    this.counters.journalBytes = bytes;
    this.counters.compactions++;
    this.nextCompactAt = 0;
  }
}

/**
 * A file name inside the state dir. The names are this module's constants; they are
 * validated anyway (letters, digits, "_", ".", "-"; never "/" or "..").
 */
function stateFile(dir: string, name: string): string {
  return join(dir, validateNetnsName(name, 'state file name'));
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
}

/** Writes `text` to a new `path` and fsyncs it; returns its length. */
async function writeFileSynced(path: string, text: string): Promise<number> {
  const buf = Buffer.from(text, 'utf8');
  const fh = await open(path, 'w', 0o600);
  try {
    await writeAll(fh, buf);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return buf.length;
}

/** Creates `path` with `text` atomically (tmp + fsync + rename + fsync dir). */
async function writeWhole(dir: string, path: string, text: string): Promise<number> {
  const tmp = `${path}.tmp`;
  return io(`create the IPAM journal ${path}`, path, async () => {
    const n = await writeFileSynced(tmp, text);
    await rename(tmp, path);
    await syncDir(dir);
    return n;
  });
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function unlinkQuiet(path: string): Promise<void> {
  await unlink(path).catch((e: unknown) => {
    if (errnoOf(e) !== 'ENOENT') throw ioError(`remove ${path}`, path, e);
  });
}

async function io<T>(what: string, path: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof PodnetError) throw e;
    throw ioError(what, path, e);
  }
}

function ioError(what: string, path: string, e: unknown): PodnetError {
  const errno = errnoOf(e);
  return new PodnetError(
    ErrorCodes.IPAM_IO,
    `cannot ${what}: ${(e as Error)?.message ?? String(e)}; the IPAM store refuses further writes until it is reopened`,
    { path },
    { cause: e, ...(errno ? { errno } : {}) },
  );
}

function closedError(dir: string): PodnetError {
  return new PodnetError(ErrorCodes.IPAM_CLOSED, `the IPAM store for ${dir} is closed`, { stateDir: dir });
}
