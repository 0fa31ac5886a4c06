/**
 * The proxy's metrics, named like kube-proxy's (sync_proxy_rules_duration_seconds,
 * network_programming_duration_seconds, sync_proxy_rules_last_timestamp_seconds...), in the
 * agent's registry.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export class ProxyMetrics {
  readonly syncDuration: Histogram<'mode' | 'kind'>;
  readonly syncFailures: Counter<'mode'>;
  readonly programmingDuration: Histogram<'mode'>;
  readonly pendingServiceChanges: Gauge;
  readonly pendingEndpointSliceChanges: Gauge;
  readonly lastSync: Gauge<'mode'>;
  readonly servicePorts: Gauge<'family'>;
  readonly endpoints: Gauge<'family'>;
  readonly conntrackDeleted: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.syncDuration = new Histogram({ name: 'podnet_proxy_sync_duration_seconds', help: 'Time to plan and apply one proxy sync, by mode and kind (full or partial).', labelNames: ['mode', 'kind'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers });
    this.syncFailures = new Counter({ name: 'podnet_proxy_sync_failures_total', help: 'Proxy syncs that failed (the next one is full).', labelNames: ['mode'] as const, registers });
    this.programmingDuration = new Histogram({
      name: 'podnet_network_programming_duration_seconds',
      help: 'From an EndpointSlice change in the API (its endpoints.kubernetes.io/last-change-trigger-time) to the rules live in this node\'s kernel.',
      labelNames: ['mode'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    });
    this.pendingServiceChanges = new Gauge({ name: 'podnet_proxy_pending_service_changes', help: 'Services changed since the last proxy sync.', registers });
    this.pendingEndpointSliceChanges = new Gauge({ name: 'podnet_proxy_pending_endpointslice_changes', help: 'EndpointSlices changed since the last proxy sync.', registers });
    this.lastSync = new Gauge({ name: 'podnet_proxy_last_sync_timestamp_seconds', help: 'When the last successful proxy sync finished (unix seconds).', labelNames: ['mode'] as const, registers });
    this.servicePorts = new Gauge({ name: 'podnet_proxy_service_ports', help: 'Service ports programmed, by family.', labelNames: ['family'] as const, registers });
    this.endpoints = new Gauge({ name: 'podnet_proxy_endpoints', help: 'Endpoints of programmed service ports, by family.', labelNames: ['family'] as const, registers });
    this.conntrackDeleted = new Counter({ name: 'podnet_proxy_conntrack_entries_deleted_total', help: 'Stale UDP/SCTP conntrack entries deleted after endpoint changes.', registers });
  }
}
