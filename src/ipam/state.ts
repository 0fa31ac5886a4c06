/**
 * The IPAM data model shared by the allocator and its stores: owners, the operations a
 * store records (`IpamOp`), the state they fold into (`IpamState`, via applyOp) and the
 * small `IpamStore` interface (file store for the agent, memory store for tests).
 */
import { Cidr, familyOf, parseIP } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { validateIfName } from '../util/validate.js';

/** Who holds an allocation: `id` is the key (e.g. a container ID); the rest is for humans and gc. */
export interface Owner {
  /** Stable key, 1–256 characters of [A-Za-z0-9_.:/-]. Allocation is idempotent per id. */
  id: string;
  /** Pod namespace. */
  namespace?: string;
  /** Pod name. */
  name?: string;
  /** Network namespace path of the sandbox, e.g. /var/run/netns/cni-1234. */
  netns?: string;
  /** Interface name inside the pod, e.g. eth0. */
  ifname?: string;
}

/** What a store records for one owner: canonical IPs, at most one per family, IPv4 first. */
export interface StoredAllocation {
  owner: Owner;
  ips: string[];
}

/** One durable operation. A store applies a list of them in order. */
export type IpamOp =
  /** Sets the node's pod subnets; drops every allocation without one address in each. */
  | { op: 'subnets'; subnets: string[] }
  | { op: 'alloc'; owner: Owner; ips: string[] }
  | { op: 'release'; id: string }
  /** The round-robin positions (last allocated IP per family); written by compaction. */
  | { op: 'cursor'; last: string[] };

/** Everything an IPAM state dir knows. */
export interface IpamState {
  /** Canonical pod subnets, IPv4 first; undefined before the first `subnets` op. */
  subnets: string[] | undefined;
  /** Live allocations by owner id, in allocation order. */
  allocations: Map<string, StoredAllocation>;
  /** Last allocated IP per family (the round-robin cursor). */
  last: Map<Family, string>;
}

/**
 * Durable storage behind the allocator. Implementations: FileStore (journal on disk) and
 * MemStore (tests). One allocator uses a store at a time.
 */
export interface IpamStore {
  /** A copy of the state as of every op appended so far (resolved appends). */
  state(): IpamState;
  /**
   * Records `ops`, in order, after every op of earlier append calls. Resolves once they
   * are durable; rejects (PODNET_IPAM_IO / PODNET_IPAM_CLOSED) when they may not be.
   * All ops of one call reach the state together or not at all.
   */
  append(ops: readonly IpamOp[]): Promise<void>;
  /** Waits for pending appends, then releases the store (and its lock). Idempotent. */
  close(): Promise<void>;
}

export function emptyState(): IpamState {
  return { subnets: undefined, allocations: new Map(), last: new Map() };
}

export function cloneState(s: IpamState): IpamState {
  return {
    subnets: s.subnets ? [...s.subnets] : undefined,
    allocations: new Map([...s.allocations].map(([k, v]) => [k, { owner: { ...v.owner }, ips: [...v.ips] }])),
    last: new Map(s.last),
  };
}

/** Folds one op into the state (mutates it). Ops are assumed valid (see parseOp). */
export function applyOp(state: IpamState, op: IpamOp): void {
  switch (op.op) {
    case 'subnets': {
      const cidrs = op.subnets.map((s) => Cidr.parse(s, 'subnets'));
      const fits = (ip: string) => cidrs.some((c) => c.contains(ip));
      state.subnets = [...op.subnets];
      // An allocation survives only with exactly one address in each new subnet.
      for (const [id, a] of state.allocations) if (a.ips.length !== cidrs.length || !a.ips.every(fits)) state.allocations.delete(id);
      for (const [family, ip] of state.last) if (!fits(ip)) state.last.delete(family);
      return;
    }
    case 'alloc':
      state.allocations.delete(op.owner.id); // re-insert: iteration order is allocation order
      state.allocations.set(op.owner.id, { owner: { ...op.owner }, ips: [...op.ips] });
      for (const ip of op.ips) state.last.set(familyOf(ip), ip);
      return;
    case 'release':
      state.allocations.delete(op.id);
      return;
    case 'cursor':
      for (const ip of op.last) state.last.set(familyOf(ip), ip);
      return;
  }
}

