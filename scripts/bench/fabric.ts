/**
 * Pieces of the fabric benchmarks (transport, udptunnel-probe): one iperf3 TCP stream and
 * a ping RTT between two namespaces, CPU accounting from /proc, and the userspace UDP
 * baseline (socat TUN<->UDP, as /work/shared/bench/fabric-baseline.sh builds it).
 * Everything runs inside namespaces the caller's Scope made.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execa } from 'execa';
import type { ResultPromise } from 'execa';
import type { NetNS } from '../../src/kernel/index.js';
import { sh, waitFor } from '../../netns-tests/lib/harness.js';
import type { Scope } from '../../netns-tests/lib/harness.js';
import type { VNode } from '../../netns-tests/lib/cluster.js';

/** Something to run a tool in: a namespace and its address. */
export interface Endpoint {
  netns: NetNS;
  ip: string;
}

/** CPU seconds (user + system) of a process so far. */
export function procCpu(pid: number): number {
  return statCpu(`/proc/${pid}/stat`);
}

/** CPU seconds of the threads of `pid` whose name starts with `prefix` (e.g. "pn-udp:"). */
export function threadsCpu(pid: number, prefix: string): number {
  let sum = 0;
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith(prefix)) sum += statCpu(`/proc/${pid}/task/${tid}/stat`);
    } catch {
      /* thread ended */
    }
  }
  return sum;
}

function statCpu(file: string): number {
  try {
    const s = readFileSync(file, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** [idle, total] jiffies of all CPUs (/proc/stat). */
export function machineCpu(): [number, number] {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return [f[3]! + (f[4] ?? 0), f.reduce((a, b) => a + b, 0)];
}

export interface IperfResult {
  gbps: number;
  retransmits: number;
  /** Share of the machine's CPU time that was idle during the run. */
  idle: number;
}

/** One iperf3 TCP stream client -> server for `seconds`. */
export async function iperf(server: Endpoint, client: Endpoint, seconds: number): Promise<IperfResult> {
  const srv = execa('nsenter', ['--net=' + server.netns.path, '--', 'iperf3', '-s', '-1'], { reject: false });
  try {
    await waitFor(async () => String((await sh(server.netns, 'ss', ['-Htln', 'sport = :5201'])).stdout).includes('5201'), 5000, 'iperf3 server');
    const m0 = machineCpu();
    const r = await sh(client.netns, 'iperf3', ['-c', server.ip, '-t', String(seconds), '-J'], { timeout: (seconds + 30) * 1000 });
    const m1 = machineCpu();
    const j = JSON.parse(String(r.stdout)) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? 0, idle: (m1[0] - m0[0]) / (m1[1] - m0[1]) };
  } finally {
    srv.kill('SIGKILL');
    await srv;
  }
}

/** Ping RTT in ms (average and mean deviation of `count` echoes 10 ms apart). */
export async function pingRtt(from: Endpoint, to: string, count = 50): Promise<{ avg: number; mdev: number; lost: number }> {
  const r = await sh(from.netns, 'ping', ['-q', '-c', String(count), '-i', '0.01', '-W', '1', to], { reject: false });
  const out = String(r.stdout);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(out);
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(out);
  if (!rtt) throw new Error(`ping ${to}: no RTT in: ${out} ${String(r.stderr)}`);
  return { avg: Number(rtt[2]), mdev: Number(rtt[4]), lost: Number(loss?.[1] ?? 0) };
}

/** A socat TUN<->UDP tunnel between two nodes: one process per node, device `dev`. */
export interface SocatTunnel {
  pids: number[];
  stop(): Promise<void>;
}

/**
 * Starts socat on both nodes (node i's pod subnet 10.244.<i+1>.0/24), sets the TUN MTU to
 * `mtu` and routes the other node's subnet into it.
 */
export async function startSocatTunnel(scope: Scope, nodes: VNode[], opts: { dev?: string; port?: number; mtu?: number } = {}): Promise<SocatTunnel> {
  const dev = opts.dev ?? 'pnsocat';
  const port = opts.port ?? 8286;
  const procs: (ResultPromise | undefined)[] = [];
  const exited = new Set<ResultPromise>();
  const spawn = (i: number) => {
    const n = nodes[i]!;
    const peer = nodes[1 - i]!;
    const p = execa('nsenter', ['--net=' + n.netns.path, '--', 'socat', `UDP:${peer.ip}:${port},bind=${n.ip}:${port}`, `TUN:10.244.${i + 1}.254/32,tun-name=${dev},iff-up,iff-no-pi`], { reject: false });
    if (p.pid) scope.own(p.pid);
    void p.then(() => exited.add(p));
    procs[i] = p;
  };
  const stop = async () => {
    for (const p of procs) p?.kill('SIGKILL');
    await Promise.all(procs);
  };
  try {
    // A connected UDP socket dies of ECONNREFUSED when its TUN emits a packet (an IPv6
    // router solicitation) before the peer's socat listens: restart until both stay up.
    for (let attempt = 0; ; attempt++) {
      for (const i of nodes.keys()) if (!procs[i] || exited.has(procs[i]!)) spawn(i);
      await new Promise((r) => setTimeout(r, 400));
      if (procs.every((p) => p && !exited.has(p))) break;
      if (attempt === 10) throw new Error(`socat keeps exiting: ${String((await procs.find((p) => p && exited.has(p)))?.stderr)}`);
    }
    for (const [i, n] of nodes.entries()) {
      await waitFor(async () => (await n.nl.links.get(dev)) !== undefined, 5000, 'socat tun');
      await n.nl.links.ensure({ kind: 'tun', name: dev, mtu: opts.mtu ?? 1472, up: true });
      await n.nl.routes.ensure({ dst: `10.244.${2 - i}.0/24`, dev });
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { pids: procs.map((p) => p!.pid!), stop };
}
