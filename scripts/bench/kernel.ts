/**
 * `npm run bench -- kernel [--pods N]`
 *
 * Creates and deletes N pod-like network setups, each in its own namespace: create the
 * namespace, a veth pair with the peer moved into it, the host end up, the pod address,
 * eth0 and lo up, the default route. Three paths in the same run:
 *
 *   podnet      src/kernel: native netns creation + netlink, in this process
 *   ip (Node)   one `ip` command per step, spawned from Node with execa — what an agent
 *               that shells out to iproute2 does (the baseline the goal is set against)
 *   ip (bash)   the same commands from a bash loop — the cheapest way to run them, for
 *               an honest lower bound of the exec approach
 *
 * Delete is the same on every path: unpin the pod namespace; the kernel destroys it and
 * the veth pair with it (an explicit RTM_DELLINK costs ~16 ms here, one RCU grace period
 * per link, while namespace teardown is batched). Delete is measured until every
 * host-side veth of the path is gone, not just until the calls return.
 *
 * Everything lives in namespaces named pnb-<pid>-…; the root namespace is not touched.
 */
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { NetNS, Netlink } from '../../src/kernel/index.js';
import { sweepLeftovers } from '../../netns-tests/lib/harness.js';
import { fmt, nowMs, peakRssMiB, progress, stats, table, writeResults } from './lib.js';
import type { Stats } from './lib.js';

interface PathResult {
  create: Stats;
  /** podnet only: the netlink steps of create (everything but creating the namespace). */
  netlinkSteps?: Stats;
  /** Time of each delete call. */
  delete: Stats;
  /** From the first delete until the last host-side veth of the path is gone. */
  drainMs: number;
  /** create + delete until gone. */
  totalMs: number;
}

function podAddress(i: number): string {
  return `10.244.${Math.floor((i + 2) / 256)}.${(i + 2) % 256}/16`;
}

