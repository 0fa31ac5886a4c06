/**
 * API objects for the nftables planner's golden tests: one Service (and its slice) per
 * shape the planner handles. `shapes4()` / `shapes6()` give the objects, `snapshot4()` /
 * `snapshot6()` the snapshots podnet's proxier would make from them on node n1.
 */
import type { EndpointSlice, Service, ServiceSpec } from '../../../client/types.js';
import { buildSnapshot } from '../../snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../../types.js';

export const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
export const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };

export interface Ep {
  ip: string;
  node?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function service(name: string, spec: ServiceSpec, o: { namespace?: string; lbIPs?: string[] } = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.namespace ?? 'default' },
    spec,
    ...(o.lbIPs ? { status: { loadBalancer: { ingress: o.lbIPs.map((ip) => ({ ip })) } } } : {}),
  };
}

export function slice(service: string, eps: Ep[], o: { namespace?: string; ports?: EndpointSlice['ports']; addressType?: 'IPv4' | 'IPv6'; name?: string } = {}): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: o.name ?? `${service}-abc`, namespace: o.namespace ?? 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType: o.addressType ?? 'IPv4',
    ports: o.ports ?? [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ...(e.ready !== undefined ? { ready: e.ready } : {}), ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
      ...(e.node ? { nodeName: e.node } : {}),
    })),
  };
}

const http = [{ name: 'http', port: 80, targetPort: 8080 }];
const cip = (ip: string): Pick<ServiceSpec, 'clusterIP' | 'clusterIPs'> => ({ clusterIP: ip, clusterIPs: [ip] });

/** Every IPv4 shape: [services, slices]. */
export function shapes4(): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [
    service('web', { ...cip('10.96.0.10'), ports: http }),
    service('multi', {
      ...cip('10.96.0.11'),
      ports: [
        { name: 'http', port: 80, targetPort: 'http' },
        { name: 'https', port: 443, targetPort: 'https' },
      ],
    }),
    service('empty', { ...cip('10.96.0.12'), ports: http }),
    service('term', { ...cip('10.96.0.13'), ports: http }),
    service('np', { ...cip('10.96.0.14'), type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
    service('ext', { ...cip('10.96.0.15'), type: 'LoadBalancer', externalIPs: ['203.0.113.10'], ports: [{ name: 'http', port: 80, nodePort: 30081 }] }, { lbIPs: ['203.0.113.20'] }),
    service('etp-local', { ...cip('10.96.0.16'), type: 'NodePort', externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.11'], ports: [{ name: 'http', port: 80, nodePort: 30082 }] }),
    service('etp-none', { ...cip('10.96.0.17'), type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30083 }] }),
    service('itp-local', { ...cip('10.96.0.18'), internalTrafficPolicy: 'Local', ports: http }),
    service('itp-none', { ...cip('10.96.0.19'), internalTrafficPolicy: 'Local', ports: http }),
    service('aff', { ...cip('10.96.0.20'), sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, ports: http }),
    service('dns', {
      ...cip('10.96.0.53'),
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
    }),
    service('sctp', { ...cip('10.96.0.21'), ports: [{ name: 'assoc', port: 9999, protocol: 'SCTP' }] }),
    service('empty-np', { ...cip('10.96.0.22'), type: 'NodePort', externalIPs: ['203.0.113.12'], ports: [{ name: 'http', port: 80, nodePort: 30084 }] }),
  ];
  const slices: EndpointSlice[] = [
    slice('web', [
      { ip: '10.244.1.5', node: 'n1' },
      { ip: '10.244.2.5', node: 'n2' },
    ]),
    slice('multi', [{ ip: '10.244.1.6', node: 'n1' }], {
      ports: [
        { name: 'http', port: 8080, protocol: 'TCP' },
        { name: 'https', port: 8443, protocol: 'TCP' },
      ],
    }),
    slice('term', [{ ip: '10.244.2.7', node: 'n2', ready: false, serving: true, terminating: true }]),
    slice('np', [
      { ip: '10.244.1.8', node: 'n1' },
      { ip: '10.244.2.8', node: 'n2' },
      { ip: '10.244.3.8', node: 'n3' },
    ]),
    slice('ext', [{ ip: '10.244.2.9', node: 'n2' }]),
    slice('etp-local', [
      { ip: '10.244.1.10', node: 'n1' },
      { ip: '10.244.2.10', node: 'n2' },
    ]),
    slice('etp-none', [{ ip: '10.244.2.11', node: 'n2' }]),
    slice('itp-local', [
      { ip: '10.244.1.12', node: 'n1' },
      { ip: '10.244.2.12', node: 'n2' },
    ]),
    slice('itp-none', [{ ip: '10.244.2.13', node: 'n2' }]),
    slice('aff', [
      { ip: '10.244.1.14', node: 'n1' },
      { ip: '10.244.2.14', node: 'n2' },
    ]),
    slice('dns', [{ ip: '10.244.1.2', node: 'n1' }], {
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
    }),
    slice('sctp', [{ ip: '10.244.2.15', node: 'n2' }], { ports: [{ name: 'assoc', port: 9999, protocol: 'SCTP' }] }),
  ];
  return { services, slices };
}

/** IPv6 shapes: a ClusterIP with two endpoints, a NodePort with affinity, one with none. */
export function shapes6(): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [
    service('web', { ...cip('fd00:10:96::a'), ports: http }),
    service('np', {
      ...cip('fd00:10:96::e'),
      type: 'NodePort',
      sessionAffinity: 'ClientIP',
      externalIPs: ['2001:db8::10'],
      ports: [{ name: 'http', port: 80, nodePort: 30080 }],
    }),
    service('empty', { ...cip('fd00:10:96::c'), ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
  ];
  const slices: EndpointSlice[] = [
    slice(
      'web',
      [
        { ip: 'fd00:10:244:1::5', node: 'n1' },
        { ip: 'fd00:10:244:2::5', node: 'n2' },
      ],
      { addressType: 'IPv6' },
    ),
    slice('np', [{ ip: 'fd00:10:244:2::8', node: 'n2' }], { addressType: 'IPv6' }),
  ];
  return { services, slices };
}

export function snapshot4(node: ProxyNodeConfig = node4): ProxySnapshot {
  const { services, slices } = shapes4();
  return buildSnapshot(services, slices, node);
}

export function snapshot6(node: ProxyNodeConfig = node6): ProxySnapshot {
  const { services, slices } = shapes6();
  return buildSnapshot(services, slices, node);
}

/**
 * A big cluster for the performance tests: `n` ClusterIP Services (every tenth a
 * NodePort) with `e` endpoints each on nodes n1..n4.
 */
export function bigCluster(n: number, e: number): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [];
  const slices: EndpointSlice[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const name = `svc-${i}`;
    const np = i % 10 === 0;
    services.push(service(name, { ...cip(ip), ...(np ? { type: 'NodePort' as const } : {}), ports: [{ name: 'http', port: 80, ...(np ? { nodePort: 30000 + i / 10 } : {}) }] }, { namespace: `ns-${i % 100}` }));
    const eps: Ep[] = [];
    for (let j = 0; j < e; j++) eps.push({ ip: `10.${200 + (j % 40)}.${(i >> 8) & 255}.${i & 255}`, node: `n${(j % 4) + 1}` });
    slices.push(slice(name, eps, { namespace: `ns-${i % 100}` }));
  }
  return { services, slices };
}
