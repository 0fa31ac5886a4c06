/**
 * Node subnet → pod IPs. One AddressPool per family (dual-stack = an IPv4 and an IPv6
 * pool); an owner gets one address from each pool in one store op, so an allocation is
 * all-or-none in memory and on disk. Every allocation and release is durable (the store
 * resolved) before the caller sees it; an address freed by a release is handed out again
 * only after that release is durable.
 */
import { Cidr, familyOf } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { AddressPool } from './pool.js';
import { validatePrefixLength } from './subnets.js';
import { validateOwner, validateOwnerId } from './state.js';
import type { IpamState, IpamStore, Owner, StoredAllocation } from './state.js';

/** One pod address with what the pod's interface and routes need. */
export interface PodAddress {
  family: Family;
  /** e.g. 10.244.1.2 */
  ip: string;
  /** Prefix length of the node subnet, e.g. 24. */
  prefix: number;
  /** The bridge's address, the pod's default gateway, e.g. 10.244.1.1. */
  gateway: string;
  /** The node subnet, e.g. 10.244.1.0/24. */
  subnet: string;
}

/** An owner's addresses: one per configured family, IPv4 first. */
export interface Allocation {
  owner: Owner;
  addresses: PodAddress[];
}

export interface AllocatorOptions {
  /** The node's pod subnets: one, or one IPv4 and one IPv6 (dual-stack). */
  subnets: readonly string[];
}

/** Usage of one pool. */
export interface PoolUsage {
  family: Family;
  subnet: string;
  gateway: string;
  capacity: bigint;
  inUse: number;
}

interface Entry {
  owner: Owner;
  ips: string[];
  /** Set while the alloc op is not yet durable. */
  pending: Promise<void> | undefined;
}

/** Per-node pod address allocation over an IpamStore. */
export class IpamAllocator {
  private readonly store: IpamStore;
  private readonly pools: AddressPool[];
  private readonly entries = new Map<string, Entry>();
  private readonly releasing = new Map<string, Promise<Allocation | undefined>>();

  private constructor(store: IpamStore, subnets: readonly Cidr[], state: IpamState) {
    this.store = store;
    this.pools = subnets.map((s, i) => new AddressPool(s, `subnets[${i}]`));
    for (const a of state.allocations.values()) {
      if (a.ips.length !== this.pools.length) {
        throw new PodnetError(ErrorCodes.IPAM_CORRUPT, `the IPAM state gives ${a.owner.id} ${a.ips.length} addresses for ${this.pools.length} subnets`, { owner: a.owner.id });
      }
      a.ips.forEach((ip, i) => this.pools[i]!.hold(ip, a.owner.id));
      this.entries.set(a.owner.id, { owner: a.owner, ips: [...a.ips], pending: undefined });
    }
    for (const p of this.pools) {
      const last = state.last.get(p.family);
      if (last) p.setCursor(last);
    }
  }

  /**
   * Opens the allocator over `store` for the node subnets `opts.subnets`. A new store
   * records them; a store that recorded other subnets is refused with
   * PODNET_IPAM_SUBNET_MISMATCH naming both (see reconfigure).
   */
  static async open(store: IpamStore, opts: AllocatorOptions): Promise<IpamAllocator> {
    const subnets = normalizeSubnets(opts.subnets);
    const wanted = subnets.map(String);
    let state = store.state();
    if (state.subnets === undefined) {
      await store.append([{ op: 'subnets', subnets: wanted }]);
      state = store.state();
    } else if (!sameList(state.subnets, wanted)) {
      throw new PodnetError(
        ErrorCodes.IPAM_SUBNET_MISMATCH,
        `the IPAM state holds allocations from node subnets ${state.subnets.join(', ')}, not the configured ${wanted.join(', ')}; the node subnet changes only by explicit reconfiguration`,
        { recorded: state.subnets.join(','), configured: wanted.join(',') },
      );
    }
    return new IpamAllocator(store, subnets, state);
  }

