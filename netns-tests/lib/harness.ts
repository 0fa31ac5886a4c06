/**
 * Test harness for privileged tests. Every simulated host, pod and fabric is a network
 * namespace named with a per-run prefix (`pnt-<pid>-…`), so a run only ever touches what
 * it created, and leftovers of a crashed run can be recognised (the pid is dead) and
 * swept. Cleanup runs in tap teardown, on normal exit and on SIGINT/SIGTERM.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Options as ExecaOptions } from 'execa';
import { NetNS, Netlink } from '../../src/kernel/index.js';
import { alive } from '../../src/kernel/pause.js';

/** Prefixes of namespaces made by tests (pnt), benchmarks (pnb) and the demo's own tests. */
export const SWEPT_PREFIXES = ['pnt', 'pnb'] as const;

export function runPrefix(kind: (typeof SWEPT_PREFIXES)[number] = 'pnt', pid = process.pid): string {
  return `${kind}-${pid}`;
}

export const isRoot = process.getuid?.() === 0;

/** Why privileged tests cannot run here, or undefined when they can. */
export function skipReason(): string | undefined {
  if (!isRoot) return 'netns tests need root (run the suite as root)';
  return undefined;
}

/**
 * A set of namespaces, netlink handles and processes that one test owns. `cleanup()`
 * removes them all (idempotent); a process-exit hook calls it too.
 */
export class Scope {
  readonly prefix: string;
  private readonly namespaces: NetNS[] = [];
  private readonly handles: Netlink[] = [];
  private readonly pids = new Set<number>();
  private readonly cleanups: (() => unknown)[] = [];
  private static readonly live = new Set<Scope>();

  constructor(label: string, prefix = runPrefix()) {
    this.prefix = `${prefix}-${label}`;
    Scope.live.add(this);
  }

  /** Name for a namespace of this scope: `<prefix>-<label>-<suffix>`. */
  name(suffix: string): string {
    return `${this.prefix}-${suffix}`;
  }

  /** Creates a namespace owned by this scope, with `lo` up. */
  async netns(suffix: string): Promise<NetNS> {
    const ns = NetNS.create(this.name(suffix));
    this.namespaces.push(ns);
    const nl = this.netlink(ns);
    await nl.links.setUp('lo');
    return ns;
  }

  /** A netlink handle in `ns`, closed by cleanup. */
  netlink(ns?: NetNS): Netlink {
    const nl = Netlink.open(ns);
    this.handles.push(nl);
    return nl;
  }

  /** Adds a pid to stop (SIGTERM then SIGKILL) at cleanup. */
  own(pid: number): number {
    this.pids.add(pid);
    return pid;
  }

  /** Adds a cleanup step (run before namespaces are deleted). */
  defer(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        /* keep cleaning */
      }
    }
    this.cleanupSync();
  }

  /** Synchronous part, safe in an exit handler. */
  cleanupSync(): void {
    for (const pid of this.pids) killHard(pid);
    this.pids.clear();
    for (const h of this.handles.splice(0)) h.close();
    for (const ns of this.namespaces.splice(0)) {
      killProcessesIn(ns);
      if (ns.name) NetNS.delete(ns.name);
      ns.close();
    }
    Scope.live.delete(this);
  }

  static cleanupAllSync(): void {
    for (const s of [...Scope.live]) s.cleanupSync();
    // Namespaces this run's processes made outside any scope (pods an agent created).
    const mine = `${runPrefix()}-`;
    for (const name of NetNS.list()) {
      if (!name.startsWith(mine)) continue;
      killProcessesIn(`/run/netns/${name}`);
      NetNS.delete(name);
    }
  }
}

/** The test file re-run inside a namespace by insideOwnNetns: signals go to it first. */
let delegate: import('node:child_process').ChildProcess | undefined;

process.on('exit', () => Scope.cleanupAllSync());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    const child = delegate;
    if (child && child.exitCode === null && child.signalCode === null) {
      // Let the test inside the namespace clean up what it made before the namespace goes.
      const done = () => {
        Scope.cleanupAllSync();
        process.exit(130);
      };
      child.once('exit', done);
      child.kill(sig);
      setTimeout(done, 15_000).unref();
      return;
    }
    Scope.cleanupAllSync();
    process.exit(130);
  });
}

function killHard(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** PIDs of processes whose network namespace is `ns` (processes this run started in it). */
export function processesIn(ns: NetNS | string): number[] {
  return NetNS.pids(typeof ns === 'string' ? ns : ns.path);
}

function killProcessesIn(ns: NetNS | string): void {
  for (const pid of processesIn(ns)) killHard(pid);
}

/**
 * A temp dir for this run, `<tmpdir>/pnt-<pid>-<label>-XXXXXX`: removed by whoever made it,
 * or by the sweeper once the pid is dead.
 */
export function testTempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `${runPrefix()}-${label}-`));
}

/**
 * Removes namespaces left by crashed runs: names `pnt-<pid>-…` / `pnb-<pid>-…` whose pid is
 * no longer alive. Processes still running inside them (servers, pause) are killed first:
 * they were started by those runs. Returns the names removed.
 */
