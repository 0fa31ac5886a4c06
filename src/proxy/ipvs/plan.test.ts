/**
 * Golden tests of the IPVS planner: a table of Service shapes through buildSnapshot (the real
 * path from API objects) to the planned state, printed like `ipvsadm -Ln` plus VIPs and set
 * members; the diff's operations and their order; partial updates through PlanIndex; the
 * static iptables rules, the jumps found missing and the cleanup input.
 */
import { describe, expect, it } from 'vitest';
import { svc, slice } from './testdata/fixtures.js';
import type { EndpointSlice, Service } from '../../client/types.js';
import { buildSnapshot } from '../snapshot.js';
import type { ProxyNodeConfig } from '../types.js';
import { PlanIndex, cleanupRules, destKey, diff, drainRemovals, emptyState, merge, missingJumps, planPort, planRules, planSnapshots, renderOps, renderState, restrict } from './plan.js';
import type { Touched } from './plan.js';

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };


function plan(services: Service[], slices: EndpointSlice[], node = node4): string {
  return renderState(planSnapshots([buildSnapshot(services, slices, node)]).state());
}

/** An indented template literal as the text it stands for. */
const golden = (s: string) =>
  s
    .split('\n')
    .slice(1, -1)
    .map((l) => l.replace(/^ {8}/, ''))
    .join('\n');

const two = [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }];
const http = [{ name: 'http', port: 8080 }];

