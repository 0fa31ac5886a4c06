/**
 * A small in-memory Kubernetes API server for tests, on a unix socket (no TCP): the
 * paths of resources.ts, Status errors, lists with limit/continue, and watches the test
 * steers — replay from a resourceVersion, live events, bookmarks, streams closed
 * mid-way, 410 as an ERROR event or as an HTTP answer, compaction. Every request is
 * recorded, so a test can check what the client sent (the resourceVersion a watch
 * resumed from, the token, the patch content type).
 *
 * Test-only; not exported from the client's index. Semantics follow kube-apiserver where
 * a test depends on them and are simplified elsewhere (no field selectors, strategic
 * merge treated as a JSON merge patch).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { ClientConfig } from '../kubeconfig.js';
import { RESOURCES, apiVersionOf } from '../resources.js';
import type { ResourceInfo } from '../resources.js';
import type { KubeObject, Status } from '../types.js';

export interface RecordedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
  /** CN of the client certificate (TLS with a client cert). */
  peerCN: string | undefined;
}

/** An injected failure: answers `code` (with a Status) to the next `times` matching requests. */
export interface FailRule {
  method?: string;
  match?: (req: RecordedRequest) => boolean;
  code: number;
  reason?: string;
  message?: string;
  /** Default 1. */
  times?: number;
}

/** A raw handler: return true when it answered the request itself. */
export type Intercept = (req: RecordedRequest, res: ServerResponse) => boolean;

export interface FakeApiServerOptions {
  /** Serve HTTPS with this key and certificate; with `ca`, ask for a client certificate. */
  tls?: { key: Buffer; cert: Buffer; ca?: Buffer };
  /** Require `Authorization: Bearer <token>` (401 Status otherwise). */
  token?: string;
  /** A watch from a compacted version: an ERROR event (kube-apiserver) or an HTTP 410. Default 'event'. */
  goneAs?: 'event' | 'http';
  /** First resourceVersion handed out. Default 100. */
  firstResourceVersion?: number;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface Watcher {
  info: ResourceInfo;
  namespace: string | undefined;
  selector: LabelRequirement[];
  bookmarks: boolean;
  res: ServerResponse;
}

interface HistoryEvent {
  rv: number;
  type: EventType;
  info: ResourceInfo;
  obj: KubeObject;
}

interface LabelRequirement {
  key: string;
  op: '=' | '!=';
  value: string;
}

interface Route {
  info: ResourceInfo;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

export class FakeApiServer {
  readonly socketPath: string;
  readonly requests: RecordedRequest[] = [];
  readonly #dir: string;
  readonly #server: Server;
  readonly #opts: FakeApiServerOptions;
  readonly #objects = new Map<string, { info: ResourceInfo; obj: KubeObject }>();
  readonly #history: HistoryEvent[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly #sockets = new Set<Socket>();
  readonly #failures: (FailRule & { left: number })[] = [];
  readonly #listeners = new Set<() => void>();
  #intercept: Intercept | undefined;
  #rv: number;
  #compacted = 0;

  private constructor(dir: string, opts: FakeApiServerOptions) {
    this.#dir = dir;
    this.socketPath = join(dir, 'api.sock');
    this.#opts = opts;
    this.#rv = (opts.firstResourceVersion ?? 100) - 1;
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.#handle(req, res);
    this.#server = opts.tls
      ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert, ...(opts.tls.ca ? { ca: opts.tls.ca, requestCert: true, rejectUnauthorized: true } : {}) }, handler)
      : createHttpServer(handler);
    this.#server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  /** Starts a server on a fresh socket in a temp dir. */
  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const dir = await mkdtemp(join(tmpdir(), 'podnet-fakeapi-'));
    const s = new FakeApiServer(dir, opts);
    await new Promise<void>((resolve, reject) => {
      s.#server.once('error', reject);
      s.#server.listen(s.socketPath, () => resolve());
    });
    return s;
  }

