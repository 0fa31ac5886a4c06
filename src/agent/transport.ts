/**
 * Cross-node reachability: the agent's side of the transport. Watches every Node, turns
 * the others into peers (subnets, underlay addresses, backend data) and has the backend
 * converge on them — at once when a Node changes, and on every resync (drift repair:
 * a route or FDB entry deleted by hand comes back). What the backend cannot do (a peer
 * not on-link for host-gw, no VTEP MAC yet...) is logged once per change, counted,
 * reported as this Node's `PodnetTransport` condition, and recorded as Events on this
 * Node (Warning <problem reason> for each problem; Normal TransportReady once they clear).
 */
import { isIP } from 'node:net';
import type { KubeClient } from '../client/index.js';
import { Informer, RESOURCES } from '../client/index.js';
import type { Node } from '../client/types.js';
import { Cidr } from '../util/ipnet.js';
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { BoundedFrequencyRunner } from '../util/runner.js';
import { BACKEND_DATA_ANNOTATION } from '../transport/backends.js';
import type { Backend, Peer, Problem } from '../transport/types.js';
import type { EventRecorder } from './events.js';
import type { AgentMetrics } from './metrics.js';
import { ANNOTATIONS } from './node.js';
import type { NodeRegistration } from './node.js';

export const TRANSPORT_CONDITION = 'PodnetTransport';
/** The reason of the Normal Event recorded when the transport's problems have cleared. */
export const TRANSPORT_READY_REASON = 'TransportReady';

/** A Node as a transport peer (undefined when it has no subnet yet). */
export function peerOf(node: Node): Peer {
  const ann = node.metadata.annotations ?? {};
  let data: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(ann[BACKEND_DATA_ANNOTATION] ?? '{}') as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) data = parsed as Record<string, unknown>;
  } catch {
    /* a peer with garbage backend data is a peer without backend data */
  }
  const internal = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
  const subnets: Cidr[] = [];
  for (const c of node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : []) {
    try {
      subnets.push(Cidr.parse(c));
    } catch {
      /* not a subnet: ignored */
    }
  }
  return {
    name: node.metadata.name ?? '',
    ip: internal.find((a) => isIP(a) === 4) ?? internal[0],
    ipv6: internal.find((a) => isIP(a) === 6),
    subnets,
    backend: ann[ANNOTATIONS.backendType],
    data,
  };
}

export class TransportController {
  readonly informer: Informer<Node>;
  private readonly runner: BoundedFrequencyRunner;
  private lastProblems: string | undefined;
  private synced = false;

  constructor(
    private readonly o: { client: KubeClient; backend: Backend; registration: NodeRegistration; nodeName: string; log: Logger; metrics: AgentMetrics; resyncMs: number; recorder?: EventRecorder },
  ) {
    this.informer = new Informer<Node>({
      source: o.client.resource(RESOURCES.nodes),
      onError: (err, info) => o.log.warn({ resource: 'nodes', phase: info.phase, retryInMs: info.delayMs, err: formatError(err) }, 'node informer error'),
    });
    this.runner = new BoundedFrequencyRunner({
      name: 'transport',
      fn: () => this.sync(),
      maxIntervalMs: o.resyncMs,
      onError: (e, retryInMs) => {
        o.metrics.transportSyncErrors.inc();
        o.log.warn({ backend: o.backend.name, retryInMs, err: formatError(e) }, 'transport sync failed; will retry');
      },
    });
    const poke = () => this.runner.run();
    this.informer.onAdd(poke);
    this.informer.onUpdate((a, b) => {
      if (a.metadata.resourceVersion !== b.metadata.resourceVersion && relevantChange(a, b)) poke();
    });
    this.informer.onDelete(poke);
  }

  /** True once the first sync after the initial list is done. */
  get ready(): boolean {
    return this.synced;
  }

  async run(signal: AbortSignal): Promise<void> {
    const informer = this.informer.run(signal);
    if (!(await this.informer.waitForSync(signal))) return;
    this.runner.start();
    await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await this.runner.stop();
    await informer;
  }

  /** Converges now (tests). */
  async syncNow(): Promise<void> {
    await this.sync();
  }

  private async sync(): Promise<void> {
    const t0 = performance.now();
    const peers = this.informer.list().map(peerOf);
    const report = await this.o.backend.sync(peers);
    this.synced = true;
    this.o.metrics.transportSyncSeconds.observe((performance.now() - t0) / 1000);
    this.o.metrics.transportPeers.set(peers.filter((p) => p.name !== this.o.nodeName && p.subnets.length).length);
    if (report.added || report.replaced || report.deleted) {
      this.o.log.info({ backend: this.o.backend.name, added: report.added, replaced: report.replaced, deleted: report.deleted, ms: Math.round(performance.now() - t0) }, 'transport converged');
    }
    await this.report(report.problems);
  }

  private async report(problems: Problem[]): Promise<void> {
    const text = problems.map((p) => p.message).join('; ');
    this.o.metrics.transportProblems.set(problems.length);
    if (text === this.lastProblems) return;
    const hadProblems = !!this.lastProblems;
    this.lastProblems = text;
    for (const p of problems) this.o.log.warn({ backend: this.o.backend.name, peer: p.peer, reason: p.reason }, p.message);
    const ok = problems.length === 0;
    const okMessage = `${this.o.backend.name}: every peer is programmed`;
    const recorder = this.o.recorder;
    if (recorder && (!ok || hadProblems)) {
      // The Node's real uid when the informer has it (kubelet uses the name; `kubectl describe node` finds both).
      const involvedObject = { kind: 'Node', apiVersion: 'v1', name: this.o.nodeName, uid: this.informer.getByName(undefined, this.o.nodeName)?.metadata.uid ?? this.o.nodeName };
      // Not awaited: an Event never holds up the condition (record() does not reject).
      if (ok) void recorder.record({ involvedObject, type: 'Normal', reason: TRANSPORT_READY_REASON, message: okMessage });
      for (const p of problems) void recorder.record({ involvedObject, type: 'Warning', reason: p.reason, message: p.message });
    }
    await this.o.registration
      .setCondition(TRANSPORT_CONDITION, ok, ok ? 'AllPeersReachable' : problems[0]!.reason, ok ? okMessage : text)
      .catch((e: unknown) => this.o.log.warn({ err: formatError(e) }, 'cannot report the transport condition'));
  }
}

/** Whether a Node update can change what the transport programs (not its heartbeats). */
function relevantChange(a: Node, b: Node): boolean {
  const key = (n: Node) => {
    const p = peerOf(n);
    return JSON.stringify([p.ip, p.ipv6, p.subnets.map(String), p.backend, p.data]);
  };
  return key(a) !== key(b);
}