  /**
   * Explicit reconfiguration: records `opts.subnets` as the node's subnets and releases,
   * in the same durable op, every allocation that does not have one address in each of
   * them. Returns the allocator and the released allocations (addresses as they were).
   */
  static async reconfigure(store: IpamStore, opts: AllocatorOptions): Promise<{ allocator: IpamAllocator; released: Allocation[] }> {
    const subnets = normalizeSubnets(opts.subnets);
    const wanted = subnets.map(String);
    const before = store.state();
    if (before.subnets !== undefined && sameList(before.subnets, wanted)) return { allocator: await IpamAllocator.open(store, opts), released: [] };
    await store.append([{ op: 'subnets', subnets: wanted }]);
    const after = store.state();
    const oldSubnets = (before.subnets ?? []).map((s) => Cidr.parse(s));
    const released = [...before.allocations.values()].filter((a) => !after.allocations.has(a.owner.id)).map((a) => describe(a, oldSubnets));
    return { allocator: new IpamAllocator(store, subnets, after), released };
  }

  /** The configured node subnets, IPv4 first. */
  get subnets(): string[] {
    return this.pools.map((p) => p.subnet.toString());
  }

  /**
   * Addresses for `owner`, one per family, durable when this resolves. Idempotent per
   * owner id: asking again returns the same addresses (the first call's metadata is
   * kept). Throws PODNET_IPAM_EXHAUSTED naming the subnet when one family has no free
   * address (nothing is allocated then), and the store's error when it cannot write.
   */
  async allocate(owner: Owner): Promise<Allocation> {
    const o = validateOwner(owner);
    const existing = this.entries.get(o.id);
    if (existing) {
      if (existing.pending) await existing.pending;
      return this.toAllocation(existing);
    }
    const cursors = this.pools.map((p) => p.saveCursor());
    const ips: string[] = [];
    try {
      for (const p of this.pools) ips.push(p.take(o.id));
    } catch (e) {
      ips.forEach((ip, i) => this.pools[i]!.free(ip, o.id));
      this.pools.forEach((p, i) => p.restoreCursor(cursors[i]));
      throw e;
    }
    const entry: Entry = { owner: o, ips, pending: undefined };
    entry.pending = this.store.append([{ op: 'alloc', owner: o, ips }]).then(
      () => {
        entry.pending = undefined;
      },
      (e: unknown) => {
        // Not durable: undo. (A FileStore refuses all writes after a failure, so an op
        // that did reach the disk can only reappear as a leaked allocation on reopen.)
        if (this.entries.get(o.id) === entry) this.entries.delete(o.id);
        this.freeAll(entry);
        throw e;
      },
    );
    this.entries.set(o.id, entry);
    await entry.pending;
    return this.toAllocation(entry);
  }

  /**
   * Releases the addresses of `ownerId`; resolves with what was released once that is
   * durable, or undefined when the owner holds nothing (idempotent; a call made while a
   * release of the same owner is being written resolves like that one).
   */
  async release(ownerId: string): Promise<Allocation | undefined> {
    const id = validateOwnerId(ownerId, 'ownerId');
    const entry = this.entries.get(id);
    if (!entry) return this.releasing.get(id) ?? undefined;
    this.entries.delete(id);
    const done = this.releaseEntries([entry]).then((r) => r[0]);
    this.releasing.set(id, done);
    const forget = () => {
      if (this.releasing.get(id) === done) this.releasing.delete(id);
    };
    done.then(forget, forget);
    return done;
  }

  /** The durable allocation of `ownerId`, if any. */
  get(ownerId: string): Allocation | undefined {
    const e = this.entries.get(ownerId);
    return e && !e.pending ? this.toAllocation(e) : undefined;
  }

  /** Every durable allocation, in allocation order. */
  list(): Allocation[] {
    return [...this.entries.values()].filter((e) => !e.pending).map((e) => this.toAllocation(e));
  }

