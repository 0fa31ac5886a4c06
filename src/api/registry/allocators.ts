/**
 * ClusterIP and NodePort allocation. Every allocated value is one key in the store
 * (/registry/ranges/clusterips/<ip>, /registry/ranges/nodeports/<port>) created in the
 * same transaction as the Service that holds it, so two api processes on one etcd can
 * never hand out the same value, and allocations survive restarts. Releases follow the
 * Service's write; a repair pass frees records a crash left between the two and restores
 * missing ones.
 */
import { randomInt } from 'node:crypto';
import type { Family } from '../../util/ipnet.js';
import { isIP } from 'node:net';
import { Cidr, familyOf, ipToBig, parseIP } from '../../util/ipnet.js';
import type { Store, TxnOp } from '../store/types.js';
import { isStoreError } from '../store/types.js';

export const RANGES = '/registry/ranges/';

/** Collisions after which a request stops picking at random and reads the free values. */
const CROWDED = 8;

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

/**
 * Distinct values of one kind (addresses of a CIDR, ports of a range). Choosing a value
 * writes nothing: the caller puts `recordOp(v)` into the same store transaction as the
 * object that holds it, so a value is taken exactly when its holder is stored — two
 * writers racing for one value collide on the record's create (KeyExists), and a crash
 * can never leave a record without its Service or a Service without its records.
 */
export abstract class KeyAllocator<V extends string | number> {
  protected constructor(
    protected readonly store: Store,
    private readonly dir: string,
  ) {}

  protected abstract size(): bigint;
  /** The i-th allocatable value (0 <= i < size). */
  protected abstract at(i: bigint): V;
  protected abstract describe(): string;
  abstract contains(v: V): boolean;

  #lastKey: { v: V; key: string } | undefined;

  /** The record key of a value (an address in canonical form: one address, one key). */
  key(v: V): string {
    // (a create asks for the key of the value it just picked several times)
    if (this.#lastKey?.v === v) return this.#lastKey.key;
    const key = `${RANGES}${this.dir}/${typeof v === 'string' && isIP(v) ? parseIP(v) : v}`;
    this.#lastKey = { v, key };
    return key;
  }

  /** The transaction op that records `v` as held by `owner` (fails with KeyExists if taken). */
  recordOp(v: V, owner: Owner): TxnOp {
    return { kind: 'create', key: this.key(v), value: JSON.stringify({ ...owner, at: new Date().toISOString() } satisfies Record_) };
  }

  /** A value the user asked for must be in range; AllocationError names the field. */
  checkRequested(v: V, field: string): void {
    if (!this.contains(v)) throw new AllocationError(field, v, `provided ${this.what()} is not in the valid range. The range of valid ${this.what()}s is ${this.describe()}`);
  }

  /** The error for a requested value another object holds. */
  taken(v: V, field: string): AllocationError {
    return new AllocationError(field, v, `provided ${this.what()} is already allocated`);
  }

  /**
   * A value at random whose record key is not in `avoid` (values this request already
   * found taken). Once the request has met CROWDED collisions, free values are chosen
   * from the stored records instead of at random; none left: AllocationError.
   */
  async pick(avoid: ReadonlySet<string>, field: string): Promise<V> {
    const n = this.size();
    if (avoid.size < CROWDED) {
      for (let attempt = 0; attempt < 16; attempt++) {
        const v = this.at(randomBig(n));
        if (!avoid.has(this.key(v))) return v;
      }
    }
    const taken = new Set((await this.store.list(`${RANGES}${this.dir}/`)).kvs.map((kv) => kv.key));
    const start = randomBig(n);
    for (let j = 0n; j < n; j++) {
      const v = this.at((start + j) % n);
      const k = this.key(v);
      if (!taken.has(k) && !avoid.has(k)) return v;
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
  /** IPv4: the network address as a number (at() then needs no bigint arithmetic). */
  readonly #v4Network: number | undefined;

  constructor(store: Store, cidr: Cidr) {
    super(store, `clusterips`);
    this.cidr = cidr;
    this.#v4Network = cidr.family === 4 ? Number(ipToBig(cidr.network)) : undefined;
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
    if (this.#v4Network === undefined) return this.cidr.nth(i + 1n);
    const x = this.#v4Network + Number(i) + 1;
    return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
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
