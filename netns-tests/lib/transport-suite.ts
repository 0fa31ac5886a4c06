/**
 * The transport tests, the same for every backend: 3 nodes x 2 pods of a virtual cluster
 * with an agent per node; full-mesh pod-to-pod ICMP (and ICMPv6 where the backend carries
 * it), TCP and UDP across nodes; the pod MTU end to end with DF (one byte more is
 * refused, and a pod with too large an MTU gets ICMP "fragmentation needed" from its node,
 * never silence); a Node deleted and added again; a TCP connection across nodes through
 * agent restarts on both sides; drift repair of a route (and FDB entry) deleted by hand.
 */
import type { Test } from 'tap';
import { execa } from 'execa';
import type { Node, Pod } from '../../src/client/types.js';
import { Cidr } from '../../src/util/ipnet.js';
import { Scope, waitFor } from './harness.js';
import { buildCluster } from './cluster.js';
import type { VNode } from './cluster.js';
import { ADMIN_TOKEN, startApi } from './api.js';
import type { ApiProcess } from './api.js';
import { CLI, startAgent } from './agents.js';
import type { AgentProcess } from './agents.js';

export interface SuiteOptions {
  backend: 'vxlan' | 'host-gw' | 'udp';
  ipv6: boolean;
  /** Expected pod MTU with a 1500-byte underlay. */
  mtu: number;
  /** What a node holds toward its peers besides routes (entries: one per peer subnet or peer), checked on drift and Node deletion. */
  extraState?: (node: VNode) => Promise<{ entries: number; text: string }>;
}

export interface Suite {
  scope: Scope;
  api: ApiProcess;
  nodes: VNode[];
  agents: AgentProcess[];
  podIPs: (name: string) => Promise<string[]>;
  inPod: (pod: string, cmd: string, args: string[], input?: string) => ReturnType<typeof execa>;
}

/** The parts of `podnet trace --json` this suite reads. */
interface TraceJson {
  verdict?: { kind: string; reason: string; at?: string; node?: string; pod?: string };
  paths?: { observations: { node: string; component: string; action: string; detail: string; transport?: Record<string, unknown> }[] }[];
  probe?: { result: string };
}

const PODS = { a: 'n1', b: 'n1', c: 'n2', d: 'n2', e: 'n3', f: 'n3' } as const;

