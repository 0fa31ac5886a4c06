/**
 * Hand-built `TraceResult`s for the renderer tests (text.test.ts, svg.test.ts): the shapes
 * the tracer produces, written out so each test reads what it checks.
 */
import type { Encapsulation, Observation, Packet, TracePath, TraceResult, Verdict } from '../types.js';

export const pkt = (over: Partial<Packet> = {}): Packet => ({
  family: 4,
  proto: 'tcp',
  src: '10.244.1.5',
  sport: 40000,
  dst: '10.96.0.10',
  dport: 80,
  size: 60,
  ...over,
});

const ob = (node: string, component: Observation['component'], action: string, detail: string, packet: Packet, more: Partial<Observation> = {}): Observation => ({
  node,
  component,
  action,
  detail,
  packet,
  ...more,
});

export const VXLAN: Encapsulation = {
  backend: 'vxlan',
  device: 'podnet.1',
  vni: 1,
  port: 8472,
  outerSrc: '198.18.0.1',
  outerDst: '198.18.0.2',
  nextHop: '10.244.2.0',
  mac: '0a:58:c6:12:00:02',
  mtu: 1450,
};

export const UDP: Encapsulation = {
  backend: 'udp',
  device: 'podnet.udp',
  port: 8285,
  outerSrc: '198.18.0.1',
  outerDst: '198.18.0.2',
  mtu: 1472,
};

export const HOST_GW: Encapsulation = {
  backend: 'host-gw',
  device: 'eth0',
  nextHop: '198.18.0.2',
  mtu: 1500,
};

const SVC = [
  { kind: 'Service' as const, namespace: 'default', name: 'web' },
  { kind: 'EndpointSlice' as const, namespace: 'default', name: 'web-x7k2p' },
];

const source = ob('n1', 'Source', 'Received', 'sent by pod default/client (10.244.1.5) on its eth0', pkt(), {
  origin: [{ kind: 'Pod', namespace: 'default', name: 'client' }],
});

function dnat(ip: string, i: number): Observation {
  return ob('n1', 'Netfilter/LB', 'DNAT', `Service default/web port 80/TCP chose endpoint ${ip}:8080 (${i + 1} of 3)`, pkt({ dst: ip, dport: 8080 }), {
    rule: 'meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-CDGGSHYL-default/web/tcp/80',
    where: 'ip podnet service-CDGGSHYL-default/web/tcp/80',
    origin: SVC,
  });
}

/** n1 → n2 over `enc`, delivered to `pod` at `ip` on n2. */
function remote(ip: string, pod: string, enc: Encapsulation, p: Packet): Observation[] {
  const via = enc.backend === 'vxlan' ? `10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 222` : enc.backend === 'udp' ? '10.244.2.0/24 dev podnet.udp proto 222' : '10.244.2.0/24 via 198.18.0.2 dev eth0 proto 222';
  return [
    ob('n1', 'Routing', 'Routed', `to n2's pod subnet 10.244.2.0/24 over ${enc.backend}`, p, { rule: via, where: 'main', origin: [{ kind: 'Node', name: 'n2' }] }),
    ob('n1', 'Transport', enc.backend === 'host-gw' ? 'Forwarded' : 'Encapsulated', `sent to n2 (${enc.outerDst ?? enc.nextHop})`, p, { transport: enc }),
    ob('n2', 'Transport', enc.backend === 'host-gw' ? 'Received' : 'Decapsulated', `received from n1 on ${enc.device === 'eth0' ? 'eth0' : enc.device}`, p),
    ob('n2', 'Routing', 'Routed', 'to the local pod subnet', p, { rule: '10.244.2.0/24 dev podnet0 proto kernel scope link src 10.244.2.1', where: 'main' }),
    ob('n2', 'Bridge', 'Bridged', `podnet0 forwards to the port of ${pod}`, p, { rule: `${ip} dev podnet0 lladdr 0a:58:0a:f4:02:07 REACHABLE` }),
    ob('n2', 'Delivery', 'Delivered', `pod ${pod} eth0 (${ip})`, p, { origin: [{ kind: 'Pod', namespace: 'default', name: pod.split('/')[1]! }] }),
  ];
}

const delivered = (pod: string, node: string, ip: string): Verdict => ({
  kind: 'Delivered',
  node,
  pod,
  address: `${ip}:8080`,
  reason: `the packet reaches ${pod}'s eth0`,
});

