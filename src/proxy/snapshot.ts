/**
 * From API objects to the proxy's model (pure). For one Service and its EndpointSlices,
 * `servicePorts` gives the ProxyServicePorts of one family, as kube-proxy's service and
 * endpoints change trackers do:
 *
 * - ExternalName and headless Services (clusterIP None) are not proxied; a Service is in
 *   a family when it has a ClusterIP of that family.
 * - Endpoints come from the slices labelled kubernetes.io/service-name=<service> whose
 *   addressType is the family, matched to the Service port by port name (and protocol);
 *   duplicates across slices collapse to one (the first seen with ready wins).
 * - Conditions as KEP-1672: ready (nil = true), serving (nil = ready), terminating.
 * - Categorised as kube-proxy's CategorizeEndpoints: for each traffic policy the ready
 *   endpoints in scope; when there is none, the serving terminating ones.
 */
import { isIP } from 'node:net';
import type { EndpointSlice, Service } from '../client/types.js';
import type { Family, L4Protocol, ProxyEndpoint, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from './types.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours), as Kubernetes. */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

const familyOf = (ip: string): Family | 0 => isIP(ip) as Family | 0;

/** `namespace/name` of a Service or of the Service an EndpointSlice belongs to. */
export function serviceName(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The Service an EndpointSlice is for (`namespace/name`), undefined when unlabelled. */
export function sliceServiceName(slice: EndpointSlice): string | undefined {
  const svc = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc ? serviceName(slice.metadata.namespace ?? 'default', svc) : undefined;
}

/** True when kube-proxy would program this Service at all. */
export function isProxied(svc: Service): boolean {
  const s = svc.spec;
  if (!s || s.type === 'ExternalName') return false;
  const ips = s.clusterIPs?.length ? s.clusterIPs : s.clusterIP ? [s.clusterIP] : [];
  return ips.some((ip) => ip && ip !== 'None' && familyOf(ip) !== 0);
}

function endpointsFor(slices: readonly EndpointSlice[], family: Family, portName: string, protocol: L4Protocol, nodeName: string): ProxyEndpoint[] {
  const addressType = family === 4 ? 'IPv4' : 'IPv6';
  const byAddr = new Map<string, ProxyEndpoint>();
  for (const slice of slices) {
    if (slice.addressType !== addressType) continue;
    const sp = (slice.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === protocol);
    if (!sp || typeof sp.port !== 'number' || sp.port < 1 || sp.port > 65535) continue;
    for (const ep of slice.endpoints ?? []) {
      const ip = ep.addresses?.[0];
      if (!ip || familyOf(ip) !== family) continue;
      const ready = ep.conditions?.ready ?? true;
      const serving = ep.conditions?.serving ?? ready;
      const terminating = ep.conditions?.terminating ?? false;
      const e: ProxyEndpoint = { ip, port: sp.port, ...(ep.nodeName ? { nodeName: ep.nodeName } : {}), isLocal: !!ep.nodeName && ep.nodeName === nodeName, ready, serving, terminating };
      const k = `${ip}/${sp.port}`;
      const prev = byAddr.get(k);
      if (!prev || (!prev.ready && ready)) byAddr.set(k, e);
    }
  }
  return [...byAddr.values()].sort(compareEndpoints);
}

function compareEndpoints(a: ProxyEndpoint, b: ProxyEndpoint): number {
  return a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port;
}

/** kube-proxy's CategorizeEndpoints for one scope: ready ones, else serving terminating ones. */
export function usable(endpoints: readonly ProxyEndpoint[], localOnly: boolean): ProxyEndpoint[] {
  const inScope = localOnly ? endpoints.filter((e) => e.isLocal) : endpoints;
  const ready = inScope.filter((e) => e.ready);
  if (ready.length) return ready;
  return inScope.filter((e) => e.serving && e.terminating);
}

/** The ProxyServicePorts of one Service in one family (empty when it is not proxied there). */
export function servicePorts(svc: Service, slices: readonly EndpointSlice[], node: ProxyNodeConfig): ProxyServicePort[] {
  const s = svc.spec;
  if (!s || !isProxied(svc)) return [];
  const family = node.family;
  const ips = s.clusterIPs?.length ? s.clusterIPs : s.clusterIP ? [s.clusterIP] : [];
  const clusterIP = ips.find((ip) => familyOf(ip) === family);
  if (!clusterIP) return [];
  const namespace = svc.metadata.namespace ?? 'default';
  const name = svc.metadata.name ?? '';
  const externalIPs = [...new Set((s.externalIPs ?? []).filter((ip) => familyOf(ip) === family))].sort();
  const loadBalancerIPs =
    s.type === 'LoadBalancer' ? [...new Set((svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter((ip) => ip && familyOf(ip) === family))].sort() : [];
  const affinity = s.sessionAffinity === 'ClientIP' ? (s.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS) : undefined;
  const hasExternal = s.type === 'NodePort' || s.type === 'LoadBalancer' || externalIPs.length > 0;
  const externalPolicyLocal = hasExternal && s.externalTrafficPolicy === 'Local';
  const internalPolicyLocal = s.internalTrafficPolicy === 'Local';
  const out: ProxyServicePort[] = [];
  for (const p of s.ports ?? []) {
    const portName = p.name ?? '';
    const protocol: L4Protocol = p.protocol ?? 'TCP';
    const endpoints = endpointsFor(slices, family, portName, protocol, node.nodeName);
    const clusterEndpoints = usable(endpoints, internalPolicyLocal);
    const externalEndpoints = usable(endpoints, externalPolicyLocal);
    out.push({
      key: `${namespace}/${name}:${portName}`,
      namespace,
      name,
      portName,
      protocol,
      port: p.port,
      clusterIP,
      nodePort: s.type === 'NodePort' || s.type === 'LoadBalancer' ? (p.nodePort ?? 0) : 0,
      externalIPs,
      loadBalancerIPs,
      ...(affinity !== undefined ? { affinityTimeoutSeconds: affinity } : {}),
      externalPolicyLocal,
      internalPolicyLocal,
      healthCheckNodePort: externalPolicyLocal && s.type === 'LoadBalancer' ? (s.healthCheckNodePort ?? 0) : 0,
      endpoints,
      clusterEndpoints,
      externalEndpoints,
      hasEndpoints: usable(endpoints, false).length > 0,
    });
  }
  return out;
}

/** A whole snapshot of one family from every Service and slice (tests, benchmarks, full syncs). */
export function buildSnapshot(services: readonly Service[], slices: readonly EndpointSlice[], node: ProxyNodeConfig): ProxySnapshot {
  const bySvc = new Map<string, EndpointSlice[]>();
  for (const sl of slices) {
    const k = sliceServiceName(sl);
    if (!k) continue;
    const list = bySvc.get(k);
    if (list) list.push(sl);
    else bySvc.set(k, [sl]);
  }
  const ports: ProxyServicePort[] = [];
  for (const svc of services) ports.push(...servicePorts(svc, bySvc.get(serviceName(svc.metadata.namespace ?? 'default', svc.metadata.name ?? '')) ?? [], node));
  ports.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { family: node.family, node, services: new Map(ports.map((p) => [p.key, p])) };
}

/** True when two service ports would be programmed the same (a partial sync skips equal ones). */
export function samePort(a: ProxyServicePort, b: ProxyServicePort): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