export function sweepLeftovers(): string[] {
  const removed: string[] = [];
  for (const name of NetNS.list()) {
    const m = /^(pnt|pnb)-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || alive(pid)) continue;
    killProcessesIn(`/run/netns/${name}`);
    NetNS.delete(name);
    removed.push(name);
  }
  for (const f of readdirSync(tmpdir())) {
    const m = /^(pnt|pnb)-(\d+)-/.exec(f);
    if (!m || Number(m[2]) === process.pid || alive(Number(m[2]))) continue;
    rmSync(join(tmpdir(), f), { recursive: true, force: true });
  }
  return removed;
}

/** Runs a command inside `ns` (the current namespace when undefined). */
export async function sh(ns: NetNS | undefined, cmd: string, args: string[], opts: ExecaOptions = {}) {
  const full = ns ? ['--net=' + ns.path, '--', cmd, ...args] : [cmd, ...args];
  const file = ns ? 'nsenter' : cmd;
  return execa(file, ns ? full : args, { timeout: 60_000, reject: true, ...opts });
}

/** `ip -j ARGS` inside `ns`, parsed. */
export async function ipJson<T = Record<string, unknown>[]>(ns: NetNS | undefined, args: string[]): Promise<T> {
  const r = await sh(ns, 'ip', ['-j', ...args]);
  const out = String(r.stdout).trim();
  return (out ? JSON.parse(out) : []) as T;
}

/** `bridge -j ARGS` inside `ns`, parsed. */
export async function bridgeJson<T = Record<string, unknown>[]>(ns: NetNS | undefined, args: string[]): Promise<T> {
  const r = await sh(ns, 'bridge', ['-j', ...args]);
  const out = String(r.stdout).trim();
  return (out ? JSON.parse(out) : []) as T;
}

/**
 * Runs a Node.js function in a child process inside `ns`: `fn` is serialised with its
 * argument, so it must be self-contained (import what it needs dynamically).
 */
export function nodeIn<A>(ns: NetNS, fn: (arg: A) => unknown, arg: A, opts: ExecaOptions = {}) {
  const script = `const fn = ${fn.toString()};\nPromise.resolve(fn(${JSON.stringify(arg)})).then((r) => { if (r !== undefined) process.stdout.write(JSON.stringify(r)); }, (e) => { console.error(e); process.exit(1); });`;
  return execa('nsenter', ['--net=' + ns.path, '--', process.execPath, '--input-type=module', '-e', script], { timeout: 60_000, ...opts });
}

/** Thrown by a waitFor check when waiting longer cannot help (a process it waits on exited): waitFor rethrows it at once. */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/** Polls `check` until it returns true (or a value) within `ms`; a GiveUp from it ends the wait at once. */
export async function waitFor<T>(check: () => T | Promise<T>, ms = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads the kernel-visible state of the root network namespace (for the untouched check). */
export async function rootNetnsSnapshot(): Promise<{ links: string[]; addrs: string[]; routes: string[]; rules: string[] }> {
  const links = (await ipJson<{ ifname: string; link_type?: string; linkinfo?: { info_kind?: string } }[]>(undefined, ['-d', 'link', 'show']))
    .map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? l.link_type ?? ''}`)
    .sort();
  const addrs = (await ipJson<{ ifname: string; addr_info: { local: string; prefixlen: number }[] }[]>(undefined, ['addr', 'show']))
    .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`))
    .sort();
  const routes: string[] = [];
  for (const fam of ['-4', '-6']) {
    for (const r of await ipJson<{ dst: string; gateway?: string; dev?: string; table?: string }[]>(undefined, [fam, 'route', 'show', 'table', 'all'])) {
      routes.push(`${fam} ${r.dst} ${r.gateway ?? ''} ${r.dev ?? ''} ${r.table ?? 'main'}`);
    }
  }
  const rules = (await ipJson<Record<string, unknown>[]>(undefined, ['rule', 'show'])).map((r) => JSON.stringify(r)).sort();
  return { links, addrs, routes: routes.sort(), rules };
}

export function readProcStat(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Runs the calling test file inside a private network namespace (with its own loopback),
 * for tests that start servers — etcd, podnet api, kubectl's target — so that nothing
 * listens or connects in the machine's root namespace.
 *
 *   if (await insideOwnNetns(import.meta.url, 'api')) { ...tests... }
 *
 * The first call (in the root namespace) creates `pnt-<pid>-<label>`, re-runs this same
 * file inside it with stdio inherited (tap reads the child's TAP output as if it were its
 * own), cleans up the namespace and every process left in it, exits with the child's
 * status, and returns false. Inside, it returns true. Not root: returns true so tests can
 * report themselves as skipped.
 */
export async function insideOwnNetns(fileUrl: string, label: string): Promise<boolean> {
  if (process.env.PODNET_TEST_NETNS || !isRoot) return true;
  const scope = new Scope(label);
  const ns = await scope.netns('ns');
  const file = new URL(fileUrl).pathname;
  const { spawn } = await import('node:child_process');
  const code = await new Promise<number>((resolve) => {
    const child = spawn('nsenter', ['--net=' + ns.path, '--', process.execPath, ...process.execArgv, file, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, PODNET_TEST_NETNS: ns.name ?? '' },
    });
    delegate = child;
    child.on('exit', (c, s) => {
      delegate = undefined;
      resolve(c ?? (s ? 128 : 1));
    });
  });
  await scope.cleanup();
  process.exit(code);
}
