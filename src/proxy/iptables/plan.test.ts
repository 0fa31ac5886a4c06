// Golden tests of the iptables planner: each service shape's whole restore input is
// compared with a reviewed file under __golden__/ (vitest file snapshots: a changed
// planner shows up as a diff of restore text), plus targeted assertions on what each
// shape must contain, partial syncs, stale cleanup, the probability cascade and timing.
import { describe, expect, it } from 'vitest';
import type { EndpointSlice, Service } from '../../client/types.js';
import { endpointHash, portHash } from '../names.js';
import { buildSnapshot } from '../snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../types.js';
import { endpoint, endpointIP, syntheticSnapshot, withoutPort, withPort } from './fixtures.js';
import {
  CHAIN_PREFIX,
  JUMPS,
  cleanupInput,
  bucketChain,
  extChain,
  jumpLine,
  lowByte,
  parseSaved,
  planIptables,
  probability,
  sepChain,
  svcChain,
  svlChain,
  targetBucketBits,
  type IptablesPlan,
} from './plan.js';

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };

type Spec = NonNullable<Service['spec']>;
const svc = (name: string, spec: Partial<Spec>, status?: Service['status']): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { clusterIP: '10.96.0.10', clusterIPs: [spec.clusterIP ?? '10.96.0.10'], ports: [{ name: 'http', port: 80 }], ...spec },
  ...(status ? { status } : {}),
});

type Ep = { ip: string; node?: string; ready?: boolean; serving?: boolean; terminating?: boolean };
const slice = (service: string, eps: Ep[], o: { addressType?: 'IPv4' | 'IPv6'; ports?: EndpointSlice['ports'] } = {}): EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${service}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
  addressType: o.addressType ?? 'IPv4',
  ports: o.ports ?? [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map((e) => ({
    addresses: [e.ip],
    conditions: { ...(e.ready !== undefined ? { ready: e.ready } : {}), ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
    ...(e.node ? { nodeName: e.node } : {}),
  })),
});

const text = (p: IptablesPlan) => p.nat + p.filter;
const rulesOf = (p: IptablesPlan, chain: string) => text(p).split('\n').filter((l) => l.startsWith(`-A ${chain} `));

interface Shape {
  name: string;
  services: Service[];
  slices: EndpointSlice[];
  node?: ProxyNodeConfig;
  check: (p: IptablesPlan, snap: ProxySnapshot) => void;
}

const key = (name: string, port = 'http') => `default/${name}:${port}`;
const P = (name: string, port = 'http', proto: 'TCP' | 'UDP' | 'SCTP' = 'TCP') => ({ key: key(name, port), protocol: proto });

