/**
 * `npm run bench -- transport [--seconds 5] [--rounds 3]`: pod-to-pod across two nodes
 * through each podnet backend (agents, API, pods as an operator runs them), next to
 * hand-built baselines on the same topology in the same run (as
 * /work/shared/bench/fabric-baseline.sh builds them): same-node pods on one bridge,
 * host-gw routes, kernel vxlan in flannel's L3 model, and a socat TUN<->UDP tunnel.
 *
 * Each pair is measured `rounds` times, podnet and its baseline alternating, so both see
 * the same machine; the table gives medians. One iperf3 TCP stream per measurement and a
 * ping RTT (50 echoes 10 ms apart). For udp: CPU seconds of podnet's loop threads (both
 * nodes) and of the two socat processes per Gbit carried.
 *
 * Pod MTUs are what each transport leaves (1500 host-gw, 1450 vxlan, 1472 udp) for podnet
 * and for the baselines alike. Everything lives in namespaces of this run.
 */
import type { Node, Pod } from '../../src/client/types.js';
import { NetNS } from '../../src/kernel/index.js';
import { Scope, insideOwnNetns, sh, waitFor } from '../../netns-tests/lib/harness.js';
import { addPod, buildCluster } from '../../netns-tests/lib/cluster.js';
import type { VNode, VPod } from '../../netns-tests/lib/cluster.js';
import { startApi } from '../../netns-tests/lib/api.js';
import type { ApiProcess } from '../../netns-tests/lib/api.js';
import { startAgent } from '../../netns-tests/lib/agents.js';
import type { AgentProcess } from '../../netns-tests/lib/agents.js';
import { stats, table, writeResults } from './lib.js';
import { iperf, pingRtt, procCpu, startSocatTunnel, threadsCpu } from './fabric.js';
import type { Endpoint, IperfResult } from './fabric.js';

type Backend = 'host-gw' | 'vxlan' | 'udp';
const BACKENDS: Backend[] = ['host-gw', 'vxlan', 'udp'];
const MTU: Record<Backend, number> = { 'host-gw': 1500, vxlan: 1450, udp: 1472 };

interface Sample extends IperfResult {
  rttMs: number;
  /** CPU seconds of the tunnel (udp: loop threads / socat processes) during the stream. */
  cpu?: number;
  seconds: number;
}

interface Row {
  name: string;
  samples: Sample[];
}

