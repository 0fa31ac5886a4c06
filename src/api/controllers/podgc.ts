/**
 * Terminating pods: a pod bound to a node is deleted gracefully (deletionTimestamp set);
 * its node's agent removes it once the sandbox is gone. If the grace period runs out
 * first (agent down, node lost), this collector removes it, so deletes always finish.
 */
import type { Pod } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import type { Registry } from '../registry/registry.js';
import { ApiStatusError } from '../server/status.js';
import { LocalInformer } from './informer.js';

export class TerminatingPodCollector {
  private readonly pods: LocalInformer<Pod>;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly opts: { periodMs?: number; clock?: () => number } = {},
  ) {
    this.pods = new LocalInformer(registry, 'pods', log);
  }

  async start(): Promise<void> {
    await this.pods.start();
    const loop = () => {
      void this.collect()
        .catch((e: unknown) => this.log.warn({ err: String(e) }, 'terminating pod collection failed'))
        .finally(() => {
          this.timer = setTimeout(loop, this.opts.periodMs ?? 2_000);
          this.timer.unref();
        });
    };
    this.timer = setTimeout(loop, this.opts.periodMs ?? 2_000);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.pods.stop();
  }

  async collect(): Promise<void> {
    const t = (this.opts.clock ?? Date.now)();
    for (const p of this.pods.list()) {
      const d = p.metadata.deletionTimestamp;
      if (!d || Date.parse(d) > t) continue;
      try {
        await this.registry.delete('pods', p.metadata.namespace, p.metadata.name!, { gracePeriodSeconds: 0, preconditions: { uid: p.metadata.uid! } });
        this.log.info({ pod: `${p.metadata.namespace}/${p.metadata.name}`, node: p.spec?.nodeName }, 'grace period over: pod removed');
      } catch (e) {
        if (!(e instanceof ApiStatusError && (e.reason === 'NotFound' || e.reason === 'Conflict'))) throw e;
      }
    }
  }
}