  /** A ClientConfig reaching this server. */
  config(extra: Partial<ClientConfig> = {}): ClientConfig {
    return { server: this.#opts.tls ? 'https://localhost' : 'http://localhost', socketPath: this.socketPath, ...extra };
  }

  /** The newest resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** Watches currently open. */
  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Connections currently open. */
  get openConnections(): number {
    return this.#sockets.size;
  }

  /** Watch requests received so far. */
  watchRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.query.get('watch') === 'true');
  }

  // ------------------------------------------------------------ state the test controls

  /** Creates or replaces an object (new resourceVersion), telling watchers ADDED or MODIFIED. Returns the stored copy. */
  put<T extends KubeObject>(info: ResourceInfo, obj: T): T {
    const key = storeKey(info, obj.metadata.namespace, obj.metadata.name ?? '');
    const old = this.#objects.get(key);
    const stored = this.#stamp(info, obj, old?.obj);
    this.#objects.set(key, { info, obj: stored });
    this.#emit(old ? 'MODIFIED' : 'ADDED', info, stored);
    return clone(stored) as T;
  }

  /** Deletes an object, telling watchers DELETED. Returns false when there was none. */
  remove(info: ResourceInfo, namespace: string | undefined, name: string): boolean {
    const key = storeKey(info, namespace, name);
    const old = this.#objects.get(key);
    if (!old) return false;
    this.#objects.delete(key);
    const gone = clone(old.obj);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#emit('DELETED', info, gone);
    return true;
  }

  /** The stored object, or undefined. */
  object<T extends KubeObject = KubeObject>(info: ResourceInfo, namespace: string | undefined, name: string): T | undefined {
    const o = this.#objects.get(storeKey(info, namespace, name));
    return o ? (clone(o.obj) as T) : undefined;
  }

  /** Forgets all history: watches and continue tokens older than now answer 410. */
  compact(): void {
    this.#compacted = this.#rv;
    this.#history.length = 0;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watch that allowed them. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      const object = { apiVersion: apiVersionOf(w.info), kind: w.info.kind, metadata: { resourceVersion: String(this.#rv), annotations: { 'k8s.io/initial-events-end': 'false' } } };
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object }) + '\n');
    }
  }

  /** Ends every open watch cleanly (the end of the chunked response), as a server timeout does. */
  dropWatches(): void {
    for (const w of [...this.#watchers]) {
      this.#watchers.delete(w);
      w.res.end();
    }
  }

  /** Sends an ERROR event with `status` to every open watch, then ends them. */
  watchError(status: Partial<Status> & { code: number }): void {
    const object = makeStatus(status.code, status.reason ?? '', status.message ?? 'error', status.details);
    for (const w of [...this.#watchers]) {
      this.#watchers.delete(w);
      w.res.end(JSON.stringify({ type: 'ERROR', object }) + '\n');
    }
  }

  /** Answers the next matching request(s) with an error Status. */
  fail(rule: FailRule): void {
    this.#failures.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Lets the test answer requests itself (undefined: stop intercepting). */
  intercept(fn: Intercept | undefined): void {
    this.#intercept = fn;
  }

  /** Resolves once `pred` holds (checked after every request and watch change, and every 5 ms). */
  async waitFor(pred: () => boolean, what = 'condition', timeoutMs = 4000): Promise<void> {
    if (pred()) return;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        cleanup();
        resolve();
      };
      const poll = setInterval(check, 5);
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`fake apiserver: timed out waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
    });
  }

  /** Stops listening, ends watches and destroys every connection; removes the socket dir. */
  async close(): Promise<void> {
    this.dropWatches();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections?.();
    await closed;
    await rm(this.#dir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------ HTTP

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const peer = (req.socket as TLSSocket).getPeerCertificate?.();
      const rec: RecordedRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        peerCN: peer && typeof peer.subject?.CN === 'string' ? peer.subject.CN : undefined,
      };
      this.requests.push(rec);
      try {
        this.#serve(rec, res);
      } catch (e) {
        sendStatus(res, makeStatus(500, 'InternalError', e instanceof Error ? e.message : String(e)));
      }
      this.#notify();
    });
  }

  #serve(req: RecordedRequest, res: ServerResponse): void {
    if (this.#intercept?.(req, res)) return;
    if (this.#opts.token !== undefined && req.headers.authorization !== `Bearer ${this.#opts.token}`) {
      return sendStatus(res, makeStatus(401, 'Unauthorized', 'Unauthorized'));
    }
    const failure = this.#failures.find((f) => f.left > 0 && (!f.method || f.method === req.method) && (!f.match || f.match(req)));
    if (failure) {
      failure.left--;
      return sendStatus(res, makeStatus(failure.code, failure.reason ?? '', failure.message ?? `injected ${failure.code}`));
    }
    const route = parseRoute(req.path);
    if (!route) return sendStatus(res, makeStatus(404, 'NotFound', `the server could not find the requested resource (${req.path})`));
    const { info, namespace, name, subresource } = route;
    if (!name) {
      if (req.method === 'GET') return req.query.get('watch') === 'true' ? this.#watch(req, route, res) : this.#list(req, route, res);
      if (req.method === 'POST') return this.#create(req, route, res);
      return sendStatus(res, makeStatus(405, 'MethodNotAllowed', `${req.method} is not allowed on a collection`));
    }
    const key = storeKey(info, namespace, name);
    const existing = this.#objects.get(key)?.obj;
    const notFound = (): void => sendStatus(res, makeStatus(404, 'NotFound', `${info.resource} "${name}" not found`, { name, kind: info.resource, group: info.group }));
    switch (req.method) {
      case 'GET':
        return existing ? sendJson(res, 200, existing) : notFound();
      case 'PUT': {
        if (!existing) return notFound();
        const body = JSON.parse(req.body) as KubeObject;
        if (body.metadata.resourceVersion && body.metadata.resourceVersion !== existing.metadata.resourceVersion) {
          return sendStatus(res, conflict(info, name));
        }
        const next = subresource === 'status' ? { ...clone(existing), status: (body as { status?: unknown }).status } : { ...body, status: (existing as { status?: unknown }).status };
        return sendJson(res, 200, this.put(info, next as KubeObject));
      }
      case 'PATCH': {
        if (!existing) return notFound();
        const patch = JSON.parse(req.body) as unknown;
        const type = req.headers['content-type'] ?? '';
        const next = type.startsWith('application/json-patch+json') ? applyJsonPatch(clone(existing), patch) : mergePatch(clone(existing), patch);
        return sendJson(res, 200, this.put(info, next as KubeObject));
      }
      case 'DELETE': {
        if (!existing) return notFound();
        const opts = req.body ? (JSON.parse(req.body) as { preconditions?: { resourceVersion?: string } }) : {};
        const want = opts.preconditions?.resourceVersion;
        if (want && want !== existing.metadata.resourceVersion) return sendStatus(res, conflict(info, name));
        this.remove(info, namespace, name);
        return sendJson(res, 200, { ...makeStatus(200, '', ''), status: 'Success', details: { name, kind: info.resource } });
      }
      default:
        return sendStatus(res, makeStatus(405, 'MethodNotAllowed', `${req.method} is not allowed`));
    }
  }

  #create(req: RecordedRequest, route: Route, res: ServerResponse): void {
    const obj = JSON.parse(req.body) as KubeObject;
    if (route.info.namespaced) obj.metadata.namespace = route.namespace;
    if (!obj.metadata.name && obj.metadata.generateName) obj.metadata.name = obj.metadata.generateName + randomUUID().slice(0, 5);
    const name = obj.metadata.name ?? '';
    if (this.#objects.has(storeKey(route.info, route.namespace, name))) {
      return sendStatus(res, makeStatus(409, 'AlreadyExists', `${route.info.resource} "${name}" already exists`, { name, kind: route.info.resource }));
    }
    if (req.query.get('dryRun') === 'All') return sendJson(res, 201, obj);
    sendJson(res, 201, this.put(route.info, obj));
  }

  #list(req: RecordedRequest, route: Route, res: ServerResponse): void {
    const limit = Number(req.query.get('limit') ?? 0);
    const cont = req.query.get('continue');
    let rv = this.#rv;
    let after = '';
    if (cont) {
      if (req.query.get('resourceVersion')) return sendStatus(res, makeStatus(400, 'BadRequest', 'specifying resource version is not allowed when using continue'));
      const token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv: number; after: string };
      if (token.rv < this.#compacted) {
        return sendStatus(res, makeStatus(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      }
      rv = token.rv;
      after = token.after;
    }
    const all = this.#select(route.info, route.namespace, parseSelector(req.query.get('labelSelector'))).filter(([k]) => k > after);
    const page = limit > 0 ? all.slice(0, limit) : all;
    const more = limit > 0 && all.length > limit;
    const last = page[page.length - 1];
    const metadata: Record<string, unknown> = { resourceVersion: String(rv) };
    if (more && last) {
      metadata['continue'] = Buffer.from(JSON.stringify({ rv, after: last[0] })).toString('base64url');
      metadata['remainingItemCount'] = all.length - page.length;
    }
    // Like kube-apiserver, list items carry no apiVersion/kind.
    const items = page.map(([, o]) => {
      const { apiVersion: _a, kind: _k, ...rest } = clone(o);
      return rest;
    });
    sendJson(res, 200, { apiVersion: apiVersionOf(route.info), kind: route.info.listKind, metadata, items });
  }

  #watch(req: RecordedRequest, route: Route, res: ServerResponse): void {
    const rvText = req.query.get('resourceVersion') ?? '';
    const from = rvText === '' || rvText === '0' ? undefined : Number(rvText);
    const gone = from !== undefined && from < this.#compacted;
    if (gone && this.#opts.goneAs === 'http') {
      return sendStatus(res, makeStatus(410, 'Gone', `too old resource version: ${from} (${this.#compacted})`));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    if (gone) {
      res.end(JSON.stringify({ type: 'ERROR', object: makeStatus(410, 'Expired', `too old resource version: ${from} (${this.#compacted})`) }) + '\n');
      return;
    }
    const w: Watcher = {
      info: route.info,
      namespace: route.namespace,
      selector: parseSelector(req.query.get('labelSelector')),
      bookmarks: req.query.get('allowWatchBookmarks') === 'true',
      res,
    };
    if (from === undefined) {
      for (const [, obj] of this.#select(route.info, route.namespace, w.selector)) writeEvent(w, 'ADDED', obj);
    } else {
      for (const ev of this.#history) if (ev.rv > from && matches(w, ev.info, ev.obj)) writeEvent(w, ev.type, ev.obj);
    }
    this.#watchers.add(w);
    res.on('close', () => {
      this.#watchers.delete(w);
      this.#notify();
    });
  }

  // ------------------------------------------------------------ internals

  #stamp(info: ResourceInfo, obj: KubeObject, old: KubeObject | undefined): KubeObject {
    const c = clone(obj);
    c.apiVersion = apiVersionOf(info);
    c.kind = info.kind;
    c.metadata.resourceVersion = String(++this.#rv);
    c.metadata.uid = old?.metadata.uid ?? c.metadata.uid ?? randomUUID();
    c.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? c.metadata.creationTimestamp ?? new Date(0).toISOString();
    if (!info.namespaced) delete c.metadata.namespace;
    return c;
  }

  #emit(type: EventType, info: ResourceInfo, obj: KubeObject): void {
    this.#history.push({ rv: this.#rv, type, info, obj: clone(obj) });
    for (const w of this.#watchers) if (matches(w, info, obj)) writeEvent(w, type, obj);
  }

  #select(info: ResourceInfo, namespace: string | undefined, selector: LabelRequirement[]): [string, KubeObject][] {
    const out: [string, KubeObject][] = [];
    for (const [key, { info: i, obj }] of this.#objects) {
      if (i !== info) continue;
      if (namespace && obj.metadata.namespace !== namespace) continue;
      if (!selectorMatches(selector, obj)) continue;
      out.push([key, obj]);
    }
    return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }
}

// ---------------------------------------------------------------- helpers

const BY_PATH = new Map<string, ResourceInfo>(Object.values(RESOURCES).map((r) => [`${apiVersionOf(r)}/${r.resource}`, r]));

function parseRoute(path: string): Route | undefined {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let gv: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1]) {
    gv = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts[1] && parts[2]) {
    gv = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] && BY_PATH.get(`${gv}/${rest[2]}`)?.namespaced) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const info = rest[0] ? BY_PATH.get(`${gv}/${rest[0]}`) : undefined;
  if (!info) return undefined;
  return { info, namespace, name: rest[1], subresource: rest[2] };
}

