/**
 * The watch cache: one store watch per api process, a bounded window of recent events in
 * memory, and the fan-out to every client watch. Each event is decoded and serialised at
 * most once, however many watchers receive it, and a watcher that falls too far behind is
 * ended (it resumes from its last resourceVersion) instead of slowing everyone.
 *
 * A client watch from resourceVersion R gets every event with a revision greater than R:
 * replayed from the window, then live. R older than the window: 410 Expired, as
 * kube-apiserver answers "too old resource version", and the client relists.
 */
import type { ResourceName } from '../../client/resources.js';
import { RESOURCES, apiVersionOf } from '../../client/resources.js';
import type { KubeObject, WatchEventType } from '../../client/types.js';
import type { Store, StoreError, StoreEvent, WatchHandle } from '../store/types.js';
import { ROOT, parseKey } from './keys.js';

export class CachedEvent {
  /** Order of arrival in this cache (events of one etcd transaction share a revision). */
  readonly seq: number;
  readonly revision: number;
  readonly type: 'create' | 'update' | 'delete';
  readonly resource: ResourceName;
  readonly namespace: string | undefined;
  readonly name: string;
  private readonly raw: StoreEvent;
  #obj: KubeObject | undefined;
  #prev: KubeObject | null | undefined;
  #json: string | undefined;
  /** Other renderings (e.g. Table rows), computed once per event. */
  readonly renders = new Map<string, string>();

  constructor(seq: number, raw: StoreEvent, resource: ResourceName, namespace: string | undefined, name: string) {
    this.seq = seq;
    this.raw = raw;
    this.revision = raw.revision;
    this.type = raw.type;
    this.resource = resource;
    this.namespace = namespace;
    this.name = name;
  }

  /** The object after the event (for deletes: its last state), resourceVersion = revision. */
  get object(): KubeObject {
    this.#obj ??= decodeObject(this.resource, this.raw.value, this.revision);
    return this.#obj;
  }

  /** The object before the event (undefined for creates). */
  get previous(): KubeObject | undefined {
    if (this.#prev === undefined) this.#prev = this.raw.prevValue === undefined ? null : decodeObject(this.resource, this.raw.prevValue, this.revision);
    return this.#prev ?? undefined;
  }

  /** JSON of `object`. */
  get json(): string {
    this.#json ??= JSON.stringify(this.object);
    return this.#json;
  }

  /**
   * For an object that left a watch's selection: its previous state, stamped with this
   * event's revision (what kube-apiserver sends as the DELETED object in that case).
   */
  get previousStamped(): KubeObject | undefined {
    const p = this.previous;
    if (!p) return undefined;
    return { ...p, metadata: { ...p.metadata, resourceVersion: String(this.revision) } };
  }
}

/** Parses a stored value and stamps apiVersion, kind and resourceVersion on it. */
export function decodeObject(resource: ResourceName, value: string, revision: number): KubeObject {
  const stored = JSON.parse(value) as KubeObject;
  const info = RESOURCES[resource];
  const obj = { apiVersion: apiVersionOf(info), kind: info.kind, ...stored, metadata: { ...stored.metadata, resourceVersion: String(revision) } };
  return obj as KubeObject;
}

export interface WatchFilter {
  resource: ResourceName;
  namespace?: string;
  /** Decides membership of an object in the watched set. */
  matches(obj: KubeObject): boolean;
}

export interface WatchSink {
  /**
   * One event for this watcher (already filtered, with its watch type). `leftSelection`:
   * a DELETED for an object that still exists but no longer matches the selectors.
   */
  event(type: WatchEventType, ev: CachedEvent, leftSelection: boolean): void;
  /** The cache has seen everything up to `revision` (for bookmarks). */
  progress(revision: number): void;
  /** The watch is over: `reason` says why (expired, too slow, store lost, cache closed). */
  end(reason: WatchEndReason): void;
}

export type WatchEndReason = { kind: 'expired'; message: string } | { kind: 'slow' } | { kind: 'closed' } | { kind: 'error'; message: string };

interface Watcher {
  filter: WatchFilter;
  sink: WatchSink;
  /** Events with seq <= this were sent (or filtered). */
  sentSeq: number;
  cancelled: boolean;
}

export interface WatchCacheOptions {
  /** Events kept in memory. Default 20,000. */
  capacity?: number;
}

export class WatchCache {
  private readonly store: Store;
  private readonly capacity: number;
  private readonly window: CachedEvent[] = [];
  /** Newest revision observed. */
  private latest = 0;
  private readonly watchers = new Set<Watcher>();
  private handle: WatchHandle | undefined;
  private waiters: { revision: number; resolve: () => void }[] = [];
  private failed: string | undefined;
  private seq = 0;
  /** Keys already seen at revision `latest` (one etcd transaction may write several). */
  private keysAtLatest = new Set<string>();

