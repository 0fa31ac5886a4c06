import { describe, expect, it } from 'vitest';
import type { Node, Pod, Service } from '../client/types.js';
import { PodnetError } from '../util/errors.js';
import type { LiveRequest } from './live/agent.js';
import type { TraceEvent } from './live/nftrace.js';
import type { ProbeResult } from './live/probe.js';
import { MAX_HOPS } from './node.js';
import type { Directory } from './node.js';
import { LIVE_DSCP, agentAddress, conntrackEndpoint, eventObservations, overall, runTrace } from './run.js';
import type { AgentAddress, TraceDeps, TraceOptions } from './run.js';
import type { NodeOutcome, NodeRequest, NodeStep, Observation, Packet, TracePath, Verdict } from './types.js';

// ---------------------------------------------------------------- the cluster

function node(name: string, ip: string, podCIDR: string, o: { port?: number; external?: string; conditions?: NonNullable<Node['status']>['conditions'] } = {}): Node {
  return {
    metadata: { name },
    spec: { podCIDR, podCIDRs: [podCIDR] },
    status: {
      addresses: [{ type: 'Hostname', address: name }, { type: 'InternalIP', address: ip }, ...(o.external ? [{ type: 'ExternalIP' as const, address: o.external }] : [])],
      ...(o.port !== undefined ? { daemonEndpoints: { kubeletEndpoint: { Port: o.port } } } : {}),
      ...(o.conditions ? { conditions: o.conditions } : {}),
    },
  };
}

function pod(namespace: string, name: string, nodeName: string | undefined, ips: string[], o: { hostNetwork?: boolean; legacy?: boolean } = {}): Pod {
  return {
    metadata: { namespace, name },
    spec: { containers: [{ name: 'c' }], ...(nodeName ? { nodeName } : {}), ...(o.hostNetwork ? { hostNetwork: true } : {}) },
    status: o.legacy ? { ...(ips[0] ? { podIP: ips[0] } : {}) } : { ...(ips[0] ? { podIP: ips[0] } : {}), podIPs: ips.map((ip) => ({ ip })) },
  };
}

function service(namespace: string, name: string, clusterIP: string, ports: NonNullable<Service['spec']>['ports']): Service {
  return { metadata: { namespace, name }, spec: { clusterIP, clusterIPs: [clusterIP], ports } };
}

const NODES: Node[] = [
  node('n1', '192.168.1.11', '10.244.1.0/24', { port: 10250 }),
  node('n2', '192.168.1.12', '10.244.2.0/24', { external: '203.0.113.12' }),
  node('n3', '192.168.1.13', '10.244.3.0/24'),
];

const PODS: Pod[] = [
  pod('default', 'client', 'n1', ['10.244.1.3']),
  pod('default', 'web-2', 'n2', ['10.244.2.5']),
  pod('default', 'web-3', 'n3', ['10.244.3.5'], { legacy: true }),
  pod('default', 'pending', undefined, []),
  pod('default', 'noip', 'n1', []),
  pod('default', 'orphan', 'gone', ['10.244.9.9']),
  pod('kube-system', 'agent', 'n1', ['192.168.1.11'], { hostNetwork: true }),
];

const SERVICES: Service[] = [
  service('default', 'web', '10.96.0.10', [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }]),
  service('kube-system', 'dns', '10.96.0.53', [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }]),
  service('default', 'headless', 'None', [{ port: 80 }]),
];

// ---------------------------------------------------------------- fakes

type Ask = (node: string, body: NodeRequest & { directory: Directory }) => Promise<NodeOutcome[]> | NodeOutcome[];

interface Recorded {
  asks: { node: AgentAddress; path: string; body: NodeRequest & { directory: Directory } }[];
  live: { node: AgentAddress; body: LiveRequest }[];
}

function deps(ask: Ask, o: { live?: (node: string, body: LiveRequest) => Promise<unknown>; nodes?: Node[]; pods?: Pod[]; services?: Service[]; onInterrupt?: TraceDeps['onInterrupt'] } = {}): { deps: TraceDeps; rec: Recorded } {
  const rec: Recorded = { asks: [], live: [] };
  return {
    rec,
    deps: {
      nodes: async () => o.nodes ?? NODES,
      pods: async () => o.pods ?? PODS,
      services: async () => o.services ?? SERVICES,
      ask: async (node, path, body) => {
        rec.asks.push({ node, path, body });
        const outcomes = await ask(node.name, body);
        return { node: node.name, proxyMode: 'nftables', backend: 'vxlan', outcomes, tookMs: 1 } satisfies NodeStep;
      },
      live: async (node, body) => {
        rec.live.push({ node, body });
        if (!o.live) throw new Error('live not expected');
        return o.live(node.name, body);
      },
      ...(o.onInterrupt ? { onInterrupt: o.onInterrupt } : {}),
    },
  };
}

const never: Ask = () => {
  throw new Error('ask must not be called');
};

const obs = (nodeName: string, action: string, packet: Packet, component: Observation['component'] = 'Routing'): Observation => ({ node: nodeName, component, action, detail: `${action} on ${nodeName}`, packet });

const delivered = (nodeName: string, podName: string, address: string): Verdict => ({ kind: 'Delivered', node: nodeName, pod: podName, address, reason: `delivered to pod ${podName} on node ${nodeName}` });

