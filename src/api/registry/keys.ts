/**
 * Storage keys: /registry/<resource>/<namespace>/<name> for namespaced resources,
 * /registry/<resource>/<name> for cluster-scoped ones (the kube-apiserver layout).
 * Allocation records live under /registry/ranges/.
 */
import { RESOURCES } from '../../client/resources.js';
import type { ResourceName } from '../../client/resources.js';

export const ROOT = '/registry/';

export function objectKey(resource: ResourceName, namespace: string | undefined, name: string): string {
  return RESOURCES[resource].namespaced ? `${ROOT}${resource}/${namespace}/${name}` : `${ROOT}${resource}/${name}`;
}

/** Prefix of a collection: all of a resource, or one namespace of it. */
export function collectionPrefix(resource: ResourceName, namespace?: string): string {
  return RESOURCES[resource].namespaced && namespace ? `${ROOT}${resource}/${namespace}/` : `${ROOT}${resource}/`;
}

export interface ParsedKey {
  resource: ResourceName;
  namespace: string | undefined;
  name: string;
}

/** The object a key names, or undefined for keys that are not objects (allocations...). */
export function parseKey(key: string): ParsedKey | undefined {
  if (!key.startsWith(ROOT)) return undefined;
  const parts = key.slice(ROOT.length).split('/');
  const resource = parts[0] as ResourceName;
  const info = RESOURCES[resource];
  if (!info) return undefined;
  if (info.namespaced) return parts.length === 3 ? { resource, namespace: parts[1], name: parts[2]! } : undefined;
  return parts.length === 2 ? { resource, namespace: undefined, name: parts[1]! } : undefined;
}