export async function run(argv: string[]): Promise<void> {
  const n = Number(argv[argv.indexOf('--pods') + 1] ?? 0) || 1000;
  if (process.getuid?.() !== 0) throw new Error('the kernel benchmark needs root');
  sweepLeftovers();
  const prefix = `pnb-${process.pid}`;
  const hostName = `${prefix}-host`;
  const made: string[] = [];
  const host = NetNS.create(hostName);
  made.push(hostName);
  const hostNl = Netlink.open(host);
  const waitGone = async (vethPrefix: string) => {
    while ((await hostNl.links.list()).some((l) => l.name.startsWith(vethPrefix))) await new Promise((r) => setTimeout(r, 2));
  };
  const countVeths = async (vethPrefix: string) => (await hostNl.links.list()).filter((l) => l.name.startsWith(vethPrefix)).length;
  try {
    await hostNl.links.setUp('lo');
    console.error(`kernel benchmark: ${n} pods per path, host namespace ${hostName}`);

    // ---- podnet: src/kernel
    const nlSteps: number[] = [];
    const podnet = await timePath(n, 'podnet', async (i) => {
      const name = `${prefix}-a${i}`;
      const ns = NetNS.create(name);
      made.push(name);
      const t = nowMs();
      // The namespace is fresh: lo is ifindex 1, so the peer can take 2 (no lookup needed).
      await hostNl.links.create({ kind: 'veth', name: `pa${i}`, up: true, peer: { name: 'eth0', netns: ns, index: 2 } });
      const pod = Netlink.open(ns);
      // Pipelined: written in this order, applied in this order, one round trip.
      await Promise.all([pod.links.setUp(2), pod.links.setUp(1), pod.addrs.add(2, podAddress(i)), pod.routes.add({ dst: 'default', via: '10.244.0.1' })]);
      pod.close();
      ns.close();
      nlSteps.push(nowMs() - t);
    }, async (i) => {
      NetNS.delete(`${prefix}-a${i}`);
    }, () => countVeths('pa'), () => waitGone('pa'));
    podnet.netlinkSteps = stats(nlSteps);
    const rss = peakRssMiB();

    // ---- ip (Node): one execa per step
    const ip = (...args: string[]) => execa('ip', args);
    const ipNode = await timePath(n, 'ip (Node)', async (i) => {
      const name = `${prefix}-b${i}`;
      await ip('netns', 'add', name);
      made.push(name);
      await ip('-n', hostName, 'link', 'add', `pb${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name);
      await ip('-n', hostName, 'link', 'set', `pb${i}`, 'up');
      await ip('-n', name, 'addr', 'add', podAddress(i), 'dev', 'eth0');
      await ip('-n', name, 'link', 'set', 'eth0', 'up');
      await ip('-n', name, 'link', 'set', 'lo', 'up');
      await ip('-n', name, 'route', 'add', 'default', 'via', '10.244.0.1');
    }, async (i) => {
      await ip('netns', 'del', `${prefix}-b${i}`);
    }, () => countVeths('pb'), () => waitGone('pb'));

    // ---- ip (bash): the same commands from a bash loop, timed in bash
    const ipBash = await bashPath(n, prefix, hostName, made, () => countVeths('pc'), () => waitGone('pc'));

    const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
    const row = (label: string, r: PathResult) => [label, fmt(r.create.median), fmt(r.create.p99), fmt(r.create.total / 1000, 2), fmt(r.delete.median), fmt(r.drainMs / 1000, 2), fmt(r.totalMs / 1000, 2)];
    const ratioRow = (label: string, r: PathResult) => [label, ratio(r.create.median, podnet.create.median), ratio(r.create.p99, podnet.create.p99), ratio(r.create.total, podnet.create.total), ratio(r.delete.median, podnet.delete.median), ratio(r.drainMs, podnet.drainMs), ratio(r.totalMs, podnet.totalMs)];
    console.log(
      table([
        ['path', 'create median ms', 'create p99 ms', 'create total s', 'delete median ms', 'delete until gone s', 'create+delete s'],
        row('podnet (src/kernel)', podnet),
        row('ip commands from Node', ipNode),
        row('ip commands from bash', ipBash),
        ratioRow('ratio ip(Node) / podnet', ipNode),
        ratioRow('ratio ip(bash) / podnet', ipBash),
      ]),
    );
    console.log(`podnet netlink steps only (namespace creation excluded): median ${fmt(podnet.netlinkSteps.median)} ms, p99 ${fmt(podnet.netlinkSteps.p99)} ms`);
    console.log(`peak RSS of the benchmark process after the podnet path: ${rss.toFixed(1)} MiB`);
    const goals = {
      'per-pod create median >= 20x faster than ip commands from Node': ipNode.create.median / podnet.create.median >= 20,
      'netlink steps median <= 2 ms per pod': podnet.netlinkSteps.median <= 2,
    };
    for (const [g, ok] of Object.entries(goals)) console.log(`${ok ? 'MET ' : 'MISS'}  ${g}`);
    const file = writeResults('kernel', {
      pods: n,
      paths: { podnet, ipNode, ipBash },
      ratios: {
        createMedianVsNode: ipNode.create.median / podnet.create.median,
        totalVsNode: ipNode.totalMs / podnet.totalMs,
        createMedianVsBash: ipBash.create.median / podnet.create.median,
        totalVsBash: ipBash.totalMs / podnet.totalMs,
      },
      peakRssMiB: rss,
      goals,
    });
    console.log(`results: ${file}`);
  } finally {
    hostNl.close();
    host.close();
    for (const name of made) NetNS.delete(name);
  }
}

async function timePath(n: number, label: string, create: (i: number) => Promise<void>, remove: (i: number) => Promise<void>, count: () => Promise<number>, drain: () => Promise<void>): Promise<PathResult> {
  const c: number[] = [];
  const d: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = nowMs();
    await create(i);
    c.push(nowMs() - s);
    progress(`${label} create`, i + 1, n);
  }
  const present = await count();
  if (present !== n) throw new Error(`${label}: ${present} of ${n} host veths exist after create`);
  const td = nowMs();
  for (let i = 0; i < n; i++) {
    const s = nowMs();
    await remove(i);
    d.push(nowMs() - s);
    progress(`${label} delete`, i + 1, n);
  }
  await drain();
  const drainMs = nowMs() - td;
  const created = stats(c);
  return { create: created, delete: stats(d), drainMs, totalMs: created.total + drainMs };
}

/** The ip path run by bash itself; per-pod times measured with EPOCHREALTIME (no fork to time). */
async function bashPath(n: number, prefix: string, hostName: string, made: string[], count: () => Promise<number>, drain: () => Promise<void>): Promise<PathResult> {
  const script = `set -e
H=${hostName}; P=${prefix}-c; N=${n}
for ((i=0;i<N;i++)); do
  a=$((i+2)); addr=10.244.$((a/256)).$((a%256))/16
  t0=\${EPOCHREALTIME/./}
  ip netns add $P$i
  ip -n $H link add pc$i type veth peer name eth0 netns $P$i
  ip -n $H link set pc$i up
  ip -n $P$i addr add $addr dev eth0
  ip -n $P$i link set eth0 up
  ip -n $P$i link set lo up
  ip -n $P$i route add default via 10.244.0.1
  t1=\${EPOCHREALTIME/./}
  echo "c $((t1-t0))"
done
`;
  const del = `set -e
P=${prefix}-c; N=${n}
for ((i=0;i<N;i++)); do
  t0=\${EPOCHREALTIME/./}
  ip netns del $P$i
  t1=\${EPOCHREALTIME/./}
  echo "d $((t1-t0))"
done
`;
  for (let i = 0; i < n; i++) made.push(`${prefix}-c${i}`);
  const file = join(tmpdir(), `${prefix}-ipbench.sh`);
  writeFileSync(file, script);
  const delFile = join(tmpdir(), `${prefix}-ipbench-del.sh`);
  writeFileSync(delFile, del);
  try {
    console.error(`ip (bash) create: ${n} pods`);
    const c = (await execa('bash', [file], { maxBuffer: 64 << 20 })).stdout.split('\n').filter((l) => l.startsWith('c ')).map((l) => Number(l.slice(2)) / 1000);
    const present = await count();
    if (present !== n) throw new Error(`ip (bash): ${present} of ${n} host veths exist after create`);
    console.error(`ip (bash) delete: ${n} pods`);
    const td = nowMs();
    const d = (await execa('bash', [delFile], { maxBuffer: 64 << 20 })).stdout.split('\n').filter((l) => l.startsWith('d ')).map((l) => Number(l.slice(2)) / 1000);
    await drain();
    const drainMs = nowMs() - td;
    const create = stats(c);
    return { create, delete: stats(d), drainMs, totalMs: create.total + drainMs };
  } finally {
    rmSync(file, { force: true });
    rmSync(delFile, { force: true });
  }
}
