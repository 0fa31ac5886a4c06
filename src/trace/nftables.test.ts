/**
 * The trace interpreter as the nftables planner's test oracle: every shape of
 * testdata/fixtures.ts (shapes4 / shapes6), planned by planTable, then a packet
 * `{from, to, hook}` → `{verdict, endpoints with probabilities, masquerade}`.
 */
import { describe, expect, it } from 'vitest';
import { planTable } from '../proxy/nftables/plan.js';
import { numgenSplit } from '../proxy/nftables/plan.js';
import { node4, snapshot4, snapshot6 } from '../proxy/nftables/testdata/fixtures.js';
import { bigCluster } from '../proxy/nftables/testdata/fixtures.js';
import { buildSnapshot } from '../proxy/snapshot.js';
import { createNftablesInterpreter, originOf, tableView } from './nftables.js';
import type { NftView } from './nftables.js';
import type { Packet, Proto } from './types.js';

const NODE_IP = '198.18.0.1';
const GW = '10.244.1.1';
const local4 = new Set([NODE_IP, GW, '127.0.0.1']);
const local6 = new Set(['fd00:198:18::1', '::1']);

interface Result {
  verdict: string;
  endpoints: Record<string, number>;
  masq: boolean | 'mixed';
  text: string[];
}

async function trace(view: NftView, o: { from: string; to: string; port: number; proto?: Proto; hook?: 'prerouting' | 'output'; family?: 4 | 6 }): Promise<Result> {
  const family = o.family ?? 4;
  const interp = createNftablesInterpreter(view);
  const pkt: Packet = { family, proto: o.proto ?? 'tcp', src: o.from, sport: 40000, dst: o.to, dport: o.port, size: 60 };
  const isLocal = (ip: string) => (family === 4 ? local4 : local6).has(ip);
  const outs = await interp.dnat(pkt, { node: 'n1', hook: o.hook ?? 'prerouting', isLocal });
  const total = outs.reduce((a, b) => a + b.probability, 0);
  expect(total).toBeCloseTo(1, 9);
  const endpoints: Record<string, number> = {};
  const masqs = new Set<boolean>();
  const verdicts = new Set<string>();
  const text: string[] = [];
  for (const out of outs) {
    verdicts.add(out.verdict?.kind ?? 'pass');
    for (const ob of out.observations) text.push(`${ob.action}: ${ob.rule ?? ''}`);
    if (out.verdict) continue;
    const key = out.endpoint ? `${out.endpoint.ip}:${out.endpoint.port}` : 'none';
    endpoints[key] = (endpoints[key] ?? 0) + out.probability;
    const s = await interp.snat(out.packet, out.masqueradeMark, { node: 'n1', outAddress: family === 4 ? NODE_IP : 'fd00:198:18::1', original: pkt });
    masqs.add(s.masqueraded);
  }
  return { verdict: [...verdicts].sort().join('|'), endpoints, masq: masqs.size > 1 ? 'mixed' : [...masqs][0] ?? false, text };
}

const view4 = () => tableView(planTable(snapshot4()).table, { egressClusterCIDR: '10.244.0.0/16' });
const view6 = () => tableView(planTable(snapshot6()).table, { egressClusterCIDR: 'fd00:10:244::/56' });
const POD = '10.244.1.3';
const REMOTE_POD = '10.244.2.3';
const OUTSIDE = '198.18.0.200';