function path(probability: number, ip: string, pod: string, node: string, rest: Observation[], i: number): TracePath {
  return {
    probability,
    endpoint: { ip, port: 8080, pod, node },
    observations: [source, dnat(ip, i), ...rest],
    verdict: delivered(pod, node, ip),
  };
}

/** Explain, nftables, vxlan: a ClusterIP with 3 endpoints (one on n1, two on n2). */
export function explainThreePaths(): TraceResult {
  const p0 = pkt({ dst: '10.244.1.9', dport: 8080 });
  const p1 = pkt({ dst: '10.244.2.5', dport: 8080 });
  const p2 = pkt({ dst: '10.244.2.7', dport: 8080 });
  const paths: TracePath[] = [
    path(1 / 3, '10.244.1.9', 'default/web-0', 'n1', [
      ob('n1', 'Routing', 'Routed', 'to the local pod subnet', p0, { rule: '10.244.1.0/24 dev podnet0 proto kernel scope link src 10.244.1.1', where: 'main' }),
      ob('n1', 'Bridge', 'Bridged', 'podnet0 forwards to the port of default/web-0', p0),
      ob('n1', 'Delivery', 'Delivered', 'pod default/web-0 eth0 (10.244.1.9)', p0),
    ], 0),
    path(1 / 3, '10.244.2.5', 'default/web-1', 'n2', remote('10.244.2.5', 'default/web-1', VXLAN, p1), 1),
    path(1 / 3, '10.244.2.7', 'default/web-2', 'n2', remote('10.244.2.7', 'default/web-2', VXLAN, p2), 2),
  ];
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: 'default/client',
    to: '10.96.0.10:80',
    packet: pkt(),
    paths,
    verdict: paths[0]!.verdict,
    tookMs: 14,
  };
}

/** Live, nftables, udp backend: the probe's one path, with kernel trace events. */
export function liveUdp(): TraceResult {
  const p = pkt({ dst: '10.244.2.5', dport: 8080 });
  const obs = [source, dnat('10.244.2.5', 1), ...remote('10.244.2.5', 'default/web-1', UDP, p)].map((o) =>
    o.component === 'Netfilter/LB' || o.component === 'Routing' ? { ...o, live: true } : o,
  );
  const verdict = delivered('default/web-1', 'n2', '10.244.2.5');
  return {
    schema: 'podnet.trace/v1',
    mode: 'live',
    from: 'default/client',
    to: 'svc/default/web:80',
    packet: pkt(),
    paths: [{ probability: 1, endpoint: { ip: '10.244.2.5', port: 8080, pod: 'default/web-1', node: 'n2' }, observations: obs, verdict }],
    verdict,
    probe: {
      result: 'connected',
      rttMs: 0.41,
      conntrack: [
        'tcp      6 118 TIME_WAIT src=10.244.1.5 dst=10.96.0.10 sport=40000 dport=80 src=10.244.2.5 dst=10.244.1.5 sport=8080 dport=40000 [ASSURED] mark=0 use=1',
      ],
    },
    tookMs: 812,
  };
}

/** Explain, host-gw: NodePort from outside, DNAT + masquerade on n1, delivered on n2. */
export function nodePortHostGw(): TraceResult {
  const start = pkt({ src: '203.0.113.7', sport: 51000, dst: '198.18.0.1', dport: 30080 });
  const dnatted = { ...start, dst: '10.244.2.5', dport: 8080 };
  const masq = { ...dnatted, src: '198.18.0.1', sport: 51000 };
  const obs: Observation[] = [
    ob('n1', 'Source', 'Received', 'arrived on eth0 from outside the cluster (203.0.113.7)', start),
    ob('n1', 'Netfilter/LB', 'DNAT', 'NodePort 30080 of Service default/web chose endpoint 10.244.2.5:8080', dnatted, {
      rule: 'meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-CDGGSHYL-default/web/tcp/80',
      where: 'ip podnet service-CDGGSHYL-default/web/tcp/80',
      origin: SVC,
    }),
    ob('n1', 'Netfilter/LB', 'Marked', 'externalTrafficPolicy Cluster: marked for masquerade', dnatted, {
      rule: 'jump mark-for-masquerade',
      where: 'ip podnet external-CDGGSHYL-default/web/tcp/80',
    }),
    ob('n1', 'Routing', 'Routed', "to n2's pod subnet 10.244.2.0/24 over host-gw", dnatted, { rule: '10.244.2.0/24 via 198.18.0.2 dev eth0 proto 222', where: 'main' }),
    ob('n1', 'Netfilter/LB', 'Masqueraded', 'source rewritten to the address of eth0', masq, {
      rule: 'masquerade fully-random',
      where: 'ip podnet masquerading',
    }),
    ob('n1', 'Transport', 'Forwarded', 'sent to n2 (198.18.0.2) on the underlay', masq, { transport: HOST_GW }),
    ob('n2', 'Transport', 'Received', 'received from n1 on eth0', masq),
    ob('n2', 'Bridge', 'Bridged', 'podnet0 forwards to the port of default/web-1', masq),
    ob('n2', 'Delivery', 'Delivered', 'pod default/web-1 eth0 (10.244.2.5)', masq),
  ];
  const verdict = delivered('default/web-1', 'n2', '10.244.2.5');
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: '203.0.113.7',
    to: '198.18.0.1:30080',
    packet: start,
    paths: [{ probability: 1, endpoint: { ip: '10.244.2.5', port: 8080, pod: 'default/web-1', node: 'n2' }, observations: obs, verdict }],
    verdict,
    tookMs: 9,
  };
}