/** n1 load-balances 10.96.0.10:80 to web-2 (n2) and web-3 (n3), half each; they deliver. */
function lbAsk(over: Partial<Record<'n2' | 'n3', (body: NodeRequest) => NodeOutcome[]>> = {}): Ask {
  return (name, body) => {
    const p = body.packet;
    if (name === 'n1') {
      const to = (n: string, ip: string): NodeOutcome => {
        const after = { ...p, dst: ip, dport: 8080 };
        return { probability: 0.5, observations: [obs('n1', 'Sent', p, 'Source'), obs('n1', 'DNAT', after, 'Netfilter/LB'), obs('n1', 'Encapsulated', after, 'Transport')], next: { node: n, packet: after, ingress: { kind: 'transport', fromNode: 'n1' } }, endpoint: { ip, port: 8080, pod: `default/web-${n.slice(1)}`, node: n } };
      };
      return [to('n3', '10.244.3.5'), to('n2', '10.244.2.5')];
    }
    const f = over[name as 'n2' | 'n3'];
    if (f) return f(body);
    return [{ probability: 1, observations: [obs(name, 'Decapsulated', p, 'Transport'), obs(name, 'Delivered', p, 'Delivery')], verdict: delivered(name, `default/web-${name.slice(1)}`, `${p.dst}:${p.dport}`) }];
  };
}

async function rejection(p: Promise<unknown>): Promise<PodnetError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PodnetError);
    return e as PodnetError;
  }
  throw new Error('expected runTrace to reject');
}

/** runTrace must reject naming `field`, matching `message`, before asking any node. */
async function badInput(o: TraceOptions, field: string, message: RegExp | string, extra: Parameters<typeof deps>[1] = {}): Promise<void> {
  const { deps: d, rec } = deps(never, extra);
  const e = await rejection(runTrace(o, d));
  expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
  expect(e.context.field).toBe(field);
  if (typeof message === 'string') expect(e.message).toBe(message);
  else expect(e.message).toMatch(message);
  expect(rec.asks).toHaveLength(0);
  expect(rec.live).toHaveLength(0);
}

// ---------------------------------------------------------------- tests

