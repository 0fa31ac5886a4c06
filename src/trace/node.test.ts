import { describe, expect, it } from 'vitest';
import type { FdbEntry, Link, Neigh } from '../kernel/index.js';
import type { Route } from '../kernel/routes.js';
import type { LbContext, LbInterpreter, LbOutcome, SnatContext } from './lb.js';
import { routeText, traceNode } from './node.js';
import type { Directory, NodeEnv } from './node.js';
import type { Ingress, NodeRequest, Packet } from './types.js';

// ---------------------------------------------------------------- the cluster

const directory: Directory = {
  nodes: [
    { name: 'n1', addresses: ['192.168.1.11'], podCIDRs: ['10.244.1.0/24'] },
    { name: 'n2', addresses: ['192.168.1.12'], podCIDRs: ['10.244.2.0/24'] },
    { name: 'n3', addresses: ['192.168.1.13'], podCIDRs: ['10.244.3.0/24'] },
  ],
  pods: [
    { namespace: 'default', name: 'client', ips: ['10.244.1.3'], node: 'n1' },
    { namespace: 'default', name: 'web-1', ips: ['10.244.1.7'], node: 'n1' },
    { namespace: 'default', name: 'web-2', ips: ['10.244.2.5'], node: 'n2' },
  ],
};

const common = { up: true, operState: 'up' as const, mac: undefined, masterIndex: undefined };
const LINKS: Link[] = [
  { ...common, kind: 'device', index: 2, name: 'eth0', mtu: 1500, driver: undefined },
  { ...common, kind: 'bridge', index: 3, name: 'podnet0', mtu: 1450 },
  { ...common, kind: 'vxlan', index: 5, name: 'podnet.1', mtu: 1450, vni: 1, port: 8472, local: '192.168.1.11', learning: false, devIndex: 2 },
  { ...common, kind: 'tun', index: 6, name: 'podnet.udp', mtu: 1472 },
  { ...common, kind: 'veth', index: 7, name: 'vethweb1', mtu: 1450, masterIndex: 3, peerIndex: 2, peerNetnsId: 1 },
];

const route = (r: Partial<Route> & { dst: string }): Route => ({ family: 4, via: undefined, devIndex: undefined, table: 254, metric: undefined, src: undefined, protocol: 4, scope: 0, type: 'unicast', onlink: false, ...r });

const ROUTES = {
  bridge: route({ dst: '10.244.1.0/24', devIndex: 3, protocol: 2, scope: 253, src: '10.244.1.1' }),
  vxlan: route({ dst: '10.244.2.0/24', via: '10.244.2.0', devIndex: 5, protocol: 222, onlink: true }),
  udp: route({ dst: '10.244.3.0/24', devIndex: 6, protocol: 222, scope: 253 }),
  hostgw: route({ dst: '10.244.2.0/24', via: '192.168.1.12', devIndex: 2, protocol: 222 }),
  default: route({ dst: '0.0.0.0/0', via: '198.18.0.254', devIndex: 2, protocol: 3 }),
};

const VTEP_MAC = '0a:58:0a:f4:02:00';
const WEB1_MAC = '0a:58:0a:f4:01:07';

const neigh = (devIndex: number, ip: string, mac: string | undefined, state = ['permanent']): Neigh => ({ devIndex, family: 4, ip, mac, state });
const fdb = (devIndex: number, mac: string, dst: string | undefined, o: Partial<FdbEntry> = {}): FdbEntry => ({ devIndex, mac, dst, vni: undefined, port: undefined, masterIndex: undefined, self: true, permanent: true, ...o });

interface Calls {
  route: { dst: string; o: { src?: string; iif?: string } }[];
  dnat: { pkt: Packet; ctx: LbContext }[];
  snat: { pkt: Packet; mark: boolean; ctx: SnatContext }[];
}

interface EnvOptions {
  backend?: NodeEnv['backend'];
  /** The route for a destination (the FIB entry is the same route unless `entry` is given). */
  routes?: (dst: string) => Route | undefined;
  entry?: Route;
  neighbours?: Record<string, Neigh[]>;
  fdb?: Record<string, FdbEntry[]>;
  /** Fixed LB outcomes (a function of the packet); undefined: no proxy. */
  lb?: ((pkt: Packet) => LbOutcome[]) | undefined;
  localPods?: Awaited<ReturnType<NodeEnv['localPods']>>;
  /** The pod interface's MTU as read now (default: what podnet set). */
  podMtu?: NodeEnv['podMtu'];
}

