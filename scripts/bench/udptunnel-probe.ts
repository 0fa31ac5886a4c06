/**
 * Throughput probe of the UDP transport's packet loop (src/kernel/udptunnel.ts), next to
 * the userspace baseline measured the same way in the same run: socat TUN<->UDP (as
 * /work/shared/bench/fabric-baseline.sh does it).
 *
 *   node dist/scripts/bench/udptunnel-probe.js [--seconds 5] [--modes socat,podnet,...] [--json] [--save]
 *
 * (--save also writes bench/results/udptunnel-probe.json.)
 *
 * Two node namespaces on an underlay bridge (MTU 1500), a pod on each, one iperf3 TCP stream
 * pod 1 -> pod 2 per mode. For podnet modes the CPU time of the two loop threads (node 1:
 * TUN -> UDP, node 2: UDP -> TUN) comes from /proc/self/task/TID/stat; for socat, from the
 * two socat processes. "CPU ms/Gbit" = CPU seconds spent per gigabit carried (= CPU cores
 * busy per Gbit/s). Nothing touches the root namespace; everything is removed at the end.
 *
 * Modes: socat; podnet (all offloads); podnet-notso (TUN offload off: packet-sized TUN
 * reads/writes, UDP GSO/GRO on); podnet-plain (no offload at all: one TUN syscall per
 * packet, sendmmsg/recvmmsg batches only); podnet-plain-batch1 (the same, one packet per
 * syscall: what batching buys); podnet-batch8 / podnet-batch128 (batch sizes with offloads).
 */
import { pathToFileURL } from 'node:url';
import { UdpTunnel } from '../../src/kernel/udptunnel.js';
import type { UdpTunnelOptions, UdpTunnelStats } from '../../src/kernel/udptunnel.js';
import { Scope, runPrefix, sweepLeftovers } from '../../netns-tests/lib/harness.js';
import { addPod, buildCluster } from '../../netns-tests/lib/cluster.js';
import type { VNode, VPod } from '../../netns-tests/lib/cluster.js';
import { table, writeResults } from './lib.js';
import { iperf, procCpu, startSocatTunnel } from './fabric.js';

interface ModeResult {
  mode: string;
  gbps: number;
  /** CPU seconds of the sender-side loop (node 1) and receiver-side loop (node 2). */
  cpuTx: number;
  cpuRx: number;
  seconds: number;
  retransmits: number;
  /** Share of the machine's CPU time that was idle during the run. */
  idle: number;
  notes: string;
}

type PodnetMode = { name: string; opts: Pick<UdpTunnelOptions, 'offload' | 'udpOffload' | 'batch'> };

const PODNET_MODES: Record<string, PodnetMode> = {
  podnet: { name: 'podnet', opts: {} },
  'podnet-notso': { name: 'podnet-notso', opts: { offload: false } },
  'podnet-plain': { name: 'podnet-plain', opts: { offload: false, udpOffload: false } },
  'podnet-plain-batch1': { name: 'podnet-plain-batch1', opts: { offload: false, udpOffload: false, batch: 1 } },
  'podnet-batch8': { name: 'podnet-batch8', opts: { batch: 8 } },
  'podnet-batch128': { name: 'podnet-batch128', opts: { batch: 128 } },
};

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function routeVia(nodes: VNode[], dev: string): Promise<void> {
  for (const [i, n] of nodes.entries()) await n.nl.routes.ensure({ dst: `10.244.${2 - i}.0/24`, dev });
}

async function runSocat(scope: Scope, nodes: VNode[], pods: VPod[], seconds: number): Promise<ModeResult> {
  const tunnel = await startSocatTunnel(scope, nodes);
  try {
    const c0 = tunnel.pids.map(procCpu);
    const r = await iperf(pods[1]!, pods[0]!, seconds);
    const c1 = tunnel.pids.map(procCpu);
    return { mode: 'socat', ...r, cpuTx: c1[0]! - c0[0]!, cpuRx: c1[1]! - c0[1]!, seconds, notes: 'socat TUN<->UDP, one process per node' };
  } finally {
    await tunnel.stop();
  }
}