describe('agentAddress', () => {
  it('the InternalIP and the published port', () => {
    expect(agentAddress(NODES[0]!)).toEqual({ name: 'n1', url: 'http://192.168.1.11:10250' });
  });
  it('the default port 10260 when the node published none', () => {
    expect(agentAddress(NODES[1]!)).toEqual({ name: 'n2', url: 'http://192.168.1.12:10260' });
    expect(agentAddress(NODES[1]!, 9999)).toEqual({ name: 'n2', url: 'http://192.168.1.12:9999' });
  });
  it('IPv6 in brackets', () => {
    expect(agentAddress(node('v6', 'fd00::11', 'fd00:10:244:1::/64', { port: 10261 }))).toEqual({ name: 'v6', url: 'http://[fd00::11]:10261' });
    expect(agentAddress(node('v6', 'fd00::11', 'fd00:10:244:1::/64'))).toEqual({ name: 'v6', url: 'http://[fd00::11]:10260' });
  });
  it('no InternalIP: an error naming the node', () => {
    const n: Node = { metadata: { name: 'ext' }, status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.1' }] } };
    expect(() => agentAddress(n)).toThrow('node ext has no InternalIP address: its agent cannot be reached');
  });
});

describe('runTrace: bad input is refused before any node is asked', () => {
  const to = '10.96.0.10:80';
  it('an unknown pod', () => badInput({ from: 'default/nope', to }, '--from', /pod default\/nope not found/));
  it('a pod without an IP', () => badInput({ from: 'default/noip', to }, '--from', '--from: pod default/noip has no IPv4 address yet'));
  it('a pod without a node', () => badInput({ from: 'default/pending', to }, '--from', '--from: pod default/pending is not scheduled to a node yet'));
  it('a pod on a node the API does not have', () => badInput({ from: 'default/orphan', to }, '--from', '--from: pod default/orphan runs on node gone, which is not in the API'));
  it('a pod without an address of the destination family', () => badInput({ from: 'default/client', to: '[fd00:10:96::a]:80' }, '--from', '--from: pod default/client has no IPv6 address yet'));
  it('an unknown node', () => badInput({ from: 'node/n9', to }, '--from', '--from: node n9 not found'));
  it('not a pod, node or IP', () => badInput({ from: 'Default/Client', to }, '--from', '--from: "Default/Client" is not NAMESPACE/NAME (a pod), node/NAME or an IP address'));
  it('an IP in a pod subnet that no pod has', () => badInput({ from: '10.244.1.99', to }, '--from', "--from: 10.244.1.99 is in a node's pod subnet but no pod has it"));
  it('an outside IP to a ClusterIP', () => badInput({ from: '198.51.100.7', to }, '--from', /outside every known range/));
  it('an outside IP to a pod', () => badInput({ from: '198.51.100.7', to: '10.244.2.5:8080' }, '--from', '--from: 198.51.100.7 is outside every known range (no pod, node or pod subnet has it); an outside client can only be traced to a node address (a NodePort), not to 10.244.2.5'));
  it('an outside IP of the other family', () => badInput({ from: '2001:db8::7', to: '192.168.1.12:30080' }, '--from', '--from: 2001:db8::7 is IPv6 but the destination 192.168.1.12 is IPv4'));
  it('a Service that does not exist', () => badInput({ from: 'default/client', to: 'svc/default/nope:80' }, '--to', '--to: Service default/nope not found'));
  it('a Service port it does not serve', () => badInput({ from: 'default/client', to: 'svc/default/web:9999' }, '--to', '--to: Service default/web has no TCP port 9999 (it serves http=80/tcp)'));
  it('a Service port name it does not have', () => badInput({ from: 'default/client', to: 'svc/default/web:https' }, '--to', '--to: Service default/web has no TCP port https (it serves http=80/tcp)'));
  it('a Service port of another protocol', () => badInput({ from: 'default/client', to: 'svc/default/web:80/udp' }, '--to', '--to: Service default/web has no UDP port 80 (it serves http=80/tcp)'));
  it('a ClusterIP port it does not serve', () => badInput({ from: 'default/client', to: '10.96.0.10:9999' }, '--to', '--to: 10.96.0.10 is the ClusterIP of Service default/web, which does not serve 9999/tcp (it serves 80/tcp)'));
  it('a ClusterIP with the wrong protocol', () => badInput({ from: 'default/client', to: '10.96.0.53:53/sctp' }, '--to', '--to: 10.96.0.53 is the ClusterIP of Service kube-system/dns, which does not serve 53/sctp (it serves 53/udp, 53/tcp)'));
  it('a headless Service', () => badInput({ from: 'default/client', to: 'svc/default/headless:80' }, '--to', '--to: Service default/headless has no ClusterIP (headless): trace a pod address instead'));
  it('a bad --to', () => badInput({ from: 'default/client', to: 'web:80' }, '--to', '--to: "web" is not an IP address or svc/NAMESPACE/NAME'));
  for (const srcPort of [0, 65536, 1.5, -1]) {
    it(`--src-port ${srcPort}`, () => badInput({ from: 'default/client', to, srcPort }, '--src-port', `--src-port: ${srcPort} is not a port (1-65535)`));
  }
  for (const size of [27, 65536, 100.5]) {
    it(`--size ${size}`, () => badInput({ from: 'default/client', to, size }, '--size', `--size: ${size} is not an IP packet size (28-65535 bytes)`));
  }

  // A node address of the other family is refused here, not sent to the node.
  it('a node address of the other family', () => badInput({ from: '192.168.1.11', to: '[fd00:10:96::a]:80' }, '--from', /IPv4 but the destination fd00:10:96::a is IPv6/));
});

describe('runTrace: the packet and the first node', () => {
  it('from a pod to a Service by port name: the ClusterIP and the port number, the pod ingress, the directory', async () => {
    const { deps: d, rec } = deps(lbAsk());
    const r = await runTrace({ from: 'default/client', to: 'svc/default/web:http', srcPort: 40000 }, d);
    expect(r.schema).toBe('podnet.trace/v1');
    expect(r.mode).toBe('explain');
    expect(r.from).toBe('default/client');
    expect(r.to).toBe('svc/default/web:http');
    expect(r.packet).toEqual({ family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 40 });
    const first = rec.asks[0]!;
    expect(first.node).toEqual({ name: 'n1', url: 'http://192.168.1.11:10250' });
    expect(first.path).toBe('/trace/explain');
    expect(first.body.packet).toEqual(r.packet);
    expect(first.body.ingress).toEqual({ kind: 'pod', namespace: 'default', name: 'client' });
    expect(first.body.directory.nodes).toEqual([
      { name: 'n1', addresses: ['192.168.1.11'], podCIDRs: ['10.244.1.0/24'] },
      { name: 'n2', addresses: ['192.168.1.12', '203.0.113.12'], podCIDRs: ['10.244.2.0/24'] },
      { name: 'n3', addresses: ['192.168.1.13'], podCIDRs: ['10.244.3.0/24'] },
    ]);
    // Pods without an address and host-network pods are not in the directory; podIP alone counts.
    expect(first.body.directory.pods).toEqual([
      { namespace: 'default', name: 'client', ips: ['10.244.1.3'], node: 'n1' },
      { namespace: 'default', name: 'web-2', ips: ['10.244.2.5'], node: 'n2' },
      { namespace: 'default', name: 'web-3', ips: ['10.244.3.5'], node: 'n3' },
      { namespace: 'default', name: 'orphan', ips: ['10.244.9.9'], node: 'gone' },
    ]);
  });

  it("a node's PodnetTransport=False condition travels in the directory", async () => {
    const nodes = [node('n1', '192.168.1.11', '10.244.1.0/24', { conditions: [{ type: 'Ready', status: 'True' }, { type: 'PodnetTransport', status: 'False', reason: 'NotOnLink', message: 'peer n2 is off-link' }] }), NODES[1]!, NODES[2]!];
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [], verdict: { kind: 'Dropped', node: 'n1', reason: 'x' } }], { nodes });
    await runTrace({ from: 'default/client', to: '10.244.2.5:8080' }, d);
    expect(rec.asks[0]!.body.directory.nodes[0]).toEqual({ name: 'n1', addresses: ['192.168.1.11'], podCIDRs: ['10.244.1.0/24'], transportProblem: { reason: 'NotOnLink', message: 'peer n2 is off-link' } });
    expect(rec.asks[0]!.body.directory.nodes[1]).not.toHaveProperty('transportProblem');
  });

  it('a random source port in the ephemeral range; --size is kept; icmp has dport 0', async () => {
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n2', 'default/web-2', '10.244.2.5:0') }]);
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080/udp', size: 1400 }, d);
    expect(r.packet.sport).toBeGreaterThanOrEqual(32768);
    expect(r.packet.sport).toBeLessThan(61000);
    expect(r.packet).toMatchObject({ proto: 'udp', dport: 8080, size: 1400 });
    const i = await runTrace({ from: 'default/client', to: '10.244.2.5/icmp' }, d);
    expect(i.packet).toMatchObject({ proto: 'icmp', dport: 0, size: 28 });
    expect(i.packet.sport).toBeGreaterThanOrEqual(1);
    expect(rec.asks).toHaveLength(2);
  });

  it('from a node by name: the node ingress', async () => {
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n2', 'default/web-2', '10.244.2.5:8080') }]);
    const r = await runTrace({ from: 'node/n2', to: '10.244.2.5:8080', srcPort: 1234 }, d);
    expect(r.from).toBe('node/n2');
    expect(r.packet.src).toBe('192.168.1.12');
    expect(rec.asks[0]!.node.name).toBe('n2');
    expect(rec.asks[0]!.body.ingress).toEqual({ kind: 'node' });
  });

  it("from a pod's IP: that pod; from a node's IP: that node", async () => {
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n2', 'default/web-2', '10.244.2.5:8080') }]);
    const a = await runTrace({ from: '10.244.3.5', to: '10.244.2.5:8080' }, d);
    expect(a.from).toBe('10.244.3.5');
    expect(rec.asks[0]!.node.name).toBe('n3');
    expect(rec.asks[0]!.body.ingress).toEqual({ kind: 'pod', namespace: 'default', name: 'web-3' });
    const b = await runTrace({ from: '192.168.1.13', to: '10.244.2.5:8080' }, d);
    expect(b.from).toBe('node/n3 (192.168.1.13)');
    expect(rec.asks[1]!.body.ingress).toEqual({ kind: 'node' });
  });

  it('an outside IP to a node address is allowed: external ingress on that node', async () => {
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n2', 'default/web-2', '10.244.2.5:8080') }]);
    const r = await runTrace({ from: '198.51.100.7', to: '203.0.113.12:30080' }, d);
    expect(r.from).toBe('198.51.100.7 (outside the cluster)');
    expect(rec.asks).toHaveLength(1);
    expect(rec.asks[0]!.node).toEqual({ name: 'n2', url: 'http://192.168.1.12:10260' });
    expect(rec.asks[0]!.body.ingress).toEqual({ kind: 'external' });
    expect(rec.asks[0]!.body.packet).toMatchObject({ src: '198.51.100.7', dst: '203.0.113.12', dport: 30080 });
  });
});