  constructor(store: Store, opts: WatchCacheOptions = {}) {
    this.store = store;
    this.capacity = opts.capacity ?? 20_000;
  }

  /** Starts following the store. Resolves once the watch is established. */
  async start(): Promise<void> {
    const rev = await this.store.currentRevision();
    this.latest = rev;
    this.handle = this.store.watch(ROOT, rev, {
      onEvents: (evs) => this.ingest(evs),
      onError: (err: StoreError) => this.fail(`the store watch ended: ${err.code}: ${err.message}`),
    });
  }

  /** Newest revision the cache has seen. */
  get revision(): number {
    return this.latest;
  }

  /** Oldest revision from which a watch can still start. */
  get oldestServable(): number {
    return this.window.length ? this.window[0]!.revision - 1 : this.latest;
  }

  get size(): number {
    return this.window.length;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /** Resolves when the cache has seen `revision` (e.g. a write just acknowledged). */
  waitFor(revision: number, timeoutMs = 3000): Promise<boolean> {
    if (this.latest >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { revision, resolve: () => resolve(true) };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve(false);
        }
      }, timeoutMs).unref();
    });
  }

  /**
   * Starts a watch of the events after `fromRevision`. Returns a cancel function.
   * A revision the window no longer covers ends the watch at once with 'expired'.
   */
  watch(filter: WatchFilter, fromRevision: number, sink: WatchSink): () => void {
    const w: Watcher = { filter, sink, sentSeq: 0, cancelled: false };
    const cancel = () => {
      w.cancelled = true;
      this.watchers.delete(w);
    };
    if (this.failed) {
      queueMicrotask(() => sink.end({ kind: 'error', message: this.failed! }));
      return cancel;
    }
    if (fromRevision < this.oldestServable) {
      queueMicrotask(() => sink.end({ kind: 'expired', message: `too old resource version: ${fromRevision} (${this.oldestServable})` }));
      return cancel;
    }
    // Replay what the window holds after fromRevision, then go live — in one microtask, so
    // no event can arrive in between and nothing is skipped or sent twice.
    queueMicrotask(() => {
      if (w.cancelled) return;
      for (const ev of this.window) if (ev.revision > fromRevision) this.deliver(w, ev);
      if (!w.cancelled) this.watchers.add(w);
    });
    return cancel;
  }

  stop(): void {
    this.handle?.cancel();
    this.handle = undefined;
    for (const w of this.watchers) w.sink.end({ kind: 'closed' });
    this.watchers.clear();
  }

  private ingest(evs: StoreEvent[]): void {
    const batch: CachedEvent[] = [];
    for (const raw of evs) {
      // Never twice (a store must not repeat events; this guards the cache anyway).
      if (raw.revision < this.latest || (raw.revision === this.latest && this.keysAtLatest.has(raw.key))) continue;
      if (raw.revision > this.latest) this.keysAtLatest = new Set();
      this.keysAtLatest.add(raw.key);
      this.latest = raw.revision;
      const k = parseKey(raw.key);
      if (!k) continue;
      batch.push(new CachedEvent(++this.seq, raw, k.resource, k.namespace, k.name));
    }
    for (const ev of batch) this.window.push(ev);
    if (this.window.length > this.capacity) this.window.splice(0, this.window.length - this.capacity);
    for (const w of this.watchers) {
      for (const ev of batch) {
        if (w.cancelled) break;
        this.deliver(w, ev);
      }
      if (!w.cancelled) w.sink.progress(this.latest);
    }
    if (this.waiters.length) {
      const ready = this.waiters.filter((x) => x.revision <= this.latest);
      this.waiters = this.waiters.filter((x) => x.revision > this.latest);
      for (const x of ready) x.resolve();
    }
  }

  /** Sends one event to one watcher if it concerns it, with the right watch type. */
  private deliver(w: Watcher, ev: CachedEvent): void {
    if (ev.seq <= w.sentSeq) return;
    w.sentSeq = ev.seq;
    const f = w.filter;
    if (ev.resource !== f.resource) return;
    if (f.namespace !== undefined && ev.namespace !== f.namespace) return;
    const now = ev.type !== 'delete' && f.matches(ev.object);
    const before = ev.type !== 'create' && ev.previous !== undefined && f.matches(ev.previous);
    if (ev.type === 'delete') {
      if (before || f.matches(ev.object)) w.sink.event('DELETED', ev, false);
    } else if (now && before) w.sink.event('MODIFIED', ev, false);
    else if (now) w.sink.event('ADDED', ev, false);
    else if (before) w.sink.event('DELETED', ev, true);
  }

  private fail(message: string): void {
    this.failed = message;
    for (const w of this.watchers) w.sink.end({ kind: 'error', message });
    this.watchers.clear();
  }
}
