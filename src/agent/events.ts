/**
 * Kubernetes Events from the agent, written the way client-go's EventRecorder writes
 * them, so `kubectl get events` and `kubectl describe node` show what the agent saw:
 *
 *   record({ involvedObject: Node n1, type: Warning, reason: NotOnLink, message })
 *     first time:  POST   Event "n1.<16 hex>" in "default" (count 1, first = last = now)
 *     again:       PATCH  the same Event: count + 1, lastTimestamp = now
 *
 * Occurrences correlate on (object, type, reason, message), as client-go's event logger
 * does; the last EVENT_CACHE_KEYS keys are remembered (LRU), so memory is bounded and a
 * key forgotten only costs a new Event. An Event deleted meanwhile (the API's TTL, by
 * hand) is created anew. Writes go out one at a time in order, at most EVENT_QUEUE_MAX
 * waiting; `record()` never throws or rejects: a failed write is logged (warn) and dropped
 * — Events are a courtesy for humans, the Node's conditions carry the state.
 */
import { randomInt } from 'node:crypto';
import type { KubeClient } from '../client/index.js';
import { RESOURCES, isAlreadyExists, isNotFound } from '../client/index.js';
import type { CoreEvent, EventType, ObjectReference } from '../client/types.js';
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/** Messages are cut to this many characters (client-go's limit for an Event note). */
export const EVENT_MESSAGE_MAX = 1024;
/** Correlation keys remembered (client-go keeps 4096 for a whole kubelet; one agent needs few). */
export const EVENT_CACHE_KEYS = 256;
/** Writes that may wait behind a slow API before new Events are dropped. */
export const EVENT_QUEUE_MAX = 100;
/** The namespace of Events about cluster-scoped objects (Nodes), as kube has it. */
export const CLUSTER_EVENT_NAMESPACE = 'default';

/** Where Events are written: the events resource of a KubeClient (see eventSink), or a fake. */
export interface EventSink {
  create(ev: CoreEvent): Promise<CoreEvent>;
  patch(namespace: string, name: string, patch: unknown, type: 'merge'): Promise<CoreEvent>;
}

/** The events resource of `client`. */
export function eventSink(client: KubeClient): EventSink {
  return client.resource<CoreEvent>(RESOURCES.events);
}

export interface EventRecord {
  /** What it is about: kind and name, namespace for namespaced objects, uid when known. */
  involvedObject: ObjectReference;
  type: EventType;
  /** UpperCamelCase, machine-readable (NotOnLink). */
  reason: string;
  message: string;
}

export interface EventRecorderOptions {
  sink: EventSink;
  /** source.component and reportingComponent: "podnet-agent". */
  component: string;
  /** source.host and reportingInstance: the node name. */
  host: string;
  log: Logger;
  clock?: () => number;
  maxKeys?: number;
  maxQueued?: number;
}

interface Seen {
  namespace: string;
  name: string;
  count: number;
}

/** Kubernetes Time: RFC 3339, seconds. */
const time = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Cut to EVENT_MESSAGE_MAX characters, saying so. */
export function truncateMessage(message: string): string {
  return message.length <= EVENT_MESSAGE_MAX ? message : `${message.slice(0, EVENT_MESSAGE_MAX - 3)}...`;
}

/** client-go's Event name: `<object name>.<unix nanoseconds in hex>` (16 digits). */
export function eventName(objectName: string, atMs: number): string {
  const nanos = BigInt(Math.floor(atMs)) * 1_000_000n + BigInt(randomInt(1_000_000));
  // Room for the suffix within a DNS subdomain's 253 characters.
  return `${objectName.slice(0, 253 - 17)}.${nanos.toString(16).padStart(16, '0')}`;
}

export class EventRecorder {
  private readonly seen = new Map<string, Seen>();
  private readonly maxKeys: number;
  private readonly maxQueued: number;
  private readonly clock: () => number;
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;

  constructor(private readonly o: EventRecorderOptions) {
    this.maxKeys = o.maxKeys ?? EVENT_CACHE_KEYS;
    this.maxQueued = o.maxQueued ?? EVENT_QUEUE_MAX;
    this.clock = o.clock ?? Date.now;
  }

  /**
   * Records one occurrence. The promise settles once it is written or given up on; it
   * never rejects, so callers may ignore it.
   */
  record(r: EventRecord): Promise<void> {
    const at = this.clock();
    const what = describe(r);
    if (this.queued >= this.maxQueued) {
      this.o.log.warn({ ...what, queued: this.queued }, 'too many events waiting for the API: event dropped');
      return Promise.resolve();
    }
    this.queued++;
    const done = this.tail
      .then(() => this.write(r, at))
      .catch((e: unknown) => this.o.log.warn({ ...what, err: formatError(e) }, 'cannot record the event'))
      .finally(() => {
        this.queued--;
      });
    this.tail = done;
    return done;
  }

  /** Resolves when every event recorded so far is written (or given up on). */
  flush(): Promise<void> {
    return this.tail;
  }

  /** Correlation keys remembered now (bounded by maxKeys). */
  get size(): number {
    return this.seen.size;
  }

  private async write(r: EventRecord, at: number): Promise<void> {
    const message = truncateMessage(r.message);
    const io = r.involvedObject;
    const key = JSON.stringify([io.apiVersion ?? '', io.kind ?? '', io.namespace ?? '', io.name ?? '', io.uid ?? '', io.fieldPath ?? '', r.type, r.reason, message]);
    const seen = this.seen.get(key);
    if (seen) {
      // Most recently used last: the first key of the map is the one to forget.
      this.seen.delete(key);
      this.seen.set(key, seen);
      const count = seen.count + 1;
      try {
        await this.o.sink.patch(seen.namespace, seen.name, { count, lastTimestamp: time(at) }, 'merge');
        seen.count = count;
        this.o.log.debug({ ...describe(r), event: `${seen.namespace}/${seen.name}`, count }, 'event counted again');
        return;
      } catch (e) {
        // The occurrence happened: the next patch carries it.
        seen.count = count;
        if (!isNotFound(e)) throw e;
        // Gone (the API's TTL, or by hand): a new Event.
        this.seen.delete(key);
      }
    }
    const namespace = io.namespace || CLUSTER_EVENT_NAMESPACE;
    const ev = (name: string): CoreEvent => ({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: io,
      reason: r.reason,
      message,
      type: r.type,
      count: 1,
      firstTimestamp: time(at),
      lastTimestamp: time(at),
      source: { component: this.o.component, host: this.o.host },
      reportingComponent: this.o.component,
      reportingInstance: this.o.host,
    });
    let name = eventName(io.name ?? '', at);
    try {
      await this.o.sink.create(ev(name));
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
      name = eventName(io.name ?? '', at);
      await this.o.sink.create(ev(name));
    }
    this.seen.set(key, { namespace, name, count: 1 });
    while (this.seen.size > this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
    this.o.log.debug({ ...describe(r), event: `${namespace}/${name}` }, 'event recorded');
  }
}

function describe(r: EventRecord): { object: string; type: string; reason: string } {
  const io = r.involvedObject;
  return { object: `${io.kind ?? ''}/${io.namespace ? `${io.namespace}/` : ''}${io.name ?? ''}`, type: r.type, reason: r.reason };
}