/** A NodeEnv for node n1 over fakes; records what the tracer asked. */
function fakeEnv(o: EnvOptions = {}): { env: NodeEnv; calls: Calls } {
  const calls: Calls = { route: [], dnat: [], snat: [] };
  const lb: LbInterpreter | undefined = o.lb
    ? {
        mode: 'nftables',
        dnat: async (pkt, ctx) => {
          calls.dnat.push({ pkt, ctx });
          return o.lb!(pkt);
        },
        snat: async (pkt, mark, ctx) => {
          calls.snat.push({ pkt, mark, ctx });
          if (!mark) return { observations: [], packet: pkt, masqueraded: false };
          const after = { ...pkt, src: ctx.outAddress };
          return { observations: [{ node: 'n1', component: 'Netfilter/LB', action: 'Masqueraded', detail: `masquerade to ${ctx.outAddress}`, packet: after }], packet: after, masqueraded: true };
        },
      }
    : undefined;
  const env: NodeEnv = {
    node: 'n1',
    backend: o.backend ?? 'vxlan',
    proxyMode: o.lb ? 'nftables' : 'none',
    lb: () => lb,
    localAddresses: async () => ['192.168.1.11', '10.244.1.1'],
    route: async (dst, opts) => {
      calls.route.push({ dst, o: opts });
      const r = (o.routes ?? defaultRoutes)(dst);
      return r ? { route: r, entry: o.entry ?? r } : undefined;
    },
    link: async (i) => LINKS.find((l) => l.index === i || l.name === i),
    neighbours: async (dev) => o.neighbours?.[dev] ?? [],
    fdb: async (dev) => o.fdb?.[dev] ?? [],
    localPods: async () =>
      o.localPods ?? [
        { namespace: 'default', name: 'client', hostVeth: 'vethclient', addresses: ['10.244.1.3'], mtu: 1450, ifname: 'eth0' },
        { namespace: 'default', name: 'web-1', hostVeth: 'vethweb1', addresses: ['10.244.1.7'], mtu: 1450, ifname: 'eth0' },
      ],
    podMtu: o.podMtu ?? (async () => undefined),
    vxlan: { vni: 1, port: 8472, device: 'podnet.1' },
    udp: { port: 8285, device: 'podnet.udp' },
    bridge: 'podnet0',
  };
  return { env, calls };
}

function defaultRoutes(dst: string): Route | undefined {
  if (dst.startsWith('10.244.1.')) return ROUTES.bridge;
  if (dst.startsWith('10.244.2.')) return ROUTES.vxlan;
  if (dst.startsWith('10.244.3.')) return ROUTES.udp;
  return ROUTES.default;
}

const vxlanState = {
  neighbours: { 'podnet.1': [neigh(5, '10.244.2.0', VTEP_MAC)] },
  fdb: { 'podnet.1': [fdb(5, VTEP_MAC, '192.168.1.12')] },
};
const bridgeState = {
  neighbours: { podnet0: [neigh(3, '10.244.1.7', WEB1_MAC, ['reachable'])] },
  fdb: { podnet0: [fdb(3, '0a:58:0a:f4:01:01', undefined), fdb(7, WEB1_MAC, undefined, { masterIndex: 3, self: false, permanent: false })] },
};

const pkt = (dst: string, dport = 8080, o: Partial<Packet> = {}): Packet => ({ family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst, dport, size: 60, ...o });
const fromPod: Ingress = { kind: 'pod', namespace: 'default', name: 'client' };
const req = (packet: Packet, ingress: Ingress = fromPod, dir: Directory = directory): NodeRequest & { directory: Directory } => ({ packet, ingress, directory: dir });
/** The directory with n1 reporting PodnetTransport=False. */
const withProblem: Directory = { ...directory, nodes: directory.nodes.map((n) => (n.name === 'n1' ? { ...n, transportProblem: { reason: 'NotOnLink', message: 'peer n2 (192.168.1.12) is not on a connected subnet' } } : n)) };

// ---------------------------------------------------------------- tests

