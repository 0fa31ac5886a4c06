/**
 * The HTTP front of `podnet api`: authentication, routing, authorization, body limits and
 * decoding, content negotiation (JSON or Table), verbs, and errors as Status objects.
 * Nothing a client sends can make it answer 500 or stop: unexpected failures are logged
 * with their stack and answered as InternalError, and the server keeps serving.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { parse as parseYaml } from 'yaml';
import { RESOURCES, apiVersionOf } from '../../client/resources.js';
import type { KubeObject } from '../../client/types.js';
import type { Logger } from '../../util/log.js';
import { patchTypeOf } from '../patch/index.js';
import type { FieldValidation, Registry, WriteResult } from '../registry/registry.js';
import { stampStored } from '../registry/objects.js';
import { MAX_OBJECT_DEPTH } from '../validation/schemas.js';
import { ANONYMOUS, authorize } from './auth.js';
import type { ObjectLookup, TokenAuthenticator, User } from './auth.js';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, openapiFor, openapiRoot, versionInfo } from './discovery.js';
import type { ApiMetrics } from './metrics.js';
import { route } from './router.js';
import type { ResourceRequest } from './router.js';
import { ApiStatusError, errors, successStatus } from './status.js';
import { tableOf, wantsTable } from './table.js';
import type { IncludeObject } from './table.js';
import { serveWatch } from './watch.js';

export const MAX_BODY_BYTES = 3 * 1024 * 1024;
/**
 * Deepest nesting of objects and arrays a body may have — the limit on stored objects
 * (../validation/schemas.ts), checked here already because patches are applied, and
 * YAML aliases resolved, before the object is checked. A 3 MiB body of brackets would
 * otherwise overflow the stack in the recursive steps after decoding (a 500).
 * (kube-apiserver's JSON decoder stops at 10,000.)
 */
export const MAX_BODY_DEPTH = MAX_OBJECT_DEPTH;

