import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, ClientError, ClientErrorCodes, isNotFound, isUnauthorized } from './errors.js';
import { HttpClient } from './http.js';
import { FakeApiServer } from './testing/fake-apiserver.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`./testdata/${name}`, import.meta.url));
const TLS = { key: fixture('server-key.pem'), cert: fixture('server.pem') };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
async function server(opts: Parameters<typeof FakeApiServer.start>[0] = {}): Promise<FakeApiServer> {
  const s = await FakeApiServer.start(opts);
  cleanups.push(() => s.close());
  return s;
}
function client(...args: ConstructorParameters<typeof HttpClient>): HttpClient {
  const c = new HttpClient(...args);
  cleanups.push(() => c.close());
  return c;
}
async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  );
}

describe('HttpClient over a unix socket', () => {
  it('sends JSON with accept, user-agent and bearer token, and decodes the answer', async () => {
    const s = await server({ token: 's3cret' });
    const c = client(s.config({ token: 's3cret' }));
    const ns = await c.requestJson<{ metadata: { name: string } }>({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: 'demo' } } });
    expect(ns.metadata.name).toBe('demo');
    const req = s.requests[0];
    expect(req?.headers['authorization']).toBe('Bearer s3cret');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.headers['accept']).toBe('application/json');
    expect(req?.headers['user-agent']).toMatch(/^podnet\//);
    expect(JSON.parse(req?.body ?? '')).toEqual({ metadata: { name: 'demo' } });
  });

  it('turns a Status answer into an ApiError with code, reason and details', async () => {
    const s = await server();
    const c = client(s.config());
    const e = await failure(c.requestJson({ method: 'GET', path: '/api/v1/namespaces/default/pods/nope' }));
    expect(e).toBeInstanceOf(ApiError);
    expect(isNotFound(e)).toBe(true);
    const api = e as ApiError;
    expect(api.code).toBe(404);
    expect(api.message).toBe('pods "nope" not found');
    expect(api.details).toMatchObject({ name: 'nope', kind: 'pods' });
    expect(api.path).toBe('/api/v1/namespaces/default/pods/nope');
  });

  it('answers 401 without the right token', async () => {
    const s = await server({ token: 'right' });
    expect(isUnauthorized(await failure(client(s.config({ token: 'wrong' })).requestJson({ method: 'GET', path: '/api/v1/nodes' })))).toBe(true);
  });

  it('sends basic auth when the config has a username', async () => {
    const s = await server();
    await client(s.config({ username: 'admin', password: 'pw' })).requestJson({ method: 'GET', path: '/api/v1/nodes' });
    expect(s.requests[0]?.headers['authorization']).toBe(`Basic ${Buffer.from('admin:pw').toString('base64')}`);
  });

  it('re-reads a token file once the refresh interval has passed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'podnet-token-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'one\n');
    const s = await server();
    let now = 0;
    const c = client(s.config({ token: 'one', tokenFile }), { tokenRefreshMs: 1000, now: () => now });
    await writeFile(tokenFile, 'two\n');
    await c.requestJson({ method: 'GET', path: '/api/v1/nodes' });
    now = 1000;
    await c.requestJson({ method: 'GET', path: '/api/v1/nodes' });
    expect(s.requests.map((r) => r.headers['authorization'])).toEqual(['Bearer one', 'Bearer two']);
  });

  it('keeps the server URL path prefix and encodes the query', async () => {
    const s = await server();
    s.intercept((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return true;
    });
    const c = client({ server: 'http://localhost/k8s/clusters/c-1/', socketPath: s.socketPath });
    await c.requestJson({ method: 'GET', path: '/api/v1/pods', query: { labelSelector: 'app=web,tier!=db', limit: 5, watch: undefined } });
    expect(s.requests[0]?.path).toBe('/k8s/clusters/c-1/api/v1/pods');
    expect(s.requests[0]?.query.get('labelSelector')).toBe('app=web,tier!=db');
    expect([...(s.requests[0]?.query.keys() ?? [])]).toEqual(['labelSelector', 'limit']);
  });

  it('reports a 2xx body that is not JSON as DECODE', async () => {
    const s = await server();
    s.intercept((_req, res) => {
      res.writeHead(200).end('<html>');
      return true;
    });
    const e = await failure(client(s.config()).requestJson({ method: 'GET', path: '/api/v1/pods' }));
    expect((e as ClientError).code).toBe(ClientErrorCodes.DECODE);
  });

  it('times out when the headers do not come', async () => {
    const s = await server();
    s.intercept(() => true); // never answers
    const e = await failure(client(s.config(), { timeoutMs: 100 }).requestJson({ method: 'GET', path: '/api/v1/pods' }));
    expect(e).toBeInstanceOf(ClientError);
    expect((e as ClientError).code).toBe(ClientErrorCodes.TIMEOUT);
    expect((e as ClientError).message).toBe('GET /api/v1/pods to http://localhost (via ' + s.socketPath + ') timed out');
  });

  it('reports a missing socket as TRANSPORT, and refuses requests once closed', async () => {
    const c = client({ server: 'http://localhost', socketPath: '/nonexistent/api.sock' });
    const e = await failure(c.requestJson({ method: 'GET', path: '/api' }));
    expect((e as ClientError).code).toBe(ClientErrorCodes.TRANSPORT);
    expect((e as ClientError).context['cause']).toBe('ENOENT');
    await c.close();
    const closed = await failure(c.requestJson({ method: 'GET', path: '/api' }));
    expect((closed as ClientError).message).toBe('the client is closed');
  });

  it('passes aborts through unchanged', async () => {
    const s = await server();
    s.intercept(() => true);
    const ac = new AbortController();
    const p = failure(client(s.config()).requestJson({ method: 'GET', path: '/api/v1/pods', signal: ac.signal }));
    await s.waitFor(() => s.requests.length === 1);
    ac.abort();
    expect((await p as Error).name).toBe('AbortError');
  });
});

