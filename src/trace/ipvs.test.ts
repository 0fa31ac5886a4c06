/**
 * The IPVS interpreter as the test oracle of the IPVS planner: Services and EndpointSlices go
 * through buildSnapshot and the planner (planSnapshots, planRules) into an in-memory view
 * (planIpvsView), and packets go through the interpreter: `{from, to, hook} -> {verdict,
 * endpoints with probabilities, masquerade}` per feature. The same packets through the rules
 * as iptables-legacy-save prints them (testdata/ipvs-iptables-save-*.txt, captured from a
 * scratch network namespace) must give the same answers.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { svc, slice } from '../proxy/ipvs/testdata/fixtures.js';
import type { EndpointSlice, Service, ServiceSpec } from '../client/types.js';
import { buildSnapshot } from '../proxy/snapshot.js';
import type { ProxyNodeConfig } from '../proxy/types.js';
import { createIpvsInterpreter, ipvsadmText, parseIpvsConnections, planIpvsView } from './ipvs.js';
import { cannotMatch } from './ipvs.js';
import type { IpvsView, IpvsViewService } from './ipvs.js';
import type { LbContext, LbInterpreter, LbOutcome } from './lb.js';
import type { Packet, VerdictKind } from './types.js';

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1', '198.19.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };


const http = [{ name: 'http', port: 8080 }];
/** 10.244.1.5 is on this node (n1), 10.244.2.5 on n2. */
const two = [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }];
const three = [...two, { ip: '10.244.3.5', node: 'n3' }];
const remoteOnly = [{ ip: '10.244.2.5', node: 'n2' }, { ip: '10.244.3.5', node: 'n3' }];

const web = (spec: Partial<ServiceSpec> = {}, lbIPs: string[] = []) => svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }], ...spec } as ServiceSpec, lbIPs);

/** A pod on this node (not an endpoint), a pod on n2, a client outside the cluster. */
const POD = '10.244.1.9';
const EXTERNAL = '203.0.113.50';
const NODE = '198.18.0.1';
const OUT = '198.18.0.1';

interface Env {
  lb: LbInterpreter;
  view: IpvsView;
  local: Set<string>;
  node: ProxyNodeConfig;
}

function env(services: Service[], slices: EndpointSlice[], node = node4, o: { iptables?: string; tweak?: (v: IpvsView) => IpvsView } = {}): Env {
  const plan = planIpvsView(buildSnapshot(services, slices, node), o.iptables ? { iptables: o.iptables } : {});
  const view = o.tweak ? o.tweak(plan) : plan;
  return {
    lb: createIpvsInterpreter(view, { family: node.family, clusterCIDR: node.clusterCIDR, nodeIPs: node.nodeIPs }),
    view,
    local: new Set(plan.localAddresses),
    node,
  };
}