const shapes: Shape[] = [
  {
    name: 'clusterip-one-port',
    services: [svc('web', {})],
    slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }])],
    check: (p) => {
      expect(rulesOf(p, svcChain(P('web')))).toEqual([
        `-A ${svcChain(P('web'))} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j ${sepChain(P('web'), { ip: '10.244.1.5', port: 8080 })}`,
        `-A ${svcChain(P('web'))} -m comment --comment "default/web:http -> 10.244.2.5:8080" -j ${sepChain(P('web'), { ip: '10.244.2.5', port: 8080 })}`,
      ]);
      expect(text(p)).toContain('-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j PODNET-SVC-');
      expect(p.ipsets.map((s) => [s.name, s.replace])).toEqual([
        ['PODNET-SERVICE-IPS-4', ['10.96.0.10,tcp:80']],
        ['PODNET-CLUSTER-IPS-4', ['10.96.0.10,tcp:80']],
      ]);
      expect(rulesOf(p, 'PODNET-SERVICES').filter((l) => l.includes('REJECT'))).toEqual([]);
    },
  },
  {
    name: 'two-named-ports',
    services: [svc('web', { ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] })],
    slices: [slice('web', [{ ip: '10.244.1.5' }], { ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'https', port: 8443, protocol: 'TCP' }] })],
    check: (p) => {
      expect(text(p)).toContain(`--dport 80 -j ${svcChain(P('web'))}`);
      expect(text(p)).toContain(`--dport 443 -j ${svcChain(P('web', 'https'))}`);
      expect(text(p)).toContain('--to-destination 10.244.1.5:8443');
      expect(text(p)).toContain('--to-destination 10.244.1.5:8080');
      expect(svcChain(P('web'))).not.toBe(svcChain(P('web', 'https')));
    },
  },
  {
    name: 'no-endpoints',
    services: [svc('web', {})],
    slices: [],
    check: (p) => {
      expect(p.nat).not.toContain('PODNET-SVC-');
      expect(p.filter).toContain('-A PODNET-SERVICES -m comment --comment "default/web:http has no endpoints" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j REJECT');
      expect(p.ipsets[0]!.replace).toEqual([]);
    },
  },
  {
    name: 'terminating-only',
    services: [svc('web', {})],
    slices: [slice('web', [{ ip: '10.244.1.6', ready: false, serving: true, terminating: true }, { ip: '10.244.1.7', ready: false, serving: false, terminating: true }])],
    check: (p) => {
      expect(p.nat).toContain('--to-destination 10.244.1.6:8080');
      expect(p.nat).not.toContain('10.244.1.7');
      expect(p.filter).not.toContain('REJECT');
    },
  },
  {
    name: 'nodeport',
    services: [svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
    slices: [slice('web', [{ ip: '10.244.1.5' }])],
    check: (p) => {
      expect(rulesOf(p, 'PODNET-NODEPORTS')).toEqual([`-A PODNET-NODEPORTS -m comment --comment "default/web:http" -p tcp -m tcp --dport 30080 -j ${extChain(P('web'))}`]);
      expect(rulesOf(p, extChain(P('web')))).toEqual([
        `-A ${extChain(P('web'))} -m comment --comment "masquerade traffic for default/web:http external destinations" -j PODNET-MARK-MASQ`,
        `-A ${extChain(P('web'))} -j ${svcChain(P('web'))}`,
      ]);
      expect(rulesOf(p, 'PODNET-SERVICES').at(-1)).toBe('-A PODNET-SERVICES -m comment --comment "podnet service nodeports" -d 198.18.0.1/32 -j PODNET-NODEPORTS');
      expect(p.ipsets[0]!.replace).toEqual(['10.96.0.10,tcp:80', '198.18.0.1,tcp:30080']);
    },
  },
  {
    name: 'nodeport-local-addresses',
    services: [svc('web', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
    slices: [],
    node: { ...node4, nodeIPs: [] },
    check: (p) => {
      // No node addresses: NodePorts answer on every local address; no endpoint: REJECT there too.
      expect(p.filter).toContain('-m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT');
      expect(p.nat).not.toContain('30080');
    },
  },
  {
    name: 'externalips-and-lb',
    services: [svc('web', { type: 'LoadBalancer', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } })],
    slices: [slice('web', [{ ip: '10.244.1.5' }])],
    check: (p) => {
      expect(p.nat).toContain(`-m comment --comment "default/web:http external IP" -d 203.0.113.7/32 -p tcp -m tcp --dport 80 -j ${extChain(P('web'))}`);
      expect(p.nat).toContain(`-m comment --comment "default/web:http loadbalancer IP" -d 192.0.2.10/32 -p tcp -m tcp --dport 80 -j ${extChain(P('web'))}`);
      expect([...p.ipsets[0]!.replace!].sort()).toEqual(['10.96.0.10,tcp:80', '192.0.2.10,tcp:80', '198.18.0.1,tcp:30080', '203.0.113.7,tcp:80']);
      expect(p.ipsets[1]!.replace).toEqual(['10.96.0.10,tcp:80']);
    },
  },
  {
    name: 'etp-local-with-local',
    services: [svc('web', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } })],
    slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }])],
    check: (p) => {
      const ext = extChain(P('web'));
      expect(rulesOf(p, ext)).toEqual([
        `-A ${ext} -m comment --comment "pod traffic for default/web:http external destinations" -s 10.244.0.0/16 -j ${svcChain(P('web'))}`,
        `-A ${ext} -m comment --comment "masquerade LOCAL traffic for default/web:http external destinations" -m addrtype --src-type LOCAL -j PODNET-MARK-MASQ`,
        `-A ${ext} -m comment --comment "route LOCAL traffic for default/web:http external destinations" -m addrtype --src-type LOCAL -j ${svcChain(P('web'))}`,
        `-A ${ext} -j ${svlChain(P('web'))}`,
      ]);
      // Client source preserved: nothing else in the external path marks for masquerade.
      expect(rulesOf(p, ext).filter((l) => l.includes('MARK-MASQ') && !l.includes('LOCAL'))).toEqual([]);
      expect(rulesOf(p, svlChain(P('web')))).toEqual([`-A ${svlChain(P('web'))} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j ${sepChain(P('web'), { ip: '10.244.1.5', port: 8080 })}`]);
      expect(rulesOf(p, svcChain(P('web')))).toHaveLength(2);
      expect(p.filter).not.toContain('DROP');
    },
  },
  {
    name: 'etp-local-without-local',
    services: [svc('web', { type: 'NodePort', externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
    slices: [slice('web', [{ ip: '10.244.2.5', node: 'n2' }])],
    check: (p) => {
      expect(rulesOf(p, extChain(P('web'))).some((l) => l.includes('PODNET-SVL-'))).toBe(false);
      expect(p.nat).not.toContain('PODNET-SVL-');
      expect(p.filter).toContain('"default/web:http has no local endpoints" -d 203.0.113.7/32 -p tcp -m tcp --dport 80 -j DROP');
      expect(p.filter).toContain('"default/web:http has no local endpoints" -d 198.18.0.1/32 -p tcp -m tcp --dport 30080 -j DROP');
      // The ClusterIP still works (internal traffic policy Cluster).
      expect(p.filter).not.toContain('10.96.0.10');
    },
  },
  {
    name: 'itp-local',
    services: [svc('web', { internalTrafficPolicy: 'Local' }), svc('api', { clusterIP: '10.96.0.11', internalTrafficPolicy: 'Local' })],
    slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }]), slice('api', [{ ip: '10.244.2.6', node: 'n2' }])],
    check: (p) => {
      expect(p.nat).toContain(`-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j ${svlChain(P('web'))}`);
      expect(rulesOf(p, svlChain(P('web')))).toHaveLength(1);
      expect(p.nat).not.toContain(svcChain(P('web')));
      expect(p.filter).toContain('"default/api:http has no local endpoints" -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j DROP');
      expect(p.nat).not.toContain('10.244.2.6');
    },
  },
  {
    name: 'affinity',
    services: [svc('web', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } })],
    slices: [slice('web', [{ ip: '10.244.1.5' }, { ip: '10.244.2.5' }])],
    check: (p) => {
      const sep1 = sepChain(P('web'), { ip: '10.244.1.5', port: 8080 });
      expect(rulesOf(p, svcChain(P('web')))[0]).toBe(`-A ${svcChain(P('web'))} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m recent --name ${sep1} --rcheck --seconds 300 --reap -j ${sep1}`);
      expect(rulesOf(p, sep1)[1]).toBe(`-A ${sep1} -m comment --comment "default/web:http" -m recent --name ${sep1} --set -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080`);
    },
  },
  {
    name: 'udp',
    services: [svc('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })],
    slices: [slice('dns', [{ ip: '10.244.1.5' }], { ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }] })],
    check: (p) => {
      expect(p.nat).toContain(`-d 10.96.0.10/32 -p udp -m udp --dport 53 -j ${svcChain(P('dns', 'dns', 'UDP'))}`);
      expect(p.nat).toContain('-p udp -m udp -j DNAT --to-destination 10.244.1.5:5353');
      expect(p.ipsets[0]!.replace).toEqual(['10.96.0.10,udp:53']);
    },
  },
  {
    name: 'sctp',
    services: [svc('sig', { ports: [{ name: 'sig', port: 3868, protocol: 'SCTP' }] })],
    slices: [slice('sig', [{ ip: '10.244.1.5' }], { ports: [{ name: 'sig', port: 3868, protocol: 'SCTP' }] })],
    check: (p) => {
      expect(p.nat).toContain('-p sctp -m sctp --dport 3868 -j PODNET-SVC-');
      expect(p.nat).toContain('-p sctp -m sctp -j DNAT --to-destination 10.244.1.5:3868');
      expect(p.ipsets[0]!.replace).toEqual(['10.96.0.10,sctp:3868']);
    },
  },
  {
    name: 'ipv6',
    node: node6,
    services: [svc('web', { clusterIP: 'fd00:10:96::a', clusterIPs: ['fd00:10:96::a'], ipFamilies: ['IPv6'], type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
    slices: [slice('web', [{ ip: 'fd00:10:244:1::5' }], { addressType: 'IPv6' })],
    check: (p) => {
      expect(p.family).toBe(6);
      expect(p.nat).toContain('-d fd00:10:96::a/128 -p tcp -m tcp --dport 80 -j PODNET-SVC-');
      expect(p.nat).toContain('-s fd00:10:244:1::5/128 -j PODNET-MARK-MASQ');
      expect(p.nat).toContain('--to-destination [fd00:10:244:1::5]:8080');
      expect(p.nat).toContain('! -s fd00:10:244::/56 -m set --match-set PODNET-CLUSTER-IPS-6 dst,dst -j PODNET-MARK-MASQ');
      expect(p.nat).toContain('-d fd00:198:18::1/128 -j PODNET-NODEPORTS');
      expect(p.ipsets.map((s) => s.name)).toEqual(['PODNET-SERVICE-IPS-6', 'PODNET-CLUSTER-IPS-6']);
      expect(p.ipsets[0]!.replace).toEqual(['fd00:10:96::a,tcp:80', 'fd00:198:18::1,tcp:30080']);
    },
  },
  {
    name: 'hairpin',
    services: [svc('web', {})],
    slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1' }])],
    check: (p) => {
      // A pod reaching itself through the VIP is masqueraded (else its reply would bypass conntrack).
      const sep = sepChain(P('web'), { ip: '10.244.1.5', port: 8080 });
      expect(rulesOf(p, sep)).toEqual([
        `-A ${sep} -m comment --comment "default/web:http" -s 10.244.1.5/32 -j PODNET-MARK-MASQ`,
        `-A ${sep} -m comment --comment "default/web:http" -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080`,
      ]);
      expect(p.nat).toContain('-A PODNET-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A PODNET-POSTROUTING -j MARK --xor-mark 0x4000\n');
      expect(p.nat).toContain('-j MASQUERADE --random-fully');
      expect(p.nat).toContain('-A PODNET-MARK-MASQ -j MARK --or-mark 0x4000');
    },
  },
];

describe('golden restore inputs, one service shape each (full plan)', () => {
  for (const s of shapes) {
    it(s.name, async () => {
      const snap = buildSnapshot(s.services, s.slices, s.node ?? node4);
      const p = planIptables({ snapshot: snap });
      expect(p.full).toBe(true);
      await expect(`# ${s.name}\n${text(p)}`).toMatchFileSnapshot(`./__golden__/${s.name}.rules`);
      s.check(p, snap);
      // Deterministic, and every chain we declare is ours, ≤ 28 characters.
      expect(text(planIptables({ snapshot: snap }))).toBe(text(p));
      for (const l of text(p).split('\n')) {
        if (!l.startsWith(':')) continue;
        const c = l.slice(1).split(' ')[0]!;
        expect(c.startsWith(CHAIN_PREFIX)).toBe(true);
        expect(c.length).toBeLessThanOrEqual(28);
      }
      // Every -j/-g target is declared in this input or is a built-in target.
      const declared = new Set(text(p).split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]));
      for (const m of text(p).matchAll(/ -[jg] (\S+)/g)) {
        const t = m[1]!;
        if (t.startsWith(CHAIN_PREFIX)) expect(declared.has(t), t).toBe(true);
        else expect(['RETURN', 'DNAT', 'MARK', 'MASQUERADE', 'REJECT', 'DROP']).toContain(t);
      }
    });
  }
});

