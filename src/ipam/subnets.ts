/**
 * Cluster CIDR → node subnets (pure). A cluster CIDR such as 10.244.0.0/16 is carved into
 * node subnets of one length (`--node-subnet-size`, /24 for IPv4, /64 for IPv6); an agent
 * claims one with chooseFree() and records the claim on its Node.
 *
 * Work is proportional to the number of *taken* subnets, never to the size of the space:
 * taken prefixes become merged index intervals, and a free subnet is picked uniformly
 * among the gaps, so an IPv6 /48 carved into /64s (65 536 subnets) or a /32 into /64s
 * (2^32) costs the same as a /56.
 */
import { isIP } from 'node:net';
import { Cidr, ipToBig } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';

/**
 * Longest node subnet (and pod subnet) per family. An IPv4 /30 holds network, gateway,
 * one pod and broadcast; an IPv6 /126 holds subnet-router anycast, gateway and two pods.
 */
export const MAX_SUBNET_PREFIX: Readonly<Record<Family, number>> = { 4: 30, 6: 126 };

/** A validated cluster CIDR and node subnet length. */
export interface NodeSubnetPlan {
  readonly cluster: Cidr;
  /** Prefix length of every node subnet. */
  readonly size: number;
  /** How many node subnets the cluster CIDR holds. */
  readonly count: bigint;
}

export interface PlanOptions {
  /** Field name used in errors for the cluster CIDR (default "clusterCIDR"). */
  clusterField?: string;
  /** Field name used in errors for the subnet length (default "nodeSubnetSize"). */
  sizeField?: string;
}

/**
 * Validates a cluster CIDR and a node subnet length: the length must be an integer, at
 * least the cluster's prefix length and at most 30 (IPv4) / 126 (IPv6). Throws
 * PODNET_INVALID_CIDR or PODNET_INVALID_ARGUMENT naming the field and the reason.
 */
export function planNodeSubnets(cluster: string | Cidr, size: number, opts: PlanOptions = {}): NodeSubnetPlan {
  const clusterField = opts.clusterField ?? 'clusterCIDR';
  const sizeField = opts.sizeField ?? 'nodeSubnetSize';
  const c = typeof cluster === 'string' ? Cidr.parse(cluster, clusterField) : cluster;
  validatePrefixLength(c.family, size, sizeField, { min: c.prefix, minReason: `the prefix length of ${clusterField} ${c.toString()}` });
  return { cluster: c, size, count: c.subnetCount(size) };
}

/**
 * Checks that `prefix` is a usable pod-subnet length for `family`: an integer between
 * `opts.min` (default 0; `opts.minReason` says where it comes from) and
 * MAX_SUBNET_PREFIX[family]. Returns it; throws PODNET_INVALID_ARGUMENT naming `field`.
 */
