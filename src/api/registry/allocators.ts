/**
 * ClusterIP and NodePort allocation. Every allocated value is one key in the store
 * (/registry/ranges/clusterips/<ip>, /registry/ranges/nodeports/<port>) created with
 * compare-and-swap, so two api processes on one etcd can never hand out the same value,
 * and allocations survive restarts. A repair pass frees records whose Service is gone
 * (a crash between allocating and storing the Service) and restores missing ones.
 */
import { randomInt } from 'node:crypto';
import type { Family } from '../../util/ipnet.js';
import { Cidr, familyOf } from '../../util/ipnet.js';
import type { Store } from '../store/types.js';
import { isStoreError } from '../store/types.js';

export const RANGES = '/registry/ranges/';

export interface Owner {
  namespace: string;
  name: string;
  uid: string;
}

interface Record_ extends Owner {
  at: string;
}

export class AllocationError extends Error {
  readonly field: string;
  readonly value: string | number;
  constructor(field: string, value: string | number, message: string) {
    super(message);
    this.field = field;
    this.value = value;
  }
}

/** Allocates distinct values of one kind (addresses of a CIDR, ports of a range). */
abstract class KeyAllocator<V extends string | number> {
  protected constructor(
    protected readonly store: Store,
    private readonly dir: string,
  ) {}

  protected abstract size(): bigint;
  /** The i-th allocatable value (0 <= i < size). */
  protected abstract at(i: bigint): V;
  protected abstract describe(): string;
  abstract contains(v: V): boolean;

  key(v: V): string {
    return `${RANGES}${this.dir}/${v}`;
  }

  /** Claims a specific value; AllocationError if taken (by someone else) or out of range. */
  async claim(v: V, owner: Owner, field: string): Promise<void> {
    if (!this.contains(v)) throw new AllocationError(field, v, `provided ${this.what()} is not in the valid range. The range of valid ${this.what()}s is ${this.describe()}`);
    try {
      await this.store.create(this.key(v), JSON.stringify({ ...owner, at: new Date().toISOString() } satisfies Record_));
    } catch (e) {
      if (!isStoreError(e, 'KeyExists')) throw e;
      const cur = await this.owner(v);
      if (cur && cur.uid === owner.uid) return; // already ours (retry / same service)
      throw new AllocationError(field, v, `provided ${this.what()} is already allocated`);
    }
  }

  /** Picks a free value at random and claims it. */
  async allocate(owner: Owner, field: string): Promise<V> {
    const n = this.size();
    for (let attempt = 0; attempt < 8; attempt++) {
      const v = this.at(randomBig(n));
      try {
        await this.store.create(this.key(v), JSON.stringify({ ...owner, at: new Date().toISOString() } satisfies Record_));
        return v;
      } catch (e) {
        if (!isStoreError(e, 'KeyExists')) throw e;
      }
    }
    // Crowded: scan for free values from a random start.
    const taken = new Set((await this.store.list(`${RANGES}${this.dir}/`)).kvs.map((kv) => kv.key));
    const start = randomBig(n);
    for (let j = 0n; j < n; j++) {
      const v = this.at((start + j) % n);
      if (taken.has(this.key(v))) continue;
      try {
        await this.store.create(this.key(v), JSON.stringify({ ...owner, at: new Date().toISOString() } satisfies Record_));
        return v;
      } catch (e) {
        if (!isStoreError(e, 'KeyExists')) throw e;
      }
    }
    throw new AllocationError(field, '', `failed to allocate a ${this.what()}: range ${this.describe()} is full`);
  }

  /** Frees a value if `owner` holds it (or unconditionally without owner). */
  async release(v: V, owner?: Owner): Promise<void> {
    const kv = await this.store.get(this.key(v));
    if (!kv) return;
    if (owner) {
      const rec = JSON.parse(kv.value) as Record_;
      if (rec.uid !== owner.uid) return;
    }
    try {
      await this.store.delete(this.key(v), kv.modRevision);
    } catch (e) {
      if (!isStoreError(e, 'NotFound') && !isStoreError(e, 'Conflict')) throw e;
    }
  }

  async owner(v: V): Promise<Record_ | undefined> {
    const kv = await this.store.get(this.key(v));
    return kv ? (JSON.parse(kv.value) as Record_) : undefined;
  }

  /** Every record: value -> owner and age. */
  async records(): Promise<Map<string, Record_>> {
    const prefix = `${RANGES}${this.dir}/`;
    const out = new Map<string, Record_>();
    for (const kv of (await this.store.list(prefix)).kvs) out.set(kv.key.slice(prefix.length), JSON.parse(kv.value) as Record_);
    return out;
  }

  protected abstract what(): string;
}

/** Uniform-enough random index below n (randomInt takes at most 48-bit ranges). */
function randomBig(n: bigint): bigint {
  if (n <= 0n) return 0n;
  const LIMIT = 2 ** 48 - 1;
  if (n <= BigInt(LIMIT)) return BigInt(randomInt(0, Number(n)));
  const hi = BigInt(randomInt(0, LIMIT));
  const lo = BigInt(randomInt(0, LIMIT));
  return ((hi << 48n) | lo) % n;
}

export class ClusterIPAllocator extends KeyAllocator<string> {
  readonly cidr: Cidr;

  constructor(store: Store, cidr: Cidr) {
    super(store, `clusterips`);
    this.cidr = cidr;
  }

  get family(): Family {
    return this.cidr.family;
  }

  protected size(): bigint {
    // IPv4: skip the network and broadcast addresses; IPv6: skip the subnet-router anycast (offset 0).
    const total = this.cidr.size;
    return this.cidr.family === 4 ? (total > 2n ? total - 2n : 0n) : total - 1n;
  }

  protected at(i: bigint): string {
    return this.cidr.nth(i + 1n);
  }

  contains(ip: string): boolean {
    if (familyOf(ip) !== this.cidr.family || !this.cidr.contains(ip)) return false;
    const off = this.cidr.offsetOf(ip);
    return off >= 1n && off <= this.size();
  }

  protected describe(): string {
    return this.cidr.toString();
  }

  protected what(): string {
    return 'IP';
  }
}

export class PortAllocator extends KeyAllocator<number> {
  readonly min: number;
  readonly max: number;

  constructor(store: Store, range: { min: number; max: number }) {
    super(store, 'nodeports');
    this.min = range.min;
    this.max = range.max;
  }

  protected size(): bigint {
    return BigInt(this.max - this.min + 1);
  }

  protected at(i: bigint): number {
    return this.min + Number(i);
  }

  contains(p: number): boolean {
    return Number.isInteger(p) && p >= this.min && p <= this.max;
  }

  protected describe(): string {
    return `${this.min}-${this.max}`;
  }

  protected what(): string {
    return 'port';
  }
}

/** Parses "30000-32767". */
export function parsePortRange(text: string): { min: number; max: number } {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!m || min < 1 || max > 65535 || min > max) throw new Error(`--service-node-port-range ${JSON.stringify(text)} is not a range like 30000-32767`);
  return { min, max };
}
