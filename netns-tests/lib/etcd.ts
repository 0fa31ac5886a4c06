/**
 * etcd for privileged tests: one member or an N-member cluster on 127.0.0.1, started by
 * a test file that runs inside its own network namespace (insideOwnNetns), so nothing
 * listens in the machine's root namespace — `EtcdCluster.start` refuses to run anywhere
 * else. Data dirs and logs live in one temp dir per cluster, named after the run
 * (`podnet-etcd-<pid>-<n>-XXXX`), so parallel runs cannot collide and leftovers of a
 * crashed run (dead pid) are swept by the next start. Ports are per cluster within the
 * run (each run has its own loopback).
 *
 *   const etcd = await EtcdCluster.start({ members: 3 });
 *   t.teardown(() => etcd.cleanup());
 *   await etcd.kill(await etcd.leader());           // kill -9 the leader
 *   await etcd.restart(i);                          // same data dir, rejoins
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { alive } from '../../src/kernel/pause.js';

export const ETCD_BIN = process.env.PODNET_ETCD_BIN ?? '/usr/bin/etcd';
const DIR_PREFIX = 'podnet-etcd-';

export interface EtcdClusterOptions {
  /** Number of members (default 1). */
  members?: number;
  /** Raft heartbeat and election timeout (defaults 50 / 500 ms: fast elections for tests). */
  heartbeatMs?: number;
  electionMs?: number;
  /** Where the cluster's temp dir goes (default $PODNET_ETCD_DATA_ROOT or the OS temp dir; '/dev/shm' for tmpfs). */
  dataRoot?: string;
  /** Interval of etcd's watch progress notifications (default etcd's, 10 min). */
  progressNotifyMs?: number;
  /** How long start/restart wait for a healthy cluster (default 20 s). */
  startTimeoutMs?: number;
  /**
   * Serve clients over TLS with client-certificate auth, from a throwaway CA made with
   * openssl in the cluster dir (`cluster.tls` has the PEMs a client needs). Peers stay
   * plain HTTP.
   */
  tls?: boolean;
}

/** PEM contents for a client of a TLS cluster. */
export interface EtcdClientTls {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdMember {
  index: number;
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  /** PID of the running process, undefined when stopped. */
  pid: number | undefined;
}

let clusterSeq = 0;
const live = new Set<EtcdCluster>();

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly dir: string;
  /** Client credentials when started with `tls: true`. */
  readonly tls: EtcdClientTls | undefined;
  private readonly opts: Required<Omit<EtcdClusterOptions, 'dataRoot'>>;
  private readonly procs = new Map<number, ChildProcess>();
  private readonly token: string;

  private constructor(dir: string, members: EtcdMember[], token: string, tls: EtcdClientTls | undefined, opts: Required<Omit<EtcdClusterOptions, 'dataRoot'>>) {
    this.dir = dir;
    this.members = members;
    this.token = token;
    this.tls = tls;
    this.opts = opts;
  }

  /** Starts the members and waits until every one of them sees a leader and serves a quorum read. */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    assertOwnNetns();
    if (!existsSync(ETCD_BIN)) throw new Error(`etcd is not installed at ${ETCD_BIN}`);
    const root = opts.dataRoot ?? process.env.PODNET_ETCD_DATA_ROOT ?? tmpdir();
    sweepStaleDirs(root);
    const n = opts.members ?? 1;
    if (n < 1 || n > 10) throw new Error(`etcd cluster of ${n} members: 1 to 10 supported`);
    const seq = clusterSeq++;
    const dir = mkdtempSync(join(root, `${DIR_PREFIX}${process.pid}-${seq}-`));
    let tls: EtcdClientTls | undefined;
    try {
      tls = opts.tls ? makeCerts(dir) : undefined;
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    // Client port 2 * i, peer port 2 * i + 1, from a block of 20 per cluster.
    const base = 23790 + seq * 20;
    const members: EtcdMember[] = Array.from({ length: n }, (_, i) => ({
      index: i,
      name: `m${i}`,
      clientUrl: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${base + 2 * i}`,
      peerUrl: `http://127.0.0.1:${base + 2 * i + 1}`,
      dataDir: join(dir, `m${i}`),
      logFile: join(dir, `m${i}.log`),
      pid: undefined,
    }));
    const cluster = new EtcdCluster(dir, members, `podnet-${process.pid}-${seq}`, tls, {
      members: n,
      heartbeatMs: opts.heartbeatMs ?? 50,
      electionMs: opts.electionMs ?? 500,
      startTimeoutMs: opts.startTimeoutMs ?? 20_000,
      tls: opts.tls ?? false,
      progressNotifyMs: opts.progressNotifyMs ?? 0,
    });
    live.add(cluster);
    try {
      for (const m of members) cluster.spawnMember(m);
      await cluster.waitHealthy();
    } catch (e) {
      await cluster.cleanup();
      throw e;
    }
    return cluster;
  }

