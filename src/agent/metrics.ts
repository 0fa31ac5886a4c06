/**
 * The agent's metrics in Prometheus format (prom-client, private registry): sandbox
 * operations and setup latency, sync errors, IPAM usage, and process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { UdpTunnelStats } from '../kernel/udptunnel.js';

/** What the udp backend's packet loop reports at scrape time. */
export interface UdpTunnelSource {
  stats(): UdpTunnelStats | undefined;
  peerCount(): number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly sandboxOps = new Counter({ name: 'podnet_agent_sandbox_operations_total', help: 'Pod sandbox creations and removals by result.', labelNames: ['op', 'result'] as const, registers: [this.registry] });
  readonly sandboxSetup = new Histogram({ name: 'podnet_agent_sandbox_setup_seconds', help: 'Time to create a pod sandbox (addresses allocated, namespaces, veth, routes).', buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] });
  readonly syncErrors = new Counter({ name: 'podnet_agent_pod_sync_errors_total', help: 'Pod syncs that failed (retried with backoff).', registers: [this.registry] });
  readonly sandboxes = new Gauge({ name: 'podnet_agent_sandboxes', help: 'Sandboxes on this node, by kind (pod: made for API pods; cni: made for a container runtime).', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly ipamAllocated = new Gauge({ name: 'podnet_agent_ipam_allocated', help: 'Pod addresses allocated on this node, by family.', labelNames: ['family'] as const, registers: [this.registry] });
  readonly ipamCapacity = new Gauge({ name: 'podnet_agent_ipam_capacity', help: 'Pod addresses this node can hand out, by family.', labelNames: ['family'] as const, registers: [this.registry] });
  readonly transportSyncSeconds = new Histogram({ name: 'podnet_agent_transport_sync_seconds', help: 'Time to converge routes, neighbours and FDB entries toward the other nodes.', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] });
  readonly transportSyncErrors = new Counter({ name: 'podnet_agent_transport_sync_errors_total', help: 'Transport syncs that failed (retried with backoff).', registers: [this.registry] });
  readonly transportPeers = new Gauge({ name: 'podnet_agent_transport_peers', help: 'Other nodes with pod subnets.', registers: [this.registry] });
  readonly transportProblems = new Gauge({ name: 'podnet_agent_transport_problems', help: 'Peers the transport cannot reach as configured (see the PodnetTransport node condition).', registers: [this.registry] });
  readonly cniRequests = new Counter({ name: 'podnet_agent_cni_requests_total', help: 'CNI requests served, by command and result.', labelNames: ['command', 'result'] as const, registers: [this.registry] });

  /** Set by the udp backend: its loop's counters are read when /metrics is scraped. */
  udpTunnel: UdpTunnelSource | undefined;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const m = this;
    const counter = (name: string, help: string, label: string, read: (s: UdpTunnelStats) => Record<string, number>) =>
      new Counter({
        name,
        help,
        labelNames: [label],
        registers: [this.registry],
        collect() {
          const s = m.udpTunnel?.stats();
          this.reset();
          if (s) for (const [k, v] of Object.entries(read(s))) this.inc({ [label]: k }, v);
        },
      });
    counter('podnet_agent_udp_tunnel_packets_total', 'Packets the udp backend carried, by direction (tx: TUN to peers, rx: peers to TUN).', 'direction', (s) => ({ tx: s.tx.packets, rx: s.rx.packets }));
    counter('podnet_agent_udp_tunnel_bytes_total', 'Bytes of inner packets the udp backend carried, by direction.', 'direction', (s) => ({ tx: s.tx.bytes, rx: s.rx.bytes }));
    counter('podnet_agent_udp_tunnel_drops_total', 'Packets the udp backend dropped, by reason (txNoRoute: no peer owns the destination; rxUnknownPeer: datagram from a non-peer; rxSpoofed: inner source outside the sender\'s subnets; ...).', 'reason', (s) => ({ ...s.drops }));
    new Gauge({
      name: 'podnet_agent_udp_tunnel_peer_subnets',
      help: 'Entries (pod subnet -> peer node) in the udp backend\'s table.',
      registers: [this.registry],
      collect() {
        this.set(m.udpTunnel?.peerCount() ?? 0);
      },
    });
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