async function runPodnet(nodes: VNode[], pods: VPod[], mode: PodnetMode, seconds: number): Promise<ModeResult> {
  const tunnels: UdpTunnel[] = [];
  try {
    for (const [i, n] of nodes.entries()) {
      const tun = await UdpTunnel.open({ netns: n.netns, tunName: 'podnet.udp', localAddress: n.ip, ...mode.opts });
      tun.setPeers([{ subnet: `10.244.${2 - i}.0/24`, peer: nodes[1 - i]!.ip }]);
      tun.start();
      tunnels.push(tun);
    }
    await routeVia(nodes, 'podnet.udp');
    const cpu = () => tunnels.map((t) => {
      const c = t.cpuTime();
      return c ? c.user + c.system : 0;
    });
    const c0 = cpu();
    const s0 = tunnels.map((t) => t.stats());
    const r = await iperf(pods[1]!, pods[0]!, seconds);
    const c1 = cpu();
    const s1 = tunnels.map((t) => t.stats());
    return { mode: mode.name, ...r, cpuTx: c1[0]! - c0[0]!, cpuRx: c1[1]! - c0[1]!, seconds, notes: describe(s0[0]!, s1[0]!, s0[1]!, s1[1]!) };
  } finally {
    for (const t of tunnels) t.stop();
  }
}

/** Batching actually achieved: datagrams per send call, packets per TUN write. */
function describe(a0: UdpTunnelStats, a1: UdpTunnelStats, b0: UdpTunnelStats, b1: UdpTunnelStats): string {
  const sends = a1.tx.sendCalls - a0.tx.sendCalls;
  const dgrams = a1.tx.packets - a0.tx.packets;
  const reads = a1.tx.tunReads - a0.tx.tunReads;
  const writes = b1.rx.tunWrites - b0.rx.tunWrites;
  const rxp = b1.rx.packets - b0.rx.packets;
  const drops = Object.entries(b1.drops).reduce((s, [k, v]) => s + v - b0.drops[k as keyof typeof b0.drops], 0) +
    Object.entries(a1.drops).reduce((s, [k, v]) => s + v - a0.drops[k as keyof typeof a0.drops], 0);
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  return `${f(dgrams / reads)} dgrams/TUN read, ${f(dgrams / sends)} dgrams/send call, ${f(rxp / writes)} pkts/TUN write, drops ${drops}`;
}

export async function run(argv: string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('udptunnel-probe needs root (it builds network namespaces)');
  const seconds = Number(arg(argv, 'seconds') ?? 5);
  const modes = (arg(argv, 'modes') ?? 'socat,podnet,podnet-notso,podnet-plain').split(',');
  for (const m of modes) if (m !== 'socat' && !PODNET_MODES[m]) throw new Error(`unknown mode ${m} (socat, ${Object.keys(PODNET_MODES).join(', ')})`);
  sweepLeftovers();
  const scope = new Scope('udptun', runPrefix('pnb'));
  const results: ModeResult[] = [];
  try {
    const cluster = await buildCluster(scope, { nodes: 2 });
    const nodes = cluster.nodes;
    const pods: VPod[] = [];
    for (const [i, n] of nodes.entries()) pods.push(await addPod(scope, n, 'p', { gateway: `10.244.${i + 1}.1`, prefix: 24 }, `10.244.${i + 1}.2`));
    for (const m of modes) {
      process.stderr.write(`udptunnel-probe: ${m} (${seconds} s)\n`);
      results.push(m === 'socat' ? await runSocat(scope, nodes, pods, seconds) : await runPodnet(nodes, pods, PODNET_MODES[m]!, seconds));
    }
  } finally {
    await scope.cleanup();
  }
  const base = results.find((r) => r.mode === 'socat');
  const rows: (string | number)[][] = [['mode', 'Gbit/s', 'x socat', 'retrans', 'CPU tx %', 'CPU rx %', 'CPU ms/Gbit (tx+rx)', 'machine idle %', 'notes']];
  for (const r of results) {
    const gbit = r.gbps * r.seconds;
    rows.push([
      r.mode,
      r.gbps.toFixed(2),
      base ? (r.gbps / base.gbps).toFixed(1) : '-',
      r.retransmits,
      ((r.cpuTx / r.seconds) * 100).toFixed(0),
      ((r.cpuRx / r.seconds) * 100).toFixed(0),
      (((r.cpuTx + r.cpuRx) / gbit) * 1000).toFixed(0),
      (r.idle * 100).toFixed(0),
      r.notes,
    ]);
  }
  console.log(table(rows));
  if (argv.includes('--json')) console.log(JSON.stringify(results, null, 2));
  if (argv.includes('--save')) console.error(`written: ${writeResults('udptunnel-probe', { seconds, results })}`);
}

// Run directly (node dist/scripts/bench/udptunnel-probe.js) or through a bench runner.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv.slice(2)).catch((e: unknown) => {
    console.error(`udptunnel-probe: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
}