describe('probability cascade', () => {
  it('formats 1/n like Go %0.10f (kube-proxy), exactly, half to even', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 100, 1000].map(probability)).toEqual([
      '1.0000000000',
      '0.5000000000',
      '0.3333333333',
      '0.2500000000',
      '0.2000000000',
      '0.1666666667',
      '0.1428571429',
      '0.1111111111',
      '0.1000000000',
      '0.0909090909',
      '0.0100000000',
      '0.0010000000',
    ]);
    // 1/2048 = 0.00048828125 exactly: a tie, Go rounds to even (…12); toFixed would give …13.
    expect(probability(2048)).toBe('0.0004882812');
    expect(probability(3)).toBe(probability(3));
  });

  it('N endpoints: 1/N, 1/(N-1), … 1/2, then an unconditional last rule', () => {
    const eps = [1, 2, 3, 4, 5].map((i) => endpoint(`10.244.0.${i}`));
    const snap = syntheticSnapshot({ services: 0, endpoints: 0 });
    const p = planIptables({ snapshot: withPort(snap, { ...syntheticSnapshot({ services: 1, endpoints: 5 }).services.values().next().value!, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps }) });
    const svc = [...p.state.ports.values()][0]!;
    const chain = [...svc.chains.keys()].find((c) => c.startsWith('PODNET-SVC-'))!;
    const probs = rulesOf(p, chain).map((l) => /--probability (\S+)/.exec(l)?.[1] ?? 'last');
    expect(probs).toEqual(['0.2000000000', '0.2500000000', '0.3333333333', '0.5000000000', 'last']);
  });
});

