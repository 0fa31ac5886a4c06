/**
 * Informer: a local, indexed copy of one resource kept current by list + watch, with
 * handlers told about every change exactly once. The shape of client-go's
 * SharedIndexInformer (reflector + store + indexers), minus the sharing.
 *
 *   run(signal):
 *     list (all pages) ─► diff against the cache ─► synced
 *       ▲                                   │
 *       │ 410 Gone / Expired                ▼
 *       └──────────────── watch from the last resourceVersion ◄─┐
 *                           │ stream closed / network error      │
 *                           └── backoff (exp., jitter, cap) ─────┘
 *
 * - The resourceVersion advances with every event and every BOOKMARK, so a dropped
 *   watch resumes exactly where it stopped (no relist, no repeated events).
 * - After a 410 the relist is diffed against the cache: handlers see onDelete for objects
 *   that vanished meanwhile (with `finalStateUnknown`), onUpdate for changed ones, onAdd
 *   for new ones, onDelete + onAdd for ones re-created under the same name (new uid),
 *   nothing for unchanged ones.
 * - An optional resync re-delivers every cached object as onUpdate(obj, obj), so a
 *   level-triggered consumer can repair drift (DESIGN.md decision 2).
 * - Nothing starts before `run()`; aborting its signal ends the watch, the timers and
 *   the resync loop, and `run()` resolves once all of them are gone.
 */
import { Backoff, realClock } from './backoff.js';
import type { BackoffOptions, Clock } from './backoff.js';
import { isGone } from './errors.js';
import type { LabelSelector, ListerWatcher } from './rest.js';
import type { KubeObject } from './types.js';
import type { ObjectEvent } from './watch.js';

/** Cache key: `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name ?? ''}` : (name ?? '');
}

/** The built-in index: objects by metadata.namespace. */
export const BY_NAMESPACE = 'byNamespace';

/** Values an object is filed under in one index (none: not in the index). */
export type IndexFunc<T extends KubeObject> = (obj: T) => string | readonly string[] | undefined;

export type AddHandler<T> = (obj: T) => void;
export type UpdateHandler<T> = (oldObj: T, newObj: T) => void;
/** `finalStateUnknown`: the deletion was noticed by a relist; `obj` is the last state seen, not the final one. */
export type DeleteHandler<T> = (obj: T, info: { finalStateUnknown: boolean }) => void;

export type InformerPhase = 'list' | 'watch' | 'handler';

export interface InformerOptions<T extends KubeObject> {
  /** Where to list and watch: a ResourceClient (or a fake). */
  source: ListerWatcher<T>;
  /** Only this namespace (default: all). */
  namespace?: string;
  labelSelector?: LabelSelector;
  fieldSelector?: string;
  /** Page size of lists. Default 500. */
  pageSize?: number;
  /** Re-deliver every cached object as an update this often, ms. Default: never. */
  resyncPeriodMs?: number;
  /** Delays between failed tries. */
  backoff?: Omit<BackoffOptions, 'random'>;
  /**
   * Each watch asks the server to end it after a random time in [w, 2w) seconds, as
   * client-go does, so connections are rebalanced. Default 300.
   */
  watchTimeoutSeconds?: number;
  /** A watch that ends sooner than this, having delivered nothing, counts as a failure. Default 1000 ms. */
  minWatchMs?: number;
  clock?: Clock;
  /** Uniform in [0, 1): jitter and watch timeouts. Default Math.random. */
  random?: () => number;
  /** Told about every failure (to log it); `delayMs` is the wait before the next try. */
  onError?: (err: unknown, info: { phase: InformerPhase; resource: string; delayMs: number }) => void;
}

interface Index<T extends KubeObject> {
  fn: IndexFunc<T>;
  values: Map<string, Set<string>>;
}

export class Informer<T extends KubeObject> {
  readonly #opts: InformerOptions<T>;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #items = new Map<string, T>();
  readonly #indexes = new Map<string, Index<T>>();
  readonly #onAdd = new Set<AddHandler<T>>();
  readonly #onUpdate = new Set<UpdateHandler<T>>();
  readonly #onDelete = new Set<DeleteHandler<T>>();
  readonly #syncWaiters = new Set<(ok: boolean) => void>();
  #rv = '';
  #synced = false;
  #running = false;
  #ended = false;

