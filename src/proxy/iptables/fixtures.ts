/**
 * Synthetic snapshots for tests and scale checks, shaped like /work/shared/bench/svc-bench.sh:
 * service i is `ns<i/1000>/svc<i>:http`, ClusterIP 10.96.0.0 + 1 + i, tcp/80, E endpoints
 * 10.244.0.0 + 1 + (i*E + k) on port 8080 (IPv6: fd00:10:96::/108 and fd00:10:244::/64).
 * Built directly (not through buildSnapshot) so 10,000 × 10 costs milliseconds.
 */
import type { Family, ProxyEndpoint, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from '../types.js';

function ip4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const V4_VIP = (10 << 24) | (96 << 16);
const V4_EP = (10 << 24) | (244 << 16);

export function vipOf(family: Family, i: number): string {
  return family === 4 ? ip4(V4_VIP + 1 + i) : `fd00:10:96::${(1 + i).toString(16)}`;
}

export function endpointIP(family: Family, j: number): string {
  if (family === 4) return ip4(V4_EP + 1 + j);
  const n = 1 + j;
  return `fd00:10:244::${Math.floor(n / 65536).toString(16)}:${(n % 65536).toString(16)}`;
}

export function endpoint(ip: string, port = 8080, extra: Partial<ProxyEndpoint> = {}): ProxyEndpoint {
  return { ip, port, isLocal: false, ready: true, serving: true, terminating: false, ...extra };
}

/** A ClusterIP service port with these endpoints (all ready, not local). */
export function clusterIPPort(i: number, family: Family, eps: ProxyEndpoint[]): ProxyServicePort {
  const ns = `ns${Math.floor(i / 1000)}`;
  const name = `svc${i}`;
  return {
    key: `${ns}/${name}:http`,
    namespace: ns,
    name,
    portName: 'http',
    protocol: 'TCP',
    port: 80,
    clusterIP: vipOf(family, i),
    nodePort: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    externalPolicyLocal: false,
    internalPolicyLocal: false,
    healthCheckNodePort: 0,
    endpoints: eps,
    clusterEndpoints: eps,
    externalEndpoints: eps,
    hasEndpoints: eps.length > 0,
  };
}

export function syntheticNode(family: Family): ProxyNodeConfig {
  return family === 4
    ? { nodeName: 'n1', family, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' }
    : { nodeName: 'n1', family, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };
}

/** S services × E endpoints, sorted by key as buildSnapshot's. */
export function syntheticSnapshot(o: { services: number; endpoints: number; family?: Family; node?: ProxyNodeConfig }): ProxySnapshot {
  const family = o.family ?? 4;
  const ports: ProxyServicePort[] = [];
  for (let i = 0; i < o.services; i++) {
    const eps: ProxyEndpoint[] = [];
    for (let k = 0; k < o.endpoints; k++) eps.push(endpoint(endpointIP(family, i * o.endpoints + k)));
    eps.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
    ports.push(clusterIPPort(i, family, eps));
  }
  ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { family, node: o.node ?? syntheticNode(family), services: new Map(ports.map((p) => [p.key, p])) };
}

/** A copy of `snap` with `port` replaced (or added), keeping key order. */
export function withPort(snap: ProxySnapshot, port: ProxyServicePort): ProxySnapshot {
  const m = new Map(snap.services);
  const had = m.has(port.key);
  m.set(port.key, port);
  if (had) return { ...snap, services: m };
  const sorted = [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { ...snap, services: new Map(sorted) };
}

/** A copy of `snap` without `key`. */
export function withoutPort(snap: ProxySnapshot, key: string): ProxySnapshot {
  const m = new Map(snap.services);
  m.delete(key);
  return { ...snap, services: m };
}
