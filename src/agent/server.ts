/**
 * The agent's HTTP endpoint on the node address (default port 10260, like the kubelet's
 * 10250): /healthz and /readyz without authentication (as the kubelet's healthz), and
 * everything else — /metrics now, the trace's per-node answers later — only for callers
 * whose bearer token the API vouches for (a TokenReview, cached for a minute, as the
 * kubelet's webhook authenticator does).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { KubeClient } from '../client/index.js';
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { AgentMetrics } from './metrics.js';

export interface Caller {
  username: string;
  groups: string[];
}

export type Authenticator = (token: string) => Promise<Caller | undefined>;

/** Who a token belongs to, asked of the API (TokenReview) and cached for `ttlMs`. */
export function tokenReviewAuthenticator(client: KubeClient, ttlMs = 60_000): Authenticator {
  const cache = new Map<string, { at: number; caller: Caller | undefined }>();
  return async (token) => {
    const hit = cache.get(token);
    if (hit && Date.now() - hit.at < ttlMs) return hit.caller;
    const r = await client.http.requestJson<{ status?: { authenticated?: boolean; user?: { username?: string; groups?: string[] } } }>({
      method: 'POST',
      path: '/apis/authentication.k8s.io/v1/tokenreviews',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
    });
    const caller = r.status?.authenticated && r.status.user?.username ? { username: r.status.user.username, groups: r.status.user.groups ?? [] } : undefined;
    if (cache.size > 1000) cache.clear();
    cache.set(token, { at: Date.now(), caller });
    return caller;
  };
}

export type Route = (req: IncomingMessage, res: ServerResponse, caller: Caller) => Promise<void>;

export interface AgentServerOptions {
  listen: { host: string; port: number };
  metrics: AgentMetrics;
  authenticate: Authenticator;
  healthy: () => boolean;
  ready: () => boolean;
  log: Logger;
  /** Extra authenticated routes by path (the trace adds its own). */
  routes?: Map<string, Route>;
}

export class AgentServer {
  private server: Server | undefined;

  constructor(private readonly o: AgentServerOptions) {}

  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.listen.port, this.o.listen.host, () => resolve());
    });
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const text = (code: number, body: string) => {
      res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(body);
    };
    try {
      if (path === '/healthz') return text(this.o.healthy() ? 200 : 503, this.o.healthy() ? 'ok' : 'unhealthy');
      if (path === '/readyz') return text(this.o.ready() ? 200 : 503, this.o.ready() ? 'ok' : 'not ready');
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      const caller = m ? await this.o.authenticate(m[1]!) : undefined;
      if (!caller) return text(401, 'Unauthorized: a bearer token the podnet api accepts is required');
      if (path === '/metrics') {
        const body = await this.o.metrics.render();
        res.writeHead(200, { 'Content-Type': this.o.metrics.contentType });
        res.end(body);
        return;
      }
      const route = this.o.routes?.get(path);
      if (route) return await route(req, res, caller);
      return text(404, `not found: ${path}`);
    } catch (e) {
      this.o.log.warn({ path, err: formatError(e) }, 'agent endpoint request failed');
      if (!res.headersSent) text(500, formatError(e));
      else res.destroy();
    }
  }
}