  /** Only stores options; nothing runs before `run()`. */
  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
    this.addIndexer(BY_NAMESPACE, (o) => o.metadata.namespace || undefined);
  }

  /** The resource watched ("pods"). */
  get resource(): string {
    return this.#opts.source.info.resource;
  }

  // ------------------------------------------------------------ handlers

  /** Called for every object that appears (initial list included). Returns an unsubscribe function. */
  onAdd(fn: AddHandler<T>): () => void {
    this.#onAdd.add(fn);
    return () => this.#onAdd.delete(fn);
  }

  /** Called when an object changes (and on every resync, with oldObj === newObj). */
  onUpdate(fn: UpdateHandler<T>): () => void {
    this.#onUpdate.add(fn);
    return () => this.#onUpdate.delete(fn);
  }

  /** Called when an object disappears. */
  onDelete(fn: DeleteHandler<T>): () => void {
    this.#onDelete.add(fn);
    return () => this.#onDelete.delete(fn);
  }

  // ------------------------------------------------------------ cache

  /** Adds an index; existing objects are filed at once. Throws if the name is taken. */
  addIndexer(name: string, fn: IndexFunc<T>): void {
    if (this.#indexes.has(name)) throw new Error(`informer ${this.resource}: index ${name} exists`);
    const index: Index<T> = { fn, values: new Map() };
    this.#indexes.set(name, index);
    for (const [key, obj] of this.#items) fileIn(index, key, obj);
  }

  /** Objects filed under `value` in index `name` (`byIndex('byNamespace', 'default')`). Unknown index → throws. */
  byIndex(name: string, value: string): T[] {
    const index = this.#indexes.get(name);
    if (!index) throw new Error(`informer ${this.resource}: no index ${name}`);
    const keys = index.values.get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const k of keys) {
      const o = this.#items.get(k);
      if (o) out.push(o);
    }
    return out;
  }

  /** The cached object with this key (`ns/name`, or `name` when cluster-scoped). */
  get(key: string): T | undefined {
    return this.#items.get(key);
  }

  getByName(namespace: string | undefined, name: string): T | undefined {
    return this.#items.get(namespace ? `${namespace}/${name}` : name);
  }

  /** Every cached object (a snapshot array; the objects themselves are shared: do not mutate). */
  list(): T[] {
    return [...this.#items.values()];
  }

  keys(): string[] {
    return [...this.#items.keys()];
  }

  get size(): number {
    return this.#items.size;
  }

  /** The resourceVersion the cache reflects (the last list, event or bookmark). */
  get resourceVersion(): string {
    return this.#rv;
  }

  /** True once the first list has been delivered to the handlers. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves true once synced; false if `signal` fires or the informer stops first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.#synced) return Promise.resolve(true);
    if (this.#ended || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        this.#syncWaiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const onAbort = (): void => done(false);
      this.#syncWaiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ------------------------------------------------------------ run

  /**
   * Lists, then watches, until `signal` fires; resolves when everything it started has
   * stopped. Failures are retried forever with backoff (and reported to `onError`).
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running || this.#ended) throw new Error(`informer ${this.resource}: run() may be called once`);
    this.#running = true;
    // One inner signal, so that whatever ends first (the caller, or a bug in the loop) ends both loops.
    const inner = new AbortController();
    const onAbort = (): void => inner.abort();
    if (signal.aborted) inner.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all([this.#loop(inner.signal).finally(onAbort), this.#resyncLoop(inner.signal)]);
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#running = false;
      this.#ended = true;
      for (const w of [...this.#syncWaiters]) w(false);
    }
  }

  async #loop(signal: AbortSignal): Promise<void> {
    const o = this.#opts;
    const backoff = new Backoff({ ...o.backoff, random: this.#random });
    const minWatchMs = o.minWatchMs ?? 1000;
    const watchTimeout = o.watchTimeoutSeconds ?? 300;
    let needList = true;
    while (!signal.aborted) {
      let delay = 0;
      if (needList) {
        try {
          await this.#relist(signal);
          needList = false;
          continue;
        } catch (e) {
          if (signal.aborted) break;
          delay = backoff.next();
          this.#report(e, 'list', delay);
        }
      } else {
        const started = this.#clock.now();
        let delivered = 0;
        try {
          const w = o.source.watch({
            ...this.#selectors(),
            resourceVersion: this.#rv,
            allowWatchBookmarks: true,
            timeoutSeconds: Math.floor(watchTimeout * (1 + this.#random())),
            signal,
          });
          for await (const ev of w) {
            delivered++;
            this.#apply(ev);
          }
          if (signal.aborted) break;
          if (delivered === 0 && this.#clock.now() - started < minWatchMs) delay = backoff.next();
          else backoff.reset();
        } catch (e) {
          if (signal.aborted) break;
          // A watch that worked for a while does not count earlier failures against the next try.
          if (delivered > 0 || this.#clock.now() - started >= minWatchMs) backoff.reset();
          delay = backoff.next();
          if (isGone(e)) {
            // The version is compacted away: relist, at once the first time; a 410 again
            // right after a relist is a failure loop and backs off.
            needList = true;
            if (backoff.attempts === 1) delay = 0;
          }
          this.#report(e, 'watch', delay);
        }
      }
      if (delay > 0) await this.#clock.sleep(delay, signal);
    }
  }

  async #resyncLoop(signal: AbortSignal): Promise<void> {
    const period = this.#opts.resyncPeriodMs;
    if (!period || period <= 0) return;
    while (!signal.aborted) {
      await this.#clock.sleep(period, signal);
      if (signal.aborted || !this.#synced) continue;
      for (const obj of [...this.#items.values()]) this.#emitUpdate(obj, obj);
    }
  }

  #selectors(): { namespace?: string; labelSelector?: LabelSelector; fieldSelector?: string } {
    const o = this.#opts;
    return {
      ...(o.namespace ? { namespace: o.namespace } : {}),
      ...(o.labelSelector ? { labelSelector: o.labelSelector } : {}),
      ...(o.fieldSelector ? { fieldSelector: o.fieldSelector } : {}),
    };
  }

  /** Lists every page and makes the cache equal to it, telling handlers the difference. */
  async #relist(signal: AbortSignal): Promise<void> {
    const list = await this.#opts.source.list({ ...this.#selectors(), all: true, limit: this.#opts.pageSize ?? 500, signal });
    if (signal.aborted) return;
    const fresh = new Map<string, T>();
    for (const obj of list.items) fresh.set(objectKey(obj), obj);
    for (const [key, old] of [...this.#items]) {
      if (fresh.has(key)) continue;
      this.#remove(key, old);
      this.#emitDelete(old, true);
    }
    for (const [key, obj] of fresh) {
      const old = this.#items.get(key);
      if (old && old.metadata.uid !== obj.metadata.uid) {
        // Deleted and created again under the same name while we were away: two events.
        this.#remove(key, old);
        this.#emitDelete(old, true);
        this.#store(key, obj);
        this.#emitAdd(obj);
      } else if (!old) {
        this.#store(key, obj);
        this.#emitAdd(obj);
      } else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) {
        this.#store(key, obj, old);
        this.#emitUpdate(old, obj);
      }
    }
    this.#rv = list.metadata.resourceVersion ?? '';
    if (!this.#synced) {
      this.#synced = true;
      for (const w of [...this.#syncWaiters]) w(true);
    }
  }

  #apply(ev: ObjectEvent<T>): void {
    const obj = ev.object;
    const rv = obj.metadata.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.#rv = rv;
      return;
    }
    const key = objectKey(obj);
    const old = this.#items.get(key);
    if (ev.type === 'DELETED') {
      if (old) {
        this.#remove(key, old);
        this.#emitDelete(obj, false);
      }
    } else if (!old) {
      this.#store(key, obj);
      this.#emitAdd(obj);
    } else if (old.metadata.resourceVersion !== rv || old.metadata.uid !== obj.metadata.uid) {
      this.#store(key, obj, old);
      this.#emitUpdate(old, obj);
    }
    if (rv) this.#rv = rv;
  }

  #store(key: string, obj: T, old?: T): void {
    if (old) for (const index of this.#indexes.values()) fileOut(index, key, old);
    this.#items.set(key, obj);
    for (const index of this.#indexes.values()) fileIn(index, key, obj);
  }

  #remove(key: string, old: T): void {
    for (const index of this.#indexes.values()) fileOut(index, key, old);
    this.#items.delete(key);
  }

  #emitAdd(obj: T): void {
    for (const fn of [...this.#onAdd]) this.#call(() => fn(obj));
  }

  #emitUpdate(oldObj: T, newObj: T): void {
    for (const fn of [...this.#onUpdate]) this.#call(() => fn(oldObj, newObj));
  }

  #emitDelete(obj: T, finalStateUnknown: boolean): void {
    for (const fn of [...this.#onDelete]) this.#call(() => fn(obj, { finalStateUnknown }));
  }

  /** A throwing handler is reported and does not stop the others or the informer. */
  #call(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#report(e, 'handler', 0);
    }
  }

  #report(err: unknown, phase: InformerPhase, delayMs: number): void {
    try {
      this.#opts.onError?.(err, { phase, resource: this.resource, delayMs });
    } catch {
      /* a failing logger must not stop the informer */
    }
  }
}

function indexValues<T extends KubeObject>(index: Index<T>, obj: T): readonly string[] {
  const v = index.fn(obj);
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

function fileIn<T extends KubeObject>(index: Index<T>, key: string, obj: T): void {
  for (const v of indexValues(index, obj)) {
    let keys = index.values.get(v);
    if (!keys) index.values.set(v, (keys = new Set()));
    keys.add(key);
  }
}

function fileOut<T extends KubeObject>(index: Index<T>, key: string, obj: T): void {
  for (const v of indexValues(index, obj)) {
    const keys = index.values.get(v);
    if (!keys) continue;
    keys.delete(key);
    if (!keys.size) index.values.delete(v);
  }
}
