/**
 * The proxy's control loop, as kube-proxy's: informers on Services and EndpointSlices
 * only record which Services changed (the change tracker) and ask a bounded-frequency
 * runner for a sync; a sync turns the changed Services into ProxyServicePorts (one set per
 * family, see snapshot.ts), works out which service ports really differ, and has the mode
 * apply exactly those (a partial sync). A sync also runs every `syncMs` without changes;
 * every `fullSyncMs` (kube-proxy: one hour) — and after any failure — the sync is full: every port rebuilt from the caches, the mode rewrites everything and removes
 * what is stale. Nothing syncs before both initial lists have arrived.
 *
 * After a successful sync: the network programming latency of each EndpointSlice change is
 * observed (from the slice's endpoints.kubernetes.io/last-change-trigger-time to now), the
 * healthCheckNodePort responders are updated, and stale UDP/SCTP conntrack entries are
 * deleted (entries to endpoints that went away; entries of Services that had no endpoint).
 */
import type { EndpointSlice, Service } from '../client/types.js';
import { Informer } from '../client/informer.js';
import type { ListerWatcher } from '../client/rest.js';
import type { ConntrackFilter } from '../kernel/conntrack.js';
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { collect, fullGc } from '../util/gc.js';
import { BoundedFrequencyRunner } from '../util/runner.js';
import type { HealthCheckService, ServiceHealthServer } from './healthcheck.js';
import type { ProxyMetrics } from './metrics.js';
import { samePort, serviceName, servicePorts, sliceServiceName } from './snapshot.js';
import type { ProxyMode, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from './types.js';

/** Set by the EndpointSlice controller: when the change that produced this slice happened. */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';
const BY_SERVICE = 'byService';
/** kube-proxy's fullSyncPeriod: a full rewrite costs seconds at 10,000 Services, so not every sync period. */
export const DEFAULT_FULL_SYNC_MS = 60 * 60_000;
/**
 * After a full sync, or a partial one of at least this many service ports, the heap is
 * collected (util/gc.ts): their garbage would otherwise stay in the RSS. Smaller syncs
 * leave little, and a collection costs tens of ms at 10,000 Services.
 */
export const COLLECT_AFTER_PORTS = 200;
/** At most one such collection per this interval (a stream of large syncs pays it once). */
const COLLECT_EVERY_MS = 10_000;
/**
 * The collection waits until no change has come for this long and no sync is running: a
 * full collection stops the event loop for tens of ms and takes a core the API and the
 * other agents want during a burst, so it goes after the burst, not between its syncs.
 */
const COLLECT_QUIET_MS = 1000;
/**
 * kube-proxy's burstSyncs: the min sync period is a token bucket of two, so the first
 * change after a quiet spell and the ones that arrive during its sync are both programmed
 * at once; only a longer stream waits one period per sync.
 */
const BURST_SYNCS = 2;

export interface ProxierOptions {
  sources: { services: ListerWatcher<Service>; slices: ListerWatcher<EndpointSlice> };
  mode: ProxyMode;
  /** One per family this node proxies (IPv4 first). */
  nodes: ProxyNodeConfig[];
  /** Least time between syncs (coalescing); 0 = sync at once. */
  minSyncMs: number;
  /** Longest time between syncs (a sync with no changes writes nothing). */
  syncMs: number;
  /** Full resync period: everything rewritten, drift repaired. Default 1 h, as kube-proxy. */
  fullSyncMs?: number;
  log: Logger;
  metrics: ProxyMetrics;
  health?: ServiceHealthServer;
  /** Deletes conntrack entries (kernel/conntrack.ts); omitted = no conntrack cleanup. */
  conntrack?: (f: ConntrackFilter) => Promise<number>;
  clock?: () => number;
}

interface FamilyState {
  node: ProxyNodeConfig;
  ports: Map<string, ProxyServicePort>;
  /** Service (`ns/name`) -> its port keys in this family. */
  byService: Map<string, string[]>;
  /** Endpoints over all ports (kept as ports change: a partial sync stays O(changed)). */
  endpoints: number;
  /** The ports with a healthCheckNodePort, by key (few: eTP Local LoadBalancers and NodePorts). */
  health: Map<string, ProxyServicePort>;
}

/** Sets (p) or deletes (undefined) port k in f, keeping its counts, and records how to undo it. */
function putPort(f: FamilyState, k: string, p: ProxyServicePort | undefined, undo: (() => void)[]): void {
  const old = f.ports.get(k);
  if (old === p) return;
  f.endpoints += (p?.endpoints.length ?? 0) - (old?.endpoints.length ?? 0);
  const oldHealth = f.health.get(k);
  if (p?.healthCheckNodePort) f.health.set(k, p);
  else f.health.delete(k);
  if (p) f.ports.set(k, p);
  else f.ports.delete(k);
  undo.push(() => {
    f.endpoints += (old?.endpoints.length ?? 0) - (p?.endpoints.length ?? 0);
    if (oldHealth) f.health.set(k, oldHealth);
    else f.health.delete(k);
    if (old) f.ports.set(k, old);
    else f.ports.delete(k);
  });
}

export class Proxier {
  readonly services: Informer<Service>;
  readonly slices: Informer<EndpointSlice>;
  private readonly runner: BoundedFrequencyRunner;
  private readonly families: FamilyState[];
  private readonly clock: () => number;
  /** Services changed since the last sync (the change tracker). */
  private dirty = new Set<string>();
  private dirtySlices = 0;
  private needFull = true;
  private lastFull = 0;
  private synced = false;
  /** Trigger times already observed, by slice key (so one change is measured once). */
  private readonly seenTrigger = new Map<string, string>();
  private syncs = 0;
  private lastCollect = Number.NEGATIVE_INFINITY;
  private lastChange = Number.NEGATIVE_INFINITY;
  private syncing = false;
  private collectPending = false;

  constructor(private readonly o: ProxierOptions) {
    this.clock = o.clock ?? Date.now;
    this.families = o.nodes.map((node) => ({ node, ports: new Map(), byService: new Map(), endpoints: 0, health: new Map() }));
    const onError = (resource: string) => (err: unknown, info: { phase: string; delayMs: number }) => o.log.warn({ resource, phase: info.phase, retryInMs: info.delayMs, err: formatError(err) }, 'proxy informer error');
    this.services = new Informer<Service>({ source: o.sources.services, onError: onError('services') });
    this.slices = new Informer<EndpointSlice>({ source: o.sources.slices, onError: onError('endpointslices') });
    this.slices.addIndexer(BY_SERVICE, (s) => sliceServiceName(s));
    this.runner = new BoundedFrequencyRunner({
      name: 'proxy',
      fn: () => this.sync(),
      minIntervalMs: o.minSyncMs,
      burstRuns: BURST_SYNCS,
      maxIntervalMs: o.syncMs,
      retryMs: 500,
      onError: (e, retryInMs) => {
        o.metrics.syncFailures.inc({ mode: o.mode.name });
        o.log.warn({ mode: o.mode.name, retryInMs, err: formatError(e) }, 'proxy sync failed; the next sync is full');
      },
    });
    const svcChanged = (s: Service) => this.touch(serviceName(s.metadata.namespace ?? 'default', s.metadata.name ?? ''));
    this.services.onAdd(svcChanged);
    this.services.onUpdate((a, b) => {
      if (a.metadata.resourceVersion !== b.metadata.resourceVersion) svcChanged(b);
    });
    this.services.onDelete(svcChanged);
    const sliceChanged = (a: EndpointSlice | undefined, b: EndpointSlice) => {
      this.dirtySlices++;
      for (const s of new Set([a && sliceServiceName(a), sliceServiceName(b)])) if (s) this.touch(s);
    };
    this.slices.onAdd((s) => sliceChanged(undefined, s));
    this.slices.onUpdate((a, b) => {
      if (a.metadata.resourceVersion !== b.metadata.resourceVersion) sliceChanged(a, b);
    });
    this.slices.onDelete((s) => sliceChanged(undefined, s));
  }

  /** True once the first sync after the initial lists succeeded. */
  get ready(): boolean {
    return this.synced;
  }

  /** The service ports programmed now, per family (tests, trace). */
  snapshots(): ProxySnapshot[] {
    return this.families.map((f) => ({ family: f.node.family, node: f.node, services: f.ports }));
  }

  async run(signal: AbortSignal): Promise<void> {
    const informers = Promise.all([this.services.run(signal), this.slices.run(signal)]);
    const ok = (await this.services.waitForSync(signal)) && (await this.slices.waitForSync(signal));
    if (ok) {
      this.runner.start();
      await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
      await this.runner.stop();
    }
    await informers;
  }

  /** Requests a full sync now (tests, SIGHUP). */
  requestFullSync(): void {
    this.needFull = true;
    this.runner.run();
  }

  private touch(svc: string): void {
    this.lastChange = performance.now();
    this.dirty.add(svc);
    this.o.metrics.pendingServiceChanges.set(this.dirty.size);
    this.o.metrics.pendingEndpointSliceChanges.set(this.dirtySlices);
    this.runner.run();
  }

  private async sync(): Promise<void> {
    this.syncing = true;
    try {
      await this.syncRules();
    } finally {
      this.syncing = false;
    }
  }

  private async syncRules(): Promise<void> {
    if (!this.services.hasSynced() || !this.slices.hasSynced()) return;
    const t0 = performance.now();
    const now = this.clock();
    const full = this.needFull || now - this.lastFull >= (this.o.fullSyncMs ?? DEFAULT_FULL_SYNC_MS);
    const dirty = this.dirty;
    this.dirty = new Set();
    this.dirtySlices = 0;
    this.o.metrics.pendingServiceChanges.set(0);
    this.o.metrics.pendingEndpointSliceChanges.set(0);
    // An undo log (O(changed), not a copy of everything): a failed sync puts the model back as it was.
    const undo: (() => void)[] = [];
    const changed = new Set<string>();
    const removedEndpoints: { port: ProxyServicePort; ip: string; epPort: number }[] = [];
    const fromNone: ProxyServicePort[] = [];
    const names = full ? new Set([...this.services.list().map((s) => serviceName(s.metadata.namespace ?? 'default', s.metadata.name ?? '')), ...this.families.flatMap((f) => [...f.byService.keys()])]) : dirty;
    try {
      for (const f of this.families) {
        let keysChanged = false;
        for (const svc of names) {
          const [ns, name] = splitName(svc);
          const obj = this.services.getByName(ns, name);
          const next = obj ? servicePorts(obj, this.slices.byIndex(BY_SERVICE, svc), f.node) : [];
          const oldKeys = f.byService.get(svc) ?? [];
          const nextKeys = new Set(next.map((p) => p.key));
          for (const k of oldKeys) {
            if (nextKeys.has(k)) continue;
            const old = f.ports.get(k);
            if (old) for (const e of old.endpoints) removedEndpoints.push({ port: old, ip: e.ip, epPort: e.port });
            putPort(f, k, undefined, undo);
            changed.add(k);
            keysChanged = true;
          }
          for (const p of next) {
            const old = f.ports.get(p.key);
            if (old && samePort(old, p)) continue;
            changed.add(p.key);
            if (!old) keysChanged = true;
            if (old) {
              const still = new Set(p.endpoints.map((e) => `${e.ip}/${e.port}`));
              for (const e of old.endpoints) if (!still.has(`${e.ip}/${e.port}`)) removedEndpoints.push({ port: old, ip: e.ip, epPort: e.port });
              if (!old.hasEndpoints && p.hasEndpoints) fromNone.push(p);
            } else if (p.hasEndpoints && this.syncs > 0) fromNone.push(p);
            putPort(f, p.key, p, undo);
          }
          const oldEntry = f.byService.get(svc);
          undo.push(oldEntry ? () => f.byService.set(svc, oldEntry) : () => f.byService.delete(svc));
          if (next.length) f.byService.set(svc, next.map((p) => p.key));
          else f.byService.delete(svc);
        }
        // Keep ports sorted by key (modes iterate in this order): only needed when keys came or went.
        if (keysChanged) sortByKey(f.ports);
      }
      const t1 = performance.now();
      const result = await this.o.mode.sync(this.snapshots(), full ? undefined : changed);
      const seconds = (performance.now() - t0) / 1000;
      this.o.metrics.syncDuration.observe({ mode: this.o.mode.name, kind: full ? 'full' : 'partial' }, seconds);
      this.o.metrics.lastSync.set({ mode: this.o.mode.name }, Date.now() / 1000);
      for (const f of this.families) {
        this.o.metrics.servicePorts.set({ family: `IPv${f.node.family}` }, f.ports.size);
        this.o.metrics.endpoints.set({ family: `IPv${f.node.family}` }, f.endpoints);
      }
      if (full) {
        this.needFull = false;
        this.lastFull = now;
      }
      this.synced = true;
      this.syncs++;
      const level = full || changed.size > 0 ? 'info' : 'debug';
      this.o.log[level]({ mode: this.o.mode.name, kind: full ? 'full' : 'partial', servicePorts: this.families.reduce((n, f) => n + f.ports.size, 0), changed: changed.size, written: result.servicesWritten, removed: result.servicesRemoved, ms: Math.round(seconds * 10000) / 10, modelMs: Math.round((t1 - t0) * 100) / 100 }, 'proxy rules synced');
    } catch (e) {
      for (const u of undo.reverse()) u();
      for (const f of this.families) sortByKey(f.ports);
      for (const s of dirty) this.dirty.add(s);
      this.needFull = true;
      throw e;
    }
    this.observeProgramming(full ? undefined : dirty);
    await this.afterSync(removedEndpoints, fromNone);
    if (full || changed.size >= COLLECT_AFTER_PORTS) this.collectSoon();
  }

  /**
   * A full collection once the changes have stopped for COLLECT_QUIET_MS and no sync runs
   * (never between the syncs of a burst), at most every COLLECT_EVERY_MS.
   */
  private collectSoon(): void {
    if (this.collectPending || !fullGc) return;
    this.collectPending = true;
    const attempt = (): void => {
      const now = performance.now();
      const wait = Math.max(this.lastCollect + COLLECT_EVERY_MS, this.lastChange + COLLECT_QUIET_MS) - now;
      if (wait > 0 || this.syncing || this.dirty.size > 0) {
        setTimeout(attempt, Math.max(wait, COLLECT_QUIET_MS / 4)).unref();
        return;
      }
      this.collectPending = false;
      this.lastCollect = now;
      const r = collect();
      if (r) this.o.log.debug({ mode: this.o.mode.name, ms: r.ms, heapBeforeMB: r.beforeMB, heapAfterMB: r.afterMB, committedBeforeMB: r.committedBeforeMB, committedAfterMB: r.committedAfterMB, collections: r.collections, compacted: r.compacted }, 'heap collected after a large proxy sync');
    };
    setTimeout(attempt, 0).unref();
  }

  /** Network programming latency of the slices changed in this sync (full: every slice). */
  private observeProgramming(services: ReadonlySet<string> | undefined): void {
    const now = this.clock();
    const slices = services ? [...services].flatMap((s) => this.slices.byIndex(BY_SERVICE, s)) : this.slices.list();
    for (const sl of slices) {
      const trig = sl.metadata.annotations?.[TRIGGER_TIME_ANNOTATION];
      if (!trig) continue;
      const key = `${sl.metadata.namespace}/${sl.metadata.name}`;
      if (this.seenTrigger.get(key) === trig) continue;
      const first = !this.seenTrigger.has(key) && this.syncs === 1;
      this.seenTrigger.set(key, trig);
      // The first sync after start measures the agent's start, not programming: skipped, as kube-proxy does.
      if (first) continue;
      const at = Date.parse(trig);
      if (Number.isNaN(at) || at > now) continue;
      this.o.metrics.programmingDuration.observe({ mode: this.o.mode.name }, (now - at) / 1000);
    }
    if (this.seenTrigger.size > 2 * Math.max(1000, this.slices.size)) {
      for (const k of this.seenTrigger.keys()) if (!this.slices.get(k)) this.seenTrigger.delete(k);
    }
  }

  private async afterSync(removed: { port: ProxyServicePort; ip: string; epPort: number }[], fromNone: ProxyServicePort[]): Promise<void> {
    if (this.o.health) {
      const byPort = new Map<number, HealthCheckService>();
      for (const f of this.families) {
        for (const p of f.health.values()) {
          const have = byPort.get(p.healthCheckNodePort);
          const local = p.endpoints.filter((e) => e.isLocal && e.ready).length;
          if (have) have.localEndpoints = Math.max(have.localEndpoints, local);
          else byPort.set(p.healthCheckNodePort, { namespace: p.namespace, name: p.name, localEndpoints: local });
        }
      }
      await this.o.health.update(byPort).catch((e: unknown) => this.o.log.warn({ err: formatError(e) }, 'health check node ports not updated'));
    }
    const ct = this.o.conntrack;
    if (!ct) return;
    const filters: ConntrackFilter[] = [];
    const proto = (p: ProxyServicePort) => (p.protocol === 'UDP' ? 'udp' : p.protocol === 'SCTP' ? 'sctp' : undefined);
    for (const { port, ip, epPort } of removed) {
      const pr = proto(port);
      if (!pr) continue;
      // Every flow DNATed to the endpoint that is gone, whichever VIP it came through.
      filters.push({ protocol: pr, replySrc: ip, replyPortSrc: epPort });
    }
    for (const p of fromNone) {
      const pr = proto(p);
      if (!pr) continue;
      // Flows that were rejected while the Service had no endpoint (kube-proxy: "stale services").
      for (const vip of [p.clusterIP, ...p.externalIPs, ...p.loadBalancerIPs]) filters.push({ protocol: pr, origDst: vip, origPortDst: p.port });
      if (p.nodePort) filters.push({ protocol: pr, origPortDst: p.nodePort, family: p.clusterIP.includes(':') ? 6 : 4 });
    }
    const seen = new Set<string>();
    for (const f of filters) {
      const k = JSON.stringify(f);
      if (seen.has(k)) continue;
      seen.add(k);
      try {
        const n = await ct(f);
        if (n > 0) {
          this.o.metrics.conntrackDeleted.inc(n);
          this.o.log.info({ ...f, deleted: n }, 'stale conntrack entries deleted');
        }
      } catch (e) {
        this.o.log.warn({ ...f, err: formatError(e) }, 'cannot delete stale conntrack entries');
      }
    }
  }
}

function sortByKey<V>(m: Map<string, V>): void {
  const sorted = [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  m.clear();
  for (const [k, v] of sorted) m.set(k, v);
}

function splitName(s: string): [string, string] {
  const i = s.indexOf('/');
  return [s.slice(0, i), s.slice(i + 1)];
}