describe('planPort: service shapes', () => {
  const cases: { name: string; services: Service[]; slices: EndpointSlice[]; node?: ProxyNodeConfig; want: string }[] = [
    {
      name: 'ClusterIP, two endpoints (one on this node: a hairpin entry)',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', two, http)],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'two ports: one virtual server each, one VIP',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'metrics', port: 9090 }] })],
      slices: [slice('web', two, [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9100 }])],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 10.96.0.10:9090 rr
          -> 10.244.1.5:9100 masq 1
          -> 10.244.2.5:9100 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80 10.96.0.10,tcp:9090
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5 10.244.1.5,tcp:9100,10.244.1.5
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80 10.96.0.10,tcp:9090
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'no endpoints: the virtual server stays, without real servers; REJECT refuses new flows',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })],
      slices: [],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-REJECT-4 10.96.0.10,tcp:80
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'NodePort: a virtual server per node IP, masqueraded, recorded in NODEPORTS',
      services: [svc('web', { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
      slices: [slice('web', two, http)],
      node: { ...node4, nodeIPs: ['198.18.0.1', '198.19.0.1'] },
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 198.18.0.1:30080 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 198.19.0.1:30080 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-MASQ-4 198.18.0.1,tcp:30080 198.19.0.1,tcp:30080
        set PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080 198.19.0.1,tcp:30080
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'externalIPs: VIPs on the dummy device, masqueraded',
      services: [svc('web', { clusterIP: '10.96.0.10', externalIPs: ['203.0.113.7', '203.0.113.5'], ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', two, http)],
      want: `
        vips 10.96.0.10 203.0.113.5 203.0.113.7
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 203.0.113.5:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 203.0.113.7:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-MASQ-4 203.0.113.5,tcp:80 203.0.113.7,tcp:80
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80 203.0.113.5,tcp:80 203.0.113.7,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10 203.0.113.5 203.0.113.7
      `,
    },
    {
      name: 'LoadBalancer: the LB IP like an external IP, plus the NodePort',
      services: [svc('web', { type: 'LoadBalancer', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, ['192.0.2.10'])],
      slices: [slice('web', two, http)],
      want: `
        vips 10.96.0.10 192.0.2.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 192.0.2.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 198.18.0.1:30080 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-MASQ-4 192.0.2.10,tcp:80 198.18.0.1,tcp:30080
        set PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80 192.0.2.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10 192.0.2.10
      `,
    },
    {
      name: 'externalTrafficPolicy Local with a local endpoint: external servers local only, not masqueraded',
      services: [svc('web', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, ['192.0.2.10'])],
      slices: [slice('web', two, http)],
      want: `
        vips 10.96.0.10 192.0.2.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 192.0.2.10:80 rr
          -> 10.244.1.5:8080 masq 1
        TCP 198.18.0.1:30080 rr
          -> 10.244.1.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80 192.0.2.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10 192.0.2.10
      `,
    },
    {
      name: 'externalTrafficPolicy Local without local endpoints: external virtual servers are empty and DROP, the ClusterIP still serves',
      services: [svc('web', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
      slices: [slice('web', [{ ip: '10.244.2.5', node: 'n2' }, { ip: '10.244.3.5', node: 'n3' }], http)],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.2.5:8080 masq 1
          -> 10.244.3.5:8080 masq 1
        TCP 198.18.0.1:30080 rr
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-DROP-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'internalTrafficPolicy Local: the ClusterIP only to local endpoints',
      services: [svc('web', { type: 'NodePort', internalTrafficPolicy: 'Local', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
      slices: [slice('web', two, http)],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
        TCP 198.18.0.1:30080 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-MASQ-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'session affinity ClientIP: persistence with the default and a given timeout',
      services: [
        svc('a', { clusterIP: '10.96.0.11', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] }),
        svc('b', { clusterIP: '10.96.0.12', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ name: 'http', port: 80 }] }),
      ],
      slices: [slice('a', two, http), slice('b', two, http)],
      want: `
        vips 10.96.0.11 10.96.0.12
        TCP 10.96.0.11:80 rr persistent 10800
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        TCP 10.96.0.12:80 rr persistent 60
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.11,tcp:80 10.96.0.12,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-SERVED-4 10.96.0.11,tcp:80 10.96.0.12,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.11 10.96.0.12
      `,
    },
    {
      name: 'UDP (and the same port number in TCP: two virtual servers)',
      services: [svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] })],
      slices: [slice('dns', [{ ip: '10.244.1.53', node: 'n1' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5353, protocol: 'TCP' }])],
      want: `
        vips 10.96.0.53
        TCP 10.96.0.53:53 rr
          -> 10.244.1.53:5353 masq 1
        UDP 10.96.0.53:53 rr
          -> 10.244.1.53:5353 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.53,tcp:53 10.96.0.53,udp:53
        set PODNET-IPVS-LOOPBACK-4 10.244.1.53,tcp:5353,10.244.1.53 10.244.1.53,udp:5353,10.244.1.53
        set PODNET-IPVS-SERVED-4 10.96.0.53,tcp:53 10.96.0.53,udp:53
        set PODNET-IPVS-VIPS-4 10.96.0.53
      `,
    },
    {
      name: 'IPv6 (addresses canonical, as the kernel reports them)',
      services: [svc('web', { type: 'NodePort', clusterIPs: ['10.96.0.10', 'FD00:10:96::A'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] })],
      slices: [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }, { ip: 'fd00:10:244:2::5', node: 'n2' }], http, 'IPv6')],
      node: node6,
      want: `
        vips fd00:10:96::a
        TCP [fd00:10:96::a]:80 rr
          -> [fd00:10:244:1::5]:8080 masq 1
          -> [fd00:10:244:2::5]:8080 masq 1
        TCP [fd00:198:18::1]:30080 rr
          -> [fd00:10:244:1::5]:8080 masq 1
          -> [fd00:10:244:2::5]:8080 masq 1
        set PODNET-IPVS-CLUSTER-6 fd00:10:96::a,tcp:80
        set PODNET-IPVS-LOOPBACK-6 fd00:10:244:1::5,tcp:8080,fd00:10:244:1::5
        set PODNET-IPVS-MASQ-6 fd00:198:18::1,tcp:30080
        set PODNET-IPVS-NODEPORTS-6 fd00:198:18::1,tcp:30080
        set PODNET-IPVS-SERVED-6 fd00:10:96::a,tcp:80
        set PODNET-IPVS-VIPS-6 fd00:10:96::a
      `,
    },
    {
      name: 'only terminating endpoints: the serving terminating ones (snapshot fallback)',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', [{ ip: '10.244.1.5', node: 'n1', ready: false, serving: true, terminating: true }, { ip: '10.244.1.6', node: 'n1', ready: false, serving: false, terminating: true }], http)],
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
    {
      name: 'no cluster CIDR: same state (only the rules differ)',
      services: [svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] })],
      slices: [slice('web', two, http)],
      node: { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'] },
      want: `
        vips 10.96.0.10
        TCP 10.96.0.10:80 rr
          -> 10.244.1.5:8080 masq 1
          -> 10.244.2.5:8080 masq 1
        set PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        set PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        set PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        set PODNET-IPVS-VIPS-4 10.96.0.10
      `,
    },
  ];
  for (const c of cases) it(c.name, () => expect(plan(c.services, c.slices, c.node)).toBe(golden(c.want)));
});

