/**
 * Starting the pause program: the process that owns a pod's namespaces. It is started
 * detached (own session, no inherited descriptors) so it outlives whoever started it,
 * and pins its network namespace at a path so `ip netns exec` works. Sending it SIGTERM
 * unpins the path and ends it, releasing the namespace.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { pauseBinary } from './native.js';

export interface PauseOptions {
  /** Where to pin the new network namespace (e.g. /run/netns/NAME). */
  netnsPath?: string;
  hostname?: string;
  /** How long to wait for "ready". Default 5 s. */
  timeoutMs?: number;
}

/** Starts pause and resolves with its PID once its namespaces exist (and are pinned). */
export function startPause(opts: PauseOptions = {}): Promise<number> {
  const args: string[] = [];
  if (opts.netnsPath) args.push('--netns', opts.netnsPath);
  if (opts.hostname) args.push('--hostname', opts.hostname);
  const child = spawn(pauseBinary(), args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise<number>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(`pause did not become ready in ${opts.timeoutMs ?? 5000} ms`), opts.timeoutMs ?? 5000);
    const done = () => {
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      child.removeAllListeners();
      child.unref();
    };
    const fail = (why: string) => {
      done();
      try {
        if (child.pid) process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      reject(new PodnetError(ErrorCodes.NATIVE, why, { netns: opts.netnsPath }));
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) {
        done();
        resolve(Number(m[1]));
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => fail(`cannot start pause: ${e.message}`));
    child.on('exit', (code, signal) => fail(`pause exited before it was ready (${signal ?? `exit ${code}`}): ${err.trim()}`));
  });
}

/** Stops a pause process: SIGTERM, then waits until it is gone (SIGKILL after `graceMs`). */
export async function stopPause(pid: number, graceMs = 2000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