function storeKey(info: ResourceInfo, namespace: string | undefined, name: string): string {
  return info.namespaced ? `${info.resource}/${namespace ?? ''}/${name}` : `${info.resource}/${name}`;
}

function matches(w: Watcher, info: ResourceInfo, obj: KubeObject): boolean {
  return w.info === info && (!w.namespace || obj.metadata.namespace === w.namespace) && selectorMatches(w.selector, obj);
}

function writeEvent(w: Watcher, type: EventType, obj: KubeObject): void {
  w.res.write(JSON.stringify({ type, object: obj }) + '\n');
}

function parseSelector(text: string | null): LabelRequirement[] {
  if (!text) return [];
  return text.split(',').map((part) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*$/.exec(part);
    if (!m) throw new Error(`unsupported label selector ${part}`);
    return { key: m[1] ?? '', op: m[2] === '!=' ? '!=' : '=', value: m[3] ?? '' };
  });
}

function selectorMatches(sel: LabelRequirement[], obj: KubeObject): boolean {
  const labels = obj.metadata.labels ?? {};
  return sel.every((r) => (r.op === '=' ? labels[r.key] === r.value : labels[r.key] !== r.value));
}

/** A metav1 Status; exported for tests that build their own answers. */
export function makeStatus(code: number, reason: string, message: string, details?: Status['details']): Status {
  return { apiVersion: 'v1', kind: 'Status', metadata: {}, status: code < 400 ? 'Success' : 'Failure', code, ...(reason ? { reason } : {}), message, ...(details ? { details } : {}) };
}

function conflict(info: ResourceInfo, name: string): Status {
  return makeStatus(409, 'Conflict', `Operation cannot be fulfilled on ${info.resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: info.resource });
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendStatus(res: ServerResponse, status: Status): void {
  sendJson(res, status.code, status);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902, the add / replace / remove subset on object paths (enough for tests). */
function applyJsonPatch(doc: unknown, ops: unknown): unknown {
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const segs = op.path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = segs.pop();
    let cur = doc as Record<string, unknown>;
    for (const s of segs) cur = cur[s] as Record<string, unknown>;
    if (last === undefined) continue;
    if (op.op === 'remove') delete cur[last];
    else cur[last] = op.value;
  }
  return doc;
}
