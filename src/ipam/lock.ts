/**
 * One process owns an IPAM state dir: an exclusive lock file, created with O_EXCL and
 * holding the owner's identity, taken over only when that owner is provably gone.
 *
 * Node has no flock(2) without native code, so the lock is a file, created complete
 * (written under a temporary name, synced, then link(2)ed into place: EEXIST if held). Its content:
 *   {"pid":1234,"start":"5678","boot":"<boot id>","host":"node-a","at":"<ISO time>"}
 * `start` is the process start time (/proc/PID/stat field 22) and `boot` the kernel's
 * boot id (/proc/sys/kernel/random/boot_id): a lock is stale when it was written during
 * another boot, or its pid is not running, or the pid now belongs to a process that
 * started at another time (pid reuse). A live holder — this process included — makes
 * acquisition fail with PODNET_IPAM_LOCKED naming the pid.
 *
 * Taking over a stale lock must not race another process doing the same (both would
 * unlink and recreate). Take-overs are serialised by a second O_EXCL file,
 * `<lock>.takeover`, held only for the few system calls of the take-over (re-read, check,
 * unlink, create); a take-over file older than TAKEOVER_STALE_MS is itself stale (its
 * holder died mid-take-over) and is removed. Plain acquisition never unlinks anything.
 *
 * Limits: pids are those of the reader's pid namespace, so the state dir must be used
 * from one pid namespace (one host); a holder paused for more than TAKEOVER_STALE_MS in
 * the middle of a take-over could race.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { errnoOf, ErrorCodes, PodnetError } from '../util/errors.js';

const TAKEOVER_STALE_MS = 10_000;

/** What a lock file records about its holder. */
export interface LockOwner {
  pid: number;
  /** Process start time in clock ticks since boot, when /proc provides it. */
  start?: string;
  boot?: string;
  host?: string;
  at?: string;
}

/** A held lock; release() removes the file if it is still ours. */
export interface DirLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** True when a stale lock (of `previous`) was taken over. */
  readonly tookOver: LockOwner | undefined;
  release(): Promise<void>;
}

/**
 * Acquires the lock file at `path` for this process (see the module comment).
 * Throws PODNET_IPAM_LOCKED (context: pid, path) when a live process holds it.
 */
export async function acquireLock(path: string): Promise<DirLock> {
  const me = await selfIdentity();
  const text = `${JSON.stringify(me)}\n`;
  if (await tryCreate(path, text)) return held(path, me, text, undefined);
  const takeover = `${path}.takeover`;
  for (let attempt = 0; ; attempt++) {
    if (await tryCreate(takeover, text)) break;
    if (attempt === 0) await removeIfOld(takeover);
    else if (attempt > 50) throw lockedError(path, await readOwner(path), 'another process is taking over the lock');
    else await new Promise((r) => setTimeout(r, 10));
  }
  try {
    const current = await readOwner(path);
    if (current && (await isAlive(current))) throw lockedError(path, current);
    const existed = current !== undefined || (await exists(path));
    if (existed) await unlinkQuiet(path); // stale, or unreadable: a lock is never half-written
    if (!(await tryCreate(path, text))) throw lockedError(path, await readOwner(path));
    return held(path, me, text, existed ? (current ?? { pid: 0 }) : undefined);
  } finally {
    await unlinkQuiet(takeover);
  }
}

function held(path: string, owner: LockOwner, text: string, tookOver: LockOwner | undefined): DirLock {
  let released = false;
  return {
    path,
    owner,
    tookOver,
    async release() {
      if (released) return;
      released = true;
      // Remove only our own lock: after a take-over by someone who judged us dead, the
      // file is theirs.
      const now = await readFile(path, 'utf8').catch(() => undefined);
      if (now === text) await unlinkQuiet(path);
    },
  };
}

/**
 * Creates `path` exclusively with `text`: written and synced under a temporary name,
 * then hard-linked into place (link(2) fails with EEXIST like O_EXCL), so a lock file is
 * never seen half-written. False when `path` exists.
 */
async function tryCreate(path: string, text: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fail = (e: unknown) =>
    new PodnetError(ErrorCodes.IPAM_IO, `cannot create the IPAM lock file ${path}: ${(e as Error).message}`, { path }, { cause: e });
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await unlinkQuiet(tmp).catch(() => undefined);
    throw fail(e);
  }
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'EEXIST') return false;
    throw fail(e);
  } finally {
    await unlinkQuiet(tmp).catch(() => undefined);
  }
}

/** The lock's owner, or undefined when the file is missing or unreadable as a lock. */
export async function readOwner(path: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid !== 'number' || !Number.isSafeInteger(v.pid) || v.pid <= 0) return undefined;
    return {
      pid: v.pid,
      ...(typeof v.start === 'string' ? { start: v.start } : {}),
      ...(typeof v.boot === 'string' ? { boot: v.boot } : {}),
      ...(typeof v.host === 'string' ? { host: v.host } : {}),
      ...(typeof v.at === 'string' ? { at: v.at } : {}),
    };
  } catch {
    return undefined; // a lock file torn by a crash while it was being written
  }
}

/** False when `o` is provably gone: another boot, no such pid, or pid reused. */
export async function isAlive(o: LockOwner): Promise<boolean> {
  const boot = await bootId();
  if (o.boot && boot && o.boot !== boot) return false;
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    if (errnoOf(e) === 'ESRCH') return false;
    // EPERM: alive, owned by another user.
  }
  if (o.start) {
    const start = await startTime(o.pid);
    if (start !== undefined && start !== o.start) return false;
  }
  return true;
}

async function selfIdentity(): Promise<LockOwner> {
  const start = await startTime(process.pid);
  const boot = await bootId();
  return {
    pid: process.pid,
    ...(start !== undefined ? { start } : {}),
    ...(boot !== undefined ? { boot } : {}),
    host: hostname(),
    at: new Date().toISOString(),
  };
}

/** Field 22 of /proc/PID/stat (after the parenthesised command, which may hold spaces). */
async function startTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = fields[19]; // field 3 is fields[0]
    return v !== undefined && /^\d+$/.test(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

let cachedBoot: string | undefined | null = null;
async function bootId(): Promise<string | undefined> {
  if (cachedBoot === null) cachedBoot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim() || undefined;
  return cachedBoot;
}

async function removeIfOld(path: string): Promise<void> {
  try {
    const s = await stat(path);
    if (Date.now() - s.mtimeMs > TAKEOVER_STALE_MS) await unlinkQuiet(path);
  } catch {
    // gone already
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function unlinkQuiet(path: string): Promise<void> {
  await unlink(path).catch((e: unknown) => {
    if (errnoOf(e) !== 'ENOENT') throw e;
  });
}

function lockedError(path: string, holder: LockOwner | undefined, why?: string): PodnetError {
  const who = holder ? `process ${holder.pid}${holder.pid === process.pid ? ' (this process)' : ''}${holder.host ? ` on ${holder.host}` : ''}` : 'another process';
  return new PodnetError(
    ErrorCodes.IPAM_LOCKED,
    `the IPAM state dir is locked by ${who}${why ? `: ${why}` : ''}; one process owns a state dir (lock file ${path})`,
    { path, pid: holder?.pid },
  );
}