describe('routeText', () => {
  const { env } = fakeEnv();
  it('formats routes as ip route prints them', async () => {
    expect(await routeText(env, ROUTES.vxlan)).toBe('10.244.2.0/24 via 10.244.2.0 dev podnet.1 proto 222 onlink');
    expect(await routeText(env, ROUTES.default)).toBe('default via 198.18.0.254 dev eth0');
    expect(await routeText(env, ROUTES.bridge)).toBe('10.244.1.0/24 dev podnet0 proto kernel scope link src 10.244.1.1');
    expect(await routeText(env, route({ dst: '::/0', family: 6, via: 'fe80::1', devIndex: 2, metric: 1024 }))).toBe('default via fe80::1 dev eth0 metric 1024');
    expect(await routeText(env, route({ dst: '10.96.0.10/32', type: 'blackhole' }))).toBe('blackhole 10.96.0.10');
    expect(await routeText(env, route({ dst: '192.168.1.11/32', type: 'local', devIndex: 2, protocol: 2, table: 255, src: '192.168.1.11' }))).toBe('local 192.168.1.11 dev eth0 proto kernel src 192.168.1.11 table local');
    expect(await routeText(env, route({ dst: '10.0.0.0/8', devIndex: 99, table: 100 }))).toBe('10.0.0.0/8 table 100');
  });
});

describe('traceNode: the source', () => {
  it('a pod without a sandbox on the node: Unknown, nothing else asked', async () => {
    const { env, calls } = fakeEnv({ lb: () => [] });
    const s = await traceNode(env, req(pkt('10.244.1.7'), { kind: 'pod', namespace: 'default', name: 'ghost' }));
    expect(s.node).toBe('n1');
    expect(s.proxyMode).toBe('nftables');
    expect(s.backend).toBe('vxlan');
    expect(s.outcomes).toHaveLength(1);
    const out = s.outcomes[0]!;
    expect(out.probability).toBe(1);
    expect(out.verdict).toEqual({ kind: 'Unknown', node: 'n1', reason: 'pod default/ghost has no sandbox on node n1' });
    expect(out.observations.map((x) => [x.component, x.action])).toEqual([['Source', 'Unknown']]);
    expect(calls.dnat).toHaveLength(0);
    expect(calls.route).toHaveLength(0);
  });

  it('a packet larger than the pod MTU: Dropped at the Source', async () => {
    const { env, calls } = fakeEnv({ lb: () => [] });
    const s = await traceNode(env, req(pkt('10.244.2.5', 8080, { size: 1451 })));
    const out = s.outcomes[0]!;
    expect(s.outcomes).toHaveLength(1);
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'eth0 mtu 1450 (pod default/client)', reason: 'packet of 1451 bytes exceeds the pod MTU 1450' });
    expect(out.observations.map((x) => [x.component, x.action])).toEqual([
      ['Source', 'Sent'],
      ['Source', 'Dropped'],
    ]);
    expect(out.observations[0]!.detail).toBe('sent by pod default/client (10.244.1.3) from eth0, MTU 1450');
    expect(calls.dnat).toHaveLength(0);
  });

  it('exactly the pod MTU is sent', async () => {
    const { env } = fakeEnv(vxlanState);
    const out = (await traceNode(env, req(pkt('10.244.2.5', 8080, { size: 1450 })))).outcomes[0]!;
    expect(out.next?.node).toBe('n2');
  });

  it("the pod interface's MTU as it is now wins over what podnet set", async () => {
    const asked: unknown[] = [];
    const { env } = fakeEnv({
      podMtu: async (p) => {
        asked.push(p);
        return 1300;
      },
    });
    const out = (await traceNode(env, req(pkt('10.244.2.5', 8080, { size: 1400 })))).outcomes[0]!;
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ namespace: 'default', name: 'client', ifname: 'eth0' });
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'eth0 mtu 1300 (pod default/client)', reason: 'packet of 1400 bytes exceeds the pod MTU 1300' });
    expect(out.observations[0]!.detail).toBe('sent by pod default/client (10.244.1.3) from eth0, MTU 1300 (podnet set 1450: changed inside the pod)');
  });

  it('the pod MTU cannot be read: what podnet set', async () => {
    const { env } = fakeEnv({ podMtu: async () => Promise.reject(new Error('ENOENT')) });
    const out = (await traceNode(env, req(pkt('10.244.2.5', 8080, { size: 1451 })))).outcomes[0]!;
    expect(out.verdict?.at).toBe('eth0 mtu 1450 (pod default/client)');
  });

  it('a pod source: prerouting, the route lookup from the bridge with the pod address', async () => {
    const p = pkt('10.244.1.7');
    const { env, calls } = fakeEnv({ ...bridgeState, lb: (x) => [{ probability: 1, observations: [], packet: x, masqueradeMark: false }] });
    await traceNode(env, req(p));
    expect(calls.dnat).toHaveLength(1);
    expect(calls.dnat[0]!.ctx.hook).toBe('prerouting');
    expect(calls.dnat[0]!.ctx.node).toBe('n1');
    expect(calls.dnat[0]!.ctx.isLocal('192.168.1.11')).toBe(true);
    expect(calls.dnat[0]!.ctx.isLocal('192.168.1.12')).toBe(false);
    expect(calls.route).toEqual([{ dst: '10.244.1.7', o: { iif: 'podnet0', src: '10.244.1.3' } }]);
  });

  it('a node source: output hook, a plain route lookup', async () => {
    const p = pkt('10.244.1.7', 8080, { src: '192.168.1.11' });
    const { env, calls } = fakeEnv({ ...bridgeState, lb: (x) => [{ probability: 1, observations: [], packet: x, masqueradeMark: false }] });
    const s = await traceNode(env, req(p, { kind: 'node' }));
    expect(calls.dnat[0]!.ctx.hook).toBe('output');
    expect(calls.route).toEqual([{ dst: '10.244.1.7', o: {} }]);
    expect(s.outcomes[0]!.observations[0]).toMatchObject({ node: 'n1', component: 'Source', action: 'Sent', origin: [{ kind: 'Node', name: 'n1' }] });
  });

  it('a packet from another node: Decapsulated, looked up as arriving on the vxlan device', async () => {
    const p = pkt('10.244.1.7', 8080, { src: '10.244.2.5' });
    const { env, calls } = fakeEnv(bridgeState);
    const s = await traceNode(env, req(p, { kind: 'transport', fromNode: 'n2' }));
    expect(calls.route).toEqual([{ dst: '10.244.1.7', o: { iif: 'podnet.1', src: '10.244.2.5' } }]);
    expect(s.outcomes[0]!.observations[0]).toMatchObject({ component: 'Transport', action: 'Decapsulated', detail: 'arrived from node n2 over vxlan', origin: [{ kind: 'Node', name: 'n2' }] });
    expect(s.outcomes[0]!.verdict?.kind).toBe('Delivered');
  });
});