  /** Client URLs of all members (running or not), for EtcdStore's `endpoints`. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /** Members that are running. */
  get running(): EtcdMember[] {
    return this.members.filter((m) => m.pid !== undefined);
  }

  /** Sends `signal` (default SIGKILL: `kill -9`) to member `i` and waits for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.member(i);
    const proc = this.procs.get(i);
    if (!proc || m.pid === undefined) return;
    const exited = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
    try {
      process.kill(m.pid, signal);
    } catch {
      /* already gone */
    }
    await exited;
  }

  /** Stops member `i` gracefully (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(i: number, graceMs = 5000): Promise<void> {
    const timer = setTimeout(() => void this.kill(i, 'SIGKILL'), graceMs);
    try {
      await this.kill(i, 'SIGTERM');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a stopped member again on its data dir (it rejoins), and waits for health. */
  async restart(i: number): Promise<void> {
    const m = this.member(i);
    if (m.pid !== undefined) throw new Error(`etcd member ${m.name} is still running (pid ${m.pid})`);
    this.spawnMember(m);
    await this.waitHealthy();
  }

  /** Index of the member the running members agree is the leader. */
  async leader(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = await this.statuses();
      const ids = new Set(seen.map((s) => s.leader));
      if (seen.length === this.running.length && ids.size === 1) {
        const leaderId = [...ids][0]!;
        const l = seen.find((s) => s.memberId === leaderId);
        if (l && leaderId !== '0') return l.index;
      }
      if (Date.now() > deadline) throw new Error(`etcd: no agreed leader after ${timeoutMs} ms: ${JSON.stringify(seen)}`);
      await sleep(50);
    }
  }

  /** Waits until every running member sees a leader and answers a linearizable read. */
  async waitHealthy(timeoutMs = this.opts.startTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const dead = this.members.find((m) => m.pid !== undefined && !alive(m.pid));
      if (dead) throw new Error(`etcd member ${dead.name} exited during start:\n${this.logTail(dead.index)}`);
      const ok = await Promise.all(
        this.running.map(async (m) => {
          const c = this.client(m.clientUrl);
          try {
            const s = await c.maintenance.status({ deadline: Date.now() + 1000 });
            if (s.leader === '0') return false;
            await c.kv.range({ key: Buffer.from('health') }, { deadline: Date.now() + 1000 });
            return true;
          } catch (e) {
            last = `${m.name}: ${(e as Error).message}`;
            return false;
          } finally {
            c.close();
          }
        }),
      );
      if (ok.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`etcd not healthy after ${timeoutMs} ms (${last})\n${this.logTail(0)}`);
      await sleep(50);
    }
  }

  /** Member `i`'s Prometheus metrics (`/metrics` on its client URL), by series: `name{labels}` → value. */
  async metrics(i: number): Promise<Map<string, number>> {
    const res = await fetch(`${this.member(i).clientUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
    const out = new Map<string, number>();
    for (const line of (await res.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
    return out;
  }

  /** The last lines of member `i`'s log. */
  logTail(i: number, lines = 20): string {
    try {
      return readFileSync(this.member(i).logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Kills every member (by PID) and removes the data dirs; idempotent. */
  async cleanup(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m.index)));
    this.cleanupSync();
  }

  /** Synchronous part, safe in an exit handler. */
  cleanupSync(): void {
    for (const m of this.members) {
      if (m.pid !== undefined) {
        try {
          process.kill(m.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  private member(i: number): EtcdMember {
    const m = this.members[i];
    if (!m) throw new Error(`no etcd member ${i}`);
    return m;
  }

  private async statuses(): Promise<{ index: number; memberId: string; leader: string }[]> {
    const out: { index: number; memberId: string; leader: string }[] = [];
    await Promise.all(
      this.running.map(async (m) => {
        const c = this.client(m.clientUrl);
        try {
          const s = await c.maintenance.status({ deadline: Date.now() + 1000 });
          out.push({ index: m.index, memberId: s.header.member_id, leader: s.leader });
        } catch {
          /* not answering */
        } finally {
          c.close();
        }
      }),
    );
    return out;
  }

  private client(url: string): Etcd3 {
    const tls = this.tls;
    return new Etcd3({
      hosts: url,
      ...(tls ? { credentials: { rootCertificate: Buffer.from(tls.ca), privateKey: Buffer.from(tls.key), certChain: Buffer.from(tls.cert) } } : {}),
    });
  }

  private spawnMember(m: EtcdMember): void {
    const args = [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${m.clientUrl}`,
      `--advertise-client-urls=${m.clientUrl}`,
      `--listen-peer-urls=${m.peerUrl}`,
      `--initial-advertise-peer-urls=${m.peerUrl}`,
      `--initial-cluster=${this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',')}`,
      `--initial-cluster-token=${this.token}`,
      '--initial-cluster-state=new',
      `--heartbeat-interval=${this.opts.heartbeatMs}`,
      `--election-timeout=${this.opts.electionMs}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ];
    if (this.opts.progressNotifyMs) args.push(`--experimental-watch-progress-notify-interval=${this.opts.progressNotifyMs}ms`);
    if (this.tls) {
      args.push(`--cert-file=${join(this.dir, 'server.crt')}`, `--key-file=${join(this.dir, 'server.key')}`, `--trusted-ca-file=${join(this.dir, 'ca.crt')}`, '--client-cert-auth');
    }
    const log = openSync(m.logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(ETCD_BIN, args, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    if (proc.pid === undefined) throw new Error(`cannot start ${ETCD_BIN}`);
    m.pid = proc.pid;
    this.procs.set(m.index, proc);
    proc.once('exit', () => {
      if (this.procs.get(m.index) === proc) {
        m.pid = undefined;
        this.procs.delete(m.index);
      }
    });
  }
}

process.on('exit', () => {
  for (const c of [...live]) c.cleanupSync();
});

/**
 * A throwaway CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, made with
 * openssl in `dir` (P-256 keys, valid one day).
 */
function makeCerts(dir: string): EtcdClientTls {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=podnet-test-etcd-ca');
  const issue = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  };
  issue('server', 'etcd', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  issue('client', 'podnet', 'extendedKeyUsage=clientAuth\n');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), cert: read('client.crt'), key: read('client.key') };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Refuses to start servers in the machine's root network namespace: the test must run
 * inside its own (insideOwnNetns sets PODNET_TEST_NETNS, and the namespace differs from
 * init's).
 */
function assertOwnNetns(): void {
  const own = readlinkSync('/proc/self/ns/net');
  let init: string | undefined;
  try {
    init = readlinkSync('/proc/1/ns/net');
  } catch {
    init = undefined;
  }
  if (!process.env.PODNET_TEST_NETNS || own === init) {
    throw new Error('refusing to start etcd outside a test network namespace (use insideOwnNetns)');
  }
}

/** Removes cluster dirs of runs whose process is gone. */
function sweepStaleDirs(root: string): void {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^podnet-etcd-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    rmSync(join(root, name), { recursive: true, force: true });
  }
}