export function validatePrefixLength(family: Family, prefix: unknown, field: string, opts: { min?: number; minReason?: string } = {}): number {
  const max = MAX_SUBNET_PREFIX[family];
  const min = opts.min ?? 0;
  const bad = (reason: string) =>
    new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} ${JSON.stringify(prefix)} ${reason}`, { field, family });
  if (typeof prefix !== 'number' || !Number.isInteger(prefix)) throw bad('must be an integer prefix length such as 24');
  if (prefix < min) {
    throw bad(`must be at least ${min}${opts.minReason ? ` (${opts.minReason})` : ''}: a node subnet cannot be larger than the cluster CIDR`);
  }
  if (prefix > max) {
    throw bad(`must be at most ${max} for IPv${family}: a longer prefix leaves no address for a pod after the network, gateway${family === 4 ? ' and broadcast' : ''} addresses`);
  }
  return prefix;
}

/** The node subnet with index `index` (0 = the first). */
export function nodeSubnetAt(plan: NodeSubnetPlan, index: number | bigint): Cidr {
  return plan.cluster.subnet(plan.size, index);
}

/**
 * Index of `subnet` in the plan, or undefined when it is not one of the plan's node
 * subnets (another family, another length, outside the cluster CIDR, or host bits set).
 */
export function nodeSubnetIndex(plan: NodeSubnetPlan, subnet: string | Cidr): bigint | undefined {
  let s: Cidr;
  if (typeof subnet === 'string') {
    try {
      s = Cidr.parse(subnet, 'subnet');
    } catch {
      return undefined;
    }
  } else {
    s = subnet;
  }
  if (s.family !== plan.cluster.family || s.prefix !== plan.size || !plan.cluster.covers(s)) return undefined;
  return (ipToBig(s.network) - ipToBig(plan.cluster.network)) >> hostBits(plan);
}

/** True when `outer` contains all of `inner` (same family). */
export function contains(outer: string | Cidr, inner: string | Cidr): boolean {
  return asCidr(outer, 'outer').covers(asCidr(inner, 'inner'));
}

/** True when the two prefixes share at least one address. */
export function overlaps(a: string | Cidr, b: string | Cidr): boolean {
  return asCidr(a, 'a').overlaps(asCidr(b, 'b'));
}

export interface ChooseOptions {
  /**
   * Returned when it is one of the plan's node subnets and free: e.g. the subnet recorded
   * in the agent's state dir, so a restarted agent keeps its pods' addresses. Must parse
   * as a CIDR (else PODNET_INVALID_CIDR); a prefix that is not one of this plan's node
   * subnets (another cluster CIDR or length) is ignored.
   */
  prefer?: string;
  /** Uniform random number in [0, 1); Math.random by default. Inject for tests. */
  random?: () => number;
  /**
   * Never hand out the first node subnet (the one holding the cluster's network address),
   * as flannel's default SubnetMin does. Default false: like kube-controller-manager's
   * node IPAM, every node subnet is usable (pods never get a subnet's network address).
   */
  reserveFirst?: boolean;
}

/**
 * A free node subnet of length `size` in `cluster`, or undefined when every node subnet
 * is taken. `taken` holds prefixes in use (other nodes' podCIDRs, any family; prefixes of
 * the other family or outside the cluster are ignored, a prefix of another length blocks
 * every node subnet it overlaps). Unless `prefer` is free, the pick is uniformly random
 * among all free subnets, so agents racing for a subnet rarely collide (a collision is
 * still possible: the claim itself must be a compare-and-swap). Unparseable entries in
 * `taken` throw PODNET_INVALID_CIDR: the caller filters what it read from the API.
 *
 * Cost: O(t log t) for t taken prefixes, independent of the number of node subnets.
 */
export function chooseFree(cluster: string | Cidr, size: number, taken: Iterable<string>, opts: ChooseOptions = {}): Cidr | undefined {
  const plan = planNodeSubnets(cluster, size);
  const intervals = takenIntervals(plan, taken, opts.reserveFirst === true);
  if (opts.prefer !== undefined) {
    const preferred = Cidr.parse(opts.prefer, 'prefer');
    const i = nodeSubnetIndex(plan, preferred);
    if (i !== undefined && !isCovered(intervals, i)) return preferred;
  }
  const free = plan.count - coveredCount(intervals);
  if (free <= 0n) return undefined;
  return nodeSubnetAt(plan, nthFree(intervals, randomBelow(free, opts.random ?? Math.random)));
}

/** How many node subnets are free (for metrics and error messages). */
export function freeCount(cluster: string | Cidr, size: number, taken: Iterable<string>, opts: { reserveFirst?: boolean } = {}): bigint {
  const plan = planNodeSubnets(cluster, size);
  return plan.count - coveredCount(takenIntervals(plan, taken, opts.reserveFirst === true));
}

/** Inclusive index range [lo, hi] of taken node subnets. */
type Interval = readonly [bigint, bigint];

function hostBits(plan: NodeSubnetPlan): bigint {
  return BigInt((plan.cluster.family === 4 ? 32 : 128) - plan.size);
}

/** Taken prefixes as sorted, merged, inclusive index intervals. */
function takenIntervals(plan: NodeSubnetPlan, taken: Iterable<string>, reserveFirst: boolean): Interval[] {
  const raw: Interval[] = reserveFirst ? [[0n, 0n]] : [];
  const base = ipToBig(plan.cluster.network);
  const shift = hostBits(plan);
  let n = 0;
  const family = plan.cluster.family;
  const bits = family === 4 ? 32 : 128;
  const end = base + plan.cluster.size; // first address after the cluster
  for (const text of taken) {
    const t = parsePrefix(text, `taken[${n++}]`);
    if (t.family !== family) continue;
    const tBase = (t.value >> BigInt(bits - t.prefix)) << BigInt(bits - t.prefix);
    const tEnd = tBase + (1n << BigInt(bits - t.prefix));
    if (tEnd <= base || tBase >= end) continue; // outside the cluster
    if (tBase <= base && tEnd >= end) return [[0n, plan.count - 1n]]; // covers it all
    const lo = (tBase - base) >> shift;
    const hi = t.prefix >= plan.size ? lo : lo + (1n << BigInt(plan.size - t.prefix)) - 1n;
    raw.push([lo, hi]);
  }
  raw.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [lo, hi] of raw) {
    const last = merged[merged.length - 1];
    if (last && lo <= last[1] + 1n) {
      if (hi > last[1]) last[1] = hi;
    } else {
      merged.push([lo, hi]);
    }
  }
  return merged;
}

function coveredCount(intervals: readonly Interval[]): bigint {
  let n = 0n;
  for (const [lo, hi] of intervals) n += hi - lo + 1n;
  return n;
}

function isCovered(intervals: readonly Interval[], i: bigint): boolean {
  let lo = 0;
  let hi = intervals.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = intervals[mid]!;
    if (i < a) hi = mid - 1;
    else if (i > b) lo = mid + 1;
    else return true;
  }
  return false;
}

/** The r-th (0-based) index not covered by the sorted, merged intervals. */
function nthFree(intervals: readonly Interval[], r: bigint): bigint {
  let next = 0n; // first index after the previous interval
  for (const [lo, hi] of intervals) {
    const gap = lo - next;
    if (r < gap) return next + r;
    r -= gap;
    next = hi + 1n;
  }
  return next + r;
}

/** A uniform random integer in [0, n), n >= 1. */
export function randomBelow(n: bigint, random: () => number): bigint {
  if (n <= 1n) return 0n;
  if (n <= BigInt(Number.MAX_SAFE_INTEGER)) {
    const v = BigInt(Math.floor(random() * Number(n)));
    return v >= n ? n - 1n : v < 0n ? 0n : v;
  }
  // Beyond 2^53: 32 random bits at a time, 32 more bits than needed so the modulo bias
  // is below 2^-32.
  const chunks = Math.ceil(n.toString(2).length / 32) + 1;
  let v = 0n;
  for (let i = 0; i < chunks; i++) v = (v << 32n) | BigInt(Math.floor(random() * 0x1_0000_0000) >>> 0);
  return v % n;
}

/**
 * A prefix as family, address value and length: the fast path for the (possibly tens of
 * thousands of) taken entries, ~10x cheaper than Cidr.parse. Host bits may be set. What it
 * cannot read is handed to Cidr.parse for the exact error.
 */
function parsePrefix(text: string, field: string): { family: Family; value: bigint; prefix: number } {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  if (slash > 0) {
    const addr = text.slice(0, slash);
    const len = text.slice(slash + 1);
    const family = isIP(addr);
    if ((family === 4 || family === 6) && /^\d{1,3}$/.test(len) && Number(len) <= (family === 4 ? 32 : 128)) {
      const value = family === 4 ? v4Value(addr) : v6Value(addr);
      if (value !== undefined) return { family, value, prefix: Number(len) };
    }
  }
  const c = Cidr.parse(text, field, { strict: false });
  return { family: c.family, value: ipToBig(c.network), prefix: c.prefix };
}

function v4Value(addr: string): bigint {
  let v = 0;
  for (const part of addr.split('.')) v = v * 256 + Number(part);
  return BigInt(v);
}

/** Plain hex IPv6 (with or without "::"); undefined for embedded IPv4 or zones. */
function v6Value(addr: string): bigint | undefined {
  if (addr.includes('.') || addr.includes('%')) return undefined;
  const halves = addr.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length > 1 ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head;
  if (groups.length !== 8) return undefined;
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

function asCidr(x: string | Cidr, field: string): Cidr {
  return typeof x === 'string' ? Cidr.parse(x, field, { strict: false }) : x;
}
