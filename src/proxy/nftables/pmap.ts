/**
 * A persistent (immutable) string-keyed map: `with(changes)` returns a new map and leaves
 * this one as it was, in O(changes + overlay) instead of copying everything. The planner
 * keeps one per family for the per-service objects, so a partial sync plans in
 * O(changed services) and the previous state stays intact until the kernel accepted the
 * next one (a failed apply keeps the old state, and the next sync is full from it).
 *
 * Layout: a base Map shared by every version derived from it, plus a small overlay of
 * changed keys (copied per version). When the overlay grows past about √(2n) keys it is
 * folded into a new base: a version then costs O(changes + √n) amortised (overlay copies
 * of up to √(2n) keys, and an O(n) fold every √(2n) changed keys), the least this layout
 * allows — at 10,000 keys ~140 keys copied per one-key change instead of ~330 with a
 * fold at n/16.
 */

const GONE: unique symbol = Symbol('gone');
type Slot<V> = V | typeof GONE;

export class PMap<V> implements ReadonlyMap<string, V> {
  readonly size: number;
  readonly #base: ReadonlyMap<string, V>;
  readonly #over: ReadonlyMap<string, Slot<V>>;

  private constructor(base: ReadonlyMap<string, V>, over: ReadonlyMap<string, Slot<V>>, size: number) {
    this.#base = base;
    this.#over = over;
    this.size = size;
  }

  /** Takes ownership of `m` (do not change it afterwards). */
  static of<V>(m: Map<string, V> = new Map()): PMap<V> {
    return new PMap(m, new Map(), m.size);
  }

  get(key: string): V | undefined {
    const o = this.#over.get(key);
    if (o !== undefined) return o === GONE ? undefined : o;
    return this.#base.get(key);
  }

  has(key: string): boolean {
    const o = this.#over.get(key);
    if (o !== undefined) return o !== GONE;
    return this.#base.has(key);
  }

  /** A new map with these keys set (undefined: deleted). */
  with(changes: ReadonlyMap<string, V | undefined>): PMap<V> {
    if (changes.size === 0) return this;
    const over = new Map(this.#over);
    let size = this.size;
    for (const [k, v] of changes) {
      const had = this.has(k);
      if (v === undefined) {
        if (had) size--;
        over.set(k, GONE);
      } else {
        if (!had) size++;
        over.set(k, v);
      }
    }
    if (over.size > 32 && over.size * over.size > 2 * this.#base.size) {
      const m = new Map(this.#base);
      for (const [k, v] of over) {
        if (v === GONE) m.delete(k);
        else m.set(k, v);
      }
      return new PMap(m, new Map(), m.size);
    }
    return new PMap(this.#base, over, size);
  }

  *entries(): MapIterator<[string, V]> {
    for (const [k, v] of this.#base) {
      const o = this.#over.get(k);
      if (o === undefined) yield [k, v];
      else if (o !== GONE) yield [k, o];
    }
    for (const [k, o] of this.#over) if (o !== GONE && !this.#base.has(k)) yield [k, o];
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }
}