describe('traceNode: delivery on this node', () => {
  it('to a local pod through the bridge (neighbour + FDB → port name)', async () => {
    const { env } = fakeEnv(bridgeState);
    const s = await traceNode(env, req(pkt('10.244.1.7')));
    expect(s.proxyMode).toBe('none');
    expect(s.outcomes).toHaveLength(1);
    const out = s.outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Delivered', node: 'n1', pod: 'default/web-1', address: '10.244.1.7:8080', reason: 'delivered to pod default/web-1 on node n1' });
    expect(out.observations.map((x) => [x.component, x.action])).toEqual([
      ['Source', 'Sent'],
      ['Bridge', 'Forwarded'],
      ['Routing', 'Routed'],
      ['Bridge', 'Bridged'],
      ['Delivery', 'Delivered'],
    ]);
    const routed = out.observations[2]!;
    expect(routed.rule).toBe('10.244.1.0/24 dev podnet0 proto kernel scope link src 10.244.1.1');
    const bridged = out.observations[3]!;
    expect(bridged.where).toBe('podnet0 port vethweb1');
    expect(bridged.rule).toBe(`10.244.1.7 dev podnet0 lladdr ${WEB1_MAC} REACHABLE`);
    expect(bridged.detail).toBe(`10.244.1.7 is at ${WEB1_MAC} on port vethweb1 (neighbour reachable)`);
    expect(out.observations[4]!.origin).toEqual([{ kind: 'Pod', namespace: 'default', name: 'web-1' }]);
  });

  it('a pod address not resolved yet: still delivered, the bridge resolves it by ARP', async () => {
    const { env } = fakeEnv();
    const out = (await traceNode(env, req(pkt('10.244.1.7')))).outcomes[0]!;
    expect(out.verdict?.kind).toBe('Delivered');
    const bridged = out.observations.find((x) => x.action === 'Bridged')!;
    expect(bridged.rule).toBeUndefined();
    expect(bridged.where).toBe('podnet0 port vethweb1');
    expect(bridged.detail).toBe('10.244.1.7 not resolved yet: the bridge resolves it by ARP/ND to port vethweb1');
  });

  it('no pod with that address on the bridge: Dropped', async () => {
    const { env } = fakeEnv(bridgeState);
    const out = (await traceNode(env, req(pkt('10.244.1.99')))).outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: '10.244.1.0/24 dev podnet0 proto kernel scope link src 10.244.1.1', reason: 'no pod with address 10.244.1.99 on node n1' });
    const last = out.observations.at(-1)!;
    expect([last.component, last.action]).toEqual(['Delivery', 'Dropped']);
    expect(last.detail).toBe('no pod on node n1 has address 10.244.1.99 (no neighbour entry: ARP would go unanswered)');
  });

  it('a packet larger than the destination pod MTU: Dropped at its veth', async () => {
    const { env } = fakeEnv({ ...bridgeState, localPods: [{ namespace: 'default', name: 'web-1', hostVeth: 'vethweb1', addresses: ['10.244.1.7'], mtu: 1400, ifname: 'eth0' }] });
    const out = (await traceNode(env, req(pkt('10.244.1.7', 8080, { src: '192.168.1.11', size: 1450 }), { kind: 'node' }))).outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'vethweb1 mtu 1400', reason: 'packet of 1450 bytes exceeds MTU 1400' });
  });

  it('to an address of the node itself: Delivered to the node, no route lookup', async () => {
    const { env, calls } = fakeEnv();
    const out = (await traceNode(env, req(pkt('192.168.1.11', 10250)))).outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Delivered', node: 'n1', address: '192.168.1.11:10250', reason: 'delivered to node n1 itself (192.168.1.11 is one of its addresses)' });
    expect(calls.route).toHaveLength(0);
  });
});