/** The ops that rebuild `state` from nothing (what compaction writes). */
export function snapshotOps(state: IpamState): IpamOp[] {
  const ops: IpamOp[] = [];
  if (state.subnets) ops.push({ op: 'subnets', subnets: [...state.subnets] });
  for (const a of state.allocations.values()) ops.push({ op: 'alloc', owner: { ...a.owner }, ips: [...a.ips] });
  const last = [...state.last.entries()].sort((a, b) => a[0] - b[0]).map(([, ip]) => ip);
  if (last.length) ops.push({ op: 'cursor', last });
  return ops;
}

const OWNER_ID = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,255}$/;

/**
 * Validates an owner and returns a copy holding only the known fields. Throws
 * PODNET_INVALID_ARGUMENT / PODNET_INVALID_NAME naming the field.
 */
export function validateOwner(owner: unknown, field = 'owner'): Owner {
  if (typeof owner !== 'object' || owner === null) throw invalid(field, 'must be an object with an id');
  const o = owner as Record<string, unknown>;
  const out: Owner = { id: validateOwnerId(o.id, `${field}.id`) };
  const text = (key: 'namespace' | 'name' | 'netns', max: number) => {
    const v = o[key];
    if (v === undefined) return;
    if (typeof v !== 'string' || v.length > max || /[\x00-\x1f\x7f]/.test(v)) {
      throw invalid(`${field}.${key}`, `must be a string of at most ${max} characters without control characters`);
    }
    out[key] = v;
  };
  text('namespace', 253);
  text('name', 253);
  text('netns', 1024);
  if (o.ifname !== undefined) out.ifname = validateIfName(o.ifname, `${field}.ifname`);
  return out;
}

/** Validates an owner id (see Owner.id). */
export function validateOwnerId(id: unknown, field = 'owner.id'): string {
  if (typeof id !== 'string' || !OWNER_ID.test(id)) {
    throw new PodnetError(
      ErrorCodes.INVALID_NAME,
      `${field} ${JSON.stringify(id)} must be 1-256 characters of letters, digits, "_", ".", ":", "/" and "-", starting with a letter or digit`,
      { field },
    );
  }
  return id;
}

/**
 * Checks that a decoded value is a well-formed IpamOp and returns it normalised.
 * Throws PODNET_INVALID_ARGUMENT (or the IP/CIDR/name codes) naming the field.
 */
export function parseOp(v: unknown): IpamOp {
  if (typeof v !== 'object' || v === null) throw invalid('op', 'must be an object');
  const o = v as Record<string, unknown>;
  switch (o.op) {
    case 'subnets':
      return { op: 'subnets', subnets: ipList(o.subnets, 'subnets', (s, f) => Cidr.parse(s, f).toString()) };
    case 'alloc':
      return { op: 'alloc', owner: validateOwner(o.owner), ips: ipList(o.ips, 'ips', (s, f) => parseIP(s, f)) };
    case 'release':
      return { op: 'release', id: validateOwnerId(o.id, 'id') };
    case 'cursor':
      return { op: 'cursor', last: ipList(o.last, 'last', (s, f) => parseIP(s, f)) };
    default:
      throw invalid('op', `has an unknown kind ${JSON.stringify(o.op)}`);
  }
}

/** 1–2 entries of distinct families, in family order. */
function ipList(v: unknown, field: string, parse: (s: unknown, field: string) => string): string[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > 2) throw invalid(field, 'must list one or two entries');
  const out = v.map((x, i) => parse(x, `${field}[${i}]`));
  const fam = out.map((x) => familyOf(x.split('/')[0]!));
  if (fam.length === 2 && fam[0] === fam[1]) throw invalid(field, 'must not list two entries of one family');
  return fam.length === 2 && fam[0] === 6 ? [out[1]!, out[0]!] : out;
}

function invalid(field: string, reason: string): PodnetError {
  return new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} ${reason}`, { field });
}