describe('HttpClient with TLS (over a unix socket)', () => {
  it('verifies the server with the CA and presents the client certificate', async () => {
    const s = await server({ tls: { ...TLS, ca: fixture('ca.pem') } });
    const c = client(s.config({ ca: fixture('ca.pem'), cert: fixture('client.pem'), key: fixture('client-key.pem') }));
    await c.requestJson({ method: 'GET', path: '/api/v1/nodes' });
    expect(s.requests[0]?.peerCN).toBe('podnet-test-client');
  });

  it('uses tls-server-name for verification', async () => {
    const s = await server({ tls: TLS });
    await client({ server: 'https://10.96.0.1', socketPath: s.socketPath, ca: fixture('ca.pem'), tlsServerName: 'podnet-api.test' }).requestJson({ method: 'GET', path: '/api/v1/nodes' });
    expect(s.requests).toHaveLength(1);
  });

  it('fails with a certificate from another CA, unless insecure', async () => {
    const s = await server({ tls: TLS });
    const e = await failure(client(s.config({ ca: fixture('other-ca.pem') })).requestJson({ method: 'GET', path: '/api/v1/nodes' }));
    expect((e as ClientError).code).toBe(ClientErrorCodes.TRANSPORT);
    expect((e as ClientError).message).toMatch(/certificate/);
    await client(s.config({ insecureSkipTLSVerify: true })).requestJson({ method: 'GET', path: '/api/v1/nodes' });
    expect(s.requests).toHaveLength(1);
  });

  it('is refused by a server that requires a client certificate when none is given', async () => {
    const s = await server({ tls: { ...TLS, ca: fixture('ca.pem') } });
    const e = await failure(client(s.config({ ca: fixture('ca.pem') })).requestJson({ method: 'GET', path: '/api/v1/nodes' }));
    expect(e).toBeInstanceOf(ClientError);
    expect(s.requests).toHaveLength(0);
  });
});