const snap = (services: Service[], slices: EndpointSlice[], node = node4) => buildSnapshot(services, slices, node);
const webSvc = svc('web', { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] });

describe('diff: operations and their order', () => {
  it('from nothing: entries (VIPS last), VIPs, each virtual server before its real servers', () => {
    const want = planSnapshots([snap([webSvc], [slice('web', two, http)])]).state();
    expect(renderOps(diff(want, emptyState()))).toBe(
      golden(`
        add-entry PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        add-entry PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        add-entry PODNET-IPVS-MASQ-4 198.18.0.1,tcp:30080
        add-entry PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        add-entry PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
        add-entry PODNET-IPVS-VIPS-4 10.96.0.10
        add-vip 10.96.0.10
        add-service TCP 10.96.0.10:80 rr
        add-dest TCP 10.96.0.10:80 -> 10.244.1.5:8080 w1
        add-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080 w1
        add-service TCP 198.18.0.1:30080 rr
        add-dest TCP 198.18.0.1:30080 -> 10.244.1.5:8080 w1
        add-dest TCP 198.18.0.1:30080 -> 10.244.2.5:8080 w1
      `),
    );
  });

  it('to nothing: virtual servers, then VIPs, then entries (VIPS first, NODEPORTS after its server is gone)', () => {
    const have = planSnapshots([snap([webSvc], [slice('web', two, http)])]).state();
    expect(renderOps(diff(emptyState(), have))).toBe(
      golden(`
        del-service TCP 10.96.0.10:80
        del-service TCP 198.18.0.1:30080
        del-vip 10.96.0.10
        del-entry PODNET-IPVS-VIPS-4 10.96.0.10
        del-entry PODNET-IPVS-CLUSTER-4 10.96.0.10,tcp:80
        del-entry PODNET-IPVS-LOOPBACK-4 10.244.1.5,tcp:8080,10.244.1.5
        del-entry PODNET-IPVS-MASQ-4 198.18.0.1,tcp:30080
        del-entry PODNET-IPVS-NODEPORTS-4 198.18.0.1,tcp:30080
        del-entry PODNET-IPVS-SERVED-4 10.96.0.10,tcp:80
      `),
    );
  });

  it('changes in place: endpoint replaced, affinity turned on, a weight repaired; equal state is no operation', () => {
    const before = planSnapshots([snap([webSvc], [slice('web', two, http)])]).state();
    const after = planSnapshots([
      snap([svc('web', { ...webSvc.spec, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } } })], [slice('web', [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.3.5', node: 'n3' }], http)]),
    ]).state();
    expect(renderOps(diff(after, before))).toBe(
      golden(`
        update-service TCP 10.96.0.10:80 rr persistent 30
        add-dest TCP 10.96.0.10:80 -> 10.244.3.5:8080 w1
        update-service TCP 198.18.0.1:30080 rr persistent 30
        add-dest TCP 198.18.0.1:30080 -> 10.244.3.5:8080 w1
        del-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080
        del-dest TCP 198.18.0.1:30080 -> 10.244.2.5:8080
      `),
    );
    const drifted = planSnapshots([snap([webSvc], [slice('web', two, http)])]).state();
    const vs = drifted.virtualServers.get('TCP 10.96.0.10:80')!;
    drifted.virtualServers.set(vs.id, { ...vs, realServers: vs.realServers.map((r) => ({ ...r, weight: 0 })) });
    expect(renderOps(diff(before, drifted))).toBe(
      golden(`
        update-dest TCP 10.96.0.10:80 -> 10.244.1.5:8080 w1
        update-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080 w1
      `),
    );
    expect(diff(before, planSnapshots([snap([webSvc], [slice('web', two, http)])]).state())).toEqual([]);
  });
});

describe('drainRemovals: graceful termination of TCP real servers', () => {
  const one = [{ ip: '10.244.1.5', node: 'n1' }];
  const before = () => planSnapshots([snap([webSvc], [slice('web', two, http)])]).state();
  const after = () => planSnapshots([snap([webSvc], [slice('web', one, http)])]).state();
  const gone = { address: '10.244.2.5', port: 8080 };
  const rsOf = (s: ReturnType<typeof before>, id: string) => s.virtualServers.get(id)!.realServers.map((r) => `${r.address}:${r.port} w${r.weight}`);

  it('a removed real server with connections goes to weight 0 and stays; one without is deleted', () => {
    const want = after();
    const conns = new Map([
      [destKey('TCP 10.96.0.10:80', gone), 3],
      [destKey('TCP 198.18.0.1:30080', gone), 0],
    ]);
    const d = drainRemovals(want, diff(want, before()), (k) => conns.get(k));
    expect(renderOps(d.ops)).toBe(
      golden(`
        update-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080 w0
        del-dest TCP 198.18.0.1:30080 -> 10.244.2.5:8080
      `),
    );
    expect(d.draining).toEqual(['TCP 10.96.0.10:80|10.244.2.5/8080']);
    // The model holds what the kernel does; the planned state itself is not changed.
    expect(rsOf(d.desired, 'TCP 10.96.0.10:80')).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w0']);
    expect(rsOf(d.desired, 'TCP 198.18.0.1:30080')).toEqual(['10.244.1.5:8080 w1']);
    expect(rsOf(want, 'TCP 10.96.0.10:80')).toEqual(['10.244.1.5:8080 w1']);
  });

  it('unknown connections count as some; at weight 0 already it needs no operation; without connections it is deleted', () => {
    const want = after();
    const first = drainRemovals(want, diff(want, before()), () => undefined);
    expect(renderOps(first.ops)).toMatch(/^update-dest TCP 10\.96\.0\.10:80 -> 10\.244\.2\.5:8080 w0\nupdate-dest TCP 198\.18\.0\.1:30080 -> 10\.244\.2\.5:8080 w0$/);
    // The next sync still sees connections: nothing to do. Then they are gone: deleted.
    expect(drainRemovals(want, diff(want, first.desired), () => 2).ops).toEqual([]);
    expect(renderOps(drainRemovals(want, diff(want, first.desired), () => 0).ops)).toBe(
      golden(`
        del-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080
        del-dest TCP 198.18.0.1:30080 -> 10.244.2.5:8080
      `),
    );
    // The endpoint comes back while draining: its weight is set back to 1.
    expect(renderOps(diff(before(), first.desired))).toBe(
      golden(`
        update-dest TCP 10.96.0.10:80 -> 10.244.2.5:8080 w1
        update-dest TCP 198.18.0.1:30080 -> 10.244.2.5:8080 w1
      `),
    );
  });

  it('UDP real servers and whole virtual servers are deleted at once', () => {
    const dns = (eps: { ip: string; node: string }[]) =>
      planSnapshots([snap([svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] })], [slice('dns', eps, [{ name: 'dns', port: 5353, protocol: 'UDP' }])])]).state();
    const want = dns(one);
    const d = drainRemovals(want, diff(want, dns(two)), () => 5);
    expect(renderOps(d.ops)).toBe('del-dest UDP 10.96.0.53:53 -> 10.244.2.5:5353');
    expect(d.draining).toEqual([]);
    const none = emptyState();
    expect(renderOps(drainRemovals(none, diff(none, before()), () => 5).ops)).toMatch(/^del-service TCP 10\.96\.0\.10:80\ndel-service TCP 198\.18\.0\.1:30080\n/);
  });
});

