/**
 * Defaulting, as kube-apiserver applies it before validation: what a user may omit and
 * what the stored object then says. Pure; mutates the (already copied) object.
 */
import type { ResourceName } from '../../client/resources.js';
import type { EndpointSlice, KubeObject, Pod, Service } from '../../client/types.js';

export function applyDefaults(resource: ResourceName, obj: KubeObject): void {
  switch (resource) {
    case 'pods':
      return pod(obj as Pod);
    case 'services':
      return service(obj as Service);
    case 'endpointslices':
      return endpointSlice(obj as EndpointSlice);
    default:
      return;
  }
}

function pod(p: Pod): void {
  const s = p.spec;
  if (!s) return;
  s.restartPolicy ??= 'Always';
  s.terminationGracePeriodSeconds ??= 30;
  for (const c of [...(s.initContainers ?? []), ...(s.containers ?? [])]) {
    for (const port of c.ports ?? []) port.protocol ??= 'TCP';
  }
}

function service(svc: Service): void {
  const s = svc.spec;
  if (!s) return;
  s.type ??= 'ClusterIP';
  if (s.type === 'ExternalName') return;
  s.sessionAffinity ??= 'None';
  if (s.sessionAffinity === 'ClientIP') {
    s.sessionAffinityConfig ??= {};
    s.sessionAffinityConfig.clientIP ??= {};
    s.sessionAffinityConfig.clientIP.timeoutSeconds ??= 10800;
  }
  for (const p of s.ports ?? []) {
    p.protocol ??= 'TCP';
    if (p.targetPort === undefined || p.targetPort === null || p.targetPort === 0 || p.targetPort === '') p.targetPort = p.port;
  }
  if (s.type === 'NodePort' || s.type === 'LoadBalancer' || (s.externalIPs?.length ?? 0) > 0) s.externalTrafficPolicy ??= 'Cluster';
  s.internalTrafficPolicy ??= 'Cluster';
  if (s.type === 'LoadBalancer') s.allocateLoadBalancerNodePorts ??= true;
}

function endpointSlice(s: EndpointSlice): void {
  for (const p of s.ports ?? []) p.protocol ??= 'TCP';
  s.endpoints ??= [];
}