const hostPort = (ip: string, port: number) => `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;

function packet(family: 4 | 6, from: string, to: string, sport = 40000): Packet {
  const m = /^(?:\[(.+)\]|([^:]+)):(\d+)\/(tcp|udp|sctp|icmp)$/.exec(to);
  if (!m) throw new Error(`bad destination ${to}`);
  const proto = m[4] as Packet['proto'];
  return { family, proto, src: from, sport: proto === 'icmp' ? 7 : sport, dst: (m[1] ?? m[2])!, dport: Number(m[3]), size: 60 };
}

type Sum = { to: string; p: number; masq: boolean } | { verdict: VerdictKind; at: string; p: number };

async function outcomes(e: Env, from: string, to: string, hook: LbContext['hook'] = 'prerouting'): Promise<{ pkt: Packet; outs: LbOutcome[] }> {
  const pkt = packet(e.node.family, from, to);
  const outs = await e.lb.dnat(pkt, { node: 'n1', hook, isLocal: (ip) => e.local.has(ip) });
  expect(outs.reduce((s, x) => s + x.probability, 0)).toBeCloseTo(1, 12);
  return { pkt, outs };
}

/** Each outcome: the verdict and the rule, or where the packet goes, with what chance, and whether postrouting masquerades it. */
async function run(e: Env, from: string, to: string, hook: LbContext['hook'] = 'prerouting'): Promise<Sum[]> {
  const { pkt, outs } = await outcomes(e, from, to, hook);
  return Promise.all(
    outs.map(async (x): Promise<Sum> => {
      if (x.verdict) return { verdict: x.verdict.kind, at: x.verdict.at ?? '', p: x.probability };
      const s = await e.lb.snat(x.packet, x.masqueradeMark, { node: 'n1', outAddress: OUT, original: pkt });
      expect(s.packet.src).toBe(s.masqueraded ? OUT : x.packet.src);
      return { to: hostPort(x.packet.dst, x.packet.dport), p: x.probability, masq: s.masqueraded };
    }),
  );
}

const R4 = {
  drop: '-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-DROP-4 dst,dst -j DROP',
  reset: '-A PODNET-IPVS-FILTER -p tcp -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-4 dst,dst -j REJECT --reject-with tcp-reset',
  reject: '-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-4 dst,dst -j REJECT',
  vips: '-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-VIPS-4 dst -j REJECT',
};

const to = (ep: string, p: number, masq = false): Sum => ({ to: ep, p, masq });
const verdict = (v: VerdictKind, at: string): Sum => ({ verdict: v, at, p: 1 });

interface Case {
  name: string;
  services: Service[];
  slices: EndpointSlice[];
  node?: ProxyNodeConfig;
  from: string;
  to: string;
  hook?: LbContext['hook'];
  want: Sum[];
}

describe('IPVS mode: the planner through the interpreter', () => {
  const cases: Case[] = [
    // ClusterIP
    { name: 'ClusterIP TCP from a pod: both real servers, 1/2 each, not masqueraded', services: [web()], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)] },
    {
      name: 'ClusterIP UDP (and TCP on the same port number: separate virtual servers)',
      services: [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] })],
      slices: [slice('dns', [{ ip: '10.244.2.53', node: 'n2' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5354, protocol: 'TCP' }])],
      from: POD,
      to: '10.96.0.53:53/udp',
      want: [to('10.244.2.53:5353', 1)],
    },
    {
      name: 'ClusterIP TCP on the port a UDP Service port shares',
      services: [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] })],
      slices: [slice('dns', [{ ip: '10.244.2.53', node: 'n2' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5354, protocol: 'TCP' }])],
      from: POD,
      to: '10.96.0.53:53/tcp',
      want: [to('10.244.2.53:5354', 1)],
    },
    {
      name: 'two ports: the second one goes to its own target port',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'metrics', port: 9090 }] })],
      slices: [slice('web', two, [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9100 }])],
      from: POD,
      to: '10.96.0.10:9090/tcp',
      want: [to('10.244.1.5:9100', 1 / 2), to('10.244.2.5:9100', 1 / 2)],
    },
    { name: 'load spread: three equal real servers, 1/3 each', services: [web()], slices: [slice('web', three, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 3), to('10.244.2.5:8080', 1 / 3), to('10.244.3.5:8080', 1 / 3)] },
    { name: 'ClusterIP from outside the cluster CIDR: masqueraded', services: [web()], slices: [slice('web', two, http)], from: EXTERNAL, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'ClusterIP from a host process (output hook, node address): masqueraded', services: [web()], slices: [slice('web', two, http)], from: NODE, to: '10.96.0.10:80/tcp', hook: 'output', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    {
      name: 'no cluster CIDR: nothing masqueraded for being off-cluster',
      services: [web()],
      slices: [slice('web', two, http)],
      node: { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'] },
      from: EXTERNAL,
      to: '10.96.0.10:80/tcp',
      want: [to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)],
    },
    { name: 'hairpin: a pod reaching itself through the VIP is masqueraded (LOOPBACK set), the other outcome is not', services: [web()], slices: [slice('web', two, http)], from: '10.244.1.5', to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2)] },

    // NodePort, externalIPs, LB IPs
    { name: 'NodePort on the first node IP from outside: eTP Cluster masquerades', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'NodePort on the second node IP', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.19.0.1:30080/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'NodePort from a pod: masqueraded too (MASQ does not look at the source)', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: POD, to: '198.18.0.1:30080/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'NodePort from a host process (IPVS LOCAL_OUT)', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: NODE, to: '198.18.0.1:30080/tcp', hook: 'output', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'the NodePort number on the ClusterIP is an unserved VIP port: rejected', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:30080/tcp', want: [verdict('Rejected', R4.vips)] },
    { name: 'a ClusterIP Service has no NodePort', services: [web()], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [to('198.18.0.1:30080', 1)] },
    { name: 'externalIP from outside: masqueraded', services: [web({ externalIPs: ['203.0.113.7'] })], slices: [slice('web', two, http)], from: EXTERNAL, to: '203.0.113.7:80/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'externalIP from a pod: masqueraded as well (eTP Cluster)', services: [web({ externalIPs: ['203.0.113.7'] })], slices: [slice('web', two, http)], from: POD, to: '203.0.113.7:80/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'LoadBalancer IP from outside: masqueraded', services: [web({ type: 'LoadBalancer' }, ['192.0.2.10'])], slices: [slice('web', two, http)], from: EXTERNAL, to: '192.0.2.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    { name: 'LoadBalancer IP on another port: unserved VIP port, rejected', services: [web({ type: 'LoadBalancer' }, ['192.0.2.10'])], slices: [slice('web', two, http)], from: EXTERNAL, to: '192.0.2.10:443/tcp', want: [verdict('Rejected', R4.vips)] },

    // Session affinity
    { name: 'ClientIP affinity: the first connection is spread like any other', services: [web({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)] },

    // Traffic policies
    { name: 'eTP Local with a local endpoint: NodePort only to it, client address kept', services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local' })], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [to('10.244.1.5:8080', 1)] },
    { name: 'eTP Local with a local endpoint: LB IP only to it, not masqueraded', services: [web({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 }, ['192.0.2.10'])], slices: [slice('web', two, http)], from: EXTERNAL, to: '192.0.2.10:80/tcp', want: [to('10.244.1.5:8080', 1)] },
    { name: 'eTP Local: the ClusterIP still reaches every endpoint', services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local' })], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)] },
    { name: 'eTP Local without a local endpoint: NodePort dropped (DROP set)', services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local' })], slices: [slice('web', remoteOnly, http)], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [verdict('Dropped', R4.drop)] },
    { name: 'eTP Local without a local endpoint: LB IP dropped, from a pod too', services: [web({ type: 'LoadBalancer', externalTrafficPolicy: 'Local' }, ['192.0.2.10'])], slices: [slice('web', remoteOnly, http)], from: POD, to: '192.0.2.10:80/tcp', want: [verdict('Dropped', R4.drop)] },
    {
      name: 'eTP Local without a local endpoint, from a host process: IPVS (before the filter) refuses',
      services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local' })],
      slices: [slice('web', remoteOnly, http)],
      from: NODE,
      to: '198.18.0.1:30080/tcp',
      hook: 'output',
      want: [verdict('Rejected', 'TCP  198.18.0.1:30080 rr')],
    },
    { name: 'eTP Local without a local endpoint: the ClusterIP still serves', services: [web({ type: 'NodePort', externalTrafficPolicy: 'Local' })], slices: [slice('web', remoteOnly, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.2.5:8080', 1 / 2), to('10.244.3.5:8080', 1 / 2)] },
    { name: 'iTP Local: the ClusterIP only to the local endpoint', services: [web({ type: 'NodePort', internalTrafficPolicy: 'Local' })], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:80/tcp', want: [to('10.244.1.5:8080', 1)] },
    { name: 'iTP Local: the NodePort still to every endpoint', services: [web({ type: 'NodePort', internalTrafficPolicy: 'Local' })], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [to('10.244.1.5:8080', 1 / 2, true), to('10.244.2.5:8080', 1 / 2, true)] },
    // The IPVS planner refuses here; the iptables planner drops (iTP Local without local endpoints).
    { name: 'iTP Local without a local endpoint: the ClusterIP is rejected (REJECT set, TCP reset)', services: [web({ internalTrafficPolicy: 'Local' })], slices: [slice('web', remoteOnly, http)], from: POD, to: '10.96.0.10:80/tcp', want: [verdict('Rejected', R4.reset)] },
    {
      name: 'only terminating endpoints: the serving one (snapshot fallback)',
      services: [web()],
      slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1', ready: false, serving: true, terminating: true }, { ip: '10.244.1.6', node: 'n1', ready: false, serving: false, terminating: true }], http)],
      from: POD,
      to: '10.96.0.10:80/tcp',
      want: [to('10.244.1.5:8080', 1)],
    },

    // No endpoints
    { name: 'no endpoints, TCP from a pod: the filter resets (REJECT set) before IPVS', services: [web()], slices: [], from: POD, to: '10.96.0.10:80/tcp', want: [verdict('Rejected', R4.reset)] },
    {
      name: 'no endpoints, UDP: ICMP port unreachable from the filter',
      services: [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })],
      slices: [],
      from: POD,
      to: '10.96.0.53:53/udp',
      want: [verdict('Rejected', R4.reject)],
    },
    { name: 'no endpoints, NodePort from outside: rejected too', services: [web({ type: 'NodePort' })], slices: [], from: EXTERNAL, to: '198.18.0.1:30080/tcp', want: [verdict('Rejected', R4.reset)] },
    { name: 'no endpoints, from a host process: IPVS LOCAL_OUT refuses before the filter', services: [web()], slices: [], from: NODE, to: '10.96.0.10:80/tcp', hook: 'output', want: [verdict('Rejected', 'TCP  10.96.0.10:80 rr')] },

    // Unserved and untouched
    { name: 'an unserved port of a VIP: rejected', services: [web()], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:81/tcp', want: [verdict('Rejected', R4.vips)] },
    { name: 'an unserved port of a VIP from a host process: rejected in filter OUTPUT', services: [web()], slices: [slice('web', two, http)], from: NODE, to: '10.96.0.10:81/tcp', hook: 'output', want: [verdict('Rejected', R4.vips)] },
    { name: 'ping to a ClusterIP: a new ICMP flow to a VIP is rejected', services: [web()], slices: [slice('web', two, http)], from: POD, to: '10.96.0.10:0/icmp', want: [verdict('Rejected', R4.vips)] },
    { name: 'pod to pod: untouched', services: [web()], slices: [slice('web', two, http)], from: POD, to: '10.244.2.7:8080/tcp', want: [to('10.244.2.7:8080', 1)] },
    { name: 'an endpoint addressed directly: untouched (not a hairpin)', services: [web()], slices: [slice('web', two, http)], from: POD, to: '10.244.1.5:8080/tcp', want: [to('10.244.1.5:8080', 1)] },
    { name: 'a node port without a Service (ssh on the node): untouched', services: [web({ type: 'NodePort' })], slices: [slice('web', two, http)], from: EXTERNAL, to: '198.18.0.1:22/tcp', want: [to('198.18.0.1:22', 1)] },
    { name: 'a host process to the outside: untouched', services: [web()], slices: [slice('web', two, http)], from: NODE, to: '93.184.216.34:443/tcp', hook: 'output', want: [to('93.184.216.34:443', 1)] },

    // IPv6
    {
      name: 'IPv6 ClusterIP from a pod',
      services: [svc('web', { clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }, { ip: 'fd00:10:244:2::5', node: 'n2' }], http, 'IPv6')],
      node: node6,
      from: 'fd00:10:244:1::9',
      to: '[fd00:10:96::a]:80/tcp',
      want: [to('[fd00:10:244:1::5]:8080', 1 / 2), to('[fd00:10:244:2::5]:8080', 1 / 2)],
    },
    {
      name: 'IPv6 ClusterIP written uncompressed by the client',
      services: [svc('web', { clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', [{ ip: 'fd00:10:244:2::5', node: 'n2' }], http, 'IPv6')],
      node: node6,
      from: '2001:db8::50',
      to: '[FD00:10:96:0:0:0:0:A]:80/tcp',
      want: [to('[fd00:10:244:2::5]:8080', 1, true)],
    },
    {
      name: 'IPv6 NodePort from outside: masqueraded',
      services: [svc('web', { type: 'NodePort', clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
      slices: [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }], http, 'IPv6')],
      node: node6,
      from: '2001:db8::50',
      to: '[fd00:198:18::1]:30080/tcp',
      want: [to('[fd00:10:244:1::5]:8080', 1, true)],
    },
    {
      name: 'IPv6 hairpin',
      services: [svc('web', { clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }], http, 'IPv6')],
      node: node6,
      from: 'fd00:10:244:1::5',
      to: '[fd00:10:96::a]:80/tcp',
      want: [to('[fd00:10:244:1::5]:8080', 1, true)],
    },
    {
      name: 'IPv6 no endpoints, from a pod: the filter resets',
      services: [svc('web', { clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] })],
      slices: [],
      node: node6,
      from: 'fd00:10:244:1::9',
      to: '[fd00:10:96::a]:80/tcp',
      want: [verdict('Rejected', '-A PODNET-IPVS-FILTER -p tcp -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-6 dst,dst -j REJECT --reject-with tcp-reset')],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      expect(await run(env(c.services, c.slices, c.node), c.from, c.to, c.hook)).toEqual(c.want);
    });
  }
});

describe('observations', () => {
  it('off-cluster client to a ClusterIP: mark, served, DNAT (rule texts exact); postrouting unmarks and masquerades', async () => {
    const e = env([web()], [slice('web', [{ ip: '10.244.2.5', node: 'n2' }], http)]);
    const { pkt, outs } = await outcomes(e, EXTERNAL, '10.96.0.10:80/tcp');
    expect(outs).toHaveLength(1);
    const o = outs[0]!;
    expect(o.observations.map((x) => [x.component, x.action, x.where, x.rule])).toEqual([
      ['Netfilter/LB', 'Matched', 'nat PODNET-IPVS-SERVICES', '-A PODNET-IPVS-SERVICES -m set --match-set PODNET-IPVS-CLUSTER-4 dst,dst ! -s 10.244.0.0/16 -j PODNET-IPVS-MARK-MASQ'],
      ['Netfilter/LB', 'Marked', 'nat PODNET-IPVS-MARK-MASQ', '-A PODNET-IPVS-MARK-MASQ -j MARK --or-mark 0x4000'],
      ['IPVS', 'DNAT', 'ipvs LOCAL_IN', 'TCP  10.96.0.10:80 rr\n  -> 10.244.2.5:8080              Masq    1      0          0'],
    ]);
    expect(o.observations[0]!.detail).toBe('10.96.0.10,tcp:80 in PODNET-IPVS-CLUSTER-4 (ClusterIP ports), source 203.0.113.50 not in 10.244.0.0/16: jump to PODNET-IPVS-MARK-MASQ');
    expect(o.observations[1]!.detail).toBe('mark 0x0 -> 0x4000: the masquerade mark, postrouting masquerades the packet');
    expect(o.observations[2]!.detail).toBe('IPVS virtual server TCP 10.96.0.10:80 (VIP), rr: each of the 1 real server in turn; this outcome: 10.244.2.5:8080 (1 in 1)');
    expect(o.observations.every((x) => x.node === 'n1' && !x.foreign)).toBe(true);
    expect(o.observations[2]!.packet).toEqual({ ...pkt, dst: '10.244.2.5', dport: 8080 });
    expect(o.packet).toEqual({ ...pkt, dst: '10.244.2.5', dport: 8080 });
    expect(o.masqueradeMark).toBe(true);
    expect(o.endpoint).toEqual({ ip: '10.244.2.5', port: 8080 });
    expect(o.service).toEqual([{ kind: 'Service', namespace: 'default', name: 'web' }]);

    const s = await e.lb.snat(o.packet, o.masqueradeMark, { node: 'n1', outAddress: '10.244.1.1', original: pkt });
    expect(s.masqueraded).toBe(true);
    expect(s.packet).toEqual({ ...pkt, src: '10.244.1.1', dst: '10.244.2.5', dport: 8080 });
    expect(s.observations.map((x) => [x.action, x.rule])).toEqual([
      ['Marked', '-A PODNET-IPVS-POSTROUTING -j MARK --xor-mark 0x4000'],
      ['Masqueraded', '-A PODNET-IPVS-POSTROUTING -j MASQUERADE'],
    ]);
    expect(s.observations[1]!.detail).toBe('mark 0x4000 was set: source 203.0.113.50 -> 10.244.1.1 (the outgoing device\'s address)');
  });

  it('hairpin: postrouting masquerades by the LOOPBACK set, without a mark', async () => {
    const e = env([web()], [slice('web', [{ ip: '10.244.1.5', node: 'n1' }], http)]);
    const { pkt, outs } = await outcomes(e, '10.244.1.5', '10.96.0.10:80/tcp');
    expect(outs[0]!.masqueradeMark).toBe(false);
    const s = await e.lb.snat(outs[0]!.packet, false, { node: 'n1', outAddress: '10.244.1.1', original: pkt });
    expect(s.observations.map((x) => [x.action, x.rule, x.detail])).toEqual([
      [
        'Masqueraded',
        '-A PODNET-IPVS-POSTROUTING -m set --match-set PODNET-IPVS-LOOPBACK-4 dst,dst,src -j MASQUERADE',
        '10.244.1.5,tcp:8080,10.244.1.5 in PODNET-IPVS-LOOPBACK-4 (local endpoints reaching themselves: hairpin): source 10.244.1.5 -> 10.244.1.1 (the outgoing device\'s address)',
      ],
    ]);
  });

  it('untouched traffic leaves no observation, before or after routing', async () => {
    const e = env([web()], [slice('web', two, http)]);
    const { pkt, outs } = await outcomes(e, POD, '10.244.2.7:8080/tcp');
    expect(outs).toEqual([{ probability: 1, observations: [], packet: pkt, masqueradeMark: false }]);
    const s = await e.lb.snat(pkt, false, { node: 'n1', outAddress: OUT, original: pkt });
    expect(s).toEqual({ observations: [], packet: pkt, masqueraded: false });
  });

  it('ClientIP affinity: the rule shows persistence, the detail explains it', async () => {
    const e = env([web({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], [slice('web', two, http)]);
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    const dnat = outs.map((o) => o.observations.find((x) => x.action === 'DNAT')!);
    expect(dnat.map((x) => x.rule)).toEqual([
      'TCP  10.96.0.10:80 rr persistent 60\n  -> 10.244.1.5:8080              Masq    1      0          0',
      'TCP  10.96.0.10:80 rr persistent 60\n  -> 10.244.2.5:8080              Masq    1      0          0',
    ]);
    expect(dnat[0]!.detail).toBe(
      'IPVS virtual server TCP 10.96.0.10:80 (VIP), rr: each of the 2 real servers in turn; this outcome: 10.244.1.5:8080 (1 in 2); persistent 60 s (session affinity ClientIP): the first connection from 10.244.1.9 picks the real server, its later ones within 60 s go to the same one',
    );
  });

  it('the default affinity timeout is 10800 s', async () => {
    const e = env([web({ sessionAffinity: 'ClientIP' })], [slice('web', two, http)]);
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.observations.find((x) => x.action === 'DNAT')!.rule).toMatch(/^TCP {2}10\.96\.0\.10:80 rr persistent 10800\n/);
  });

  it('NodePort virtual servers are labelled as such', async () => {
    const e = env([web({ type: 'NodePort' })], [slice('web', [{ ip: '10.244.2.5', node: 'n2' }], http)]);
    const { outs } = await outcomes(e, EXTERNAL, '198.19.0.1:30080/tcp');
    expect(outs[0]!.observations.find((x) => x.action === 'DNAT')!.detail).toMatch(/^IPVS virtual server TCP 198\.19\.0\.1:30080 \(NodePort on a node address\)/);
  });

  it('no endpoints: the REJECT verdict says why; a host process gets IPVS\'s refusal (IPv6 TCP: the 1 s caveat)', async () => {
    const e = env([web()], []);
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.verdict).toEqual({
      kind: 'Rejected',
      node: 'n1',
      at: R4.reset,
      reason: 'protocol tcp, a new connection, 10.96.0.10,tcp:80 in PODNET-IPVS-REJECT-4 (Service ports without usable endpoints): rejected with a TCP reset',
    });
    const local = await outcomes(e, NODE, '10.96.0.10:80/tcp', 'output');
    expect(local.outs[0]!.verdict).toEqual({
      kind: 'Rejected',
      node: 'n1',
      at: 'TCP  10.96.0.10:80 rr',
      reason: 'IPVS virtual server TCP 10.96.0.10:80 has no real server: IPVS answers a new connection with ICMP port unreachable',
    });
    expect(local.outs[0]!.observations.at(-1)).toMatchObject({ component: 'IPVS', action: 'Rejected', where: 'ipvs LOCAL_OUT' });

    const e6 = env([svc('web', { clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] })], [], node6);
    const v6 = await outcomes(e6, 'fd00:198:18::1', '[fd00:10:96::a]:80/tcp', 'output');
    expect(v6.outs[0]!.verdict?.reason).toBe(
      'IPVS virtual server TCP [fd00:10:96::a]:80 has no real server: IPVS answers a new connection with ICMP port unreachable (an IPv6 TCP client on this node loses that ICMPv6 error inside connect() and is refused only at its SYN retransmit, about 1 s later)',
    );
  });

  it('a VIP that is not a local address: routed on, IPVS never sees it (noted)', async () => {
    const e = env([web()], [slice('web', two, http)]);
    const pkt = packet(4, POD, '10.96.0.10:80/tcp');
    const outs = await e.lb.dnat(pkt, { node: 'n1', hook: 'prerouting', isLocal: () => false });
    expect(outs).toHaveLength(1);
    expect(outs[0]!.packet).toEqual(pkt);
    expect(outs[0]!.verdict).toBeUndefined();
    expect(outs[0]!.observations.map((x) => [x.component, x.action, x.rule])).toEqual([['IPVS', 'Matched', 'TCP  10.96.0.10:80 rr']]);
  });

  it('a packet of the other family is a programming error', async () => {
    const e = env([web()], [slice('web', two, http)]);
    await expect(e.lb.dnat(packet(6, 'fd00::1', '[fd00::2]:80/tcp'), { node: 'n1', hook: 'prerouting', isLocal: () => false })).rejects.toMatchObject({ code: 'PODNET_INVALID_ARGUMENT' });
  });
});

/** The view with some chains replaced. */
const withRules = (over: Record<string, string[] | undefined>) => (v: IpvsView): IpvsView => ({
  ...v,
  rules: async (table, chain) => (`${table} ${chain}` in over ? over[`${table} ${chain}`] : v.rules(table, chain)),
});

describe('rules podnet did not write', () => {
  it('a foreign rule in nat PREROUTING: Unknown, named, nothing guessed', async () => {
    const docker = '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER';
    const e = env([web()], [slice('web', two, http)], node4, { tweak: withRules({ 'nat PREROUTING': ['-P PREROUTING ACCEPT', '-A PREROUTING -j PODNET-IPVS-SERVICES', docker] }) });
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs).toHaveLength(1);
    expect(outs[0]!.verdict).toEqual({ kind: 'Unknown', node: 'n1', at: docker, reason: `a rule podnet did not write is on the packet's path in nat PREROUTING: ${docker}` });
    expect(outs[0]!.observations.at(-1)).toMatchObject({ foreign: true, action: 'Unknown', rule: docker, where: 'nat PREROUTING', detail: "not a rule podnet's IPVS mode writes (match -m addrtype): not interpreted" });
  });

  it('even a match podnet understands is foreign in a built-in chain (podnet only jumps there)', async () => {
    const line = '-A INPUT -p tcp -j ACCEPT';
    const e = env([web()], [slice('web', two, http)], node4, { tweak: withRules({ 'filter INPUT': ['-P INPUT ACCEPT', line, '-A INPUT -j PODNET-IPVS-FILTER'] }) });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([verdict('Unknown', line)]);
    // Not on the path of a packet that is routed on (filter INPUT is for local destinations).
    expect(await run(e, POD, '10.244.2.7:80/tcp')).toEqual([to('10.244.2.7:80', 1)]);
  });

  it('a foreign rule appended to podnet\'s filter chain: Unknown where the packet meets it', async () => {
    const line = '-A PODNET-IPVS-FILTER -p tcp -m tcp --dport 80 -j ACCEPT';
    const e = env([web()], [slice('web', two, http)], node4, {
      tweak: withRules({
        'filter PODNET-IPVS-FILTER': [
          '-N PODNET-IPVS-FILTER',
          '-A PODNET-IPVS-FILTER -m set --match-set PODNET-IPVS-SERVED-4 dst,dst -j RETURN',
          line,
        ],
      }),
    });
    // An unserved VIP port meets it in filter INPUT.
    expect(await run(e, POD, '10.96.0.10:81/tcp')).toEqual([verdict('Unknown', line)]);
    // A served one RETURNs before it in INPUT, but IPVS sends the DNATed packet through
    // LOCAL_OUT, where filter OUTPUT jumps to the same chain and the packet meets it there.
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([{ verdict: 'Unknown', at: line, p: 1 / 2 }, { verdict: 'Unknown', at: line, p: 1 / 2 }]);
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.observations.map((x) => [x.action, x.where])).toEqual([
      ['DNAT', 'ipvs LOCAL_IN'],
      ['Unknown', 'filter PODNET-IPVS-FILTER'],
    ]);
    // Routed traffic never reaches it (podnet's filter chain hangs off INPUT and OUTPUT only).
    expect(await run(e, POD, '10.244.2.7:8080/tcp')).toEqual([to('10.244.2.7:8080', 1)]);
  });

  it('a set that is not podnet\'s is foreign', async () => {
    const line = '-A PODNET-IPVS-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j PODNET-IPVS-MARK-MASQ';
    const e = env([web()], [slice('web', two, http)], node4, { tweak: withRules({ 'nat PODNET-IPVS-SERVICES': ['-N PODNET-IPVS-SERVICES', line] }) });
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.verdict?.kind).toBe('Unknown');
    expect(outs[0]!.observations.at(-1)?.detail).toBe("not a rule podnet's IPVS mode writes (set KUBE-CLUSTER-IP is not one of podnet's IPv4 sets): not interpreted");
  });

  it('a foreign rule in nat POSTROUTING: reported by snat() as a foreign observation', async () => {
    const line = '-A POSTROUTING -s 10.244.0.0/16 ! -o docker0 -j MASQUERADE';
    const e = env([web()], [slice('web', two, http)], node4, { tweak: withRules({ 'nat POSTROUTING': ['-P POSTROUTING ACCEPT', '-A POSTROUTING -j PODNET-IPVS-POSTROUTING', line] }) });
    const pkt = packet(4, POD, '10.244.2.5:8080/tcp');
    const s = await e.lb.snat(pkt, false, { node: 'n1', outAddress: OUT, original: pkt });
    expect(s.masqueraded).toBe(false);
    expect(s.observations).toHaveLength(1);
    expect(s.observations[0]).toMatchObject({ foreign: true, rule: line, where: 'nat POSTROUTING' });
    // A masqueraded packet is done before it reaches that rule.
    const m = await e.lb.snat(pkt, true, { node: 'n1', outAddress: OUT, original: pkt });
    expect(m.masqueraded).toBe(true);
    expect(m.observations.some((x) => x.foreign)).toBe(false);
  });

  it('a DROP policy on filter INPUT drops what podnet\'s chain lets through', async () => {
    const e = env([web()], [slice('web', two, http)], node4, { tweak: withRules({ 'filter INPUT': ['-P INPUT DROP', '-A INPUT -j PODNET-IPVS-FILTER'] }) });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([verdict('Dropped', '-P INPUT DROP')]);
    // The filter's REJECT still comes first for an unserved port.
    expect(await run(e, POD, '10.96.0.10:81/tcp')).toEqual([verdict('Rejected', R4.vips)]);
  });

  it('a virtual server that is not podnet\'s (its address is not a VIP nor a NodePort): Unknown', async () => {
    const foreignVs: IpvsViewService = { scheduler: 'rr', destinations: [{ ip: '192.168.5.5', port: 443, weight: 1 }], text: 'TCP  198.18.0.1:8443 rr\n  -> 192.168.5.5:443              Masq    1      0          0' };
    const e = env([web()], [slice('web', two, http)], node4, {
      tweak: (v) => ({ ...v, service: async (p, a, port) => (a === '198.18.0.1' && port === 8443 ? foreignVs : v.service(p, a, port)) }),
    });
    expect(await run(e, EXTERNAL, '198.18.0.1:8443/tcp')).toEqual([verdict('Unknown', 'TCP  198.18.0.1:8443 rr')]);
  });

  it('a real server with another forwarding method (direct routing): Unknown', async () => {
    const e = env([web()], [slice('web', two, http)], node4, {
      tweak: (v) => ({
        ...v,
        service: async (p, a, port) => {
          const s = await v.service(p, a, port);
          return s && { ...s, destinations: s.destinations.map((d, i) => (i === 0 ? { ...d, forward: 'route' as const } : d)) };
        },
      }),
    });
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.verdict).toMatchObject({ kind: 'Unknown', reason: 'IPVS virtual server TCP 10.96.0.10:80 forwards to 10.244.1.5:8080 with method route, podnet only uses masq: not interpreted' });
  });

  it('missing jumps (podnet\'s rules not installed): noted, and nothing is marked', async () => {
    const e = env([web()], [slice('web', two, http)], node4, {
      tweak: withRules({ 'nat PREROUTING': ['-P PREROUTING ACCEPT'], 'filter INPUT': ['-P INPUT ACCEPT'] }),
    });
    const { outs } = await outcomes(e, EXTERNAL, '10.96.0.10:81/tcp');
    expect(outs).toHaveLength(1);
    expect(outs[0]!.masqueradeMark).toBe(false);
    expect(outs[0]!.verdict).toBeUndefined();
    expect(outs[0]!.observations.map((x) => x.detail)).toEqual([
      "nat PREROUTING has no jump to PODNET-IPVS-SERVICES: podnet's IPVS mode rules are not on this packet's path",
      "filter INPUT has no jump to PODNET-IPVS-FILTER: podnet's IPVS mode rules are not on this packet's path",
    ]);
  });

  it('filter OUTPUT sees the DNATed packet, unless a local real server takes it in LOCAL_IN', async () => {
    const line = '-A OUTPUT -o eth1 -j DROP';
    // A hostNetwork endpoint on the node's own address (local) and a pod on n2.
    const e = env([web()], [slice('web', [{ ip: '198.18.0.1', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }], http)], node4, {
      tweak: withRules({ 'filter OUTPUT': ['-P OUTPUT ACCEPT', '-A OUTPUT -j PODNET-IPVS-FILTER', line] }),
    });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([{ verdict: 'Unknown', at: line, p: 1 / 2 }, to('198.18.0.1:8080', 1 / 2)]);
    // A host process: IPVS runs in LOCAL_OUT, before filter OUTPUT, so both meet it.
    expect(await run(e, NODE, '10.96.0.10:80/tcp', 'output')).toEqual([{ verdict: 'Unknown', at: line, p: 1 / 2 }, { verdict: 'Unknown', at: line, p: 1 / 2 }]);
  });
});