describe('PlanIndex: partial updates', () => {
  const empty = (): Touched => ({ virtualServers: new Set(), vips: new Set(), entries: new Set() });

  it('a changed port touches only its own objects; the diff against the model changes only them', () => {
    const s1 = snap([webSvc, svc('api', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }] })], [slice('web', two, http), slice('api', two, http)]);
    const index = planSnapshots([s1]);
    const model = index.state();
    const s2 = snap([webSvc, svc('api', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }] })], [slice('web', two, http), slice('api', [{ ip: '10.244.2.5', node: 'n2' }], http)]);
    const touched = index.set(PlanIndex.portKey(4, 'default/api:http'), planPort(s2.services.get('default/api:http')!, node4), empty());
    expect([...touched.virtualServers]).toEqual(['TCP 10.96.0.20:80']);
    const desired = index.state(touched);
    const ops = diff(desired, restrict(model, touched));
    expect(renderOps(ops)).toBe(
      golden(`
        del-dest TCP 10.96.0.20:80 -> 10.244.1.5:8080
      `),
    );
    // The hairpin entry of 10.244.1.5:8080 is shared with web: still wanted, not removed.
    merge(model, desired, touched);
    expect(renderState(model)).toBe(renderState(planSnapshots([s2]).state()));
  });

  it('a VIP shared by two ports stays until the last one goes', () => {
    const s = snap([svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'metrics', port: 9090 }] })], [slice('web', two, [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9100 }])]);
    const index = planSnapshots([s]);
    const model = index.state();
    const t1 = index.set(PlanIndex.portKey(4, 'default/web:metrics'), undefined, empty());
    const ops1 = diff(index.state(t1), restrict(model, t1));
    expect(renderOps(ops1)).not.toMatch(/vip|VIPS/);
    merge(model, index.state(t1), t1);
    const t2 = index.set(PlanIndex.portKey(4, 'default/web:http'), undefined, empty());
    expect(renderOps(diff(index.state(t2), restrict(model, t2)))).toMatch(/del-vip 10\.96\.0\.10/);
  });

  it('two Services claiming one external IP:port: the first key defines it, the other takes over when it goes', () => {
    const a = svc('a', { clusterIP: '10.96.0.11', externalIPs: ['203.0.113.5'], ports: [{ name: 'http', port: 80 }] });
    const b = svc('b', { clusterIP: '10.96.0.12', externalIPs: ['203.0.113.5'], ports: [{ name: 'http', port: 80 }] });
    const s = snap([a, b], [slice('a', [{ ip: '10.244.1.1' }], http), slice('b', [{ ip: '10.244.2.2' }], http)]);
    const index = planSnapshots([s]);
    expect(index.state().virtualServers.get('TCP 203.0.113.5:80')!.realServers.map((r) => r.address)).toEqual(['10.244.1.1']);
    index.set(PlanIndex.portKey(4, 'default/a:http'), undefined);
    expect(index.state().virtualServers.get('TCP 203.0.113.5:80')!.realServers.map((r) => r.address)).toEqual(['10.244.2.2']);
  });

  it('IPv4 and IPv6 ports of one Service are separate keys', () => {
    const dual = svc('web', { clusterIPs: ['10.96.0.10', 'fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] });
    const index = planSnapshots([snap([dual], [slice('web', two, http)]), snap([dual], [slice('web', [{ ip: 'fd00:10:244:1::5' }], http, 'IPv6')], node6)]);
    expect([...index.keys()]).toEqual(['4/default/web:http', '6/default/web:http']);
    expect([...index.state().vips].sort()).toEqual(['10.96.0.10', 'fd00:10:96::a']);
  });
});

describe('netfilter rules', () => {
  it('IPv4 with a cluster CIDR, every jump missing', () => {
    expect(planRules(4, node4, missingJumps(''))).toBe(
      golden(`
        *nat
        :PODNET-IPVS-SERVICES - [0:0]
        :PODNET-IPVS-POSTROUTING - [0:0]
        :PODNET-IPVS-MARK-MASQ - [0:0]
        -A PODNET-IPVS-SERVICES -m set --match-set PODNET-IPVS-CLUSTER-4 dst,dst ! -s 10.244.0.0/16 -j PODNET-IPVS-MARK-MASQ
        -A PODNET-IPVS-SERVICES -m set --match-set PODNET-IPVS-MASQ-4 dst,dst -j PODNET-IPVS-MARK-MASQ
        -A PODNET-IPVS-MARK-MASQ -j MARK --or-mark 0x4000
        -A PODNET-IPVS-POSTROUTING -m set --match-set PODNET-IPVS-LOOPBACK-4 dst,dst,src -j MASQUERADE
        -A PODNET-IPVS-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A PODNET-IPVS-POSTROUTING -j MARK --xor-mark 0x4000
        -A PODNET-IPVS-POSTROUTING -j MASQUERADE
        -I PREROUTING -j PODNET-IPVS-SERVICES
        -I OUTPUT -j PODNET-IPVS-SERVICES
        -I POSTROUTING -j PODNET-IPVS-POSTROUTING
        COMMIT
        *filter
        :PODNET-IPVS-FILTER - [0:0]
        -A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-DROP-4 dst,dst -j DROP
        -A PODNET-IPVS-FILTER -p tcp -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-4 dst,dst -j REJECT --reject-with tcp-reset
        -A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-REJECT-4 dst,dst -j REJECT
        -A PODNET-IPVS-FILTER -m set --match-set PODNET-IPVS-SERVED-4 dst,dst -j RETURN
        -A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set PODNET-IPVS-VIPS-4 dst -j REJECT
        -I INPUT -j PODNET-IPVS-FILTER
        -I OUTPUT -j PODNET-IPVS-FILTER
        COMMIT
      `) + '\n',
    );
  });

  it('IPv6 without a cluster CIDR: no source-based masquerade; jumps already there are not added again', () => {
    const saved = ['*nat', ':PREROUTING ACCEPT [0:0]', '-A PREROUTING -j PODNET-IPVS-SERVICES', '-A OUTPUT -j PODNET-IPVS-SERVICES', '-A POSTROUTING -j PODNET-IPVS-POSTROUTING', 'COMMIT', '*filter', '-A INPUT -j PODNET-IPVS-FILTER', 'COMMIT'].join('\n');
    expect(missingJumps(saved).map((j) => `${j.table} ${j.chain}`)).toEqual(['filter OUTPUT']);
    const rules = planRules(6, { clusterCIDR: undefined }, missingJumps(saved));
    expect(rules).not.toMatch(/! -s/);
    expect(rules).toMatch(/PODNET-IPVS-MASQ-6 dst,dst/);
    expect(rules.match(/^-I .*/gm)).toEqual(['-I OUTPUT -j PODNET-IPVS-FILTER']);
  });

  it('cleanup input: deletes our jumps, flushes then deletes our chains, leaves the rest', () => {
    const saved = [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':PODNET-IPVS-SERVICES - [0:0]',
      ':PODNET-IPVS-POSTROUTING - [0:0]',
      ':PODNET-IPVS-MARK-MASQ - [0:0]',
      ':OTHER - [0:0]',
      '-A PREROUTING -j PODNET-IPVS-SERVICES',
      '-A POSTROUTING -j PODNET-IPVS-POSTROUTING',
      '-A POSTROUTING -j OTHER',
      '-A PODNET-IPVS-SERVICES -m set --match-set PODNET-IPVS-MASQ-4 dst,dst -j PODNET-IPVS-MARK-MASQ',
      'COMMIT',
      '*filter',
      ':INPUT ACCEPT [0:0]',
      'COMMIT',
    ].join('\n');
    expect(cleanupRules(saved)).toBe(
      golden(`
        *nat
        -D PREROUTING -j PODNET-IPVS-SERVICES
        -D POSTROUTING -j PODNET-IPVS-POSTROUTING
        -F PODNET-IPVS-SERVICES
        -F PODNET-IPVS-POSTROUTING
        -F PODNET-IPVS-MARK-MASQ
        -X PODNET-IPVS-SERVICES
        -X PODNET-IPVS-POSTROUTING
        -X PODNET-IPVS-MARK-MASQ
        COMMIT
      `) + '\n',
    );
    expect(cleanupRules('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\nCOMMIT\n')).toBe('');
  });
});