/** Explain: a host process on n1 to a pod of n3, whose subnet n1 has no route for. */
export function droppedAtRouting(): TraceResult {
  const p = pkt({ src: '198.18.0.1', sport: 41000, dst: '10.244.3.4', dport: 80 });
  const rule = 'unreachable 10.244.0.0/16 proto 222';
  const verdict: Verdict = { kind: 'Dropped', node: 'n1', at: rule, reason: "no route to n3's pod subnet 10.244.3.0/24: n3 is not on-link (NotOnLink)" };
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: 'node/n1',
    to: '10.244.3.4:80',
    packet: p,
    paths: [
      {
        probability: 1,
        observations: [
          ob('n1', 'Source', 'Received', 'sent by a host process on n1', p),
          ob('n1', 'Routing', 'Dropped', 'the cluster CIDR route is unreachable for 10.244.3.4', p, { rule, where: 'main', origin: [{ kind: 'Node', name: 'n3' }] }),
        ],
        verdict,
      },
    ],
    verdict,
    tookMs: 3,
  };
}

export const REJECT_RULE = 'ct state new ip daddr . meta l4proto . th dport @no-endpoint-services goto reject-chain';

/** Explain: a ClusterIP without endpoints is refused (TCP reset) in filter-prerouting. */
export function rejected(): TraceResult {
  const p = pkt({ dst: '10.96.0.20' });
  const verdict: Verdict = { kind: 'Rejected', node: 'n1', at: REJECT_RULE, reason: 'Service default/empty has no endpoints: TCP reset' };
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: 'default/client',
    to: '10.96.0.20:80',
    packet: p,
    paths: [
      {
        probability: 1,
        observations: [
          { ...source, packet: p },
          ob('n1', 'Netfilter/LB', 'Rejected', 'no endpoints: answered with a TCP reset', p, {
            rule: REJECT_RULE,
            where: 'ip podnet filter-prerouting',
            origin: [{ kind: 'Service', namespace: 'default', name: 'empty' }],
          }),
        ],
        verdict,
      },
    ],
    verdict,
    tookMs: 2,
  };
}

/** A foreign iptables rule with a comment holding an escape sequence and XML specials. */
export const FOREIGN_RULE = '-A FORWARD -s 10.244.1.5/32 -m comment --comment "\x1b[31mblock <bad> & \'quote\'" -j DROP';

/** Explain, iptables: a foreign rule on the path makes the outcome Unknown. */
export function unknownForeign(): TraceResult {
  const p = pkt({ dst: '10.244.2.5', dport: 8080 });
  const verdict: Verdict = { kind: 'Unknown', node: 'n1', reason: 'a rule podnet did not write matches the packet (filter FORWARD): not interpreted' };
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: 'default/client',
    to: '10.244.2.5:8080',
    packet: p,
    paths: [
      {
        probability: 1,
        observations: [
          { ...source, packet: p },
          ob('n1', 'Routing', 'Routed', "to n2's pod subnet over vxlan", p, { rule: '10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 222', where: 'main' }),
          ob('n1', 'Netfilter/LB', 'Matched', 'foreign rule in filter FORWARD: "<bad>" & co', p, { rule: FOREIGN_RULE, where: 'filter FORWARD', foreign: true }),
        ],
        verdict,
      },
    ],
    verdict,
    tookMs: 5,
  };
}

export const ALL = { explainThreePaths, liveUdp, nodePortHostGw, droppedAtRouting, rejected, unknownForeign };