describe('scheduling', () => {
  const weighted = (scheduler: string) => (v: IpvsView): IpvsView => ({
    ...v,
    service: async (p, a, port) => {
      const s = await v.service(p, a, port);
      if (!s) return s;
      const destinations = s.destinations.map((d, i) => ({ ...d, weight: [1, 3, 0][i]! }));
      return { ...s, scheduler, destinations, text: ipvsadmText({ protocol: p, address: a, port, scheduler, destinations }) };
    },
  });

  it('wrr: weight / sum, weight 0 omitted', async () => {
    const e = env([web()], [slice('web', three, http)], node4, { tweak: weighted('wrr') });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([to('10.244.1.5:8080', 1 / 4), to('10.244.2.5:8080', 3 / 4)]);
  });

  it('rr ignores weights (ip_vs_rr only skips weight 0)', async () => {
    const e = env([web()], [slice('web', three, http)], node4, { tweak: weighted('rr') });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)]);
  });

  it('every real server at weight 0: IPVS refuses', async () => {
    const e = env([svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })], [slice('web', two, http)], node4, {
      tweak: (v) => ({
        ...v,
        service: async (p, a, port) => {
          const s = await v.service(p, a, port);
          return s && { ...s, destinations: s.destinations.map((d) => ({ ...d, weight: 0 })) };
        },
      }),
    });
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs[0]!.verdict).toMatchObject({ kind: 'Rejected', reason: 'IPVS virtual server TCP 10.96.0.10:80 has no real server with a weight above 0: IPVS answers a new connection with ICMP port unreachable' });
  });
});