describe('partial syncs', () => {
  const base = syntheticSnapshot({ services: 200, endpoints: 3 });
  const first = planIptables({ snapshot: base });
  const port = (s: ProxySnapshot, i: number) => [...s.services.values()].find((p) => p.name === `svc${i}`)!;

  it('one endpoint added: only that service chain and the new endpoint chain', () => {
    const sp = port(base, 7);
    const eps = [...sp.endpoints, endpoint('10.244.200.1')];
    const next = withPort(base, { ...sp, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps });
    const p = planIptables({ snapshot: next, previous: first.state, changed: new Set([sp.key]) });
    expect(p.full).toBe(false);
    const newSep = sepChain(sp, { ip: '10.244.200.1', port: 8080 });
    expect(p.nat.split('\n').filter((l) => l.startsWith(':'))).toEqual([`:${svcChain(sp)} - [0:0]`, `:${newSep} - [0:0]`]);
    expect(p.nat).toMatch(new RegExp(`^-A ${newSep} .*-s 10\\.244\\.200\\.1/32 -j PODNET-MARK-MASQ$`, "m"));
    expect(rulesOf(p, svcChain(sp))).toHaveLength(4);
    expect(p.nat).not.toContain('PODNET-SERVICES');
    expect(p.filter).toBe('');
    expect(p.ipsets.every((s) => !s.replace && !s.add.length && !s.del.length)).toBe(true);
    expect(p.stats).toMatchObject({ portsWritten: 1, portsRemoved: 0, chainsWritten: 2, chainsDeleted: 0 });
  });

  it('one endpoint replaced: the old endpoint chain is flushed and deleted after the service chain is rewritten', () => {
    const sp = port(base, 9);
    const gone = sp.endpoints[0]!;
    const eps = [...sp.endpoints.slice(1), endpoint('10.244.200.2')];
    const next = withPort(base, { ...sp, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps });
    const p = planIptables({ snapshot: next, previous: first.state, changed: new Set([sp.key]) });
    const oldSep = sepChain(sp, gone);
    const lines = p.nat.split('\n');
    expect(lines).toContain(`:${oldSep} - [0:0]`);
    expect(lines.at(-3)).toBe(`-X ${oldSep}`);
    expect(lines.indexOf(`-X ${oldSep}`)).toBeGreaterThan(lines.findLastIndex((l) => l.startsWith(`-A ${svcChain(sp)} `)));
    expect(p.nat).not.toContain(`-j ${oldSep}`);
    expect(p.state.ports.get(sp.key)!.chains.has(oldSep)).toBe(false);
  });

  it('a removed service: its chains flushed and deleted, its dispatch rule and set members gone', () => {
    const sp = port(base, 11);
    const next = withoutPort(base, sp.key);
    const p = planIptables({ snapshot: next, previous: first.state, changed: new Set([sp.key]) });
    const mine = [...first.state.ports.get(sp.key)!.chains.keys()];
    expect(mine).toHaveLength(4);
    for (const c of mine) {
      expect(p.nat).toContain(`:${c} - [0:0]`);
      expect(p.nat).toContain(`-X ${c}`);
      expect(p.nat).not.toContain(`-A ${c} `);
    }
    // Only the bucket holding its VIP is rewritten, not PODNET-SERVICES.
    const bucket = bucketChain(lowByte(4, sp.clusterIP) & ((1 << first.state.bucketBits) - 1));
    expect(p.nat).toContain(`:${bucket} - [0:0]`);
    expect(p.nat).not.toContain(':PODNET-SERVICES ');
    expect(p.nat).not.toContain(sp.clusterIP + '/32');
    expect(p.ipsets.map((s) => s.del)).toEqual([[`${sp.clusterIP},tcp:80`], [`${sp.clusterIP},tcp:80`]]);
    expect(p.stats).toMatchObject({ portsRemoved: 1, chainsDeleted: 4 });
    expect(p.state.ports.has(sp.key)).toBe(false);
  });

  it('a service losing its last endpoint: nat chains deleted, a REJECT in filter, set members removed', () => {
    const sp = port(base, 12);
    const next = withPort(base, { ...sp, endpoints: [], clusterEndpoints: [], externalEndpoints: [], hasEndpoints: false });
    const p = planIptables({ snapshot: next, previous: first.state, changed: new Set([sp.key]) });
    expect(p.filter).toContain(`"${sp.key} has no endpoints" -d ${sp.clusterIP}/32 -p tcp -m tcp --dport 80 -j REJECT`);
    expect(p.nat).toContain(`-X ${svcChain(sp)}`);
    expect(p.ipsets[0]!.del).toEqual([`${sp.clusterIP},tcp:80`]);
  });

  it('an unchanged key in `changed` writes nothing', () => {
    const sp = port(base, 3);
    const p = planIptables({ snapshot: base, previous: first.state, changed: new Set([sp.key]) });
    expect(p.nat + p.filter).toBe('');
    expect(p.stats.portsWritten).toBe(0);
  });

  it('a new service rewrites only its bucket, and PODNET-SERVICES only when a bucket appears', () => {
    const sp = { ...port(base, 5), key: 'zz/new:http', namespace: 'zz', name: 'new', clusterIP: '10.96.100.1' };
    const p = planIptables({ snapshot: withPort(base, sp), previous: first.state, changed: new Set([sp.key]) });
    expect(p.nat).toContain(`:${bucketChain(1 & ((1 << first.state.bucketBits) - 1))} - [0:0]`);
    expect(p.nat).not.toContain(':PODNET-SERVICES ');
    expect(p.ipsets[0]!.add).toEqual(['10.96.100.1,tcp:80']);
  });

  it('another node config forces a full plan', () => {
    const p = planIptables({ snapshot: { ...base, node: { ...base.node, nodeIPs: ['198.18.0.2'] } }, previous: first.state, changed: new Set() });
    expect(p.full).toBe(true);
  });

  it('partial plans compose: applying a sequence equals one full plan of the end state', () => {
    let state = first.state;
    let snap = base;
    for (const i of [1, 50, 199]) {
      const sp = port(snap, i);
      const eps = [endpoint(endpointIP(4, 9000 + i))];
      snap = withPort(snap, { ...sp, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps });
      state = planIptables({ snapshot: snap, previous: state, changed: new Set([sp.key]) }).state;
    }
    snap = withoutPort(snap, port(snap, 2).key);
    state = planIptables({ snapshot: snap, previous: state, changed: new Set([port(base, 2).key]) }).state;
    const fresh = planIptables({ snapshot: snap }).state;
    expect(state.nat).toEqual(fresh.nat);
    expect(state.filter).toEqual(fresh.filter);
    expect(new Map([...state.ports].map(([k, v]) => [k, v.chains]))).toEqual(new Map([...fresh.ports].map(([k, v]) => [k, v.chains])));
    expect(state.sets).toEqual(fresh.sets);
  });
});