function arg(argv: string[], name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, not ${JSON.stringify(argv[i + 1])}`);
  return v;
}

const median = (xs: number[]) => stats(xs).median;

/** One measurement: a ping RTT, then one TCP stream client -> server (with CPU of `cpu()` around it). */
async function measure(client: Endpoint, server: Endpoint, seconds: number, cpu?: () => number): Promise<Sample> {
  const rtt = await pingRtt(client, server.ip);
  const c0 = cpu?.();
  const r = await iperf(server, client, seconds);
  const c1 = cpu?.();
  return { ...r, rttMs: rtt.avg, seconds, ...(c0 !== undefined && c1 !== undefined ? { cpu: c1 - c0 } : {}) };
}

// ---------------------------------------------------------------- podnet, through agents

class PodnetCluster {
  private agents: AgentProcess[] = [];
  private nodes: VNode[] = [];
  private api!: ApiProcess;
  private podCount = 0;
  private opened: NetNS[] = [];

  constructor(private readonly scope: Scope) {}

  async start(first: Backend): Promise<void> {
    const cluster = await buildCluster(this.scope, { nodes: 2 });
    await cluster.attachSelf('198.18.0.100');
    this.nodes = cluster.nodes;
    this.api = await startApi({ host: '198.18.0.100', nodes: ['n1', 'n2'], extraArgs: ['--disable-controllers', 'endpointslice'] });
    this.scope.defer(() => this.api.cleanup());
    for (const n of this.nodes) this.agents.push(await startAgent(this.scope, n, this.api, { backend: first, extraArgs: ['--resync-period', '30s'] }));
    await this.ready(first);
    this.scope.defer(() => this.opened.forEach((n) => n.close()));
  }

  /** Restarts both agents with `backend` (the switch removes the old devices and routes). */
  async switchTo(backend: Backend): Promise<void> {
    for (const a of this.agents) {
      await a.kill('SIGTERM');
      await a.restart({ backend });
    }
    await this.ready(backend);
  }

  private async ready(backend: Backend): Promise<void> {
    await waitFor(async () => {
      const nodes = await Promise.all(['n1', 'n2'].map(async (n) => (await this.api.call<Node>('GET', `/api/v1/nodes/${n}`)).body));
      return nodes.every((n) => n.metadata.annotations?.['podnet.io/backend-type'] === backend && n.status?.conditions?.some((c) => c.type === 'PodnetTransport' && c.status === 'True'));
    }, 60_000, `both nodes on ${backend} with PodnetTransport=True`).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${this.agents.map((a) => a.logs().slice(-1500)).join('\n')}`);
    });
  }

  /** A pod on node `node` (1 or 2), Running, as an endpoint. */
  async pod(node: number): Promise<Endpoint> {
    const name = `bench-${++this.podCount}`;
    const r = await this.api.call('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: `n${node}`, containers: [{ name: 'c', image: 'x' }] } });
    if (r.status !== 201) throw new Error(`creating pod ${name}: ${r.status}`);
    const pod = await waitFor(async () => {
      const p = (await this.api.call<Pod>('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
      return p.status?.phase === 'Running' ? p : undefined;
    }, 30_000, `pod ${name} Running`);
    const netns = NetNS.open(await this.agents[node - 1]!.netnsOf('default', name));
    this.opened.push(netns);
    return { netns, ip: pod!.status!.podIP! };
  }

  async deletePods(): Promise<void> {
    for (let i = 1; i <= this.podCount; i++) await this.api.call('DELETE', `/api/v1/namespaces/default/pods/bench-${i}`);
  }

  /** CPU seconds of the udp loop threads of both agents. */
  udpLoopCpu(): number {
    return this.agents.reduce((s, a) => s + threadsCpu(a.proc.pid!, 'pn-udp:'), 0);
  }
}

// ---------------------------------------------------------------- hand-built baselines

class HandBuilt {
  nodes: VNode[] = [];
  pods: VPod[] = [];
  constructor(private readonly scope: Scope) {}

  async start(): Promise<void> {
    const cluster = await buildCluster(this.scope, { nodes: 2 });
    this.nodes = cluster.nodes;
    const [n1, n2] = this.nodes as [VNode, VNode];
    this.pods.push(await addPod(this.scope, n1, 'p1', { gateway: '10.244.1.1', prefix: 24 }, '10.244.1.2'));
    this.pods.push(await addPod(this.scope, n1, 'p1b', { gateway: '10.244.1.1', prefix: 24 }, '10.244.1.3'));
    this.pods.push(await addPod(this.scope, n2, 'p2', { gateway: '10.244.2.1', prefix: 24 }, '10.244.2.2'));
  }

  get p1(): VPod {
    return this.pods[0]!;
  }
  get p1b(): VPod {
    return this.pods[1]!;
  }
  get p2(): VPod {
    return this.pods[2]!;
  }

  /** The pods' MTU (both ends of each veth), as the transport in use needs. */
  async podMtu(mtu: number): Promise<void> {
    for (const p of this.pods) {
      await p.nl.links.setMtu('eth0', mtu);
      const node = p.name === 'p2' ? this.nodes[1]! : this.nodes[0]!;
      await node.nl.links.setMtu(p.hostVeth, mtu);
    }
  }

  async hostGw(on: boolean): Promise<void> {
    for (const [i, n] of this.nodes.entries()) {
      const r = { dst: `10.244.${2 - i}.0/24`, via: this.nodes[1 - i]!.ip };
      if (on) await n.nl.routes.ensure(r);
      else await n.nl.routes.delete(r);
    }
  }

  /** Kernel vxlan, flannel's L3 model (as fabric-baseline.sh): route onlink via the VTEP address, static neighbour and FDB entry. */
  async vxlan(on: boolean): Promise<void> {
    for (const [i, n] of this.nodes.entries()) {
      const ns = n.netns;
      if (!on) {
        await sh(ns, 'ip', ['link', 'del', 'vx0'], { reject: false });
        continue;
      }
      const me = i + 1;
      const peer = 2 - i;
      await sh(ns, 'ip', ['link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'local', n.ip, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
      await sh(ns, 'ip', ['link', 'set', 'vx0', 'address', `02:00:00:00:00:0${me}`, 'mtu', '1450', 'up']);
      await sh(ns, 'ip', ['addr', 'add', `10.244.${me}.0/32`, 'dev', 'vx0']);
      await sh(ns, 'ip', ['route', 'add', `10.244.${peer}.0/24`, 'via', `10.244.${peer}.0`, 'dev', 'vx0', 'onlink']);
      await sh(ns, 'ip', ['neigh', 'add', `10.244.${peer}.0`, 'lladdr', `02:00:00:00:00:0${peer}`, 'dev', 'vx0', 'nud', 'permanent']);
      await sh(ns, 'bridge', ['fdb', 'append', `02:00:00:00:00:0${peer}`, 'dev', 'vx0', 'dst', this.nodes[1 - i]!.ip]);
    }
  }
}

// ---------------------------------------------------------------- the run

export async function run(argv: string[]): Promise<void> {
  if (!(await insideOwnNetns(import.meta.url.replace(/transport\.js$/, 'main.js'), 'bench-transport'))) return;
  const seconds = arg(argv, 'seconds', 5);
  const rounds = arg(argv, 'rounds', 3);
  const scope = new Scope('btr');
  const baseScope = new Scope('btb');
  const rows: Row[] = [];
  const row = (name: string) => {
    const r: Row = { name, samples: [] };
    rows.push(r);
    return r;
  };
  const log = (msg: string) => process.stderr.write(`transport bench: ${msg}\n`);
  try {
    const base = new HandBuilt(baseScope);
    await base.start();
    const pn = new PodnetCluster(scope);
    await pn.start('host-gw');

    // Same node, one bridge: the ceiling for any transport.
    log(`same node (${rounds} x ${seconds} s each)`);
    const sameBase = row('hand-built: same-node pods on one bridge');
    const samePn = row('podnet: same-node pods (podnet0 bridge)');
    {
      const a = await pn.pod(1);
      const b = await pn.pod(1);
      for (let i = 0; i < rounds; i++) {
        samePn.samples.push(await measure(a, b, seconds));
        sameBase.samples.push(await measure(base.p1, base.p1b, seconds));
      }
    }

    const pairs: Record<Backend, { pn: Row; base: Row }> = {} as Record<Backend, { pn: Row; base: Row }>;
    for (const backend of BACKENDS) {
      log(`${backend} (${rounds} x ${seconds} s each)`);
      if (backend !== 'host-gw') {
        await pn.deletePods();
        await pn.switchTo(backend);
      }
      const a = await pn.pod(1);
      const b = await pn.pod(2);
      const mtu = JSON.parse(String((await sh(a.netns, 'ip', ['-j', 'link', 'show', 'eth0'])).stdout)) as { mtu: number }[];
      if (mtu[0]?.mtu !== MTU[backend]) throw new Error(`podnet ${backend} pod MTU ${mtu[0]?.mtu}, expected ${MTU[backend]}`);
      await base.podMtu(MTU[backend]);
      const label = { 'host-gw': 'host-gw routes', vxlan: 'kernel vxlan (flannel L3 model)', udp: 'socat TUN<->UDP' }[backend];
      const p = row(`podnet ${backend}`);
      const h = row(`hand-built: ${label}`);
      pairs[backend] = { pn: p, base: h };
      if (backend === 'host-gw') await base.hostGw(true);
      if (backend === 'vxlan') await base.vxlan(true);
      const socat = backend === 'udp' ? await startSocatTunnel(baseScope, base.nodes, { mtu: 1472 }) : undefined;
      try {
        for (let i = 0; i < rounds; i++) {
          p.samples.push(await measure(a, b, seconds, backend === 'udp' ? () => pn.udpLoopCpu() : undefined));
          h.samples.push(await measure(base.p1, base.p2, seconds, socat ? () => socat.pids.reduce((s, pid) => s + procCpu(pid), 0) : undefined));
        }
      } finally {
        await socat?.stop();
        if (backend === 'host-gw') await base.hostGw(false);
        if (backend === 'vxlan') await base.vxlan(false);
      }
    }
    await pn.deletePods();

    // ---- report
    const gbps = (r: Row) => median(r.samples.map((s) => s.gbps));
    const rtt = (r: Row) => median(r.samples.map((s) => s.rttMs));
    const cpuPerGbit = (r: Row) => {
      const c = r.samples.filter((s) => s.cpu !== undefined);
      if (!c.length) return undefined;
      // CPU seconds per gigabit carried = cores busy per Gbit/s.
      return c.reduce((s, x) => s + x.cpu!, 0) / c.reduce((s, x) => s + x.gbps * x.seconds, 0);
    };
    const ratioTo: Record<string, number> = {};
    for (const b of BACKENDS) ratioTo[pairs[b].pn.name] = gbps(pairs[b].pn) / gbps(pairs[b].base);
    ratioTo[samePn.name] = gbps(samePn) / gbps(sameBase);
    const out: (string | number)[][] = [['path', 'Gbit/s (median)', 'min..max', 'vs hand-built', 'RTT ms', 'retrans', 'CPU ms per Gbit']];
    for (const r of rows) {
      const g = r.samples.map((s) => s.gbps);
      const c = cpuPerGbit(r);
      out.push([r.name, gbps(r).toFixed(2), `${Math.min(...g).toFixed(1)}..${Math.max(...g).toFixed(1)}`, ratioTo[r.name] !== undefined ? `${(ratioTo[r.name]! * 100).toFixed(0)}%` : '', rtt(r).toFixed(3), median(r.samples.map((s) => s.retransmits)), c !== undefined ? (c * 1000).toFixed(0) : '']);
    }
    console.log(table(out));
    const udpX = ratioTo[pairs.udp.pn.name]!;
    const udpCpu = cpuPerGbit(pairs.udp.pn)!;
    const socatCpu = cpuPerGbit(pairs.udp.base)!;
    console.log(`udp: podnet carries ${udpX.toFixed(1)}x socat's throughput; its loop threads (both nodes) spend ${(udpCpu * 1000).toFixed(0)} ms CPU per Gbit (${udpCpu.toFixed(3)} cores per Gbit/s), socat ${(socatCpu * 1000).toFixed(0)} ms`);
    const goals = {
      'podnet host-gw >= 95% of hand-built host-gw': ratioTo[pairs['host-gw'].pn.name]! >= 0.95,
      'podnet vxlan >= 95% of hand-built kernel vxlan': ratioTo[pairs.vxlan.pn.name]! >= 0.95,
      'podnet udp >= 2x socat': udpX >= 2,
      'podnet udp >= 4x socat (stretch)': udpX >= 4,
    };
    for (const [g, ok] of Object.entries(goals)) console.log(`${ok ? 'MET ' : 'MISS'}  ${g}`);
    const json = Object.fromEntries(rows.map((r) => [r.name, { gbpsMedian: gbps(r), rttMsMedian: rtt(r), cpuSecondsPerGbit: cpuPerGbit(r), samples: r.samples }]));
    console.log(`results: ${writeResults('transport', { seconds, rounds, rows: json, ratios: ratioTo, udp: { xSocat: udpX, cpuMsPerGbit: udpCpu * 1000, socatCpuMsPerGbit: socatCpu * 1000 }, goals })}`);
  } finally {
    await scope.cleanup();
    await baseScope.cleanup();
  }
}
