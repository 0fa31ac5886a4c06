/**
 * Names of a pod's kernel objects, derived, never stored as policy:
 *  - its network namespace `/run/netns/<prefix><namespace>.<name>` (readable, and what
 *    `podnet pod netns NAMESPACE/NAME` prints, so `ip netns exec $(podnet pod netns
 *    default/web) sh` runs a shell in the pod); the prefix makes it unique per node
 *    (default `pn-`; tests use `pnt-<pid>-<node>-`);
 *  - its host-side veth `pn<11 hex>` from a hash of the owner id (pod uid, or a CNI
 *    attachment), which fits IFNAMSIZ and never collides in practice.
 */
import { createHash } from 'node:crypto';
import { validateIfName, validateNetnsName } from '../util/validate.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';

export const DEFAULT_NETNS_PREFIX = 'pn-';
const NETNS_MAX = 64;

function hash(text: string, n: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, n);
}

/**
 * A netns prefix: letters, digits, "_", ".", "-", starting with a letter or digit, at most
 * 40 characters, without ".." (a netns name never holds "..", so such a prefix would make
 * every pod's namespace name invalid).
 */
export function validateNetnsPrefix(prefix: unknown, field = 'netns prefix'): string {
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/.test(prefix) || prefix.includes('..')) {
    throw new PodnetError(ErrorCodes.INVALID_NAME, `${field} ${JSON.stringify(prefix)} must be 1-40 letters, digits, "_", "." or "-", starting with a letter or digit, without ".."`, { field });
  }
  return prefix;
}

/** The network namespace name of pod NAMESPACE/NAME on a node using `prefix`. */
export function podNetnsName(prefix: string, namespace: string, name: string): string {
  const full = `${prefix}${namespace}.${name}`;
  // Readable names are at most 63 characters and hashed ones exactly 64, so no pod can pick
  // a name equal to another pod's hashed one (create() removes a namespace of its name).
  if (full.length < NETNS_MAX) return validateNetnsName(full);
  // Long names: keep a readable head, and a hash of the whole for uniqueness.
  const h = hash(`${namespace}/${name}`, 10);
  return validateNetnsName(`${full.slice(0, NETNS_MAX - h.length - 1)}-${h}`);
}

/** The host end of a sandbox's veth pair. */
export function hostVethName(ownerId: string): string {
  return validateIfName(`pn${hash(ownerId, 11)}`, 'host veth name');
}

/**
 * Owner ids name files in the state dir: the pod uid (agent path) or `cni-<containerId>-<ifname>`.
 * Letters, digits, "_", ".", "-"; 1-200 characters; not starting with ".".
 */
export function validateOwnerId(id: unknown, field = 'owner id'): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$/.test(id)) {
    throw new PodnetError(ErrorCodes.INVALID_NAME, `${field} ${JSON.stringify(id)} must be 1-200 letters, digits, "_", "." or "-" and not start with "."`, { field });
  }
  return id;
}

/**
 * The owner id of a CNI attachment (a container's interface): readable, plus a hash of
 * the pair so that ("a-b", "c") and ("a", "b-c") never share one.
 */
export function cniOwnerId(containerId: string, ifname: string): string {
  const h = hash(`${containerId}\0${ifname}`, 8);
  return validateOwnerId(`cni-${containerId}-${ifname}-${h}`, 'CNI attachment');
}
