/**
 * Event TTL. kube-apiserver writes Events with an etcd lease of --event-ttl (default 1 h),
 * so an Event disappears an hour after it last happened. podnet's stores have no per-key
 * TTL, so this controller does the same from an informer: every period, each Event whose
 * last occurrence is older than the TTL is deleted.
 *
 * The last occurrence is the latest of lastTimestamp, series.lastObservedTime, eventTime
 * and creationTimestamp (the server's clock: a recorder whose clock is behind cannot make
 * a new Event expire at once). A delete carries the uid and resourceVersion the decision
 * was made on: an Event counted again in between is left for the next round (Conflict).
 */
import type { CoreEvent } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import { DEFAULT_EVENT_TTL_MS } from '../options.js';
import type { Registry } from '../registry/registry.js';
import { ApiStatusError } from '../server/status.js';
import { LocalInformer } from './informer.js';

export interface EventTTLOptions {
  /** How long an Event is kept after its last occurrence. Default 1 h (kube's --event-ttl). */
  ttlMs?: number;
  /** How often expired Events are looked for. Default a tenth of the TTL, within 1 s..60 s. */
  periodMs?: number;
  clock?: () => number;
}

/** When an Event last happened (ms since the epoch), NaN when it says nothing parseable. */
export function lastOccurrence(ev: CoreEvent): number {
  const times = [ev.lastTimestamp, ev.series?.lastObservedTime, ev.eventTime, ev.metadata.creationTimestamp].map((t) => (t ? Date.parse(t) : NaN)).filter((t) => !Number.isNaN(t));
  return times.length ? Math.max(...times) : NaN;
}

export class EventTTLController {
  private readonly events: LocalInformer<CoreEvent>;
  private readonly ttlMs: number;
  private readonly periodMs: number;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    opts: EventTTLOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_EVENT_TTL_MS;
    if (!(this.ttlMs > 0)) throw new Error(`event TTL must be positive, got ${this.ttlMs} ms`);
    this.periodMs = opts.periodMs ?? Math.min(60_000, Math.max(1_000, Math.floor(this.ttlMs / 10)));
    this.clock = opts.clock ?? Date.now;
    this.events = new LocalInformer(registry, 'events', log);
  }

  async start(): Promise<void> {
    await this.events.start();
    const loop = () => {
      void this.collect()
        .catch((e: unknown) => this.log.warn({ err: String(e) }, 'expired event collection failed'))
        .finally(() => {
          this.timer = setTimeout(loop, this.periodMs);
          this.timer.unref();
        });
    };
    this.timer = setTimeout(loop, this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.events.stop();
  }

  /** Deletes every Event past its TTL now; resolves with how many went. */
  async collect(): Promise<number> {
    const now = this.clock();
    let deleted = 0;
    for (const ev of this.events.list()) {
      const last = lastOccurrence(ev);
      // An Event without any time was written by no recorder we know: its creation is missing too, keep it.
      if (Number.isNaN(last) || now - last < this.ttlMs) continue;
      const m = ev.metadata;
      try {
        await this.registry.delete('events', m.namespace, m.name!, { preconditions: { uid: m.uid!, resourceVersion: m.resourceVersion! } });
        deleted++;
      } catch (e) {
        if (!(e instanceof ApiStatusError && (e.reason === 'NotFound' || e.reason === 'Conflict'))) throw e;
      }
    }
    if (deleted) this.log.debug({ deleted, ttlMs: this.ttlMs }, 'expired events deleted');
    return deleted;
  }
}