describe('live mode: the IPVS connection table decides', () => {
  const conn = (template: boolean) => (v: IpvsView): IpvsView => ({
    ...v,
    connection: async (pkt) =>
      pkt.src === POD && pkt.dst === '10.96.0.10'
        ? template
          ? { ip: '10.244.2.5', port: 8080, text: 'TCP 0AF40109 0000 0A60000A 0050 0AF40205 1F90 NONE          10799', template: true }
          : { ip: '10.244.2.5', port: 8080, text: 'TCP 0AF40109 9C40 0A60000A 0050 0AF40205 1F90 ESTABLISHED     899' }
        : undefined,
  });

  it('an existing connection: that real server, probability 1', async () => {
    const e = env([web()], [slice('web', three, http)], node4, { tweak: conn(false) });
    expect(await run(e, POD, '10.96.0.10:80/tcp')).toEqual([to('10.244.2.5:8080', 1)]);
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    const d = outs[0]!.observations.at(-1)!;
    expect(d).toMatchObject({ component: 'IPVS', action: 'DNAT', live: true, rule: 'TCP  10.96.0.10:80 rr\nTCP 0AF40109 9C40 0A60000A 0050 0AF40205 1F90 ESTABLISHED     899' });
    expect(d.detail).toBe('TCP 10.96.0.10:80: the IPVS connection table already holds this connection, to 10.244.2.5:8080 (live: from the connection table)');
    expect(outs[0]!.service).toEqual([{ kind: 'Service', namespace: 'default', name: 'web' }]);
  });

  it('a persistence template (affinity): its real server', async () => {
    const e = env([web({ sessionAffinity: 'ClientIP' })], [slice('web', three, http)], node4, { tweak: conn(true) });
    const { outs } = await outcomes(e, POD, '10.96.0.10:80/tcp');
    expect(outs.map((o) => [o.probability, o.endpoint])).toEqual([[1, { ip: '10.244.2.5', port: 8080 }]]);
    expect(outs[0]!.observations.at(-1)!.detail).toBe('TCP 10.96.0.10:80: the IPVS persistence template of client 10.244.1.9 (session affinity) sends it to 10.244.2.5:8080 (live: from the connection table)');
  });

  it('other clients are still spread', async () => {
    const e = env([web()], [slice('web', two, http)], node4, { tweak: conn(false) });
    expect(await run(e, '10.244.1.8', '10.96.0.10:80/tcp')).toEqual([to('10.244.1.5:8080', 1 / 2), to('10.244.2.5:8080', 1 / 2)]);
  });
});