describe('stale cleanup in a full plan', () => {
  const saved = `# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FOREIGN - [0:0]
:PODNET-SERVICES - [0:0]
:PODNET-SVC-OLDOLDOLDOLDOLD0 - [0:0]
:PODNET-OLDSTYLE - [0:0]
-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES
-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES
-A OUTPUT -m comment --comment "podnet service portals" -j PODNET-SERVICES
-A OUTPUT -j PODNET-OLDSTYLE
-A PREROUTING -p tcp -m tcp --dport 9999 -j FOREIGN
-A FOREIGN -j RETURN
-A PODNET-SERVICES -j PODNET-SVC-OLDOLDOLDOLDOLD0
COMMIT
`;
  it('parses our chains and the jumps into them from chains not ours', () => {
    expect(parseSaved(saved)).toEqual({
      chains: ['PODNET-SERVICES', 'PODNET-SVC-OLDOLDOLDOLDOLD0', 'PODNET-OLDSTYLE'],
      jumps: [
        '-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-A OUTPUT -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-A OUTPUT -j PODNET-OLDSTYLE',
      ],
    });
  });

  it('stale PODNET chains are flushed and deleted, stray and duplicate jumps deleted, foreign rules untouched', () => {
    const snap = buildSnapshot([svc('web', {})], [slice('web', [{ ip: '10.244.1.5' }])], node4);
    const p = planIptables({ snapshot: snap, existing: { nat: parseSaved(saved), filter: { chains: [], jumps: [] } } });
    const lines = p.nat.split('\n');
    for (const c of ['PODNET-SVC-OLDOLDOLDOLDOLD0', 'PODNET-OLDSTYLE']) {
      expect(lines).toContain(`:${c} - [0:0]`);
      expect(lines).toContain(`-X ${c}`);
    }
    expect(lines.filter((l) => l.startsWith('-D '))).toEqual(['-D PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES', '-D OUTPUT -j PODNET-OLDSTYLE']);
    expect(p.nat).not.toContain('FOREIGN');
    expect(p.nat).not.toMatch(/^-X PODNET-SERVICES$/m);
    expect(p.stats.jumpsDeleted).toBe(2);
    // Deletions come after every rule (the references are gone by then).
    expect(lines.indexOf('-X PODNET-OLDSTYLE')).toBeGreaterThan(lines.findLastIndex((l) => l.startsWith('-A ')));
  });

  it('a full plan after a previous one deletes chains no longer wanted', () => {
    const a = planIptables({ snapshot: syntheticSnapshot({ services: 3, endpoints: 2 }) });
    const b = planIptables({ snapshot: syntheticSnapshot({ services: 2, endpoints: 2 }), previous: a.state });
    expect(b.full).toBe(true);
    expect(b.stats.chainsDeleted).toBe(3);
    expect(b.nat.match(/^-X /gm)).toHaveLength(3);
  });

  it('cleanup input: flush every PODNET chain, delete the jumps into them, then the chains; foreign untouched', () => {
    const nat = parseSaved(saved);
    expect(cleanupInput({ nat, filter: { chains: [], jumps: [] } })).toBe(
      [
        '*nat',
        ':PODNET-SERVICES - [0:0]',
        ':PODNET-SVC-OLDOLDOLDOLDOLD0 - [0:0]',
        ':PODNET-OLDSTYLE - [0:0]',
        '-D PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-D PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-D OUTPUT -m comment --comment "podnet service portals" -j PODNET-SERVICES',
        '-D OUTPUT -j PODNET-OLDSTYLE',
        '-X PODNET-SERVICES',
        '-X PODNET-SVC-OLDOLDOLDOLDOLD0',
        '-X PODNET-OLDSTYLE',
        'COMMIT',
        '',
      ].join('\n'),
    );
    expect(cleanupInput({ nat: { chains: [], jumps: [] }, filter: { chains: [], jumps: [] } })).toBe('');
    const many = cleanupInput({ nat: { chains: Array.from({ length: 3000 }, (_, i) => `PODNET-SEP-${i}`), jumps: [] }, filter: { chains: [], jumps: [] } });
    expect(many.split('\n')[1]).toBe('-S');
  });

  it('our jumps as iptables-save prints them match JUMPS', () => {
    expect(JUMPS.map(jumpLine)).toEqual([
      '-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES',
      '-A OUTPUT -m comment --comment "podnet service portals" -j PODNET-SERVICES',
      '-A POSTROUTING -m comment --comment "podnet postrouting rules" -j PODNET-POSTROUTING',
      '-A INPUT -m conntrack --ctstate NEW -m comment --comment "podnet service portals" -j PODNET-SERVICES',
      '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "podnet service portals" -j PODNET-SERVICES',
      '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "podnet service portals" -j PODNET-SERVICES',
    ]);
  });
});