export interface HandlerOptions {
  registry: Registry;
  tokens?: TokenAuthenticator | undefined;
  /** Callers without a token are admins (the demo only; it binds to loopback). */
  anonymousAdmin?: boolean;
  log: Logger;
  metrics?: ApiMetrics | undefined;
  maxBodyBytes?: number;
  bookmarkIntervalMs?: number;
  /** Called for /readyz: false while the server is not ready. */
  ready?: () => boolean;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export function createHandler(opts: HandlerOptions): Handler {
  const maxBody = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  return (req, res) => {
    const started = performance.now();
    let verb = req.method ?? 'GET';
    let resource = '';
    handle(req, res, opts, maxBody, (v, r) => {
      verb = v;
      resource = r;
    })
      .catch((e: unknown) => {
        const err = e instanceof ApiStatusError ? e : internal(e, opts.log, req);
        if (!res.headersSent) sendJson(res, err.code, err.toStatus());
        else if (!res.writableEnded) res.end();
      })
      .finally(() => {
        opts.metrics?.request(verb, resource, res.statusCode, (performance.now() - started) / 1000);
      });
  };
}

function internal(e: unknown, log: Logger, req: IncomingMessage): ApiStatusError {
  log.error({ err: e, method: req.method, url: req.url }, 'request failed');
  return errors.internal(e instanceof Error ? e.message : String(e));
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: HandlerOptions, maxBody: number, note: (verb: string, resource: string) => void): Promise<void> {
  const url = requestURL(req.url);
  const path = url.pathname;
  const method = req.method ?? 'GET';

  // Unauthenticated endpoints, as kube-apiserver's public-info-viewer allows.
  if (path === '/healthz' || path === '/livez' || path === '/readyz') {
    const ok = path !== '/readyz' || (opts.ready?.() ?? true);
    res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(ok ? 'ok' : 'not ready');
    return;
  }
  if (path === '/version') return sendJson(res, 200, versionInfo());

  const user = authenticate(req, opts);
  if (path === '/metrics') {
    if (!opts.metrics) throw errors.notFoundPath(path);
    const body = await opts.metrics.render();
    res.writeHead(200, { 'Content-Type': opts.metrics.contentType });
    res.end(body);
    return;
  }
  if (path === TOKEN_REVIEW_PATH) return tokenReview(req, res, user, opts, maxBody);
  if (path === '/openapi/v3') return sendJson(res, 200, openapiRoot());
  if (path.startsWith('/openapi/v3/')) {
    const doc = openapiFor(path.slice('/openapi/v3/'.length));
    if (!doc) throw errors.notFoundPath(path);
    return sendJson(res, 200, doc);
  }

  const r = route(method, path, url.searchParams);
  switch (r.kind) {
    case 'notfound':
    case 'other':
      throw errors.notFoundPath(path);
    case 'methodnotallowed':
      throw errors.methodNotAllowed(r.method, r.path);
    case 'badpath':
      throw errors.badRequest(r.message);
    case 'discovery':
      if (method !== 'GET') throw errors.methodNotAllowed(method, path);
      if (r.what === 'api') return sendJson(res, 200, apiVersions());
      if (r.what === 'apis') return sendJson(res, 200, apiGroupList());
      if (r.what === 'group') return sendJson(res, 200, apiGroup(r.group));
      return sendJson(res, 200, apiResourceList(r.group, r.version));
    case 'resource':
      note(r.verb, r.resource);
      return resourceRequest(req, res, r, url.searchParams, user, opts, maxBody);
  }
}

/** The request target as a URL; an absolute-form target that does not parse is a 400, not a thrown TypeError. */
function requestURL(target: string | undefined): URL {
  let url: URL;
  try {
    url = new URL(target ?? '/', 'http://podnet');
  } catch {
    throw errors.badRequest(`the request target ${JSON.stringify(target)} is not a valid URL`);
  }
  // The URL parser resolves `.` and `..` segments (also as %2e): `/pods/.` would become the
  // collection `/pods/` and a DELETE of one object a DELETE of all of them. A name may not be
  // `.` or `..` (as kube-apiserver's path segment rule), so such a target is refused as written.
  const rawPath = (target ?? '/').split(/[?#]/, 1)[0]!;
  for (const seg of rawPath.split('/')) {
    const dots = seg.replace(/%2e/gi, '.');
    if (dots === '.' || dots === '..') throw errors.badRequest(`the request path ${JSON.stringify(rawPath)} may not contain a '${dots}' segment (a name may not be '.' or '..')`);
  }
  return url;
}

const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

/**
 * TokenReview (`authentication.k8s.io/v1`, create only, nothing stored), as kubelets use
 * it to authenticate callers of their own endpoints: agents ask the API who a bearer
 * token belongs to. Admins and nodes may ask.
 */
async function tokenReview(req: IncomingMessage, res: ServerResponse, user: User, opts: HandlerOptions, maxBody: number): Promise<void> {
  if (req.method !== 'POST') throw errors.methodNotAllowed(req.method ?? '', TOKEN_REVIEW_PATH);
  if (!user.groups.includes('system:masters') && !user.groups.includes('system:nodes')) {
    throw errors.forbidden(user.name, 'create', { group: 'authentication.k8s.io', resource: 'tokenreviews' }, undefined, 'only administrators and nodes may review tokens');
  }
  const body = await readBody(req, maxBody, 'create');
  const spec = (body as { spec?: { token?: unknown } } | undefined)?.spec;
  if (!spec || typeof spec.token !== 'string' || !spec.token) throw errors.invalid('TokenReview', 'authentication.k8s.io', '', [{ field: 'spec.token', reason: 'FieldValueRequired', message: 'Required value' }]);
  const who = opts.tokens?.authenticate(spec.token);
  sendJson(res, 201, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    metadata: {},
    spec: { token: spec.token },
    status: who ? { authenticated: true, user: { username: who.name, uid: who.uid, groups: who.groups } } : { authenticated: false, error: 'invalid bearer token' },
  });
}

function authenticate(req: IncomingMessage, opts: HandlerOptions): User {
  const h = req.headers.authorization;
  if (h) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m) throw errors.unauthorized('Unauthorized: only bearer tokens are accepted');
    const u = opts.tokens?.authenticate(m[1]!);
    if (!u) throw errors.unauthorized();
    return u;
  }
  if (opts.anonymousAdmin) return { ...ANONYMOUS, groups: [...ANONYMOUS.groups, 'system:masters'] };
  throw errors.unauthorized();
}

