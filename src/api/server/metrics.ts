/**
 * Metrics of `podnet api` in Prometheus format (prom-client, on a private registry so
 * several servers in one process — tests — do not collide).
 */
import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';

export class ApiMetrics {
  readonly registry = new PromRegistry();
  readonly requests = new Counter({ name: 'apiserver_request_total', help: 'Requests by verb, resource and HTTP code.', labelNames: ['verb', 'resource', 'code'] as const, registers: [this.registry] });
  readonly latency = new Histogram({ name: 'apiserver_request_duration_seconds', help: 'Request latency (watches: until the stream ended).', labelNames: ['verb', 'resource'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60], registers: [this.registry] });
  readonly watchers = new Gauge({ name: 'podnet_api_watchers', help: 'Open watch streams.', labelNames: ['resource'] as const, registers: [this.registry] });
  readonly watchEvents = new Counter({ name: 'podnet_api_watch_events_total', help: 'Watch events sent to clients.', labelNames: ['resource'] as const, registers: [this.registry] });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  request(verb: string, resource: string, code: number, seconds: number): void {
    this.requests.inc({ verb, resource, code: String(code) });
    if (verb !== 'watch') this.latency.observe({ verb, resource }, seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
