/**
 * Table responses (meta.k8s.io/v1 Table): the columns `kubectl get` prints, computed on
 * the server as kube-apiserver does. Priority-1 columns show only with `-o wide`.
 */
import type { ResourceName } from '../../client/resources.js';
import type { CoreEvent, EndpointSlice, KubeObject, Lease, Namespace, Node, Pod, Service } from '../../client/types.js';

interface Column {
  name: string;
  type: 'string' | 'integer' | 'date';
  format?: string;
  description: string;
  priority: number;
}

const name: Column = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 };
const age: Column = { name: 'Age', type: 'string', description: 'Time since the object was created.', priority: 0 };
const col = (n: string, description: string, priority = 0, type: Column['type'] = 'string'): Column => ({ name: n, type, description, priority });

const COLUMNS: Record<ResourceName, Column[]> = {
  namespaces: [name, col('Status', 'The phase of the namespace.'), age],
  nodes: [name, col('Status', 'The status of the node.'), col('Roles', 'The roles of the node.'), age, col('Version', 'Node agent version.'), col('Internal-IP', 'Internal IP of the node.', 1), col('External-IP', 'External IP of the node.', 1), col('OS-Image', 'OS image.', 1), col('Kernel-Version', 'Kernel version.', 1), col('Container-Runtime', 'Container runtime.', 1)],
  pods: [name, col('Ready', 'Ready containers / containers.'), col('Status', 'The phase or reason of the pod.'), col('Restarts', 'Container restarts.', 0, 'string'), age, col('IP', 'IP address of the pod.', 1), col('Node', 'Node the pod runs on.', 1), col('Nominated Node', 'Nominated node.', 1), col('Readiness Gates', 'Readiness gates.', 1)],
  services: [name, col('Type', 'The type of the service.'), col('Cluster-IP', 'The cluster IP of the service.'), col('External-IP', 'External IPs of the service.'), col('Port(s)', 'The ports of the service.'), age, col('Selector', 'The pod selector.', 1)],
  endpointslices: [name, col('AddressType', 'The address type.'), col('Ports', 'The ports of the endpoint slice.'), col('Endpoints', 'The addresses of the endpoints.'), age],
  leases: [name, col('Holder', 'The holder of the lease.'), age],
  // kube-apiserver's event columns: `kubectl get events` shows LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
  events: [
    col('Last Seen', 'The time at which the most recent occurrence of this event was recorded.'),
    col('Type', 'Type of this event (Normal, Warning).'),
    col('Reason', 'Short, machine understandable string that gives the reason for the transition into the object\'s current status.'),
    col('Object', 'The object that this event is about.'),
    col('Subobject', 'The part of the object the event is about.', 1),
    col('Source', 'The component reporting this event.', 1),
    col('Message', 'A human-readable description of the status of this operation.'),
    col('First Seen', 'The time at which the event was first recorded.', 1),
    col('Count', 'The number of times this event has occurred.', 1, 'integer'),
    { ...name, priority: 1 },
  ],
};

/** Kubernetes' HumanDuration: 5s, 3m20s, 45m, 2h15m, 10h, 3d4h, 12d, 2y10d... */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (y < 8) return d % 365 ? `${y}y${d % 365}d` : `${y}y`;
  return `${y}y`;
}

