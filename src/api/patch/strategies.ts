/**
 * How strategic merge patch treats each list of the objects podnet serves — the data
 * Kubernetes keeps in `patchStrategy` / `patchMergeKey` struct tags (and publishes as
 * `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` in OpenAPI), as one table
 * keyed by resource and path pattern. A pattern is the field path with `[]` for "any
 * element of a list": `spec.containers[].ports`. Lists not in the table are atomic: a
 * patch replaces them whole. Maps always merge key by key.
 *
 * Exported so the OpenAPI document can publish the same facts kubectl reads.
 */
import type { ResourceName } from '../../client/resources.js';

/** A list that merges instead of being replaced. */
export interface ListStrategy {
  /**
   * Elements are objects identified by this field (`name`, `port`…). Without one the
   * list holds primitives and merges as a set (union; `$deleteFromPrimitiveList` removes).
   */
  mergeKey?: string;
  /**
   * More identity fields, compared only when both elements give them: Service ports are
   * keyed by `port`, but 53/TCP and 53/UDP are two ports when the patch says so.
   */
  alsoKeys?: readonly string[];
}

export type StrategyTable = Readonly<Record<string, ListStrategy>>;

const byName: ListStrategy = { mergeKey: 'name' };
const byType: ListStrategy = { mergeKey: 'type' };
const set: ListStrategy = {};

/** Lists inside a container, for every list of containers in a pod spec. */
const CONTAINER_LISTS: StrategyTable = {
  ports: { mergeKey: 'containerPort', alsoKeys: ['protocol'] },
  env: byName,
  volumeMounts: { mergeKey: 'mountPath' },
  volumeDevices: { mergeKey: 'devicePath' },
};

/** Prefixes every pattern of a table: `under('spec.containers[]', {env})` → `spec.containers[].env`. */
function under(prefix: string, table: StrategyTable): StrategyTable {
  return Object.fromEntries(Object.entries(table).map(([path, s]) => [`${prefix}.${path}`, s]));
}

function containers(list: string): StrategyTable {
  return { [list]: byName, ...under(`${list}[]`, CONTAINER_LISTS) };
}

/** Lists every object has, whatever its resource. */
export const COMMON_STRATEGIES: StrategyTable = {
  'metadata.finalizers': set,
  'metadata.ownerReferences': { mergeKey: 'uid' },
};

/** Per resource: the lists that merge. Everything else is atomic. */
export const PATCH_STRATEGIES: Readonly<Record<ResourceName, StrategyTable>> = {
  namespaces: {
    'status.conditions': byType,
  },
  nodes: {
    'spec.podCIDRs': set,
    'spec.taints': { mergeKey: 'key', alsoKeys: ['effect'] },
    'status.addresses': byType,
    'status.conditions': byType,
  },
  pods: {
    ...containers('spec.containers'),
    ...containers('spec.initContainers'),
    ...containers('spec.ephemeralContainers'),
    'spec.volumes': byName,
    'spec.imagePullSecrets': byName,
    'spec.hostAliases': { mergeKey: 'ip' },
    'spec.topologySpreadConstraints': { mergeKey: 'topologyKey', alsoKeys: ['whenUnsatisfiable'] },
    'status.conditions': byType,
    'status.podIPs': { mergeKey: 'ip' },
    'status.hostIPs': { mergeKey: 'ip' },
  },
  services: {
    'spec.ports': { mergeKey: 'port', alsoKeys: ['protocol'] },
    'status.conditions': byType,
  },
  endpointslices: {},
  leases: {},
  // No merging lists: `related` is an object, the rest are scalars.
  events: {},
};

/**
 * The strategy of the list at `pattern` in a `resource` object, or undefined for an atomic
 * list. Unknown resources get only the common metadata lists.
 */
export function listStrategyOf(resource: string, pattern: string): ListStrategy | undefined {
  const table: StrategyTable | undefined = Object.hasOwn(PATCH_STRATEGIES, resource) ? PATCH_STRATEGIES[resource as ResourceName] : undefined;
  return (table && Object.hasOwn(table, pattern) ? table[pattern] : undefined) ?? (Object.hasOwn(COMMON_STRATEGIES, pattern) ? COMMON_STRATEGIES[pattern] : undefined);
}
