/**
 * `podnet api`: wiring only — store (SQLite or etcd), registry and watch cache, the
 * controllers, and the HTTP(S) server — with an explicit `run(signal)`.
 */
import { createServer as createHttpServer } from 'node:http';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Cidr } from '../util/ipnet.js';
import type { Logger } from '../util/log.js';
import { ClusterIPAllocator, PortAllocator } from './registry/allocators.js';
import { Registry } from './registry/registry.js';
import { WatchCache } from './registry/watchcache.js';
import { EndpointSliceController } from './controllers/endpointslices.js';
import { EventTTLController } from './controllers/eventttl.js';
import { NodeLifecycleController } from './controllers/nodelifecycle.js';
import { TerminatingPodCollector } from './controllers/podgc.js';
import { AllocationRepair } from './controllers/repair.js';
import { LocalInformer } from './controllers/informer.js';
import type { Namespace } from '../client/types.js';
import { TokenAuthenticator } from './server/auth.js';
import { createHandler } from './server/http.js';
import { ApiMetrics } from './server/metrics.js';
import { EtcdStore } from './store/etcd.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/types.js';

import { isLoopbackListen } from './options.js';
import type { ControllerName, Listen } from './options.js';

export { CONTROLLERS, DEFAULT_EVENT_TTL_MS, parseListen, parseServiceCIDRs } from './options.js';
export type { ControllerName, Listen } from './options.js';

export interface ApiServerOptions {
  store: { kind: 'sqlite'; dataDir: string } | { kind: 'etcd'; endpoints: string[]; prefix?: string };
  listen: Listen;
  /** More addresses serving the same API (e.g. a unix socket next to a loopback port). */
  alsoListen?: Listen[];
  tls?: { certFile: string; keyFile: string };
  serviceCIDRs: Cidr[];
  nodePortRange: { min: number; max: number };
  tokenFile?: string;
  anonymousAdmin?: boolean;
  disabledControllers?: ControllerName[];
  nodeMonitorGracePeriodMs?: number;
  nodeMonitorPeriodMs?: number;
  /** How long Events are kept after their last occurrence (kube-apiserver's --event-ttl). Default DEFAULT_EVENT_TTL_MS (1 h). */
  eventTTLMs?: number;
  watchCacheSize?: number;
  bookmarkIntervalMs?: number;
  log: Logger;
}

export class ApiServer {
  private server: Server | undefined;
  private readonly extraServers: Server[] = [];
  private store: Store | undefined;
  private registry: Registry | undefined;
  private readonly stops: (() => void)[] = [];
  private readyFlag = false;

  constructor(private readonly opts: ApiServerOptions) {}

