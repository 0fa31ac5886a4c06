/**
 * The node's presence in the API, as a kubelet keeps it: the Node object (created when
 * missing; InternalIP and hostname addresses, podnet's annotations, the agent's port,
 * a Ready condition) and a Lease in kube-node-lease renewed every 10 s, which the API's
 * node-lifecycle controller watches (a node that stops renewing goes Ready=Unknown and
 * its endpoints out of service).
 */
import { arch, release } from 'node:os';
import type { KubeClient } from '../client/index.js';
import { RESOURCES, isAlreadyExists, isNotFound } from '../client/index.js';
import type { Condition, Lease, Node } from '../client/types.js';
import type { Logger } from '../util/log.js';
import { version } from '../util/version.js';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';
export const ANNOTATION_PREFIX = 'podnet.io/';
export const ANNOTATIONS = {
  backendType: `${ANNOTATION_PREFIX}backend-type`,
  /** JSON the transport publishes for its peers (e.g. the VTEP MAC). */
  backendData: `${ANNOTATION_PREFIX}backend-data`,
  publicIP: `${ANNOTATION_PREFIX}public-ip`,
  publicIPv6: `${ANNOTATION_PREFIX}public-ipv6`,
} as const;
export const LEASE_SECONDS = 40;
export const RENEW_MS = 10_000;
/** Ready heartbeats in the Node status (the Lease carries liveness in between). */
const STATUS_EVERY_MS = 60_000;

export interface NodeIdentity {
  nodeName: string;
  nodeIP: string;
  nodeIPv6: string | undefined;
  backend: string;
  agentPort: number;
}

const microTime = (t = Date.now()) => new Date(t).toISOString().replace(/Z$/, '000Z');
const time = (t = Date.now()) => new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');

export class NodeRegistration {
  private readonly nodes;
  private readonly leases;
  private readyText: { ready: boolean; reason: string; message: string } = { ready: false, reason: 'PodnetAgentStarting', message: 'podnet agent is starting' };
  private lastStatus = 0;
  private transitionAt = time();
  /** Conditions other parts of the agent report (the transport's), by type. */
  private readonly extra = new Map<string, Condition>();

  constructor(
    client: KubeClient,
    private readonly id: NodeIdentity,
    private readonly log: Logger,
  ) {
    this.nodes = client.resource(RESOURCES.nodes);
    this.leases = client.resource(RESOURCES.leases);
  }

  /** Creates the Node if missing and brings its addresses and annotations up to date. */
  async register(): Promise<Node> {
    const id = this.id;
    const annotations: Record<string, string> = { [ANNOTATIONS.backendType]: id.backend, [ANNOTATIONS.publicIP]: id.nodeIP, ...(id.nodeIPv6 ? { [ANNOTATIONS.publicIPv6]: id.nodeIPv6 } : {}) };
    const labels = { 'kubernetes.io/hostname': id.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch() === 'x64' ? 'amd64' : arch() };
    let node: Node;
    try {
      node = await this.nodes.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: id.nodeName, labels, annotations } });
      this.log.info({ node: id.nodeName }, 'registered the node');
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
      node = await this.nodes.patch(undefined, id.nodeName, { metadata: { labels, annotations } }, 'merge');
    }
    await this.reportStatus();
    return node;
  }

  /** Publishes transport data for the other nodes (merged into the Node's annotations). */
  async annotate(extra: Record<string, string | null>): Promise<void> {
    await this.nodes.patch(undefined, this.id.nodeName, { metadata: { annotations: extra } }, 'merge');
  }

  /** Sets what the Ready condition says; written at once when it changed. */
  async setReady(ready: boolean, reason: string, message: string): Promise<void> {
    const changed = ready !== this.readyText.ready || reason !== this.readyText.reason;
    if (ready !== this.readyText.ready) this.transitionAt = time();
    this.readyText = { ready, reason, message };
    if (changed) await this.reportStatus();
  }

  /**
   * Sets a condition of this node besides Ready (e.g. the transport's), written at once
   * when it changed and with every status heartbeat.
   */
  async setCondition(type: string, ok: boolean, reason: string, message: string): Promise<void> {
    const prev = this.extra.get(type);
    const status = ok ? ('True' as const) : ('False' as const);
    if (prev && prev.status === status && prev.reason === reason && prev.message === message) return;
    this.extra.set(type, { type, status, reason, message, lastTransitionTime: prev?.status === status ? prev.lastTransitionTime! : time() });
    await this.reportStatus();
  }

  /** Renews the Lease, and the status heartbeat when due. */
  async heartbeat(): Promise<void> {
    await this.renewLease();
    if (Date.now() - this.lastStatus >= STATUS_EVERY_MS) await this.reportStatus();
  }

  /** Heartbeats every 10 s until `signal` aborts; failures are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.heartbeat();
      } catch (e) {
        this.log.warn({ node: this.id.nodeName, err: (e as Error).message }, 'node heartbeat failed; retrying');
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, RENEW_MS);
        signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
      });
    }
  }

  private async renewLease(): Promise<void> {
    const name = this.id.nodeName;
    const spec = { holderIdentity: name, leaseDurationSeconds: LEASE_SECONDS, renewTime: microTime() };
    try {
      await this.leases.patch(NODE_LEASE_NAMESPACE, name, { spec }, 'merge');
    } catch (e) {
      if (!isNotFound(e)) throw e;
      const lease: Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: NODE_LEASE_NAMESPACE }, spec: { ...spec, acquireTime: microTime() } };
      try {
        await this.leases.create(lease);
      } catch (e2) {
        if (!isAlreadyExists(e2)) throw e2;
      }
    }
  }

  private async reportStatus(): Promise<void> {
    const id = this.id;
    const now = time();
    const r = this.readyText;
    const ready: Condition = { type: 'Ready', status: r.ready ? 'True' : 'False', reason: r.reason, message: r.message, lastHeartbeatTime: now, lastTransitionTime: this.transitionAt };
    const addresses = [{ type: 'InternalIP' as const, address: id.nodeIP }, ...(id.nodeIPv6 ? [{ type: 'InternalIP' as const, address: id.nodeIPv6 }] : []), { type: 'Hostname' as const, address: id.nodeName }];
    const status = {
      addresses,
      conditions: [ready, ...[...this.extra.values()].map((c) => ({ ...c, lastHeartbeatTime: now }))],
      daemonEndpoints: { kubeletEndpoint: { Port: id.agentPort } },
      nodeInfo: { kernelVersion: release(), osImage: 'Linux', architecture: arch(), operatingSystem: 'linux', kubeletVersion: `podnet-${version}`, kubeProxyVersion: `podnet-${version}`, containerRuntimeVersion: 'podnet://pause' },
    };
    await this.nodes.patch(undefined, id.nodeName, { status }, 'merge', { subresource: 'status' });
    this.lastStatus = Date.now();
  }
}
