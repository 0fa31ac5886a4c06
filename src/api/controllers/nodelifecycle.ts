/**
 * Node lifecycle: agents renew a Lease in kube-node-lease every 10 s. A node whose Lease
 * is older than the grace period (default 40 s, checked every 5 s, as in Kubernetes) gets
 * Ready=Unknown, and its pods Ready=False — which takes their endpoints out of service.
 * When the Lease is renewed again, both come back.
 */
import type { Condition, Lease, Node, Pod } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import type { Registry } from '../registry/registry.js';
import { now } from '../registry/objects.js';
import { ApiStatusError } from '../server/status.js';
import { LocalInformer } from './informer.js';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';
/** Reasons this controller writes, so that it only undoes its own changes. */
export const REASON_NODE_UNKNOWN = 'NodeStatusUnknown';
export const REASON_POD_NODE_LOST = 'NodeLost';

export interface NodeLifecycleOptions {
  gracePeriodMs?: number;
  periodMs?: number;
  clock?: () => number;
}

export class NodeLifecycleController {
  private readonly nodes: LocalInformer<Node>;
  private readonly leases: LocalInformer<Lease>;
  private readonly pods: LocalInformer<Pod>;
  private timer: NodeJS.Timeout | undefined;
  private readonly grace: number;
  private readonly period: number;
  private readonly clock: () => number;
  private running: Promise<void> | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    opts: NodeLifecycleOptions = {},
  ) {
    this.grace = opts.gracePeriodMs ?? 40_000;
    this.period = opts.periodMs ?? 5_000;
    this.clock = opts.clock ?? Date.now;
    this.nodes = new LocalInformer(registry, 'nodes', log);
    this.leases = new LocalInformer(registry, 'leases', log);
    this.pods = new LocalInformer(registry, 'pods', log);
  }

  async start(): Promise<void> {
    await Promise.all([this.nodes.start(), this.leases.start(), this.pods.start()]);
    const loop = () => {
      this.running = this.check().catch((e: unknown) => this.log.warn({ err: String(e) }, 'node lifecycle check failed'));
      void this.running.finally(() => {
        this.timer = setTimeout(loop, this.period);
        this.timer.unref();
      });
    };
    this.timer = setTimeout(loop, this.period);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.nodes.stop();
    this.leases.stop();
    this.pods.stop();
  }

  /**
   * One pass over every node (exposed for tests). Level-triggered: the pods of a node this
   * controller marked lost are checked on every pass, so a pod that turns up ready on a lost
   * node is marked too, and the pods come back once the node is Ready again — also when
   * something else (the agent) made the node Ready before this controller saw the Lease.
   */
  async check(): Promise<void> {
    const t = this.clock();
    const podsByNode = new Map<string, Pod[]>();
    for (const p of this.pods.list()) {
      const n = p.spec?.nodeName;
      if (!n) continue;
      const l = podsByNode.get(n);
      if (l) l.push(p);
      else podsByNode.set(n, [p]);
    }
    for (const node of this.nodes.list()) {
      const name = node.metadata.name!;
      const pods = podsByNode.get(name) ?? [];
      const lease = this.leases.get(`${NODE_LEASE_NAMESPACE}/${name}`);
      const renewed = lease?.spec?.renewTime ? Date.parse(lease.spec.renewTime) : Date.parse(node.metadata.creationTimestamp ?? '');
      const stale = Number.isNaN(renewed) || t - renewed > this.grace;
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      const ours = ready?.status === 'Unknown' && ready.reason === REASON_NODE_UNKNOWN;
      if (stale) {
        if (ready?.status !== 'Unknown') {
          this.log.info({ node: name, lastRenew: lease?.spec?.renewTime ?? null }, 'node lease expired: Ready=Unknown, pods not ready');
          await this.setNodeReady(node, { type: 'Ready', status: 'Unknown', reason: REASON_NODE_UNKNOWN, message: 'Kubelet stopped posting node status.' });
        } else if (!ours) continue; // someone else's Unknown: not ours to act on
        await this.setPodsReady(name, pods, false);
      } else {
        if (ours) {
          this.log.info({ node: name }, 'node lease renewed: Ready=True, pods ready again');
          await this.setNodeReady(node, { type: 'Ready', status: 'True', reason: 'NodeLeaseRenewed', message: 'node lease renewed' });
        }
        if (ours || ready?.status === 'True') await this.setPodsReady(name, pods, true);
      }
    }
  }

  private async setNodeReady(node: Node, cond: Omit<Condition, 'lastTransitionTime' | 'lastHeartbeatTime'>): Promise<void> {
    const ts = now(this.clock);
    const conditions = (node.status?.conditions ?? []).filter((c) => c.type !== 'Ready');
    conditions.push({ ...cond, lastTransitionTime: ts, lastHeartbeatTime: ts });
    await this.ignoreGone(this.registry.patch('nodes', undefined, node.metadata.name!, { status: { conditions } }, 'application/merge-patch+json', { subresource: 'status' }));
  }

  /** Marks the pods of a node not ready (lost) or restores the ones this controller marked. */
  private async setPodsReady(nodeName: string, pods: Pod[], ready: boolean): Promise<void> {
    for (const pod of pods) {
      const cur = pod.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready && !(cur?.status === 'False' && cur.reason === REASON_POD_NODE_LOST)) continue;
      if (!ready && cur?.status === 'False') continue;
      const conditions = (pod.status?.conditions ?? []).filter((c) => c.type !== 'Ready');
      conditions.push(ready ? { type: 'Ready', status: 'True', lastTransitionTime: now(this.clock) } : { type: 'Ready', status: 'False', reason: REASON_POD_NODE_LOST, message: `node ${nodeName} stopped renewing its lease`, lastTransitionTime: now(this.clock) });
      await this.ignoreGone(this.registry.patch('pods', pod.metadata.namespace, pod.metadata.name!, { status: { conditions } }, 'application/merge-patch+json', { subresource: 'status' }));
    }
  }

  private async ignoreGone(p: Promise<unknown>): Promise<void> {
    try {
      await p;
    } catch (e) {
      if (!(e instanceof ApiStatusError && e.reason === 'NotFound')) throw e;
    }
  }
}