  /** Opens the store and starts serving. Resolves once listening. */
  async start(): Promise<void> {
    const o = this.opts;
    const log = o.log;
    if (o.anonymousAdmin && ![o.listen, ...(o.alsoListen ?? [])].every(isLoopbackListen)) {
      throw new Error('--allow-anonymous-admin is only allowed when listening on a loopback address or a unix socket');
    }
    const tokens = o.tokenFile ? TokenAuthenticator.fromFile(o.tokenFile) : undefined;
    if (!tokens && !o.anonymousAdmin) log.warn('no --token-auth-file and no --allow-anonymous-admin: every request will be refused (401)');
    this.store = o.store.kind === 'sqlite' ? SqliteStore.open(o.store.dataDir) : await EtcdStore.open({ endpoints: o.store.endpoints, ...(o.store.prefix ? { prefix: o.store.prefix } : {}) });
    if (this.store instanceof SqliteStore) this.store.startCompaction();
    else this.startEtcdCompaction(this.store);
    const clusterIPs: Partial<Record<4 | 6, ClusterIPAllocator>> = {};
    for (const c of o.serviceCIDRs) clusterIPs[c.family] = new ClusterIPAllocator(this.store, c);
    const watchCache = new WatchCache(this.store, { ...(o.watchCacheSize ? { capacity: o.watchCacheSize } : {}) });
    await watchCache.start();
    this.stops.push(() => watchCache.stop());
    const registry = new Registry({ store: this.store, watchCache, network: { clusterIPs, primary: o.serviceCIDRs[0]!.family, nodePorts: new PortAllocator(this.store, o.nodePortRange) } });
    this.registry = registry;
    await registry.bootstrap();
    const namespaces = new LocalInformer<Namespace>(registry, 'namespaces', log.child({ component: 'namespace-lister' }));
    await namespaces.start();
    registry.useNamespaceLister(namespaces);
    this.stops.push(() => namespaces.stop());

    const disabled = new Set(o.disabledControllers ?? []);
    if (!disabled.has('endpointslice')) {
      const c = new EndpointSliceController(registry, log.child({ controller: 'endpointslice' }));
      await c.start();
      this.stops.push(() => c.stop());
    }
    if (!disabled.has('nodelifecycle')) {
      const c = new NodeLifecycleController(registry, log.child({ controller: 'nodelifecycle' }), { ...(o.nodeMonitorGracePeriodMs ? { gracePeriodMs: o.nodeMonitorGracePeriodMs } : {}), ...(o.nodeMonitorPeriodMs ? { periodMs: o.nodeMonitorPeriodMs } : {}) });
      await c.start();
      this.stops.push(() => c.stop());
    }
    if (!disabled.has('podgc')) {
      const c = new TerminatingPodCollector(registry, log.child({ controller: 'podgc' }));
      await c.start();
      this.stops.push(() => c.stop());
    }
    if (!disabled.has('eventttl')) {
      const c = new EventTTLController(registry, log.child({ controller: 'eventttl' }), { ...(o.eventTTLMs ? { ttlMs: o.eventTTLMs } : {}) });
      await c.start();
      this.stops.push(() => c.stop());
    }
    if (!disabled.has('repair')) {
      const c = new AllocationRepair(registry, log.child({ controller: 'repair' }));
      c.start();
      this.stops.push(() => c.stop());
    }

    const metrics = new ApiMetrics({ processMetrics: true });
    const handler = createHandler({ registry, tokens, anonymousAdmin: o.anonymousAdmin ?? false, log: log.child({ component: 'http' }), metrics, ...(o.bookmarkIntervalMs ? { bookmarkIntervalMs: o.bookmarkIntervalMs } : {}), ready: () => this.readyFlag });
    const serve = async (listen: Listen): Promise<Server> => {
      const server = o.tls ? createHttpsServer({ cert: readFileSync(o.tls.certFile), key: readFileSync(o.tls.keyFile) }, handler) : createHttpServer(handler);
      server.keepAliveTimeout = 65_000;
      server.headersTimeout = 66_000;
      server.requestTimeout = 0; // watches are long
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if ('socketPath' in listen) {
          rmSync(listen.socketPath, { force: true });
          server.listen(listen.socketPath, () => resolve());
        } else server.listen(listen.port, listen.host, () => resolve());
      });
      return server;
    };
    this.server = await serve(o.listen);
    for (const l of o.alsoListen ?? []) this.extraServers.push(await serve(l));
    this.readyFlag = true;
    log.info({ listen: this.url, store: this.store.backend, serviceCIDRs: o.serviceCIDRs.map(String), tls: !!o.tls }, 'podnet api serving');
  }

  /**
   * etcd keeps every revision until compacted: like kube-apiserver, compact every five
   * minutes, keeping the last 10,000 revisions for watches and continue tokens.
   */
  private startEtcdCompaction(store: Store): void {
    const loop = () => {
      void (async () => {
        const rev = await store.currentRevision();
        if (rev > 10_000) await store.compact(rev - 10_000);
      })()
        .catch((e: unknown) => this.opts.log.warn({ err: String(e) }, 'etcd compaction failed'))
        .finally(() => {
          timer = setTimeout(loop, 5 * 60_000);
          timer.unref();
        });
    };
    let timer = setTimeout(loop, 5 * 60_000);
    timer.unref();
    this.stops.push(() => clearTimeout(timer));
  }

  /** Where clients reach it. */
  get url(): string {
    const a = this.server?.address();
    const scheme = this.opts.tls ? 'https' : 'http';
    if (!a) return '';
    if (typeof a === 'string') return `unix:${a}`;
    const info = a as AddressInfo;
    return `${scheme}://${info.family === 'IPv6' ? `[${info.address}]` : info.address}:${info.port}`;
  }

  get storeHandle(): Store | undefined {
    return this.store;
  }

  get registryHandle(): Registry | undefined {
    return this.registry;
  }

  /** Runs until `signal` aborts, then shuts down in order. */
  async run(signal: AbortSignal): Promise<void> {
    await this.start();
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await this.stop();
  }

  async stop(): Promise<void> {
    this.readyFlag = false;
    for (const s of this.stops.splice(0).reverse()) s();
    for (const server of [...(this.server ? [this.server] : []), ...this.extraServers.splice(0)]) {
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    }
    await this.store?.close();
    this.opts.log.info('podnet api stopped');
  }
}
