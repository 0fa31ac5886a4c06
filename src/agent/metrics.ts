/**
 * The agent's metrics in Prometheus format (prom-client, private registry): sandbox
 * operations and setup latency, sync errors, IPAM usage, and process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly sandboxOps = new Counter({ name: 'podnet_agent_sandbox_operations_total', help: 'Pod sandbox creations and removals by result.', labelNames: ['op', 'result'] as const, registers: [this.registry] });
  readonly sandboxSetup = new Histogram({ name: 'podnet_agent_sandbox_setup_seconds', help: 'Time to create a pod sandbox (addresses allocated, namespaces, veth, routes).', buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] });
  readonly syncErrors = new Counter({ name: 'podnet_agent_pod_sync_errors_total', help: 'Pod syncs that failed (retried with backoff).', registers: [this.registry] });
  readonly sandboxes = new Gauge({ name: 'podnet_agent_sandboxes', help: 'Sandboxes on this node, by kind (pod: made for API pods; cni: made for a container runtime).', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly ipamAllocated = new Gauge({ name: 'podnet_agent_ipam_allocated', help: 'Pod addresses allocated on this node, by family.', labelNames: ['family'] as const, registers: [this.registry] });
  readonly ipamCapacity = new Gauge({ name: 'podnet_agent_ipam_capacity', help: 'Pod addresses this node can hand out, by family.', labelNames: ['family'] as const, registers: [this.registry] });
  readonly cniRequests = new Counter({ name: 'podnet_agent_cni_requests_total', help: 'CNI requests served, by command and result.', labelNames: ['command', 'result'] as const, registers: [this.registry] });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
