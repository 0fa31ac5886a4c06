/**
 * The resources podnet serves: group/version, plural, kind, scope. The single table the
 * server's router, discovery documents, and the client's URL building are derived from.
 */

export interface ResourceInfo {
  /** "" for the core group. */
  group: string;
  version: string;
  /** Plural, as in URLs: "pods". */
  resource: string;
  kind: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  /** Subresources served (e.g. "status"). */
  subresources: string[];
  listKind: string;
}

export const RESOURCES = {
  namespaces: { group: '', version: 'v1', resource: 'namespaces', kind: 'Namespace', singular: 'namespace', namespaced: false, shortNames: ['ns'], subresources: ['status'], listKind: 'NamespaceList' },
  nodes: { group: '', version: 'v1', resource: 'nodes', kind: 'Node', singular: 'node', namespaced: false, shortNames: ['no'], subresources: ['status'], listKind: 'NodeList' },
  pods: { group: '', version: 'v1', resource: 'pods', kind: 'Pod', singular: 'pod', namespaced: true, shortNames: ['po'], subresources: ['status'], listKind: 'PodList' },
  services: { group: '', version: 'v1', resource: 'services', kind: 'Service', singular: 'service', namespaced: true, shortNames: ['svc'], subresources: ['status'], listKind: 'ServiceList' },
  endpointslices: { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice', singular: 'endpointslice', namespaced: true, shortNames: [], subresources: [], listKind: 'EndpointSliceList' },
  leases: { group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease', singular: 'lease', namespaced: true, shortNames: [], subresources: [], listKind: 'LeaseList' },
  events: { group: '', version: 'v1', resource: 'events', kind: 'Event', singular: 'event', namespaced: true, shortNames: ['ev'], subresources: [], listKind: 'EventList' },
} as const satisfies Record<string, ResourceInfo>;

export type ResourceName = keyof typeof RESOURCES;

/** "v1" or "discovery.k8s.io/v1". */
export function apiVersionOf(r: ResourceInfo): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** URL path of a collection or object: /api/v1/namespaces/default/pods[/name[/status]]. */
export function resourcePath(r: ResourceInfo, opts: { namespace?: string; name?: string; subresource?: string } = {}): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced && opts.namespace ? `/namespaces/${encodeURIComponent(opts.namespace)}` : '';
  const name = opts.name ? `/${encodeURIComponent(opts.name)}` : '';
  const sub = opts.name && opts.subresource ? `/${opts.subresource}` : '';
  return `${base}${ns}/${r.resource}${name}${sub}`;
}