async function resourceRequest(req: IncomingMessage, res: ServerResponse, r: ResourceRequest, q: URLSearchParams, user: User, opts: HandlerOptions, maxBody: number): Promise<void> {
  const reg = opts.registry;
  const info = RESOURCES[r.resource];
  const decision = authorize(user, r);
  const forbid = (why: string) => errors.forbidden(user.name, r.verb, { group: info.group, resource: info.resource, subresource: r.subresource, ...(r.name ? { name: r.name } : {}) }, r.namespace, why);
  if (decision.allowed === false) throw forbid(decision.reason);
  const fieldValidation = parseFieldValidation(q.get('fieldValidation'));
  const dryRun = parseDryRun(q.getAll('dryRun'));
  const table = wantsTable(req.headers.accept) ? { include: parseInclude(q.get('includeObject')) } : undefined;

  // Object-dependent authorization (node identities) needs the stored or posted object,
  // and sometimes one it refers to (the Pod an Event is about).
  const lookup: ObjectLookup = (resource, namespace, name) => reg.get(resource, namespace, name).catch(() => undefined);
  const checkObject = async (posted?: unknown) => {
    if (decision.allowed !== 'needs-object') return;
    const obj = posted !== undefined ? posted : await lookup(r.resource, r.namespace, r.name!);
    const d = await decision.check(obj as { spec?: { nodeName?: string } } | undefined, lookup);
    if (!d.allowed) throw forbid(d.reason);
  };

  switch (r.verb) {
    case 'get': {
      const obj = await reg.get(r.resource, r.namespace, r.name!);
      if (r.subresource && r.subresource !== 'status') throw errors.notFoundPath(req.url ?? '');
      return sendObject(res, 200, r.resource, obj, table);
    }
    case 'list': {
      if (table) {
        const list = await reg.list(r.resource, listOptions(r, q));
        return sendJson(res, 200, tableOf(r.resource, list.items, list.metadata, table.include));
      }
      return streamList(res, reg, r.resource, listOptions(r, q));
    }
    case 'watch': {
      const timeout = q.get('timeoutSeconds');
      const bookmarks = q.get('allowWatchBookmarks') === 'true';
      return serveWatch(res, reg, {
        resource: r.resource,
        namespace: r.namespace,
        name: r.name,
        labelSelector: q.get('labelSelector') ?? undefined,
        fieldSelector: q.get('fieldSelector') ?? undefined,
        resourceVersion: q.get('resourceVersion') ?? undefined,
        allowWatchBookmarks: bookmarks,
        sendInitialEvents: q.get('sendInitialEvents') === 'true',
        timeoutSeconds: timeout === null ? undefined : nonNegativeInt(timeout, 'timeoutSeconds'),
        table,
      }, {
        bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 10_000,
        maxBufferedBytes: 64 * 1024 * 1024,
        ...(opts.metrics ? { onOpen: () => opts.metrics!.watchers.inc({ resource: r.resource }), onClose: () => opts.metrics!.watchers.dec({ resource: r.resource }), onEventSent: () => opts.metrics!.watchEvents.inc({ resource: r.resource }) } : {}),
      });
    }
    case 'create': {
      const body = await readBody(req, maxBody, 'create');
      await checkObject(body);
      const out = await reg.create(r.resource, r.namespace, body, { fieldValidation, dryRun });
      warn(res, out.warnings);
      log(opts, user, r, out);
      return sendWritten(res, 201, r.resource, out, table);
    }
    case 'update': {
      await checkObject();
      const body = await readBody(req, maxBody, 'update');
      const out = await reg.update(r.resource, r.namespace, r.name!, body, { fieldValidation, dryRun, ...(r.subresource ? { subresource: r.subresource } : {}) });
      warn(res, out.warnings);
      log(opts, user, r, out);
      return sendWritten(res, 200, r.resource, out, table);
    }
    case 'patch': {
      await checkObject();
      const type = req.headers['content-type'] ?? '';
      if (!patchTypeOf(type)) throw errors.unsupportedMediaType(type, ['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json']);
      const patch = await readBody(req, maxBody, 'patch');
      const out = await reg.patch(r.resource, r.namespace, r.name!, patch, type, { fieldValidation, dryRun, ...(r.subresource ? { subresource: r.subresource } : {}) });
      warn(res, out.warnings);
      log(opts, user, r, out);
      return sendWritten(res, 200, r.resource, out, table);
    }
    case 'delete': {
      await checkObject();
      const body = req.headers['content-length'] === '0' ? undefined : await readBody(req, maxBody, 'delete', true);
      const del = deleteOptions(body, q);
      const obj = await reg.delete(r.resource, r.namespace, r.name!, { ...del, dryRun });
      log(opts, user, r, { object: obj, warnings: [] });
      return sendObject(res, 200, r.resource, obj, table);
    }
    case 'deletecollection': {
      const list = await reg.list(r.resource, listOptions(r, q));
      for (const item of list.items) {
        if (decision.allowed === 'needs-object') {
          const d = await decision.check(item as { spec?: { nodeName?: string } }, lookup);
          if (!d.allowed) throw forbid(d.reason);
        }
        try {
          await reg.delete(r.resource, item.metadata.namespace, item.metadata.name!, { dryRun });
        } catch (e) {
          if (!(e instanceof ApiStatusError && e.reason === 'NotFound')) throw e;
        }
      }
      return sendJson(res, 200, successStatus({ kind: info.resource, group: info.group }));
    }
  }
}