function ageOf(o: KubeObject, nowMs: number): string {
  const t = o.metadata.creationTimestamp ? Date.parse(o.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? '<unknown>' : humanDuration(nowMs - t);
}

function cells(resource: ResourceName, o: KubeObject, nowMs: number): unknown[] {
  const n = o.metadata.name ?? '';
  switch (resource) {
    case 'namespaces':
      return [n, (o as Namespace).status?.phase ?? 'Active', ageOf(o, nowMs)];
    case 'nodes': {
      const node = o as Node;
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      let status = ready?.status === 'True' ? 'Ready' : ready?.status === 'False' ? 'NotReady' : 'Unknown';
      if (node.spec?.unschedulable) status += ',SchedulingDisabled';
      const addr = (t: string) => node.status?.addresses?.filter((a) => a.type === t).map((a) => a.address).join(',') || '<none>';
      const info = node.status?.nodeInfo ?? {};
      return [n, status, '<none>', ageOf(o, nowMs), info.kubeletVersion ?? 'podnet', addr('InternalIP'), addr('ExternalIP'), info.osImage ?? '<unknown>', info.kernelVersion ?? '<unknown>', info.containerRuntimeVersion ?? 'podnet'];
    }
    case 'pods': {
      const p = o as Pod;
      const total = p.spec?.containers?.length ?? 0;
      const ready = p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? total : 0;
      const status = p.metadata.deletionTimestamp ? 'Terminating' : (p.status?.reason ?? p.status?.phase ?? 'Pending');
      return [n, `${ready}/${total}`, status, '0', ageOf(o, nowMs), p.status?.podIP ?? '<none>', p.spec?.nodeName ?? '<none>', '<none>', '<none>'];
    }
    case 'services': {
      const s = o as Service;
      const spec = s.spec ?? {};
      const type = spec.type ?? 'ClusterIP';
      const lb = (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? '').filter(Boolean);
      const ext = [...lb, ...(spec.externalIPs ?? [])];
      const external = type === 'LoadBalancer' ? (ext.length ? ext.join(',') : '<pending>') : type === 'ExternalName' ? (spec.externalName ?? '') : ext.length ? ext.join(',') : '<none>';
      const ports = (spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>';
      const selector = Object.entries(spec.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>';
      return [n, type, spec.clusterIP || '<none>', external, ports, ageOf(o, nowMs), selector];
    }
    case 'endpointslices': {
      const e = o as EndpointSlice;
      const ports = (e.ports ?? []).map((p) => (p.port === undefined ? '<unset>' : String(p.port))).join(',') || '<unset>';
      const addrs = (e.endpoints ?? []).flatMap((ep) => ep.addresses);
      const shown = addrs.length ? addrs.slice(0, 3).join(',') + (addrs.length > 3 ? ` + ${addrs.length - 3} more...` : '') : '<unset>';
      return [n, e.addressType, ports, shown, ageOf(o, nowMs)];
    }
    case 'leases':
      return [n, (o as Lease).spec?.holderIdentity ?? '', ageOf(o, nowMs)];
    case 'events':
      return eventCells(o as CoreEvent, nowMs);
  }
}

/** A time as kubectl shows it: how long ago, or <unknown>. */
function since(ts: string | undefined, nowMs: number): string {
  const t = ts ? Date.parse(ts) : NaN;
  return Number.isNaN(t) ? '<unknown>' : humanDuration(nowMs - t);
}

/** kube-apiserver's printEvent: series (events.k8s.io style) first, else count / timestamps. */
function eventCells(ev: CoreEvent, nowMs: number): unknown[] {
  const first = ev.firstTimestamp ? since(ev.firstTimestamp, nowMs) : since(ev.eventTime, nowMs);
  let last = ev.lastTimestamp ? since(ev.lastTimestamp, nowMs) : first;
  let count = ev.count || 1;
  if (ev.series) {
    last = since(ev.series.lastObservedTime, nowMs);
    count = ev.series.count ?? count;
  }
  const io = ev.involvedObject ?? {};
  const kind = (io.kind ?? '').toLowerCase();
  const target = io.name ? `${kind}/${io.name}` : kind;
  const component = ev.source?.component || ev.reportingComponent || '';
  const instance = ev.source?.host || ev.reportingInstance || '';
  const source = instance ? `${component}, ${instance}` : component;
  return [last, ev.type ?? '', ev.reason ?? '', target, io.fieldPath ?? '', source, (ev.message ?? '').trim(), first, count, ev.metadata.name ?? ''];
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

function rowObject(o: KubeObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

export function tableOf(resource: ResourceName, objects: KubeObject[], meta: { resourceVersion?: string; continue?: string }, include: IncludeObject = 'Metadata', nowMs = Date.now()): Record<string, unknown> {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: meta,
    columnDefinitions: COLUMNS[resource],
    rows: objects.map((o) => ({ cells: cells(resource, o, nowMs), object: rowObject(o, include) })),
  };
}

/** Does this Accept header ask for a Table? */
export function wantsTable(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => {
    const p = part.toLowerCase().replace(/\s+/g, '');
    return p.includes('as=table') && p.includes('g=meta.k8s.io') && (p.startsWith('application/json') || p.startsWith('*/*'));
  });
}