describe('dispatch layout', () => {
  it('buckets: about sqrt(n) of them, none below 65 rules', () => {
    expect([1, 64, 65, 200, 1000, 10_000, 100_000, 1_000_000].map(targetBucketBits)).toEqual([0, 0, 3, 4, 5, 7, 8, 8]);
    const small = planIptables({ snapshot: syntheticSnapshot({ services: 10, endpoints: 1 }) });
    expect(small.state.bucketBits).toBe(0);
    expect(rulesOf(small, 'PODNET-SERVICES')).toHaveLength(12);
  });

  it('every VIP rule is in the bucket its low address bits select', () => {
    const p = planIptables({ snapshot: syntheticSnapshot({ services: 1000, endpoints: 1 }) });
    const bits = p.state.bucketBits;
    expect(bits).toBe(5);
    for (let k = 0; k < 1 << bits; k++) {
      for (const l of rulesOf(p, bucketChain(k))) {
        const ip = /-d (\S+)\/32/.exec(l)![1]!;
        expect(lowByte(4, ip) & 31).toBe(k);
      }
    }
    expect(rulesOf(p, 'PODNET-SERVICES')[2]).toBe(`-A PODNET-SERVICES -d 0.0.0.0/0.0.0.31 -j ${bucketChain(0)}`);
    const p6 = planIptables({ snapshot: syntheticSnapshot({ services: 1000, endpoints: 1, family: 6 }) });
    expect(rulesOf(p6, 'PODNET-SERVICES')[3]).toBe(`-A PODNET-SERVICES -d ::1/::1f -j ${bucketChain(1)}`);
  });

  it('large clusters (> 1000 endpoints): no comments on SVC/SEP rules, entry rules keep theirs', () => {
    const p = planIptables({ snapshot: syntheticSnapshot({ services: 200, endpoints: 6 }) });
    expect(p.state.large).toBe(true);
    expect(p.nat).toMatch(/^-A PODNET-SEP-\S+ -s 10\.244\.0\.1\/32 -j PODNET-MARK-MASQ$/m);
    expect(p.nat).toMatch(/^-A PODNET-SVC-\S+ -m statistic/m);
    expect(p.nat).toMatch(/^-A PODNET-SERVICES-\S+ -m comment --comment "ns0\/svc\d+:http cluster IP" -d /m);
  });

  it('names come from names.ts hashes', () => {
    expect(svcChain({ key: 'default/web:http', protocol: 'TCP' })).toBe(`PODNET-SVC-${portHash('default/web:http', 'TCP')}`);
    expect(sepChain({ key: 'default/web:http', protocol: 'TCP' }, { ip: '10.244.1.5', port: 8080 })).toBe(`PODNET-SEP-${endpointHash('default/web:http', 'TCP', '10.244.1.5', 8080)}`);
    expect(svcChain({ key: 'default/web:http', protocol: 'TCP' })).toHaveLength(27);
  });
});