describe('the rules as iptables-legacy-save prints them give the same answers', () => {
  const fixture = (f: 4 | 6) => readFileSync(new URL(`./testdata/ipvs-iptables-save-${f}.txt`, import.meta.url), 'utf8');
  const strip = (s: Sum[]) => s.map((x) => ('verdict' in x ? { verdict: x.verdict, p: x.p } : x));

  const v4: [Service[], EndpointSlice[], string, string, LbContext['hook']][] = [
    [[web()], [slice('web', two, http)], POD, '10.96.0.10:80/tcp', 'prerouting'],
    [[web()], [slice('web', two, http)], EXTERNAL, '10.96.0.10:80/tcp', 'prerouting'],
    [[web()], [slice('web', two, http)], '10.244.1.5', '10.96.0.10:80/tcp', 'prerouting'],
    [[web()], [slice('web', two, http)], NODE, '10.96.0.10:80/tcp', 'output'],
    [[web()], [slice('web', two, http)], POD, '10.96.0.10:81/tcp', 'prerouting'],
    [[web({ type: 'NodePort' })], [slice('web', two, http)], EXTERNAL, '198.18.0.1:30080/tcp', 'prerouting'],
    [[web({ type: 'NodePort', externalTrafficPolicy: 'Local' })], [slice('web', remoteOnly, http)], EXTERNAL, '198.18.0.1:30080/tcp', 'prerouting'],
    [[web()], [], POD, '10.96.0.10:80/tcp', 'prerouting'],
    [[svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })], [], POD, '10.96.0.53:53/udp', 'prerouting'],
  ];
  for (const [services, slices, from, dst, hook] of v4) {
    it(`IPv4 ${from} -> ${dst} (${hook})`, async () => {
      const planned = await run(env(services, slices), from, dst, hook);
      const printed = await run(env(services, slices, node4, { iptables: fixture(4) }), from, dst, hook);
      expect(strip(printed)).toEqual(strip(planned));
    });
  }

  it('the rule named in a verdict is the kernel\'s text', async () => {
    const printed = await run(env([svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })], [], node4, { iptables: fixture(4) }), POD, '10.96.0.53:53/udp');
    expect(printed).toEqual([verdict('Rejected', '-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-4 dst,dst -j REJECT --reject-with icmp-port-unreachable')]);
  });

  it('IPv6: ClusterIP off-cluster, hairpin, no endpoints', async () => {
    const s6 = [svc('web', { type: 'NodePort', clusterIPs: ['fd00:10:96::a'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] })];
    const sl6 = [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }, { ip: 'fd00:10:244:2::5', node: 'n2' }], http, 'IPv6')];
    for (const [services, slices, from, dst] of [
      [s6, sl6, '2001:db8::50', '[fd00:10:96::a]:80/tcp'],
      [s6, sl6, 'fd00:10:244:1::5', '[fd00:10:96::a]:80/tcp'],
      [s6, sl6, '2001:db8::50', '[fd00:198:18::1]:30080/tcp'],
      [s6, [], 'fd00:10:244:1::9', '[fd00:10:96::a]:80/udp'],
      [s6, [], 'fd00:10:244:1::9', '[fd00:10:96::a]:80/tcp'],
    ] as [Service[], EndpointSlice[], string, string][]) {
      const planned = await run(env(services, slices, node6), from, dst);
      const printed = await run(env(services, slices, node6, { iptables: fixture(6) }), from, dst);
      expect(strip(printed)).toEqual(strip(planned));
    }
    expect(await run(env(s6, sl6, node6, { iptables: fixture(6) }), '2001:db8::50', '[fd00:10:96::a]:80/tcp')).toEqual([to('[fd00:10:244:1::5]:8080', 1 / 2, true), to('[fd00:10:244:2::5]:8080', 1 / 2, true)]);
    // UDP to the TCP-only port: an unserved port of the VIP.
    expect(await run(env(s6, [], node6, { iptables: fixture(6) }), 'fd00:10:244:1::9', '[fd00:10:96::a]:80/udp')).toEqual([
      verdict('Rejected', '-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-VIPS-6 dst -j REJECT --reject-with icmp6-port-unreachable'),
    ]);
    expect(await run(env(s6, [], node6, { iptables: fixture(6) }), 'fd00:10:244:1::9', '[fd00:10:96::a]:80/tcp')).toEqual([
      verdict('Rejected', '-A PODNET-IPVS-FILTER -p tcp -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-6 dst,dst -j REJECT --reject-with tcp-reset'),
    ]);
  });
});