function log(opts: HandlerOptions, user: User, r: ResourceRequest, out: WriteResult): void {
  if (!opts.log.isLevelEnabled('debug')) return; // (reading out.object decodes it)
  const obj = out.object;
  opts.log.debug({ verb: r.verb, resource: r.subresource ? `${r.resource}/${r.subresource}` : r.resource, namespace: r.namespace, name: obj.metadata.name, resourceVersion: obj.metadata.resourceVersion, user: user.name }, 'write');
}

function listOptions(r: ResourceRequest, q: URLSearchParams) {
  const limit = q.get('limit');
  return {
    ...(r.namespace ? { namespace: r.namespace } : {}),
    ...(q.get('labelSelector') ? { labelSelector: q.get('labelSelector')! } : {}),
    ...(q.get('fieldSelector') ? { fieldSelector: q.get('fieldSelector')! } : {}),
    ...(limit !== null ? { limit: nonNegativeInt(limit, 'limit') } : {}),
    ...(q.get('continue') ? { continue: q.get('continue')! } : {}),
    ...(q.get('resourceVersion') ? { resourceVersion: q.get('resourceVersion')! } : {}),
    ...(q.get('resourceVersionMatch') ? { resourceVersionMatch: q.get('resourceVersionMatch')! } : {}),
  };
}