  /**
   * Releases every durable allocation whose owner `isAlive` says is gone (all in one
   * store op) and returns them. Allocations still being made are not considered. If
   * `isAlive` throws for any owner, nothing is released and gc rejects with that error.
   */
  async gc(isAlive: (owner: Owner) => boolean | Promise<boolean>): Promise<Allocation[]> {
    const candidates = [...this.entries.values()].filter((e) => !e.pending);
    const verdicts = await Promise.all(candidates.map(async (e) => ({ e, alive: await isAlive({ ...e.owner }) })));
    // An entry released or replaced while isAlive ran is not ours to release any more.
    const dead = verdicts.filter((v) => !v.alive && this.entries.get(v.e.owner.id) === v.e).map((v) => v.e);
    if (dead.length === 0) return [];
    for (const e of dead) this.entries.delete(e.owner.id);
    const released = await this.releaseEntries(dead);
    return released.filter((a): a is Allocation => a !== undefined);
  }

  /** How full each pool is. */
  usage(): PoolUsage[] {
    return this.pools.map((p) => ({ family: p.family, subnet: p.subnet.toString(), gateway: p.gateway, capacity: p.capacity, inUse: p.inUse }));
  }

  /**
   * Writes one release op per entry (already removed from `entries`), then frees their
   * addresses. On failure the entries come back (unless the id was allocated anew).
   */
  private async releaseEntries(list: Entry[]): Promise<(Allocation | undefined)[]> {
    // An allocation still being written is released after it is durable; if it failed,
    // there is nothing to release.
    const live = await Promise.all(list.map((e) => (e.pending ? e.pending.then(() => true, () => false) : true)));
    const todo = list.filter((_, i) => live[i]);
    if (todo.length > 0) {
      try {
        await this.store.append(todo.map((e) => ({ op: 'release' as const, id: e.owner.id })));
      } catch (err) {
        for (const e of todo) if (!this.entries.has(e.owner.id)) this.entries.set(e.owner.id, e);
        throw err;
      }
      for (const e of todo) this.freeAll(e);
    }
    return list.map((e, i) => (live[i] ? this.toAllocation(e) : undefined));
  }

  private freeAll(e: Entry): void {
    e.ips.forEach((ip, i) => this.pools[i]?.free(ip, e.owner.id));
  }

  private toAllocation(e: Entry): Allocation {
    return {
      owner: { ...e.owner },
      addresses: e.ips.map((ip, i) => {
        const p = this.pools[i]!;
        return { family: p.family, ip, prefix: p.subnet.prefix, gateway: p.gateway, subnet: p.subnet.toString() };
      }),
    };
  }
}

/** A stored allocation described against `subnets` (for reconfigure's report). */
function describe(a: StoredAllocation, subnets: readonly Cidr[]): Allocation {
  return {
    owner: { ...a.owner },
    addresses: a.ips.map((ip) => {
      const s = subnets.find((c) => c.contains(ip));
      const family = familyOf(ip);
      return s
        ? { family, ip, prefix: s.prefix, gateway: s.nth(1), subnet: s.toString() }
        : { family, ip, prefix: family === 4 ? 32 : 128, gateway: '', subnet: '' };
    }),
  };
}

/**
 * Validates the node subnets: one or two strict CIDRs of distinct families, each at most
 * /30 (IPv4) or /126 (IPv6). Returned IPv4 first.
 */
export function normalizeSubnets(subnets: readonly string[]): Cidr[] {
  if (!Array.isArray(subnets) || subnets.length < 1 || subnets.length > 2) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `subnets must list one node subnet, or one IPv4 and one IPv6 subnet (dual-stack), got ${JSON.stringify(subnets)}`, {
      field: 'subnets',
    });
  }
  const cidrs = subnets.map((s, i) => Cidr.parse(s, `subnets[${i}]`));
  if (cidrs.length === 2 && cidrs[0]!.family === cidrs[1]!.family) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `subnets ${subnets.join(', ')} are both IPv${cidrs[0]!.family}; dual-stack takes one subnet per family`, {
      field: 'subnets',
    });
  }
  cidrs.forEach((c, i) => validatePrefixLength(c.family, c.prefix, `subnets[${i}] ${c.toString()} prefix length`));
  return cidrs.sort((a, b) => a.family - b.family);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