describe('text formats', () => {
  it('ipvsadmText: as ipvsadm -Ln prints a service (IPv4, IPv6, persistence, weights)', () => {
    expect(
      ipvsadmText({
        protocol: 'TCP',
        address: '10.96.0.10',
        port: 80,
        scheduler: 'rr',
        persistentTimeout: 60,
        destinations: [
          { ip: '10.244.1.5', port: 8080, weight: 1, activeConns: 2, inactiveConns: 13 },
          { ip: '10.244.2.5', port: 8080, weight: 0 },
        ],
      }),
    ).toBe(['TCP  10.96.0.10:80 rr persistent 60', '  -> 10.244.1.5:8080              Masq    1      2          13', '  -> 10.244.2.5:8080              Masq    0      0          0'].join('\n'));
    expect(ipvsadmText({ protocol: 'UDP', address: 'fd00:10:96::a', port: 53, scheduler: 'rr', destinations: [{ ip: 'fd00:10:244:1::53', port: 5353, weight: 1 }] })).toBe(
      ['UDP  [fd00:10:96::a]:53 rr', '  -> [fd00:10:244:1::53]:5353     Masq    1      0          0'].join('\n'),
    );
    expect(ipvsadmText({ protocol: 'SCTP', address: '10.96.0.9', port: 9, scheduler: 'rr', destinations: [] })).toBe('SCTP  10.96.0.9:9 rr');
  });

  it('parseIpvsConnections: /proc/net/ip_vs_conn with IPv4 (hex), IPv6 and a persistence template', () => {
    const text = [
      'Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData',
      'TCP 0AF40109 9C40 0A60000A 0050 0AF40205 1F90 ESTABLISHED     899',
      'TCP 0AF40109 0000 0A60000B 0050 0AF40105 1F90 NONE          10799',
      'UDP fd00:0010:0244:0001:0000:0000:0000:0009 A000 fd00:0010:0096:0000:0000:0000:0000:000a 0035 fd00:0010:0244:0001:0000:0000:0000:0053 14E9 UDP             299',
      '',
    ].join('\n');
    expect(parseIpvsConnections(text).map(({ text: _t, ...r }) => r)).toEqual([
      { protocol: 'TCP', client: '10.244.1.9', clientPort: 40000, virtual: '10.96.0.10', virtualPort: 80, dest: '10.244.2.5', destPort: 8080, state: 'ESTABLISHED', expires: 899 },
      { protocol: 'TCP', client: '10.244.1.9', clientPort: 0, virtual: '10.96.0.11', virtualPort: 80, dest: '10.244.1.5', destPort: 8080, state: 'NONE', expires: 10799 },
      { protocol: 'UDP', client: 'fd00:10:244:1::9', clientPort: 40960, virtual: 'fd00:10:96::a', virtualPort: 53, dest: 'fd00:10:244:1::53', destPort: 5353, state: 'UDP', expires: 299 },
    ]);
    expect(parseIpvsConnections(text)[0]!.text).toBe('TCP 0AF40109 9C40 0A60000A 0050 0AF40205 1F90 ESTABLISHED     899');
  });
});

describe('cannotMatch: foreign rules in built-in chains that cannot match the packet', () => {
  const pkt = { family: 4 as const, proto: 'tcp' as const, src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 60 };
  it.each([
    ['-A INPUT -p tcp -m tcp --dport 9998 -j ACCEPT', true],
    ['-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT', false],
    ['-A INPUT -p udp -m udp --dport 80 -j ACCEPT', true],
    ['-A INPUT -p tcp -m tcp ! --dport 80 -j DROP', true],
    ['-A INPUT -p tcp -m tcp --dport 70:90 -j DROP', false],
    ['-A INPUT -d 192.0.2.0/24 -j DROP', true],
    ['-A INPUT -s 10.244.0.0/16 -m foo --bar -j DROP', false],
    ['-A INPUT -m foo --bar -j DROP', false],
  ])('%s → %s', (line, want) => expect(cannotMatch(line, pkt)).toBe(want));
});
