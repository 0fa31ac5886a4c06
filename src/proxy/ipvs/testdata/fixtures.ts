/**
 * API objects for the IPVS planner's tests and the trace's IPVS interpreter tests (the
 * interpreter is the planner's oracle, so both build their Services the same way).
 */
import type { EndpointSlice, Service, ServiceSpec } from '../../../client/types.js';
import type { Ep } from '../../nftables/testdata/fixtures.js';

export function svc(name: string, spec: ServiceSpec, lbIPs: string[] = []): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec, ...(lbIPs.length ? { status: { loadBalancer: { ingress: lbIPs.map((ip) => ({ ip })) } } } : {}) } as Service;
}


/** A slice of `eps` (the nftables fixtures' shorthand; here missing conditions default to ready). */
export function slice(service: string, eps: Ep[], ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[], addressType: 'IPv4' | 'IPv6' = 'IPv4'): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'default', name: `${service}-abc`, labels: { 'kubernetes.io/service-name': service } },
    addressType,
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      ...(e.node ? { nodeName: e.node } : {}),
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
    })),
    ports,
  } as EndpointSlice;
}