describe('nftables interpreter: the planner, table-tested', () => {
  const cases: { name: string; from: string; to: string; port: number; proto?: Proto; hook?: 'prerouting' | 'output'; verdict: string; endpoints?: Record<string, number>; masq?: boolean }[] = [
    { name: 'ClusterIP from a pod: both endpoints, half each, no masquerade', from: POD, to: '10.96.0.10', port: 80, verdict: 'pass', endpoints: { '10.244.1.5:8080': 0.5, '10.244.2.5:8080': 0.5 }, masq: false },
    { name: 'ClusterIP from outside the cluster CIDR: masqueraded', from: OUTSIDE, to: '10.96.0.10', port: 80, verdict: 'pass', endpoints: { '10.244.1.5:8080': 0.5, '10.244.2.5:8080': 0.5 }, masq: true },
    { name: 'ClusterIP from the node itself (output hook): masqueraded (node address is outside the cluster CIDR)', from: NODE_IP, to: '10.96.0.10', port: 80, hook: 'output', verdict: 'pass', endpoints: { '10.244.1.5:8080': 0.5, '10.244.2.5:8080': 0.5 }, masq: true },
    { name: 'wrong port of a ClusterIP: no Service matches, no DNAT (the egress masquerade applies: the VIP is outside the cluster CIDR)', from: POD, to: '10.96.0.10', port: 81, verdict: 'pass', endpoints: { none: 1 }, masq: true },
    { name: 'UDP port of a ClusterIP with UDP and TCP ports', from: POD, to: '10.96.0.53', port: 53, proto: 'udp', verdict: 'pass', endpoints: { '10.244.1.2:53': 1 }, masq: false },
    { name: 'the TCP port of the same Service', from: POD, to: '10.96.0.53', port: 53, proto: 'tcp', verdict: 'pass', endpoints: { '10.244.1.2:53': 1 }, masq: false },
    { name: 'named targetPorts: port 443 → 8443', from: POD, to: '10.96.0.11', port: 443, verdict: 'pass', endpoints: { '10.244.1.6:8443': 1 }, masq: false },
    { name: 'SCTP', from: POD, to: '10.96.0.21', port: 9999, proto: 'sctp', verdict: 'pass', endpoints: { '10.244.2.15:9999': 1 }, masq: false },
    { name: 'no endpoints, TCP: rejected before DNAT', from: POD, to: '10.96.0.12', port: 80, verdict: 'Rejected' },
    { name: 'no endpoints, UDP port of a TCP-only Service is not a Service port: untouched', from: POD, to: '10.96.0.12', port: 80, proto: 'udp', verdict: 'pass', endpoints: { none: 1 } },
    { name: 'terminating endpoint is the last resort', from: POD, to: '10.96.0.13', port: 80, verdict: 'pass', endpoints: { '10.244.2.7:8080': 1 }, masq: false },
    { name: 'NodePort on the node address from outside: 3 endpoints, masqueraded', from: OUTSIDE, to: NODE_IP, port: 30080, verdict: 'pass', endpoints: { '10.244.1.8:8080': 21845 / 65536, '10.244.2.8:8080': 21845 / 65536, '10.244.3.8:8080': 21846 / 65536 }, masq: true },
    { name: 'NodePort on an address that is not a node IP: untouched', from: OUTSIDE, to: '198.18.0.2', port: 30080, verdict: 'pass', endpoints: { none: 1 }, masq: false },
    { name: 'externalIP: masqueraded (eTP Cluster)', from: OUTSIDE, to: '203.0.113.10', port: 80, verdict: 'pass', endpoints: { '10.244.2.9:8080': 1 }, masq: true },
    { name: 'LoadBalancer IP', from: OUTSIDE, to: '203.0.113.20', port: 80, verdict: 'pass', endpoints: { '10.244.2.9:8080': 1 }, masq: true },
    { name: 'eTP Local from outside: only the local endpoint, source kept', from: OUTSIDE, to: NODE_IP, port: 30082, verdict: 'pass', endpoints: { '10.244.1.10:8080': 1 }, masq: false },
    { name: 'eTP Local from a pod: short-circuit to every endpoint', from: POD, to: '203.0.113.11', port: 80, verdict: 'pass', endpoints: { '10.244.1.10:8080': 0.5, '10.244.2.10:8080': 0.5 }, masq: false },
    { name: 'eTP Local from the node itself: every endpoint, masqueraded', from: NODE_IP, to: '203.0.113.11', port: 80, hook: 'output', verdict: 'pass', endpoints: { '10.244.1.10:8080': 0.5, '10.244.2.10:8080': 0.5 }, masq: true },
    { name: 'eTP Local without a local endpoint, from outside: dropped', from: OUTSIDE, to: NODE_IP, port: 30083, verdict: 'Dropped' },
    { name: 'eTP Local ClusterIP is not affected: the remote endpoint', from: POD, to: '10.96.0.17', port: 80, verdict: 'pass', endpoints: { '10.244.2.11:8080': 1 }, masq: false },
    { name: 'iTP Local: only the local endpoint', from: POD, to: '10.96.0.18', port: 80, verdict: 'pass', endpoints: { '10.244.1.12:8080': 1 }, masq: false },
    { name: 'iTP Local without a local endpoint: dropped', from: POD, to: '10.96.0.19', port: 80, verdict: 'Dropped' },
    { name: 'ClientIP affinity, first packet: each endpoint half', from: POD, to: '10.96.0.20', port: 80, verdict: 'pass', endpoints: { '10.244.1.14:8080': 0.5, '10.244.2.14:8080': 0.5 }, masq: false },
    { name: 'NodePort of a Service without endpoints: rejected', from: OUTSIDE, to: NODE_IP, port: 30084, verdict: 'Rejected' },
    { name: 'externalIP of a Service without endpoints: rejected', from: OUTSIDE, to: '203.0.113.12', port: 80, verdict: 'Rejected' },
    { name: 'hairpin: a pod reaching itself through its Service is masqueraded (on that branch only)', from: '10.244.1.5', to: '10.96.0.10', port: 80, verdict: 'pass', endpoints: { '10.244.1.5:8080': 0.5, '10.244.2.5:8080': 0.5 } },
    { name: 'not a Service at all, pod to pod: untouched', from: POD, to: REMOTE_POD, port: 8080, verdict: 'pass', endpoints: { none: 1 }, masq: false },
    { name: 'pod to the outside world: egress masquerade', from: POD, to: '192.0.2.1', port: 443, verdict: 'pass', endpoints: { none: 1 }, masq: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const r = await trace(view4(), c);
      expect(r.verdict, r.text.join('\n')).toBe(c.verdict);
      if (c.endpoints) {
        expect(Object.keys(r.endpoints).sort()).toEqual(Object.keys(c.endpoints).sort());
        for (const [k, p] of Object.entries(c.endpoints)) expect(r.endpoints[k]).toBeCloseTo(p, 9);
      }
      if (c.masq !== undefined) expect(r.masq).toBe(c.masq);
    });
  }

  it('hairpin: the branch that picks the client itself is masqueraded, the other is not', async () => {
    const interp = createNftablesInterpreter(view4());
    const pkt: Packet = { family: 4, proto: 'tcp', src: '10.244.1.5', sport: 40000, dst: '10.96.0.10', dport: 80, size: 60 };
    const outs = await interp.dnat(pkt, { node: 'n1', hook: 'prerouting', isLocal: (ip) => local4.has(ip) });
    const by: Record<string, boolean> = {};
    for (const o of outs) by[o.endpoint!.ip] = (await interp.snat(o.packet, o.masqueradeMark, { node: 'n1', outAddress: GW, original: pkt })).masqueraded;
    expect(by).toEqual({ '10.244.1.5': true, '10.244.2.5': false });
  });

  it('the reject names the rule and the set; the drop names the no-local-endpoints rule', async () => {
    const interp = createNftablesInterpreter(view4());
    const rej = await interp.dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: '10.96.0.12', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(rej).toHaveLength(1);
    expect(rej[0]!.verdict!.at).toContain('ct state new ip daddr . meta l4proto . th dport @no-endpoint-services goto reject-chain');
    const udp = await interp.dnat({ family: 4, proto: 'udp', src: POD, sport: 1, dst: '10.96.0.53', dport: 53, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(udp[0]!.verdict).toBeUndefined();
    const drop = await interp.dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: '10.96.0.19', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(drop[0]!.verdict).toMatchObject({ kind: 'Dropped', reason: 'no local endpoints' });
    expect(drop[0]!.service).toEqual([{ kind: 'Service', namespace: 'default', name: 'itp-none' }]);
  });

  it('DNAT observations carry the Service, the map element and the packet after NAT', async () => {
    const interp = createNftablesInterpreter(view4());
    const outs = await interp.dnat({ family: 4, proto: 'tcp', src: POD, sport: 40000, dst: '10.96.0.10', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    const dnat = outs.map((o) => o.observations.find((x) => x.action === 'DNAT')!);
    expect(dnat.map((d) => d.packet.dst).sort()).toEqual(['10.244.1.5', '10.244.2.5']);
    expect(dnat[0]!.origin).toEqual([{ kind: 'Service', namespace: 'default', name: 'web' }]);
    expect(dnat[0]!.rule).toMatch(/^meta l4proto tcp dnat ip to numgen random mod 65536( offset \d+)? map @endpoints-tcp-\d+$/);
    const offset = Number(/offset (\d+)/.exec(dnat[0]!.rule ?? '')?.[1] ?? 0);
    expect(dnat[0]!.where).toMatch(new RegExp(`element (${offset}-${offset + 32767} : 10\\.244\\.1\\.5 \\. 8080|${offset + 32768}-${offset + 65535} : 10\\.244\\.2\\.5 \\. 8080) of map endpoints-tcp-\\d+`));
    expect(dnat.map((d) => d.detail).join('\n')).toMatch(/probability 50\.0%\) of Service default\/web port http\/tcp/);
    const matched = outs[0]!.observations.find((x) => x.action === 'Matched')!;
    expect(matched.detail).toContain('10.96.0.10 . tcp . 80 is in @service-ips: Service default/web port http/tcp');
  });

  it('IPv6: ClusterIP, NodePort with affinity, no endpoints', async () => {
    const c = await trace(view6(), { family: 6, from: 'fd00:10:244:1::3', to: 'fd00:10:96::a', port: 80 });
    expect(Object.keys(c.endpoints).sort()).toEqual(['fd00:10:244:1::5:8080', 'fd00:10:244:2::5:8080']);
    const np = await trace(view6(), { family: 6, from: '2001:db8::99', to: 'fd00:198:18::1', port: 30080 });
    expect(np.endpoints).toEqual({ 'fd00:10:244:2::8:8080': 1 });
    expect(np.masq).toBe(true);
    const empty = await trace(view6(), { family: 6, from: 'fd00:10:244:1::3', to: 'fd00:10:96::c', port: 53, proto: 'udp' });
    expect(empty.verdict).toBe('Rejected');
  });

  it('a rule the view does not recognise stops the path as Unknown and shows it', async () => {
    const base = view4();
    const view: NftView = {
      ...base,
      family: 'ip',
      async chain(name) {
        const rules = await base.chain(name);
        return name === 'services' && rules ? [{ foreign: 'ip daddr 10.96.0.10 drop' }, ...rules] : rules;
      },
    };
    const outs = await createNftablesInterpreter(view).dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: '10.96.0.10', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(outs).toHaveLength(1);
    expect(outs[0]!.verdict).toMatchObject({ kind: 'Unknown', at: 'ip daddr 10.96.0.10 drop' });
    expect(outs[0]!.observations.at(-1)!.foreign).toBe(true);
  });

  it('a missing chain is Unknown, not a pass', async () => {
    const base = view4();
    const view: NftView = { ...base, family: 'ip', chain: async (name) => (name === 'services' ? undefined : base.chain(name)) };
    const outs = await createNftablesInterpreter(view).dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: '10.96.0.10', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(outs[0]!.verdict!.kind).toBe('Unknown');
  });

  it('load spread over n endpoints follows numgenSplit exactly', async () => {
    const { services, slices } = bigCluster(1, 7);
    const snap = buildSnapshot(services, slices, node4);
    const sp = [...snap.services.values()][0]!;
    const outs = await createNftablesInterpreter(tableView(planTable(snap).table)).dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: sp.clusterIP, dport: sp.port, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    const want = numgenSplit(7).map(([a, b]) => (b - a + 1) / 65536);
    expect(outs.map((o) => o.probability).sort()).toEqual(want.sort());
  });

  it('originOf reads the Service from podnet object names', () => {
    expect(originOf('service-ABCDEFGH-ns1/web/tcp/http')).toEqual([{ kind: 'Service', namespace: 'ns1', name: 'web' }]);
    expect(originOf('endpoints-ABCDEFGH-ns1/web/udp/p53')).toEqual([{ kind: 'Service', namespace: 'ns1', name: 'web' }]);
    expect(originOf('services')).toBeUndefined();
  });
});