export async function transportSuite(t: Test, o: SuiteOptions): Promise<void> {
  const scope = new Scope(`tr-${o.backend}`);
  t.teardown(() => scope.cleanup());
  const cluster = await buildCluster(scope, { nodes: 3, underlayV6: o.ipv6 });
  await cluster.attachSelf('198.18.0.100');
  const api = await startApi({ host: '198.18.0.100', nodes: ['n1', 'n2', 'n3'] });
  scope.defer(() => api.cleanup());
  const args = { backend: o.backend, ...(o.ipv6 ? { clusterCidrV6: 'fd00:10:244::/56' } : {}), extraArgs: ['--resync-period', '2s'] };
  const agents: AgentProcess[] = [];
  for (const n of cluster.nodes) agents.push(await startAgent(scope, n, api, args));
  const agentOf = (node: string) => agents.find((a) => a.node.name === node)!;
  const nodeOf = (name: string) => cluster.nodes.find((n) => n.name === name)!;
  const logs = () => agents.map((a) => `--- ${a.node.name}\n${a.logs().slice(-2500)}`).join('\n');
  const getPod = async (name: string) => (await api.call<Pod>('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
  const createPod = (name: string, node: string) => api.call('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] } });
  const netnsCache = new Map<string, string>();
  const netnsOf = async (pod: string, node: string) => {
    if (!netnsCache.has(pod)) netnsCache.set(pod, await agentOf(node).netnsOf('default', pod));
    return netnsCache.get(pod)!;
  };
  const inPodNs = (ns: string, cmd: string, a: string[], input?: string) => execa('nsenter', ['--net=/run/netns/' + ns, '--', cmd, ...a], { reject: false, timeout: 20_000, ...(input !== undefined ? { input } : {}) });
  const ping = async (fromNs: string, ip: string, extra: string[] = []) => inPodNs(fromNs, 'ping', [...(ip.includes(':') ? ['-6'] : []), '-c', '1', '-W', '2', ...extra, ip]);

  await t.test('every node claims a subnet and publishes its backend; every pod runs', async (t) => {
    for (const [p, n] of Object.entries(PODS)) await createPod(p, n);
    await waitFor(async () => (await Promise.all(Object.keys(PODS).map(getPod))).every((p) => p.status?.phase === 'Running'), 40_000, 'six Running pods').catch((e: unknown) => {
      t.comment(logs());
      throw e;
    });
    const nodes = await Promise.all(['n1', 'n2', 'n3'].map(async (n) => (await api.call<Node>('GET', `/api/v1/nodes/${n}`)).body));
    for (const n of nodes) {
      t.equal(n.metadata.annotations?.['podnet.io/backend-type'], o.backend, `${n.metadata.name} runs ${o.backend}`);
      t.ok(n.metadata.annotations?.['podnet.io/backend-data'], `${n.metadata.name} publishes its backend data`);
    }
    await waitFor(async () => nodes.every((n) => n) && (await Promise.all(['n1', 'n2', 'n3'].map(async (n) => (await api.call<Node>('GET', `/api/v1/nodes/${n}`)).body.status?.conditions?.find((c) => c.type === 'PodnetTransport')?.status === 'True'))).every(Boolean), 15_000, 'PodnetTransport=True on every node');
    t.pass('every node reports PodnetTransport=True');
    const p = (await getPod('a')).status!;
    const mtu = JSON.parse((await inPodNs(await netnsOf('a', 'n1'), 'ip', ['-j', 'link', 'show', 'eth0'])).stdout) as { mtu: number }[];
    t.equal(mtu[0]?.mtu, o.mtu, `pod MTU ${o.mtu} (${o.backend} over a 1500-byte underlay)`);
    t.equal(p.podIPs?.length, o.ipv6 ? 2 : 1, o.ipv6 ? 'dual-stack pods' : 'IPv4 pods');
  });

  const ips = new Map<string, string[]>();
  const podIPs = async (name: string) => {
    if (!ips.has(name)) ips.set(name, ((await getPod(name)).status?.podIPs ?? []).map((x) => x.ip));
    return ips.get(name)!;
  };

  await t.test('full mesh across nodes: ICMP for every pair, TCP and UDP both ways', async (t) => {
    const names = Object.keys(PODS) as (keyof typeof PODS)[];
    const failures: string[] = [];
    for (const src of names) {
      for (const dst of names) {
        if (PODS[src] === PODS[dst]) continue;
        for (const ip of await podIPs(dst)) {
          // One retry: the first echo can meet a neighbour still being resolved (ICMPv6 NDP).
          let r = await ping(await netnsOf(src, PODS[src]), ip);
          if (r.exitCode !== 0) r = await ping(await netnsOf(src, PODS[src]), ip);
          if (r.exitCode !== 0) failures.push(`${src} -> ${dst} (${ip})`);
        }
      }
    }
    t.same(failures, [], `ICMP${o.ipv6 ? ' and ICMPv6' : ''} between every pod of different nodes (${names.length * 4} pairs)`);
    // TCP and UDP echo servers in c (n2) and e (n3); clients in a (n1) and d (n2).
    for (const s of ['c', 'e'] as const) {
      const ns = await netnsOf(s, PODS[s]);
      // Each server in its own process group: the children it forks per client go with it.
      for (const listen of ['TCP6-LISTEN:7000,ipv6only=0,reuseaddr,fork', 'UDP6-LISTEN:7001,ipv6only=0,reuseaddr,fork']) {
        const p = execa('nsenter', ['--net=/run/netns/' + ns, '--', 'socat', listen, 'EXEC:/bin/cat'], { reject: false, detached: true, stdio: 'ignore' });
        scope.defer(() => {
          try {
            process.kill(-p.pid!, 'SIGKILL');
          } catch {
            /* gone */
          }
        });
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const [c, s] of [['a', 'c'], ['a', 'e'], ['d', 'e'], ['d', 'c']] as const) {
      if (PODS[c] === PODS[s]) continue;
      for (const ip of await podIPs(s)) {
        const host = ip.includes(':') ? `[${ip}]` : ip;
        const tcp = await inPodNs(await netnsOf(c, PODS[c]), 'socat', ['-t', '2', '-', `TCP:${host}:7000`], `tcp ${c}->${s}\n`);
        t.equal(tcp.stdout.trim(), `tcp ${c}->${s}`, `TCP ${c} (${PODS[c]}) -> ${s} (${PODS[s]}) ${ip}`);
        const udp = await inPodNs(await netnsOf(c, PODS[c]), 'socat', ['-T', '2', '-', `UDP:${host}:7001`], `udp ${c}->${s}\n`);
        t.equal(udp.stdout.trim(), `udp ${c}->${s}`, `UDP ${c} -> ${s} ${ip}`);
      }
    }
  });

  await t.test('a node reaches the pods of other nodes (host-network clients, probes), both families', async (t) => {
    for (const [node, pod] of [['n1', 'c'], ['n2', 'e'], ['n3', 'a']] as const) {
      for (const ip of await podIPs(pod)) {
        let r = await execa('nsenter', ['--net=' + nodeOf(node).netns.path, '--', 'ping', '-c', '1', '-W', '2', ip], { reject: false });
        if (r.exitCode !== 0) r = await execa('nsenter', ['--net=' + nodeOf(node).netns.path, '--', 'ping', '-c', '1', '-W', '2', ip], { reject: false });
        t.equal(r.exitCode, 0, `node ${node} -> pod ${pod} (${PODS[pod]}) ${ip}`);
      }
    }
  });

  await t.test('the pod MTU crosses nodes with DF set; one byte more is refused, never silently dropped', async (t) => {
    const a = await netnsOf('a', 'n1');
    const [cIP] = await podIPs('c');
    const fits = await ping(a, cIP!, ['-M', 'do', '-s', String(o.mtu - 28)]);
    t.equal(fits.exitCode, 0, `${o.mtu}-byte packets with DF cross (ICMP payload ${o.mtu - 28})`);
    const over = await ping(a, cIP!, ['-M', 'do', '-s', String(o.mtu - 27)]);
    t.not(over.exitCode, 0, 'one byte more does not pass');
    t.match(`${over.stdout}${over.stderr}`, /message too long|Frag needed/i, 'and the sender is told (EMSGSIZE at the pod MTU)');
    if (o.backend !== 'host-gw') {
      // A pod whose MTU is larger than the transport's: its node answers "fragmentation needed".
      const b = await netnsOf('b', 'n1');
      await inPodNs(b, 'ip', ['link', 'set', 'eth0', 'mtu', '1500']);
      const big = await ping(b, cIP!, ['-M', 'do', '-s', String(o.mtu - 27)]);
      t.match(`${big.stdout}${big.stderr}`, new RegExp(`Frag needed|message too long, mtu=${o.mtu}|mtu ?= ?${o.mtu}`, 'i'), `the node sends ICMP fragmentation needed (mtu ${o.mtu}), the pod is not left guessing`);
      await inPodNs(b, 'ip', ['link', 'set', 'eth0', 'mtu', String(o.mtu)]);
    }
  });

  await t.test('a TCP connection across nodes survives agent restarts on both sides', async (t) => {
    const a = await netnsOf('a', 'n1');
    const [cIP] = await podIPs('c');
    const client = execa('nsenter', ['--net=/run/netns/' + a, '--', 'socat', '-', `TCP:${cIP}:7000`], { reject: false, stdin: 'pipe' });
    scope.defer(() => client.kill('SIGKILL'));
    let out = '';
    client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const say = async (w: string) => {
      client.stdin!.write(`${w}\n`);
      await waitFor(() => out.includes(w), 15_000, `the echo of ${w}`);
    };
    await say('before');
    for (const n of ['n1', 'n2']) {
      const ag = agentOf(n);
      await ag.kill('SIGKILL');
      await ag.restart();
      await waitFor(async () => (await execa('nsenter', ['--net=' + nodeOf(n).netns.path, '--', 'curl', '-s', `http://${nodeOf(n).ip}:10260/readyz`], { reject: false })).stdout === 'ok', 30_000, `agent ${n} ready again`);
      await say(`after-${n}`);
    }
    t.equal(out, 'before\nafter-n1\nafter-n2\n', 'one connection carried data before and after each restart');
    t.equal(client.exitCode, null, 'it never closed');
    client.stdin!.end();
  });

  // `podnet trace` from the test's namespace (it reaches the api and every agent on the underlay).
  const traceCli = async (args: string[]) => {
    const r = await execa(process.execPath, [CLI, 'trace', '--server', api.url, '--token', ADMIN_TOKEN, ...(api.certs ? ['--ca-file', api.certs.caFile] : []), '--json', ...args], { reject: false, timeout: 30_000 });
    let result: TraceJson = {};
    try {
      result = JSON.parse(String(r.stdout)) as TraceJson;
    } catch {
      /* stderr says why */
    }
    return { code: r.exitCode ?? -1, result, stderr: String(r.stderr) };
  };

  await t.test(`trace across nodes over ${o.backend}: the transport hop, the MTU, explain = live = the real packet`, async (t) => {
    const [eIP] = await podIPs('e');
    const n3 = nodeOf('n3');
    for (const live of [false, true]) {
      const r = await traceCli(['--from', 'default/a', '--to', `${eIP}/icmp`, ...(live ? ['--live'] : [])]);
      const v = r.result.verdict;
      t.equal(v?.kind, 'Delivered', `${live ? 'live' : 'explain'} a → e (${eIP}): ${v?.kind} ${v?.reason ?? r.stderr}`);
      t.equal(v?.pod, 'default/e', `${live ? 'live' : 'explain'}: delivered to pod e`);
      t.equal(v?.node, 'n3', `${live ? 'live' : 'explain'}: on node n3`);
      const obs = r.result.paths?.[0]?.observations ?? [];
      const enc = obs.find((x) => x.component === 'Transport' && x.action === 'Encapsulated');
      t.equal(enc?.node, 'n1', 'the transport hop is on n1');
      t.equal(enc?.transport?.backend, o.backend, `the encapsulation: ${enc?.detail}`);
      if (o.backend === 'vxlan') t.match(enc?.transport ?? {}, { vni: 1, port: 8472, outerDst: n3.ip, mtu: o.mtu }, 'VXLAN VNI 1 to n3 on port 8472, the device MTU');
      if (o.backend === 'udp') t.match(enc?.transport ?? {}, { outerDst: n3.ip, port: 8285 }, 'UDP tunnel to n3 on port 8285');
      if (o.backend === 'host-gw') t.match(enc?.transport ?? {}, { nextHop: n3.ip }, 'host-gw: the next hop is n3');
      t.ok(obs.some((x) => x.node === 'n3' && x.component === 'Delivery'), 'n3 delivers it through its bridge');
      if (live) t.equal(r.result.probe?.result, 'replied', 'live: the ICMP echo probe was answered');
    }
    const real = await ping(await netnsOf('a', 'n1'), eIP!);
    t.equal(real.exitCode, 0, 'the real ping a → e is answered');
    // The pod MTU: fits exactly; one byte more is refused at the source (as the real ping is).
    const fits = await traceCli(['--from', 'default/a', '--to', `${eIP}/icmp`, '--size', String(o.mtu)]);
    t.equal(fits.result.verdict?.kind, 'Delivered', `a ${o.mtu}-byte packet is delivered`);
    const over = await traceCli(['--from', 'default/a', '--to', `${eIP}/icmp`, '--size', String(o.mtu + 1)]);
    t.equal(over.result.verdict?.kind, 'Dropped', `a ${o.mtu + 1}-byte packet: ${over.result.verdict?.reason}`);
    t.equal(over.code, 1, 'exit status 1 when not delivered');
    const overLive = await traceCli(['--from', 'default/a', '--to', `${eIP}/icmp`, '--size', String(o.mtu + 1), '--live']);
    t.equal(overLive.result.verdict?.kind, 'Dropped', `live: the ${o.mtu + 1}-byte DF probe is not delivered either (probe ${overLive.result.probe?.result}): ${overLive.result.verdict?.reason}`);
    const overReal = await ping(await netnsOf('a', 'n1'), eIP!, ['-M', 'do', '-s', String(o.mtu - 27)]);
    t.not(overReal.exitCode, 0, 'and the real DF ping of that size is refused too');
    // A pod whose MTU is too large for the transport: the node's transport hop drops it (frag needed).
    const b = await netnsOf('b', 'n1');
    await inPodNs(b, 'ip', ['link', 'set', 'eth0', 'mtu', '1500']);
    try {
      const big = await traceCli(['--from', 'default/b', '--to', `${eIP}/icmp`, '--size', String(o.mtu + 1)]);
      t.equal(big.result.verdict?.kind, 'Dropped', `a packet too large for the ${o.backend} transport: ${big.result.verdict?.at} — ${big.result.verdict?.reason}`);
      const bigReal = await ping(b, eIP!, ['-M', 'do', '-s', String(o.mtu - 27)]);
      t.not(bigReal.exitCode, 0, 'the real oversized DF ping from a pod with MTU 1500 does not arrive');
    } finally {
      await inPodNs(b, 'ip', ['link', 'set', 'eth0', 'mtu', String(o.mtu)]);
    }
  });

  await t.test('trace: a route deleted by hand shows as Dropped at Routing on the right node', async (t) => {
    const n1 = nodeOf('n1');
    const sub = (await api.call<Node>('GET', '/api/v1/nodes/n2')).body.spec!.podCIDRs![0]!;
    const [cIP] = await podIPs('c');
    let got: TraceJson['verdict'];
    // The agent repairs the route at its next resync (2 s): delete and trace right away, a few times if the repair wins.
    for (let i = 0; i < 5 && got?.kind !== 'Dropped'; i++) {
      await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', 'route', 'del', sub], { reject: false });
      const real = await ping(await netnsOf('a', 'n1'), cIP!, ['-W', '1']);
      got = (await traceCli(['--from', 'default/a', '--to', `${cIP}/icmp`])).result.verdict;
      if (got?.kind === 'Dropped') t.not(real.exitCode, 0, 'the real ping fails while the route is gone');
    }
    t.equal(got?.kind, 'Dropped', `a → c with n1's route to ${sub} deleted: ${got?.kind} at ${got?.at}: ${got?.reason}`);
    t.equal(got?.node, 'n1', 'on node n1, where the route is missing');
    t.match(got?.reason ?? '', /n2/, "the reason names n2's pod subnet");
    await waitFor(async () => (await traceCli(['--from', 'default/a', '--to', `${cIP}/icmp`])).result.verdict?.kind === 'Delivered', 10_000, 'the trace to deliver again after the repair');
    t.pass('after the agent repaired the route, the trace delivers again');
  });

  await t.test('drift repair: a route deleted by hand is back after the next resync', async (t) => {
    const n1 = nodeOf('n1');
    const sub = (await api.call<Node>('GET', '/api/v1/nodes/n2')).body.spec!.podCIDRs![0]!;
    const routes = async () => (await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', '-4', 'route', 'show', sub])).stdout.trim();
    const before = await routes();
    t.match(before, /proto 222/, `n1 has a podnet route to ${sub}: ${before}`);
    await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', 'route', 'del', sub]);
    t.equal(await routes(), '', 'deleted by hand');
    await waitFor(async () => (await routes()) === before, 10_000, 'the route to come back');
    t.pass(`restored: ${before}`);
    if (o.extraState) {
      const state = await o.extraState(n1);
      t.ok(state.entries > 0, `and the backend's other state is there (${state.entries} entries): ${state.text}`);
    }
  });

  await t.test('a Node deleted: its routes go on the others; added again: reachable within 2 s', async (t) => {
    const n1 = nodeOf('n1');
    const n3sub = (await api.call<Node>('GET', '/api/v1/nodes/n3')).body.spec!.podCIDRs![0]!;
    const hasRoute = async () => (await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', 'route', 'show', 'proto', '222'])).stdout.includes(n3sub);
    t.ok(await hasRoute(), `n1 routes ${n3sub}`);
    const extraBefore = o.extraState ? (await o.extraState(n1)).entries : 0;
    await agentOf('n3').kill('SIGKILL');
    t.equal((await api.call('DELETE', '/api/v1/nodes/n3')).status, 200, 'Node n3 deleted');
    await waitFor(async () => !(await hasRoute()), 5000, 'the route to n3 to go');
    t.pass(`n1 no longer routes ${n3sub}`);
    if (o.extraState) {
      const after = (await o.extraState(n1)).entries;
      t.ok(after < extraBefore, `its other per-peer state went too (${extraBefore} -> ${after} entries)`);
    }
    // n3 comes back (its agent registers it again) with a new pod.
    await agentOf('n3').restart();
    await createPod('g', 'n3');
    const g = await waitFor(async () => {
      const p = await getPod('g');
      return p.status?.phase === 'Running' ? p : undefined;
    }, 30_000, 'pod g on the returning n3');
    const t0 = Date.now();
    const a = await netnsOf('a', 'n1');
    await waitFor(async () => (await ping(a, g!.status!.podIP!, ['-W', '1'])).exitCode === 0, 10_000, 'n1 to reach the new pod on n3');
    const ms = Date.now() - t0;
    t.ok(ms <= 2000, `a pod on the re-added node answers ${ms} ms after it runs (limit 2 s)`);
    void Cidr;
  });
}