describe('runTrace: following the packet', () => {
  it('two load-balanced paths that both deliver', async () => {
    const { deps: d, rec } = deps(lbAsk());
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', srcPort: 40000 }, d);
    expect(rec.asks.map((a) => a.node.name)).toEqual(['n1', 'n3', 'n2']);
    // The next node gets the packet and ingress n1 handed over.
    const n2 = rec.asks.find((a) => a.node.name === 'n2')!;
    expect(n2.body.packet).toEqual({ family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.244.2.5', dport: 8080, size: 40 });
    expect(n2.body.ingress).toEqual({ kind: 'transport', fromNode: 'n1' });
    expect(r.paths).toHaveLength(2);
    // Sorted by probability, then endpoint address.
    expect(r.paths.map((p) => [p.probability, p.endpoint?.ip, p.verdict.kind])).toEqual([
      [0.5, '10.244.2.5', 'Delivered'],
      [0.5, '10.244.3.5', 'Delivered'],
    ]);
    expect(r.paths[0]!.endpoint).toEqual({ ip: '10.244.2.5', port: 8080, pod: 'default/web-2', node: 'n2' });
    expect(r.paths[0]!.observations.map((o) => `${o.node} ${o.action}`)).toEqual(['n1 Sent', 'n1 DNAT', 'n1 Encapsulated', 'n2 Decapsulated', 'n2 Delivered']);
    expect(r.verdict).toEqual({ kind: 'Delivered', reason: 'delivered on every path: to one of 2 endpoints (default/web-2, default/web-3)' });
  });

  it('one branch dropped: the trace is Dropped, on 50.0% of the paths', async () => {
    const drop: Verdict = { kind: 'Dropped', node: 'n3', at: 'ip podnet filter-input drop', reason: 'dropped by a policy on node n3' };
    const { deps: d } = deps(lbAsk({ n3: (b) => [{ probability: 1, observations: [obs('n3', 'Dropped', b.packet)], verdict: drop }] }));
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80' }, d);
    expect(r.paths.map((p) => p.verdict.kind)).toEqual(['Delivered', 'Dropped']);
    expect(r.verdict).toEqual({ ...drop, reason: 'dropped by a policy on node n3 (on 50.0% of the paths; the others deliver)' });
  });

  it('an agent that cannot be asked: that path is Unknown, naming the node', async () => {
    const { deps: d } = deps(
      lbAsk({
        n3: () => {
          throw new Error('connect ECONNREFUSED 192.168.1.13:10260');
        },
      }),
    );
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80' }, d);
    const bad = r.paths.find((p) => p.verdict.kind !== 'Delivered')!;
    expect(bad.probability).toBe(0.5);
    expect(bad.endpoint?.ip).toBe('10.244.3.5');
    expect(bad.verdict).toEqual({ kind: 'Unknown', node: 'n3', reason: 'could not ask the agent on node n3: connect ECONNREFUSED 192.168.1.13:10260' });
    expect(bad.observations.map((o) => o.node)).toEqual(['n1', 'n1', 'n1']);
    expect(r.verdict).toEqual({ kind: 'Unknown', node: 'n3', reason: 'could not ask the agent on node n3: connect ECONNREFUSED 192.168.1.13:10260 (on 50.0% of the paths; the others deliver)' });
  });

  it('a next node the API does not have: Unknown', async () => {
    const { deps: d, rec } = deps((name, b) => (name === 'n1' ? [{ probability: 1, observations: [obs('n1', 'Encapsulated', b.packet)], next: { node: 'n9', packet: b.packet, ingress: { kind: 'transport', fromNode: 'n1' } } }] : []));
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080' }, d);
    expect(rec.asks).toHaveLength(1);
    expect(r.paths).toHaveLength(1);
    expect(r.paths[0]!.verdict).toEqual({ kind: 'Unknown', reason: 'node n9 is not in the API' });
    expect(r.verdict).toEqual({ kind: 'Unknown', reason: 'node n9 is not in the API' });
  });

  it('an outcome with neither verdict nor next: Unknown', async () => {
    const { deps: d } = deps(() => [{ probability: 1, observations: [] }]);
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080' }, d);
    expect(r.verdict).toEqual({ kind: 'Unknown', node: 'n1', reason: 'the node gave neither a verdict nor a next hop' });
  });

  it(`a loop between two nodes stops after ${MAX_HOPS} hops: Unknown`, async () => {
    expect(MAX_HOPS).toBe(8);
    const { deps: d, rec } = deps((name, b) => {
      const other = name === 'n1' ? 'n2' : 'n1';
      return [{ probability: 1, observations: [obs(name, 'Routed', b.packet)], next: { node: other, packet: b.packet, ingress: { kind: 'transport', fromNode: name } } }];
    });
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080' }, d);
    expect(rec.asks.map((a) => a.node.name)).toEqual(['n1', 'n2', 'n1', 'n2', 'n1', 'n2', 'n1', 'n2']);
    expect(r.paths).toHaveLength(1);
    expect(r.paths[0]!.observations).toHaveLength(MAX_HOPS);
    expect(r.paths[0]!.probability).toBe(1);
    expect(r.verdict).toEqual({ kind: 'Unknown', node: 'n2', reason: 'more than 8 node hops: a routing loop?' });
  });

  it('probabilities multiply along a path', async () => {
    const { deps: d } = deps(
      lbAsk({
        n2: (b) => [0.25, 0.75].map((probability, i) => ({ probability, observations: [], verdict: delivered('n2', `default/web-2${i}`, `${b.packet.dst}:8080`) })),
      }),
    );
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80' }, d);
    expect(r.paths.map((p) => p.probability)).toEqual([0.5, 0.375, 0.125]);
    expect(r.paths.map((p) => p.verdict.pod)).toEqual(['default/web-3', 'default/web-21', 'default/web-20']);
  });
});

describe('overall', () => {
  const path = (probability: number, verdict: Verdict): TracePath => ({ probability, observations: [], verdict });
  const d2 = delivered('n2', 'default/web-2', '10.244.2.5:8080');
  const d3 = delivered('n3', 'default/web-3', '10.244.3.5:8080');

  it('no path', () => {
    expect(overall([])).toEqual({ kind: 'Unknown', reason: 'no path' });
  });
  it('one path: its verdict', () => {
    expect(overall([path(1, d2)])).toEqual(d2);
  });
  it('every path delivers to different pods', () => {
    expect(overall([path(0.5, d2), path(0.5, d3)])).toEqual({ kind: 'Delivered', reason: 'delivered on every path: to one of 2 endpoints (default/web-2, default/web-3)' });
  });
  it('every path delivers to the same pod: that verdict', () => {
    expect(overall([path(0.5, d2), path(0.5, { ...d2, reason: 'other' })])).toEqual(d2);
  });
  it('some paths fail: the most likely failing one, with the failing share', () => {
    const drop: Verdict = { kind: 'Dropped', node: 'n1', at: 'x', reason: 'dropped' };
    const unk: Verdict = { kind: 'Unknown', node: 'n3', reason: 'unknown' };
    expect(overall([path(0.5, d2), path(0.2, drop), path(0.3, unk)])).toEqual({ ...unk, reason: 'unknown (on 50.0% of the paths; the others deliver)' });
    expect(overall([path(2 / 3, d2), path(1 / 3, drop)])).toEqual({ ...drop, reason: 'dropped (on 33.3% of the paths; the others deliver)' });
  });
  it('every path fails: the most likely one, unchanged', () => {
    const drop: Verdict = { kind: 'Dropped', node: 'n1', at: 'x', reason: 'dropped' };
    const rej: Verdict = { kind: 'Rejected', node: 'n1', at: 'y', reason: 'rejected' };
    expect(overall([path(0.25, drop), path(0.75, rej)])).toEqual(rej);
  });
});

describe('conntrackEndpoint', () => {
  it('the reply tuple source of a conntrack -L line', () => {
    expect(conntrackEndpoint('tcp      6 117 SYN_SENT src=10.244.1.3 dst=10.96.0.10 sport=40000 dport=80 [UNREPLIED] src=10.244.2.5 dst=10.244.1.3 sport=8080 dport=40000 mark=0 use=1')).toEqual({ ip: '10.244.2.5', port: 8080 });
    expect(conntrackEndpoint('udp      17 29 src=fd00:10:244:1::3 dst=fd00:10:96::a sport=5353 dport=53 src=fd00:10:244:2::5 dst=fd00:10:244:1::3 sport=5353 dport=5353 mark=0 use=1')).toEqual({ ip: 'fd00:10:244:2::5', port: 5353 });
  });
  it('nothing usable', () => {
    expect(conntrackEndpoint('')).toBeUndefined();
    expect(conntrackEndpoint('tcp      6 117 SYN_SENT src=10.244.1.3 dst=10.96.0.10 sport=40000 dport=80')).toBeUndefined();
    expect(conntrackEndpoint('icmp     1 29 src=10.244.1.3 dst=10.244.2.5 type=8 code=0 id=7 src=10.244.2.5 dst=10.244.1.3 type=0 code=0 id=7 mark=0 use=1')).toBeUndefined();
  });
});

const ev = (e: Partial<TraceEvent> & Pick<TraceEvent, 'table' | 'chain' | 'kind'>): TraceEvent => ({ id: '1a2b3c4d', family: 'ip', raw: '', ...e });

describe('eventObservations', () => {
  const p: Packet = { family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 40 };
  const events: TraceEvent[] = [
    ev({ table: 'podnet-trace-abc', chain: 'pre', kind: 'packet', fields: { iif: '"podnet0"' } }),
    ev({ table: 'podnet-trace-abc', chain: 'pre', kind: 'rule', rule: 'ip dscp 0x2b meta nftrace set 1', verdict: 'continue' }),
    ev({ table: 'podnet', chain: 'prerouting', kind: 'packet', fields: { iif: '"podnet0"', 'ip saddr': '10.244.1.3', 'ip daddr': '10.96.0.10' } }),
    ev({ table: 'podnet', chain: 'prerouting', kind: 'packet', fields: { iif: '"podnet0"', 'ip saddr': '10.244.1.3', 'ip daddr': '10.96.0.10' } }),
    ev({ table: 'podnet', chain: 'prerouting', kind: 'rule', rule: 'ip daddr 10.96.0.10 tcp dport 80 jump svc-web', verdict: 'jump svc-web' }),
    ev({ table: 'podnet', chain: 'svc-web', kind: 'packet', fields: { 'ip saddr': '10.244.1.3', 'ip daddr': '10.96.0.10', oif: '"podnet.1"' } }),
    ev({ family: 'ip6', table: 'podnet', chain: 'postrouting', kind: 'packet', fields: { 'ip6 saddr': 'fd00::3', 'ip6 daddr': 'fd00::5' } }),
    ev({ table: 'podnet', chain: 'postrouting', kind: 'policy', verdict: 'accept' }),
  ];

  it('our own trace table left out, one Received per chain, rules Matched, policies Accepted, all live', () => {
    const out = eventObservations('n1', events, p);
    expect(out).toEqual([
      { node: 'n1', component: 'Netfilter/LB', action: 'Received', detail: 'kernel trace: the probe entered ip podnet prerouting (in podnet0): 10.244.1.3 → 10.96.0.10', where: 'ip podnet prerouting', packet: p, live: true },
      { node: 'n1', component: 'Netfilter/LB', action: 'Matched', detail: 'kernel trace: rule matched, verdict jump svc-web', rule: 'ip daddr 10.96.0.10 tcp dport 80 jump svc-web', where: 'ip podnet prerouting', packet: p, live: true },
      { node: 'n1', component: 'Netfilter/LB', action: 'Received', detail: 'kernel trace: the probe entered ip podnet svc-web (out podnet.1): 10.244.1.3 → 10.96.0.10', where: 'ip podnet svc-web', packet: p, live: true },
      { node: 'n1', component: 'Netfilter/LB', action: 'Received', detail: 'kernel trace: the probe entered ip6 podnet postrouting: fd00::3 → fd00::5', where: 'ip6 podnet postrouting', packet: p, live: true },
      { node: 'n1', component: 'Netfilter/LB', action: 'Accepted', detail: 'kernel trace: ip podnet postrouting policy accept', where: 'ip podnet postrouting', packet: p, live: true },
    ]);
  });

  it('a packet without address fields; a rule without a verdict', () => {
    const out = eventObservations('n2', [ev({ table: 'filter', chain: 'input', kind: 'packet' }), ev({ table: 'filter', chain: 'input', kind: 'rule', rule: 'counter' })], p);
    expect(out.map((o) => o.detail)).toEqual(['kernel trace: the probe entered ip filter input: ? → ?', 'kernel trace: rule matched']);
  });

  it('no events: nothing', () => {
    expect(eventObservations('n1', [], p)).toEqual([]);
  });
});

// ---------------------------------------------------------------- live mode

const CT_WEB3 = 'tcp      6 117 SYN_SENT src=10.244.1.3 dst=10.96.0.10 sport=40000 dport=80 [UNREPLIED] src=10.244.3.5 dst=10.244.1.3 sport=8080 dport=40000 mark=0 use=1';

interface LiveScript {
  probe?: Partial<ProbeResult> | (() => Promise<unknown>);
  start?: (node: string) => Promise<unknown>;
  stop?: Record<string, unknown>;
}

function liveFake(s: LiveScript = {}): (node: string, body: LiveRequest) => Promise<unknown> {
  return async (nodeName, body) => {
    switch (body.phase) {
      case 'start':
        return s.start ? s.start(nodeName) : { tracing: true };
      case 'probe':
        if (typeof s.probe === 'function') return s.probe();
        return { probe: { result: 'connected', rttMs: 1.2, sport: 40000, sent: true, ...s.probe } };
      case 'stop':
        return s.stop?.[nodeName] ?? { events: [], conntrack: [] };
    }
  };
}

const byPhase = (rec: Recorded, phase: LiveRequest['phase']) => rec.live.filter((l) => l.body.phase === phase);

describe('runTrace --live', () => {
  it('start on every involved node, the probe on the source, stop on every node; the path conntrack names', async () => {
    const stop = {
      n1: {
        events: [
          ev({ table: 'podnet-trace-x', chain: 'pre', kind: 'packet' }),
          ev({ table: 'podnet', chain: 'prerouting', kind: 'packet', fields: { 'ip saddr': '10.244.1.3', 'ip daddr': '10.96.0.10' } }),
          ev({ table: 'podnet', chain: 'prerouting', kind: 'rule', rule: 'ip daddr 10.96.0.10 jump svc-web', verdict: 'jump svc-web' }),
        ],
        conntrack: [CT_WEB3],
      },
      n3: { events: [ev({ table: 'podnet', chain: 'prerouting', kind: 'packet', fields: { 'ip saddr': '10.244.1.3', 'ip daddr': '10.244.3.5' } })], conntrack: [] },
    };
    let released = 0;
    let interruptStop: (() => Promise<void>) | undefined;
    const { deps: d, rec } = deps(lbAsk(), {
      live: liveFake({ stop }),
      onInterrupt: (s) => {
        interruptStop = s;
        return () => void released++;
      },
    });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', srcPort: 40000, live: true, timeoutMs: 2000 }, d);

    const starts = byPhase(rec, 'start');
    expect(starts.map((s) => s.node.name).sort()).toEqual(['n1', 'n2', 'n3']);
    const id = (starts[0]!.body as { id: string }).id;
    expect(id).toMatch(/^[a-z0-9]{1,16}$/);
    for (const s of starts) expect(s.body).toEqual({ phase: 'start', id, family: 4, dscp: LIVE_DSCP, sport: 40000, proto: 'tcp' });
    expect(LIVE_DSCP).toBe(0x2b);
    const probes = byPhase(rec, 'probe');
    expect(probes).toHaveLength(1);
    expect(probes[0]!.node).toEqual({ name: 'n1', url: 'http://192.168.1.11:10250' });
    expect(probes[0]!.body).toEqual({ phase: 'probe', id, dscp: LIVE_DSCP, timeoutMs: 2000, packet: r.packet, source: { kind: 'pod', namespace: 'default', name: 'client' } });
    const stops = byPhase(rec, 'stop');
    expect(stops.map((s) => s.node.name).sort()).toEqual(['n1', 'n2', 'n3']);
    for (const s of stops) expect(s.body).toEqual({ phase: 'stop', id });
    // The order: every start, then the probe, then the stops.
    expect(rec.live.map((l) => l.body.phase)).toEqual(['start', 'start', 'start', 'probe', 'stop', 'stop', 'stop']);
    expect(released).toBe(1);
    // Stopping again (a late Ctrl-C) sends nothing.
    await interruptStop!();
    expect(byPhase(rec, 'stop')).toHaveLength(3);

    expect(r.mode).toBe('live');
    expect(r.paths).toHaveLength(1);
    const path = r.paths[0]!;
    expect(path.probability).toBe(1);
    expect(path.endpoint).toEqual({ ip: '10.244.3.5', port: 8080, pod: 'default/web-3', node: 'n3' });
    expect(path.observations.map((o) => `${o.node} ${o.action}${o.live ? ' (live)' : ''}`)).toEqual([
      'n1 Sent',
      'n1 DNAT',
      'n1 Encapsulated',
      'n1 Received (live)',
      'n1 Matched (live)',
      'n3 Decapsulated',
      'n3 Delivered',
      'n3 Received (live)',
    ]);
    expect(r.verdict).toEqual({ ...delivered('n3', 'default/web-3', '10.244.3.5:8080'), reason: 'delivered to pod default/web-3 on node n3; the probe was answered in 1.2 ms' });
    expect(path.verdict).toEqual(r.verdict);
    expect(r.probe).toEqual({ result: 'connected', rttMs: 1.2, conntrack: [`n1: ${CT_WEB3}`] });
  });

  it('the other endpoint when conntrack names it', async () => {
    const ct = CT_WEB3.replace('src=10.244.3.5', 'src=10.244.2.5');
    const { deps: d } = deps(lbAsk(), { live: liveFake({ stop: { n1: { events: [], conntrack: [ct], ipvs: ['TCP 0AF40103 9C40 0A60000A 0050 0AF40205 1F90 SYN_RECV 57'] } } }) });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', srcPort: 40000, live: true }, d);
    expect(r.paths[0]!.endpoint?.ip).toBe('10.244.2.5');
    expect(r.verdict.pod).toBe('default/web-2');
    expect(r.probe?.conntrack).toEqual([`n1: ${ct}`, 'ipvs: TCP 0AF40103 9C40 0A60000A 0050 0AF40205 1F90 SYN_RECV 57']);
  });

  it('the probe call throws: stop still goes to every started node, the error comes out', async () => {
    const { deps: d, rec } = deps(lbAsk(), { live: liveFake({ probe: () => Promise.reject(new Error('probe: agent gone')) }) });
    await expect(runTrace({ from: 'default/client', to: '10.96.0.10:80', live: true }, d)).rejects.toThrow('probe: agent gone');
    expect(byPhase(rec, 'start')).toHaveLength(3);
    expect(byPhase(rec, 'stop').map((s) => s.node.name).sort()).toEqual(['n1', 'n2', 'n3']);
  });

  it('a stop that fails is reported in the verdict, the others still stop', async () => {
    const { deps: d, rec } = deps(lbAsk(), {
      live: async (n, b) => {
        if (b.phase === 'stop' && n === 'n2') throw new Error('timeout');
        return liveFake({ stop: { n1: { events: [], conntrack: [CT_WEB3] } } })(n, b);
      },
    });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', srcPort: 40000, live: true }, d);
    expect(byPhase(rec, 'stop')).toHaveLength(3);
    expect(r.verdict.kind).toBe('Delivered');
    expect(r.verdict.reason).toBe('delivered to pod default/web-3 on node n3; the probe was answered in 1.2 ms (stopping the trace on n2: timeout)');
  });

  it('an outside source cannot be probed: refused before any trace is started', async () => {
    const { deps: d, rec } = deps(() => [{ probability: 1, observations: [obs('n2', 'Received', { family: 4, proto: 'tcp', src: '198.51.100.7', sport: 1, dst: '203.0.113.12', dport: 30080, size: 40 })], verdict: delivered('n2', 'default/web-2', '10.244.2.5:8080') }], { live: liveFake() });
    const e = await rejection(runTrace({ from: '198.51.100.7', to: '203.0.113.12:30080', live: true }, d));
    expect(e.message).toBe('--live needs a pod or node source: podnet cannot send from outside the cluster');
    expect(byPhase(rec, 'probe')).toHaveLength(0);
    expect(byPhase(rec, 'start')).toHaveLength(0);
    expect(byPhase(rec, 'stop')).toHaveLength(0);
  });

  it("'refused': Rejected", async () => {
    const { deps: d } = deps(lbAsk(), { live: liveFake({ probe: { result: 'refused', errno: 'ECONNREFUSED', rttMs: 0.4 }, stop: { n1: { events: [], conntrack: [CT_WEB3] } } }) });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', srcPort: 40000, live: true }, d);
    expect(r.verdict).toEqual({ kind: 'Rejected', node: 'n3', at: 'a TCP reset', reason: 'the probe was refused (ECONNREFUSED); the explanation says Delivered: delivered to pod default/web-3 on node n3' });
    expect(r.probe).toEqual({ result: 'refused', rttMs: 0.4, conntrack: [`n1: ${CT_WEB3}`] });
  });

  it("'refused' by an ICMP error, explained as Rejected: the explanation's rule", async () => {
    const rej: Verdict = { kind: 'Rejected', node: 'n1', at: 'ip daddr 10.96.0.20 tcp dport 80 reject', reason: 'Service default/empty has no endpoints' };
    const services = [...SERVICES, service('default', 'empty', '10.96.0.20', [{ port: 80 }])];
    const { deps: d } = deps(() => [{ probability: 1, observations: [], verdict: rej }], { services, live: liveFake({ probe: { result: 'refused', errno: 'ECONNREFUSED', from: '10.96.0.20' } }) });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.20:80', live: true }, d);
    expect(r.verdict).toEqual({ kind: 'Rejected', node: 'n1', at: 'ip daddr 10.96.0.20 tcp dport 80 reject', reason: 'the probe was refused (ECONNREFUSED from 10.96.0.20)' });
  });

  it("'timeout' explained as Dropped: Dropped, keeping the explanation's rule", async () => {
    const drop: Verdict = { kind: 'Dropped', node: 'n1', at: 'podnet.1 mtu 1450', reason: 'packet of 1400 bytes is too large for the vxlan transport (MTU 1450)' };
    const { deps: d } = deps(() => [{ probability: 1, observations: [], verdict: drop }], { live: liveFake({ probe: { result: 'timeout', rttMs: undefined } }) });
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080', live: true }, d);
    expect(r.verdict).toEqual({ ...drop, reason: 'packet of 1400 bytes is too large for the vxlan transport (MTU 1450); the probe: timeout' });
    expect(r.probe).toEqual({ result: 'timeout', conntrack: [] });
  });

  it("'timeout' although the explanation says Delivered: Dropped", async () => {
    const { deps: d } = deps(lbAsk(), { live: liveFake({ probe: { result: 'timeout', rttMs: undefined } }) });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', live: true }, d);
    expect(r.verdict).toEqual({ kind: 'Dropped', reason: 'the probe: timeout, although the explanation says Delivered' });
  });

  it("'connected' although the explanation says Dropped: Delivered by the conntrack endpoint", async () => {
    const drop: Verdict = { kind: 'Dropped', node: 'n1', at: 'x', reason: 'dropped' };
    const { deps: d } = deps(() => [{ probability: 1, observations: [], verdict: drop }], { live: liveFake({ stop: { n1: { events: [], conntrack: [CT_WEB3] } } }) });
    const r = await runTrace({ from: 'default/client', to: '10.96.0.10:80', live: true }, d);
    expect(r.verdict).toEqual({ kind: 'Delivered', address: '10.244.3.5:8080', reason: 'the probe was answered by 10.244.3.5:8080 although the explanation says Dropped: dropped' });
  });

  it("'sent' (UDP, no answer): Unknown", async () => {
    const { deps: d } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n2', 'default/web-2', '10.244.2.5:8080') }], { live: liveFake({ probe: { result: 'sent', rttMs: undefined } }) });
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080/udp', live: true }, d);
    expect(r.verdict).toEqual({ kind: 'Unknown', reason: 'the probe got no answer within the timeout (UDP gives none when nothing replies); the explanation says Delivered: delivered to pod default/web-2 on node n2' });
  });

  it("a node without nftrace: its reason is noted", async () => {
    const { deps: d } = deps(() => [{ probability: 1, observations: [obs('n1', 'Sent', { family: 4, proto: 'tcp', src: '10.244.1.3', sport: 1, dst: '10.244.2.5', dport: 8080, size: 40 })], verdict: delivered('n1', 'default/web-2', '10.244.2.5:8080') }], {
      live: liveFake({ start: async () => ({ tracing: false, reason: 'no kernel trace events on this node: nft: not found' }) }),
    });
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080', live: true }, d);
    expect(r.verdict.reason).toBe('delivered to pod default/web-2 on node n1; the probe was answered in 1.2 ms (n1: no kernel trace events on this node: nft: not found)');
  });

  // An agent that still repeats the start's reason in its stop answer: said once.
  it("a node without nftrace whose stop repeats the reason: noted once", async () => {
    const why = 'no kernel trace events on this node: nft: not found';
    const { deps: d } = deps(() => [{ probability: 1, observations: [], verdict: delivered('n1', 'default/web-2', '10.244.2.5:8080') }], {
      live: liveFake({ start: async () => ({ tracing: false, reason: why }), stop: { n1: { events: [], conntrack: [], reason: why } } }),
    });
    const r = await runTrace({ from: 'default/client', to: '10.244.2.5:8080', live: true }, d);
    expect(r.verdict.reason).toBe(`delivered to pod default/web-2 on node n1; the probe was answered in 1.2 ms (n1: ${why})`);
  });

  // Starts settle before an error is thrown: a start still in flight when another fails is stopped too.
  it('a start that fails while another is in flight: the late one is stopped too', async () => {
    const { deps: d, rec } = deps(lbAsk(), {
      live: liveFake({
        start: async (n) => {
          if (n === 'n2') throw new Error('n2: agent gone');
          await new Promise((r) => setTimeout(r, n === 'n1' ? 50 : 0));
          return { tracing: true };
        },
      }),
    });
    await expect(runTrace({ from: 'default/client', to: '10.96.0.10:80', live: true }, d)).rejects.toThrow('n2: agent gone');
    await new Promise((r) => setTimeout(r, 100));
    const started = ['n1', 'n3'];
    expect(byPhase(rec, 'stop').map((s) => s.node.name).sort()).toEqual(started);
  });
});
