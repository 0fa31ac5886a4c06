/**
 * In-process informers for the api's own controllers: list through the registry, then
 * follow the watch cache from the list's revision; a watch that ends (expired, cache
 * restart) relists and reports the differences, so handlers see every change once.
 * Same contract as the client's HTTP informer, without HTTP.
 */
import type { ResourceName } from '../../client/resources.js';
import type { KubeObject } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import { KeyedWorkQueue } from '../../util/workqueue.js';
import type { Registry } from '../registry/registry.js';

export interface InformerHandlers<T extends KubeObject> {
  onAdd?(obj: T): void;
  onUpdate?(old: T, obj: T): void;
  onDelete?(obj: T): void;
}

export const keyOf = (o: KubeObject): string => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name ?? '');

export class LocalInformer<T extends KubeObject = KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private cancel: (() => void) | undefined;
  private synced = false;
  private stopped = false;
  private syncWaiters: (() => void)[] = [];

  constructor(
    private readonly registry: Registry,
    readonly resource: ResourceName,
    private readonly log: Logger,
  ) {}

  on(h: InformerHandlers<T>): void {
    this.handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /** Objects of one namespace. */
  inNamespace(ns: string): T[] {
    return this.list().filter((o) => o.metadata.namespace === ns);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  /** Lists and starts watching; keeps going (relisting when needed) until stop(). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.relist();
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    let list;
    try {
      list = await this.registry.list<T>(this.resource);
    } catch (e) {
      this.log.warn({ resource: this.resource, err: String(e) }, 'informer list failed; retrying');
      setTimeout(() => void this.relist(), 1000).unref();
      return;
    }
    const seen = new Set<string>();
    for (const obj of list.items) {
      const k = keyOf(obj);
      seen.add(k);
      const old = this.cache.get(k);
      this.cache.set(k, obj);
      if (!old) this.emit((h) => h.onAdd?.(obj));
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit((h) => h.onUpdate?.(old, obj));
    }
    for (const [k, old] of [...this.cache]) {
      if (!seen.has(k)) {
        this.cache.delete(k);
        this.emit((h) => h.onDelete?.(old));
      }
    }
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
    this.cancel = this.registry.watchCache.watch({ resource: this.resource, matches: () => true }, Number(list.metadata.resourceVersion), {
      event: (type, ev) => {
        const obj = ev.object as T;
        const k = keyOf(obj);
        const old = this.cache.get(k);
        if (type === 'DELETED') {
          this.cache.delete(k);
          this.emit((h) => h.onDelete?.(old ?? obj));
        } else {
          this.cache.set(k, obj);
          if (old) this.emit((h) => h.onUpdate?.(old, obj));
          else this.emit((h) => h.onAdd?.(obj));
        }
      },
      progress: () => undefined,
      end: (reason) => {
        if (this.stopped || reason.kind === 'closed') return;
        this.log.info({ resource: this.resource, reason: reason.kind }, 'informer watch ended; relisting');
        setTimeout(() => void this.relist(), 100).unref();
      },
    });
  }

  private emit(fn: (h: InformerHandlers<T>) => void): void {
    for (const h of this.handlers) {
      try {
        fn(h);
      } catch (e) {
        this.log.error({ resource: this.resource, err: String(e) }, 'informer handler failed');
      }
    }
  }
}

/**
 * A coalescing work queue: keys added while queued are merged, one worker at a time
 * processes them, failures are retried with exponential backoff. Level-triggered:
 * the worker reads the current state, so dropping duplicate notifications is safe.
 */
/** The controllers' queue: one key at a time (see util/workqueue). */
export class WorkQueue extends KeyedWorkQueue {
  constructor(process: (key: string) => Promise<void>, log: Logger, name: string) {
    super({ process, log, name });
  }
}