describe('traceNode: another node over the transport', () => {
  it('vxlan: neighbour + FDB → Encapsulated toward the node that owns the VTEP address', async () => {
    const { env } = fakeEnv(vxlanState);
    const p = pkt('10.244.2.5');
    const s = await traceNode(env, req(p));
    expect(s.outcomes).toHaveLength(1);
    const out = s.outcomes[0]!;
    expect(out.verdict).toBeUndefined();
    expect(out.next).toEqual({ node: 'n2', packet: p, ingress: { kind: 'transport', fromNode: 'n1' } });
    const enc = out.observations.at(-1)!;
    expect([enc.component, enc.action]).toEqual(['Transport', 'Encapsulated']);
    expect(enc.transport).toEqual({ backend: 'vxlan', device: 'podnet.1', vni: 1, port: 8472, outerSrc: '192.168.1.11', outerDst: '192.168.1.12', nextHop: '10.244.2.0', mac: VTEP_MAC, mtu: 1450 });
    expect(enc.rule).toBe('10.244.2.0/24 via 10.244.2.0 dev podnet.1 proto 222 onlink');
    expect(enc.origin).toEqual([{ kind: 'Node', name: 'n2' }]);
    expect(enc.detail).toBe(`VXLAN VNI 1 to node n2: outer 192.168.1.11 → 192.168.1.12:8472, inner to VTEP MAC ${VTEP_MAC}; MTU 1450`);
    const routed = out.observations.find((x) => x.component === 'Routing')!;
    expect(routed.action).toBe('Routed');
    expect(routed.detail).toBe('10.244.2.5 is in another node\'s pod subnet: via the VXLAN device podnet.1');
  });

  it('vxlan: the FDB entry without dst (a bridge-local one) does not count', async () => {
    const { env } = fakeEnv({ ...vxlanState, fdb: { 'podnet.1': [fdb(5, VTEP_MAC, undefined), fdb(5, VTEP_MAC, '192.168.1.12')] } });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next?.node).toBe('n2');
  });

  it('vxlan: no neighbour for the gateway → Dropped naming it', async () => {
    const { env } = fakeEnv({ ...vxlanState, neighbours: { 'podnet.1': [neigh(5, '10.244.3.0', '0a:58:0a:f4:03:00')] } });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'neighbour 10.244.2.0 dev podnet.1', reason: 'no VTEP MAC for 10.244.2.0 on node n1' });
    expect(out.observations.at(-1)).toMatchObject({ component: 'Transport', action: 'Dropped' });
  });

  it('vxlan: a neighbour without a MAC (incomplete) → Dropped', async () => {
    const { env } = fakeEnv({ ...vxlanState, neighbours: { 'podnet.1': [neigh(5, '10.244.2.0', undefined, ['incomplete'])] } });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.verdict?.at).toBe('neighbour 10.244.2.0 dev podnet.1');
  });

  it('vxlan: no FDB entry for the VTEP MAC → Dropped', async () => {
    const { env } = fakeEnv({ ...vxlanState, fdb: { 'podnet.1': [fdb(5, '0a:58:0a:f4:03:00', '192.168.1.13')] } });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: `fdb ${VTEP_MAC} dev podnet.1`, reason: `no FDB entry for ${VTEP_MAC} on node n1` });
  });

  it('vxlan: larger than the device MTU → Dropped at the Transport', async () => {
    const { env } = fakeEnv(vxlanState);
    const out = (await traceNode(env, req(pkt('10.244.2.5', 8080, { src: '192.168.1.11', size: 1451 }), { kind: 'node' }))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'podnet.1 mtu 1450', reason: 'packet of 1451 bytes is too large for the vxlan transport (MTU 1450)' });
    const last = out.observations.at(-1)!;
    expect([last.component, last.action]).toEqual(['Transport', 'Dropped']);
    expect(last.transport?.mtu).toBe(1450);
  });

  it('vxlan: exactly the MTU fits', async () => {
    const { env } = fakeEnv(vxlanState);
    const out = (await traceNode(env, req(pkt('10.244.2.5', 8080, { src: '192.168.1.11', size: 1450 }), { kind: 'node' }))).outcomes[0]!;
    expect(out.next?.node).toBe('n2');
  });

  it('vxlan: an FDB VTEP address that is no node → Unknown', async () => {
    const { env } = fakeEnv({ ...vxlanState, fdb: { 'podnet.1': [fdb(5, VTEP_MAC, '192.168.9.9')] } });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Unknown', node: 'n1', at: '10.244.2.0/24 via 10.244.2.0 dev podnet.1 proto 222 onlink', reason: 'next hop 192.168.9.9 is not a known node' });
  });

  it('udp: the next node by pod subnet', async () => {
    const { env } = fakeEnv({ backend: 'udp' });
    const p = pkt('10.244.3.9');
    const out = (await traceNode(env, req(p))).outcomes[0]!;
    expect(out.verdict).toBeUndefined();
    expect(out.next).toEqual({ node: 'n3', packet: p, ingress: { kind: 'transport', fromNode: 'n1' } });
    const enc = out.observations.at(-1)!;
    expect(enc.action).toBe('Encapsulated');
    expect(enc.transport).toEqual({ backend: 'udp', device: 'podnet.udp', port: 8285, outerDst: '192.168.1.13', outerSrc: '192.168.1.11', mtu: 1472 });
    expect(enc.detail).toBe('UDP tunnel to node n3: outer 192.168.1.11 → 192.168.1.13:8285; MTU 1472');
  });

  // A route into the UDP tunnel for an address in no node's pod subnet has no peer: say so, not "undefined".
  it('udp: a destination in no pod subnet names the destination, not "undefined"', async () => {
    const { env } = fakeEnv({ backend: 'udp', routes: () => route({ dst: '10.99.0.0/16', devIndex: 6, protocol: 222 }) });
    const out = (await traceNode(env, req(pkt('10.99.0.5')))).outcomes[0]!;
    expect(out.verdict?.kind).toBe('Unknown');
    expect(out.verdict?.reason).not.toContain('undefined');
    expect(out.observations.at(-1)!.detail).not.toContain('undefined');
  });

  it('host-gw: a route via a node address on eth0 → that node', async () => {
    const { env } = fakeEnv({ backend: 'host-gw', routes: (d) => (d.startsWith('10.244.2.') ? ROUTES.hostgw : ROUTES.default) });
    const p = pkt('10.244.2.5');
    const out = (await traceNode(env, req(p))).outcomes[0]!;
    expect(out.next).toEqual({ node: 'n2', packet: p, ingress: { kind: 'transport', fromNode: 'n1' } });
    const enc = out.observations.at(-1)!;
    expect(enc.transport).toEqual({ backend: 'host-gw', device: 'eth0', nextHop: '192.168.1.12', mtu: 1500 });
    expect(enc.rule).toBe('10.244.2.0/24 via 192.168.1.12 dev eth0 proto 222');
    expect(enc.detail).toBe('routed to node n2 via next hop 192.168.1.12 on eth0; MTU 1500');
    expect(out.observations.find((x) => x.component === 'Routing')!.detail).toBe("10.244.2.5 is in node n2's pod subnet: straight to it on the underlay (host-gw)");
  });

  it('the masquerade mark: postrouting SNATs to the outgoing address before the transport', async () => {
    const { env, calls } = fakeEnv({
      ...vxlanState,
      lb: (x) => [{ probability: 1, observations: [], packet: { ...x, dst: '10.244.2.5', dport: 8080 }, masqueradeMark: true, endpoint: { ip: '10.244.2.5', port: 8080 } }],
    });
    const out = (await traceNode(env, req(pkt('10.96.0.10', 80)))).outcomes[0]!;
    expect(calls.snat).toHaveLength(1);
    expect(calls.snat[0]!.mark).toBe(true);
    expect(calls.snat[0]!.ctx).toEqual({ node: 'n1', outAddress: '192.168.1.11', original: pkt('10.96.0.10', 80) });
    expect(out.next?.packet).toEqual(pkt('10.244.2.5', 8080, { src: '192.168.1.11' }));
    expect(out.endpoint).toEqual({ ip: '10.244.2.5', port: 8080, pod: 'default/web-2', node: 'n2' });
  });
});