function nonNegativeInt(v: string, name: string): number {
  if (!/^\d{1,10}$/.test(v)) throw errors.badRequest(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function parseFieldValidation(v: string | null): FieldValidation {
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw errors.badRequest(`fieldValidation must be Strict, Warn or Ignore, got ${JSON.stringify(v)}`);
}

function parseDryRun(values: string[]): boolean {
  if (!values.length) return false;
  for (const v of values) if (v !== 'All') throw errors.badRequest(`dryRun must be "All", got ${JSON.stringify(v)}`);
  return true;
}

function parseInclude(v: string | null): IncludeObject {
  if (v === null || v === '') return 'Metadata';
  if (v === 'None' || v === 'Metadata' || v === 'Object') return v;
  throw errors.badRequest(`includeObject must be None, Metadata or Object, got ${JSON.stringify(v)}`);
}

function deleteOptions(body: unknown, q: URLSearchParams): { gracePeriodSeconds?: number; preconditions?: { uid?: string; resourceVersion?: string } } {
  const out: { gracePeriodSeconds?: number; preconditions?: { uid?: string; resourceVersion?: string } } = {};
  const g = q.get('gracePeriodSeconds');
  if (g !== null) out.gracePeriodSeconds = nonNegativeInt(g, 'gracePeriodSeconds');
  if (body === undefined || body === null) return out;
  if (typeof body !== 'object' || Array.isArray(body)) throw errors.badRequest('the body of a delete must be a DeleteOptions object');
  const b = body as Record<string, unknown>;
  if (b.gracePeriodSeconds !== undefined && b.gracePeriodSeconds !== null) {
    if (typeof b.gracePeriodSeconds !== 'number' || !Number.isInteger(b.gracePeriodSeconds) || b.gracePeriodSeconds < 0) throw errors.badRequest('gracePeriodSeconds must be a non-negative integer');
    out.gracePeriodSeconds = b.gracePeriodSeconds;
  }
  if (b.preconditions !== undefined && b.preconditions !== null) {
    const p = b.preconditions as Record<string, unknown>;
    if (typeof p !== 'object') throw errors.badRequest('preconditions must be an object');
    out.preconditions = {
      ...(typeof p.uid === 'string' ? { uid: p.uid } : {}),
      ...(typeof p.resourceVersion === 'string' ? { resourceVersion: p.resourceVersion } : {}),
    };
  }
  return out;
}

/**
 * The request body, at most `limit` bytes (else 413, the rest drained). Listeners, not an
 * async iterator: that costs an iterator and a promise per chunk on every write.
 */
function collectBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.resume();
        reject(errors.tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    // The client went away before the end of the body (what an async iterator reports as a premature close).
    const onClose = (): void => {
      if (req.readableEnded) return;
      done();
      reject(Object.assign(new Error('the request was aborted before its body ended'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Reads and decodes a JSON (or YAML) body of at most `limit` bytes. */
async function readBody(req: IncomingMessage, limit: number, what: string, optional = false): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) {
    req.resume();
    throw errors.tooLarge(limit);
  }
  const text = (await collectBody(req, limit)).toString('utf8');
  if (!text.trim()) {
    if (optional) return undefined;
    throw errors.badRequest(`the request body of a ${what} must not be empty`);
  }
  const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/yaml' || type === 'application/x-yaml' || type === 'text/yaml') {
    let doc: unknown;
    try {
      doc = parseYaml(text, { maxAliasCount: 100 });
    } catch (e) {
      throw errors.badRequest(`error decoding YAML: ${(e as Error).message}`);
    }
    // An alias of an ancestor (`a: &x [*x]`) decodes to a cycle: the depth check catches it.
    checkDepth(doc, 'YAML');
    // As kube-apiserver converts YAML to JSON: JSON values only (no shared nodes, no .inf / .nan).
    return JSON.parse(JSON.stringify(doc) ?? 'null') as unknown;
  }
  if (type !== 'application/json' && !type.endsWith('+json') && type !== '*/*' && type !== '') {
    throw errors.unsupportedMediaType(type, ['application/json', 'application/yaml']);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw errors.badRequest(`error decoding JSON: ${(e as Error).message}`);
  }
  checkDepth(doc, 'JSON');
  return doc;
}

/** 400 when `doc` nests objects / arrays deeper than MAX_BODY_DEPTH (iterative: a deep body cannot overflow the stack here). */
function checkDepth(doc: unknown, format: string): void {
  const stack: [unknown, number][] = [[doc, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > MAX_BODY_DEPTH) throw errors.badRequest(`error decoding ${format}: the body nests objects and arrays deeper than ${MAX_BODY_DEPTH} levels`);
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (typeof x === 'object' && x !== null) stack.push([x, depth + 1]);
  }
}

function warn(res: ServerResponse, warnings: string[]): void {
  if (warnings.length) res.setHeader('Warning', warnings.map((w) => `299 - ${JSON.stringify(w)}`));
}

function sendObject(res: ServerResponse, code: number, resource: ResourceRequest['resource'], obj: KubeObject, table: { include: IncludeObject } | undefined): void {
  // Objects that never went through the store (dryRun) carry no type: stamp it, as kube-apiserver's encoder does.
  const info = RESOURCES[resource];
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  const typed: KubeObject = { apiVersion: apiVersionOf(info), kind: info.kind, ...rest };
  if (table) return sendJson(res, code, tableOf(resource, [typed], { resourceVersion: typed.metadata.resourceVersion ?? '' }, table.include));
  sendJson(res, code, typed);
}

/** A write's object: its stored text stamped (no decode, no re-encode) unless a Table is wanted or nothing was stored. */
function sendWritten(res: ServerResponse, code: number, resource: ResourceRequest['resource'], out: WriteResult, table: { include: IncludeObject } | undefined): void {
  if (table || !out.stored) return sendObject(res, code, resource, out.object, table);
  const info = RESOURCES[resource];
  sendText(res, code, stampStored(out.stored.value, apiVersionOf(info), info.kind, out.stored.revision, () => out.object));
}

export function sendJson(res: ServerResponse, code: number, body: unknown): void {
  sendText(res, code, JSON.stringify(body));
}

/** Sends JSON that is already text. */
function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

/**
 * A plain list, written (chunked) page by page as the registry reads it, so a list of a
 * large collection is never in memory whole (the items first, `metadata` last: JSON
 * readers do not care about key order). The answer starts with the first page: an error
 * found before it is still a Status; a store failure after it ends the connection, and
 * the client sees a truncated body, as with kube-apiserver's streamed lists.
 */
async function streamList(res: ServerResponse, reg: Registry, resource: ResourceRequest['resource'], opts: ReturnType<typeof listOptions>): Promise<void> {
  const info = RESOURCES[resource];
  let started = false;
  let sep = '';
  const begin = () => {
    if (started) return;
    started = true;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.write(`{"apiVersion":${JSON.stringify(apiVersionOf(info))},"kind":${JSON.stringify(info.listKind)},"items":[`);
  };
  try {
    const { metadata } = await reg.listJSON(resource, opts, async (items) => {
      begin();
      if (!res.write(sep + items.join(','))) await drained(res);
      sep = ',';
    });
    begin();
    res.end(`],"metadata":${JSON.stringify(metadata)}}`);
  } catch (e) {
    if (!started) throw e;
    res.destroy(e instanceof Error ? e : new Error(String(e)));
  }
}

/** Resolves when `res` can take more (or is gone: then throws, which ends the list). */
async function drained(res: ServerResponse): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
  if (res.destroyed) throw new Error('the client went away during a list');
}
