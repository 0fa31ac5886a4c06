/**
 * Allocation repair (kube-apiserver's ClusterIP / NodePort repair loops): frees records
 * (ClusterIPs, NodePorts, Node pod subnets) whose holder is gone or no longer uses the
 * value, and recreates records that are missing for stored Services and Nodes.
 * Records younger than a minute are left alone: their Service may be being created.
 */
import type { KubeObject, Node, Service } from '../../client/types.js';
import { heldCIDRs } from '../registry/nodecidrs.js';
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
    const nodes = (await this.registry.list<Node>('nodes')).items;
    let freed = 0;
    let restored = 0;
    const kinds: { dir: string; objects: KubeObject[]; held: (o: KubeObject) => (string | number)[] }[] = [
      { dir: 'clusterips', objects: services, held: (o) => heldIPs(o as Service) },
      { dir: 'nodeports', objects: services, held: (o) => heldPorts(o as Service) },
      { dir: 'podcidrs', objects: nodes, held: (o) => heldCIDRs(o as Node) },
    ];
    for (const { dir, objects, held } of kinds) {
      const byUid = new Map(objects.map((s) => [s.metadata.uid!, s]));
      const prefix = `${RANGES}${dir}/`;
      const records = (await store.list(prefix)).kvs;
      const present = new Set(records.map((kv) => kv.key.slice(prefix.length)));
      for (const kv of records) {
        const rec = JSON.parse(kv.value) as { uid: string; at: string };
        const holder = byUid.get(rec.uid);
        const value = kv.key.slice(prefix.length);
        const used = holder && held(holder).map(String).includes(value);
        if (used || t - Date.parse(rec.at) < minAge) continue;
        try {
          await store.delete(kv.key, kv.modRevision);
          freed++;
          this.log.info({ allocation: kv.key, owner: rec.uid }, 'freed an allocation no Service uses');
        } catch (e) {
          if (!isStoreError(e, 'NotFound') && !isStoreError(e, 'Conflict')) throw e;
        }
      }
      for (const obj of objects) {
        for (const v of held(obj)) {
          if (present.has(String(v))) continue;
          try {
            await store.create(`${prefix}${v}`, JSON.stringify({ namespace: obj.metadata.namespace ?? '', name: obj.metadata.name, uid: obj.metadata.uid, at: new Date(t).toISOString() }));
            restored++;
            this.log.warn({ allocation: `${prefix}${v}`, holder: obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name }, 'restored a missing allocation record');
          } catch (e) {
            if (!isStoreError(e, 'KeyExists')) throw e;
          }
        }
      }
    }
    return { freed, restored };
  }
}