describe('traceNode: routing failures and leaving the cluster', () => {
  it("no route at all to another node's pod subnet: Dropped at Routing, naming the subnet", async () => {
    const { env } = fakeEnv({ routes: () => undefined });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'no route to 10.244.2.5', reason: "no route to node n2's pod subnet 10.244.2.0/24 on node n1" });
    const last = out.observations.at(-1)!;
    expect([last.component, last.action, last.rule, last.where]).toEqual(['Routing', 'Dropped', 'no route to 10.244.2.5', 'main']);
    expect(last.detail).toBe("node n1 has no route to 10.244.2.5 (network unreachable): the route to node n2's pod subnet 10.244.2.0/24 is missing");
  });

  it('no route to an outside address: no usable route', async () => {
    const { env } = fakeEnv({ routes: () => undefined });
    const out = (await traceNode(env, req(pkt('1.1.1.1', 443)))).outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'no route to 1.1.1.1', reason: 'no usable route to 1.1.1.1 on node n1' });
    expect(out.observations.at(-1)!.detail).toBe('node n1 has no route to 1.1.1.1 (network unreachable)');
  });

  it("no route, and the node's PodnetTransport condition is False: the reason says so", async () => {
    const { env } = fakeEnv({ routes: () => undefined });
    const out = (await traceNode(env, req(pkt('10.244.2.5'), fromPod, withProblem))).outcomes[0]!;
    expect(out.verdict?.reason).toBe("no route to node n2's pod subnet 10.244.2.0/24 on node n1; node n1 reports PodnetTransport=False NotOnLink: peer n2 (192.168.1.12) is not on a connected subnet");
  });

  it('an unreachable route: Dropped naming it', async () => {
    const { env } = fakeEnv({ routes: () => route({ dst: '1.1.1.0/24', type: 'unreachable' }) });
    const out = (await traceNode(env, req(pkt('1.1.1.1', 443)))).outcomes[0]!;
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'unreachable 1.1.1.0/24', reason: 'no usable route to 1.1.1.1 on node n1' });
    expect(out.observations.at(-1)!.detail).toBe('the route to 1.1.1.1 is unreachable');
  });

  it("a pod subnet whose matching route is the default route: Dropped, no route to that node's subnet", async () => {
    const { env } = fakeEnv({ routes: () => ROUTES.default });
    const out = (await traceNode(env, req(pkt('10.244.2.5')))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'Dropped', node: 'n1', at: 'default via 198.18.0.254 dev eth0', reason: "no route to node n2's pod subnet 10.244.2.0/24 on node n1" });
    expect(out.observations.at(-1)).toMatchObject({ component: 'Routing', action: 'Dropped', rule: 'default via 198.18.0.254 dev eth0' });
    expect(out.observations.at(-1)!.detail).toBe("10.244.2.5 belongs to node n2's pod subnet but the route that matches does not lead there (default via 198.18.0.254 dev eth0): the route to that subnet is missing");
    const withWhy = (await traceNode(env, req(pkt('10.244.2.5'), fromPod, withProblem))).outcomes[0]!;
    expect(withWhy.verdict?.reason).toBe("no route to node n2's pod subnet 10.244.2.0/24 on node n1; node n1 reports PodnetTransport=False NotOnLink: peer n2 (192.168.1.12) is not on a connected subnet");
  });

  // Regression: the subnet owner may be this node itself (fixed in 333cf02; it said "node ?").
  it("this node's own pod subnet routed to the default route: the reason names this node", async () => {
    const { env } = fakeEnv({ routes: () => ROUTES.default });
    const out = (await traceNode(env, req(pkt('10.244.1.7')))).outcomes[0]!;
    expect(out.verdict?.kind).toBe('Dropped');
    expect(out.verdict?.reason).toBe("no route to node n1's pod subnet 10.244.1.0/24 on node n1");
  });

  it('an outside destination: ForwardedOutOfCluster', async () => {
    const { env } = fakeEnv();
    const out = (await traceNode(env, req(pkt('1.1.1.1', 443)))).outcomes[0]!;
    expect(out.next).toBeUndefined();
    expect(out.verdict).toEqual({ kind: 'ForwardedOutOfCluster', node: 'n1', at: 'default via 198.18.0.254 dev eth0', reason: 'leaves node n1 via 198.18.0.254 on eth0 toward 1.1.1.1' });
    expect(out.observations.at(-1)).toMatchObject({ component: 'Routing', action: 'Routed', detail: '1.1.1.1 is outside the cluster: default via 198.18.0.254 dev eth0' });
  });

  it('the FIB entry is shown, not the route get result', async () => {
    const { env } = fakeEnv({ routes: () => route({ dst: '1.1.1.1/32', via: '198.18.0.254', devIndex: 2 }), entry: ROUTES.default });
    const out = (await traceNode(env, req(pkt('1.1.1.1', 443)))).outcomes[0]!;
    expect(out.verdict?.at).toBe('default via 198.18.0.254 dev eth0');
  });
});

