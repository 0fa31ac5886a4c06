/**
 * Starting the pause program: the process that owns a pod's namespaces. It is started
 * detached (own session, no inherited descriptors) so it outlives whoever started it,
 * and pins its network namespace at a path so `ip netns exec` works. Sending it SIGTERM
 * unpins the path and ends it, releasing the namespace.
 */
import { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { native, nativeCall, pauseBinary } from './native.js';

export interface PauseOptions {
  /** Where to pin the new network namespace (e.g. /run/netns/NAME). */
  netnsPath?: string;
  /** Instead: the network namespace to enter, already pinned there (pause unpins it when it ends). */
  joinNetns?: string;
  hostname?: string;
  /** How long to wait for "ready". Default 5 s. */
  timeoutMs?: number;
}

/**
 * Starts pause and resolves with its PID once its namespaces exist (and are pinned).
 * Spawned with posix_spawn from the addon (Node's spawn forks this large process and
 * costs ~1 ms more), in its own session; its stdout and stderr come back on one pipe
 * until it reports "ready", then it lets go of them.
 */
export async function startPause(opts: PauseOptions = {}): Promise<number> {
  const args: string[] = [];
  if (opts.netnsPath) args.push('--netns', opts.netnsPath);
  if (opts.joinNetns) args.push('--join', opts.joinNetns);
  if (opts.hostname) args.push('--hostname', opts.hostname);
  const binary = pauseBinary();
  const netns = opts.netnsPath ?? opts.joinNetns;
  let spawned: { pid: number; fd: number };
  try {
    spawned = await native().spawnDetached(binary, [binary, ...args]);
  } catch (e) {
    return nativeCall('starting pause', { netns }, () => {
      throw e;
    });
  }
  const { pid, fd } = spawned;
  const out = new Socket({ fd, readable: true, writable: false });
  return new Promise<number>((resolve, reject) => {
    let text = '';
    let settled = false;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const timer = setTimeout(() => fail(`pause did not become ready in ${timeoutMs} ms`), timeoutMs);
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      out.destroy();
    };
    const fail = (why: string) => {
      if (settled) return;
      finish();
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      reapSoon(pid);
      reject(new PodnetError(ErrorCodes.NATIVE, why, { netns }));
    };
    out.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /ready (\d+)/.exec(text);
      if (m && !settled) {
        finish();
        resolve(Number(m[1]));
      }
    });
    out.on('error', (e) => fail(`cannot read from pause: ${e.message}`));
    // EOF before "ready": pause exited; what it printed says why.
    out.on('end', () => fail(`pause exited before it was ready: ${text.trim() || 'no message'}`));
  });
}

/** Reaps a child spawned by startPause once it has exited (a few tries; never blocks). */
function reapSoon(pid: number, tries = 20): void {
  if (native().reap(pid) || tries <= 0) return;
  setTimeout(() => reapSoon(pid, tries - 1), 50).unref();
}

/**
 * Stops a pause process: SIGTERM (it unpins its namespace and exits), then waits until it
 * is gone, SIGKILL after `graceMs`. With `wait: false` only signals (the caller has
 * unpinned the namespace already and does not need to wait for the exit).
 */
export async function stopPause(pid: number, opts: { graceMs?: number; wait?: boolean } = {}): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (opts.wait === false) {
    reapSoon(pid);
    return;
  }
  const deadline = Date.now() + (opts.graceMs ?? 2000);
  while (alive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * True while `pid` exists and is not a zombie. A zombie that is our own child (a pause
 * this process spawned) is reaped on the way.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z') {
      try {
        native().reap(pid);
      } catch {
        /* not ours */
      }
      return false;
    }
    return state !== 'X';
  } catch {
    return false;
  }
}
