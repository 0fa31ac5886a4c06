/**
 * Allocation repair (kube-apiserver's ClusterIP / NodePort repair loops): frees records
 * whose Service is gone or no longer uses the value — left by a crash between allocating
 * and storing the Service — and recreates records that are missing for stored Services.
 * Records younger than a minute are left alone: their Service may be being created.
 */
import type { Service } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import { RANGES } from '../registry/allocators.js';
import type { Registry } from '../registry/registry.js';
import { heldIPs, heldPorts } from '../registry/serviceips.js';
import { isStoreError } from '../store/types.js';

export class AllocationRepair {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly opts: { periodMs?: number; minAgeMs?: number; clock?: () => number } = {},
  ) {}

  start(): void {
    const loop = () => {
      void this.repair()
        .catch((e: unknown) => this.log.warn({ err: String(e) }, 'allocation repair failed'))
        .finally(() => {
          this.timer = setTimeout(loop, this.opts.periodMs ?? 180_000);
          this.timer.unref();
        });
    };
    this.timer = setTimeout(loop, 1000);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  async repair(): Promise<{ freed: number; restored: number }> {
    const store = this.registry.store;
    const t = (this.opts.clock ?? Date.now)();
    const minAge = this.opts.minAgeMs ?? 60_000;
    const services = (await this.registry.list<Service>('services')).items;
    const byUid = new Map(services.map((s) => [s.metadata.uid!, s]));
    let freed = 0;
    let restored = 0;
    for (const [dir, held] of [['clusterips', heldIPs], ['nodeports', heldPorts]] as const) {
      const prefix = `${RANGES}${dir}/`;
      const records = (await store.list(prefix)).kvs;
      const present = new Set(records.map((kv) => kv.key.slice(prefix.length)));
      for (const kv of records) {
        const rec = JSON.parse(kv.value) as { uid: string; at: string };
        const svc = byUid.get(rec.uid);
        const value = kv.key.slice(prefix.length);
        const used = svc && (held(svc) as (string | number)[]).map(String).includes(value);
        if (used || t - Date.parse(rec.at) < minAge) continue;
        try {
          await store.delete(kv.key, kv.modRevision);
          freed++;
          this.log.info({ allocation: kv.key, owner: rec.uid }, 'freed an allocation no Service uses');
        } catch (e) {
          if (!isStoreError(e, 'NotFound') && !isStoreError(e, 'Conflict')) throw e;
        }
      }
      for (const svc of services) {
        for (const v of held(svc) as (string | number)[]) {
          if (present.has(String(v))) continue;
          try {
            await store.create(`${prefix}${v}`, JSON.stringify({ namespace: svc.metadata.namespace, name: svc.metadata.name, uid: svc.metadata.uid, at: new Date(t).toISOString() }));
            restored++;
            this.log.warn({ allocation: `${prefix}${v}`, service: `${svc.metadata.namespace}/${svc.metadata.name}` }, 'restored a missing allocation record');
          } catch (e) {
            if (!isStoreError(e, 'KeyExists')) throw e;
          }
        }
      }
    }
    return { freed, restored };
  }
}