describe('traceNode: load balancing', () => {
  it('an LB verdict passes through (Rejected), with the endpoint; nothing routed', async () => {
    const rejected = { kind: 'Rejected' as const, node: 'n1', at: 'ip daddr 10.96.0.20 tcp dport 80 reject', reason: 'Service default/empty has no endpoints' };
    const obs = { node: 'n1', component: 'Netfilter/LB' as const, action: 'Rejected', detail: 'no endpoints', packet: pkt('10.96.0.20', 80) };
    const { env, calls } = fakeEnv({ lb: (x) => [{ probability: 1, observations: [obs], packet: x, masqueradeMark: false, verdict: rejected }] });
    const s = await traceNode(env, req(pkt('10.96.0.20', 80)));
    expect(s.outcomes).toHaveLength(1);
    const out = s.outcomes[0]!;
    expect(out.verdict).toEqual(rejected);
    expect(out.next).toBeUndefined();
    expect(out.observations.at(-1)).toEqual(obs);
    expect(calls.route).toHaveLength(0);
  });

  it('a random choice: one outcome per endpoint with its probability, endpoints resolved to pods', async () => {
    const dnat = (x: Packet, ip: string): LbOutcome => ({ probability: 0.5, observations: [], packet: { ...x, dst: ip, dport: 8080 }, masqueradeMark: false, endpoint: { ip, port: 8080 } });
    const { env } = fakeEnv({ ...vxlanState, ...bridgeState, neighbours: { ...vxlanState.neighbours, ...bridgeState.neighbours }, fdb: { ...vxlanState.fdb, ...bridgeState.fdb }, lb: (x) => [dnat(x, '10.244.1.7'), dnat(x, '10.244.2.5')] });
    const s = await traceNode(env, req(pkt('10.96.0.10', 80)));
    expect(s.outcomes).toHaveLength(2);
    const [a, b] = s.outcomes as [(typeof s.outcomes)[0], (typeof s.outcomes)[0]];
    expect(a.probability).toBe(0.5);
    expect(a.endpoint).toEqual({ ip: '10.244.1.7', port: 8080, pod: 'default/web-1', node: 'n1' });
    expect(a.verdict).toEqual({ kind: 'Delivered', node: 'n1', pod: 'default/web-1', address: '10.244.1.7:8080', reason: 'delivered to pod default/web-1 on node n1' });
    expect(b.probability).toBe(0.5);
    expect(b.endpoint).toEqual({ ip: '10.244.2.5', port: 8080, pod: 'default/web-2', node: 'n2' });
    expect(b.verdict).toBeUndefined();
    expect(b.next?.node).toBe('n2');
    // Each outcome keeps its own observations: the source's, then its own path.
    expect(a.observations.some((x) => x.action === 'Encapsulated')).toBe(false);
    expect(b.observations.some((x) => x.action === 'Bridged')).toBe(false);
    expect(a.observations[0]).toBe(b.observations[0]);
  });

  it('an endpoint in a pod subnet but not a known pod resolves to the subnet owner', async () => {
    const { env } = fakeEnv({ ...vxlanState, lb: (x) => [{ probability: 1, observations: [], packet: { ...x, dst: '10.244.2.77' }, masqueradeMark: false, endpoint: { ip: '10.244.2.77', port: 8080 } }] });
    const out = (await traceNode(env, req(pkt('10.96.0.10', 80)))).outcomes[0]!;
    expect(out.endpoint).toEqual({ ip: '10.244.2.77', port: 8080, node: 'n2' });
  });
});