describe('plan timing at 10,000 services × 10 endpoints (loose bounds)', () => {
  it('full plan, then a one-endpoint partial plan', () => {
    const snap = syntheticSnapshot({ services: 10_000, endpoints: 10 });
    let t = performance.now();
    const full = planIptables({ snapshot: snap });
    const fullMs = performance.now() - t;
    expect(full.nat.split('\n').filter((l) => l.startsWith(':'))).toHaveLength(1 + 128 + 3 + 10_000 * 11);
    expect(full.nat.split('\n')[1]).toBe('-S');
    const sp = [...snap.services.values()][4321]!;
    const eps = [...sp.endpoints.slice(1), endpoint('10.250.0.1')];
    const next = withPort(snap, { ...sp, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps });
    t = performance.now();
    const part = planIptables({ snapshot: next, previous: full.state, changed: new Set([sp.key]) });
    const partMs = performance.now() - t;
    expect(part.stats).toMatchObject({ chainsWritten: 2, chainsDeleted: 1 });
    expect(part.nat.split('\n').length).toBeLessThan(25);
    console.log(`plan 10000x10: full ${fullMs.toFixed(0)} ms (${(full.nat.length / 1e6).toFixed(1)} MB), one-endpoint partial ${partMs.toFixed(1)} ms`);
    expect(fullMs).toBeLessThan(10_000);
    expect(partMs).toBeLessThan(500);
  }, 60_000);
});
