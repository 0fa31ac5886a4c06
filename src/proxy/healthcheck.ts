/**
 * The healthCheckNodePort responders of `type: LoadBalancer, externalTrafficPolicy: Local`
 * Services, as kube-proxy's: one HTTP server per port, on every address of the node
 * (kube-proxy binds `:port`), answering any GET with
 *
 *   200 {"service":{"namespace":"default","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}
 *   503 (same body, localEndpoints 0) when this node has no ready local endpoint,
 *
 * so a cloud load balancer sends traffic only to nodes that can serve it without an
 * extra hop. `update()` opens and closes servers as Services come and go.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export interface HealthCheckService {
  namespace: string;
  name: string;
  /** Ready local endpoints (of any port of the Service). */
  localEndpoints: number;
}

interface Responder {
  server: Server;
  service: HealthCheckService;
}

export class ServiceHealthServer {
  private readonly servers = new Map<number, Responder>();

  /** `host`: the address to listen on ('::' = every address of both families, the default). */
  constructor(private readonly o: { log: Logger; host?: string }) {}

  /** The ports served now (tests, metrics). */
  get ports(): number[] {
    return [...this.servers.keys()].sort((a, b) => a - b);
  }

  /** Makes the set of responders exactly `byPort` (healthCheckNodePort -> Service). */
  async update(byPort: ReadonlyMap<number, HealthCheckService>): Promise<void> {
    for (const [port, r] of this.servers) {
      if (byPort.has(port)) continue;
      this.servers.delete(port);
      await new Promise<void>((res) => r.server.close(() => res()));
      this.o.log.info({ port, service: `${r.service.namespace}/${r.service.name}` }, 'health check node port closed');
    }
    for (const [port, service] of byPort) {
      const have = this.servers.get(port);
      if (have) {
        have.service = service;
        continue;
      }
      const r: Responder = { server: createServer(), service };
      r.server.on('request', (req, res) => {
        const s = r.service;
        const body = JSON.stringify({ service: { namespace: s.namespace, name: s.name }, localEndpoints: s.localEndpoints, serviceProxyHealthy: true });
        res.writeHead(s.localEndpoints > 0 ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff', 'x-load-balancing-endpoint-weight': String(s.localEndpoints) });
        res.end(req.method === 'HEAD' ? undefined : body);
      });
      try {
        await new Promise<void>((res, rej) => {
          r.server.once('error', rej);
          r.server.listen({ port, host: this.o.host ?? '::' }, () => {
            r.server.off('error', rej);
            res();
          });
        });
      } catch (e) {
        // Another process holds the port: logged, retried at the next sync (kube-proxy does the same).
        this.o.log.warn({ port, service: `${service.namespace}/${service.name}`, err: formatError(e) }, 'cannot open the health check node port');
        continue;
      }
      r.server.on('error', (e) => this.o.log.warn({ port, err: formatError(e) }, 'health check server error'));
      this.servers.set(port, r);
      this.o.log.info({ port, service: `${service.namespace}/${service.name}` }, 'health check node port open');
    }
  }

  async close(): Promise<void> {
    await this.update(new Map());
  }
}
