/**
 * Malformed requests against `podnet api`, over real HTTP (a unix socket in a temp dir)
 * to an in-process ApiServer with the embedded SQLite store and every controller
 * disabled. Each case must be answered with the status kube-apiserver gives for it and
 * a well-formed `Status` (kind, code, reason, and the field path of the causes where
 * there is one) — and nothing may be stored: the whole store (every key and its
 * modRevision, allocation records included) is compared before and after, and so is
 * the store's revision, except where a request claims allocations and rolls them back.
 *
 * A property-based run then throws random bodies, names, IPs, ports and patches at every
 * resource: every answer must be a 2xx or a 4xx with a Status, never a 500 or a dropped
 * connection, no refused request may change the store, whatever was accepted must read
 * back and be accepted again unchanged, and the server must still answer afterwards.
 * PODNET_FUZZ_RUNS=20000 runs it longer; PODNET_FUZZ_SEED=<seed> replays a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCES, resourcePath } from '../../client/resources.js';
import type { ResourceName } from '../../client/resources.js';
import type { KubeList, KubeObject, Service, Status } from '../../client/types.js';
import { Cidr } from '../../util/ipnet.js';
import { silentLogger } from '../../util/log.js';
import { ApiServer, CONTROLLERS } from '../apiserver.js';
import { MAX_BODY_BYTES, MAX_BODY_DEPTH } from './http.js';
import type { StatusReason } from './status.js';

// ------------------------------------------------------------------ harness

interface Reply {
  status: number;
  text: string;
  json: unknown;
  headers: Record<string, string | string[] | undefined>;
}

interface Send {
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  contentType?: string | null;
  headers?: Record<string, string>;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
}

let dir: string;
let server: ApiServer;
let agent: Agent;
let socketPath: string;

async function call(method: string, path: string, s: Send = {}): Promise<Reply> {
  const headers: Record<string, string> = { accept: 'application/json', ...s.headers };
  let body: string | Readable | undefined;
  if (s.body !== undefined) {
    const text = typeof s.body === 'string' ? s.body : JSON.stringify(s.body);
    body = s.chunked ? Readable.from([text.slice(0, text.length >> 1), text.slice(text.length >> 1)]) : text;
    if (s.contentType !== null) headers['content-type'] = s.contentType ?? 'application/json';
  }
  // undici (like fetch and curl) resolves `.`/`..` segments before sending; Go clients (kubectl) send
  // the path as written, so such paths go out through node:http, which does not touch them.
  if (/(^|\/)(\.|%2e){1,2}(\/|$|\?)/i.test(path)) return callAsWritten(method, path, headers, typeof body === 'string' ? body : undefined);
  const res = await request(`http://localhost${path}`, { method: method as 'GET', headers, body, dispatcher: agent });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: jsonOrUndefined(text), headers: res.headers };
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function callAsWritten(method: string, path: string, headers: Record<string, string>, body: string | undefined): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // (node:http sends a DELETE's body neither chunked nor with a length unless told.)
    const req = httpRequest({ socketPath, path, method, headers: body !== undefined ? { ...headers, 'content-length': String(Buffer.byteLength(body)) } : headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, text, json: jsonOrUndefined(text), headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function ok<T = KubeObject>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  const r = await call(method, path, { body, ...(contentType ? { contentType } : {}) });
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
  return r.json as T;
}

/** Every key in the store with its modRevision: equal dumps mean nothing was written. */
async function dump(): Promise<Map<string, number>> {
  const store = server.storeHandle!;
  const out = new Map<string, number>();
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list('/', { limit: 1000, ...(startAfter ? { startAfter } : {}) });
    for (const kv of page.kvs) out.set(kv.key, kv.modRevision);
    if (!page.more || !page.kvs.length) return out;
    startAfter = page.kvs[page.kvs.length - 1]!.key;
  }
}

/** Sends raw bytes on a fresh connection and returns what came back. */
function raw(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      out += d;
      if (/\r\n\r\n/.test(out) && /Content-Length: (\d+)/i.test(out)) {
        const len = Number(/Content-Length: (\d+)/i.exec(out)![1]);
        if (Buffer.byteLength(out.slice(out.indexOf('\r\n\r\n') + 4)) >= len) s.end();
      }
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.write(text);
  });
}

const p = (resource: ResourceName, opts: { namespace?: string; name?: string; subresource?: string } = {}) => resourcePath(RESOURCES[resource], opts);
const svcs = p('services', { namespace: 'default' });
const svc = (name: string, subresource?: string) => p('services', { namespace: 'default', name, ...(subresource ? { subresource } : {}) });
const pods = p('pods', { namespace: 'default' });
const pod = (name: string, subresource?: string) => p('pods', { namespace: 'default', name, ...(subresource ? { subresource } : {}) });
const slices = p('endpointslices', { namespace: 'default' });
const leases = p('leases', { namespace: 'default' });
const events = p('events', { namespace: 'default' });
const nodes = p('nodes');

const MERGE = 'application/merge-patch+json';
const JSONPATCH = 'application/json-patch+json';
const SMP = 'application/strategic-merge-patch+json';
const YAML = 'application/yaml';

const service = (name: string, spec: Record<string, unknown> = {}, meta: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, ...meta }, spec: { ports: [{ port: 80 }], ...spec } });
const podBody = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'app', image: 'registry.test/app:1' }], ...spec } });
const slice = (name: string, rest: Record<string, unknown> = {}) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name }, addressType: 'IPv4', endpoints: [{ addresses: ['10.244.1.5'] }], ports: [{ port: 80, protocol: 'TCP' }], ...rest });
const lease = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec: { holderIdentity: name, ...spec } });
const node = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, spec });
const event = (name: string, rest: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Event', metadata: { name }, involvedObject: { kind: 'Node', name: 'n1' }, reason: 'NotOnLink', message: 'node n9 is not on-link', type: 'Warning', count: 1, ...rest });
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** The fixtures every case may aim at. */
const WEB_IP = '10.96.0.50';
const NODE_PORT = 30080;
let webRV = '';
let webUID = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'podnet-badinput-'));
  socketPath = join(dir, 'api.sock');
  server = new ApiServer({
    store: { kind: 'sqlite', dataDir: join(dir, 'data') },
    listen: { socketPath },
    serviceCIDRs: [Cidr.parse('10.96.0.0/12')],
    nodePortRange: { min: 30000, max: 32767 },
    anonymousAdmin: true,
    disabledControllers: [...CONTROLLERS],
    log: silentLogger(),
  });
  await server.start();
  agent = new Agent({ connect: { socketPath } });
  const web = await ok<Service>('POST', svcs, service('web', { clusterIP: WEB_IP }));
  webRV = web.metadata.resourceVersion!;
  webUID = web.metadata.uid!;
  await ok('POST', svcs, service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: NODE_PORT }] }));
  await ok('POST', pods, podBody('p1', { nodeName: 'n1' }));
  // An opaque field nested 90 levels (the object: 92), for the depth-growth case.
  await ok('POST', pods, `{"metadata":{"name":"vol"},"spec":{"containers":[{"name":"a"}],"volumes":${nested(90)}}}`);
  await ok('POST', nodes, node('n1'));
  await ok('POST', slices, slice('es1'));
  await ok('POST', leases, lease('l1'));
  await ok('POST', events, event('ev1'));
  // Move the revision past the fixtures' so a stale resourceVersion is really stale.
  await ok('PATCH', svc('web'), { metadata: { labels: { rev: 'two' } } }, MERGE);
  expect(Number(webRV)).toBeLessThan(Number((await ok<Service>('GET', svc('web'))).metadata.resourceVersion));
});

afterAll(async () => {
  await agent?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function expectStatus(r: Reply, code: number, reason?: StatusReason): Status {
  expect(r.headers['content-type'], 'a Status is JSON').toMatch(/^application\/json/);
  const s = r.json as Status;
  expect(s, r.text).toMatchObject({ apiVersion: 'v1', kind: 'Status', status: 'Failure', code });
  expect(typeof s.reason, r.text).toBe('string');
  if (reason) expect(s.reason, r.text).toBe(reason);
  expect(s.message?.length ?? 0, 'a Status says why').toBeGreaterThan(0);
  return s;
}

// ------------------------------------------------------------------ the table

interface BadCase {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';
  path: string;
  send?: Send;
  status: number;
  reason: StatusReason;
  /** Field paths the Status causes must name (each one). */
  fields?: string[];
  message?: RegExp;
  /** The request claims allocations (ClusterIPs, NodePorts) and rolls them back: the revision moves, the content may not. */
  allocates?: boolean;
  /** A known bug outside this room (the registry): the case is skipped, the reason says where. */
  knownBug?: string;
}

const big = (n: number) => service('huge', {}, { annotations: { blob: 'x'.repeat(n) } });

const cases: BadCase[] = [
  // --- size: kube-apiserver's limit is 3 MiB, answered 413
  { name: 'create body over 3 MiB → 413', method: 'POST', path: svcs, send: { body: big(MAX_BODY_BYTES) }, status: 413, reason: 'RequestEntityTooLarge' },
  { name: 'chunked create body over 3 MiB (no Content-Length) → 413', method: 'POST', path: svcs, send: { body: big(MAX_BODY_BYTES), chunked: true }, status: 413, reason: 'RequestEntityTooLarge' },
  { name: 'update body over 3 MiB → 413', method: 'PUT', path: svc('web'), send: { body: { ...big(MAX_BODY_BYTES), metadata: { ...big(MAX_BODY_BYTES).metadata, name: 'web' } } }, status: 413, reason: 'RequestEntityTooLarge' },
  { name: 'patch body over 3 MiB → 413', method: 'PATCH', path: svc('web'), send: { body: { metadata: { annotations: { blob: 'x'.repeat(MAX_BODY_BYTES) } } }, contentType: MERGE }, status: 413, reason: 'RequestEntityTooLarge' },

  // --- decoding: 400
  { name: 'malformed JSON → 400', method: 'POST', path: svcs, send: { body: '{"metadata": {"name": "x"' }, status: 400, reason: 'BadRequest', message: /error decoding JSON/ },
  { name: 'JSON with trailing garbage → 400', method: 'POST', path: svcs, send: { body: '{"metadata":{"name":"x"}} {' }, status: 400, reason: 'BadRequest' },
  { name: 'empty create body → 400', method: 'POST', path: svcs, send: { body: '' }, status: 400, reason: 'BadRequest', message: /must not be empty/ },
  { name: 'a JSON array as the object → 400', method: 'POST', path: svcs, send: { body: [service('arr')] }, status: 400, reason: 'BadRequest', message: /must be a JSON object/ },
  { name: 'a JSON string as the object → 400', method: 'POST', path: pods, send: { body: '"pod"' }, status: 400, reason: 'BadRequest' },
  { name: 'JSON null as the object → 400', method: 'PUT', path: svc('web'), send: { body: 'null' }, status: 400, reason: 'BadRequest' },
  { name: 'metadata that is not an object → 400', method: 'POST', path: svcs, send: { body: { metadata: 'web2', spec: { ports: [{ port: 80 }] } } }, status: 400, reason: 'BadRequest', message: /metadata: expected an object/ },
  { name: `a body nested deeper than ${MAX_BODY_DEPTH} levels → 400, not a stack overflow (500)`, method: 'POST', path: pods, send: { body: `{"metadata":{"name":"deep"},"spec":{"containers":[{"name":"a"}],"volumes":${nested(5000)}}}` }, status: 400, reason: 'BadRequest', message: /deeper than 100 levels/ },
  { name: 'a deeply nested patch → 400', method: 'PATCH', path: pod('p1'), send: { body: `{"spec":{"volumes":${nested(100_000)}}}`, contentType: MERGE }, status: 400, reason: 'BadRequest' },
  {
    name: 'a JSON patch that nests an opaque field past the limit → 400 (depth cannot grow one patch at a time)',
    method: 'PATCH',
    path: pod('vol'),
    send: { body: `[{"op":"add","path":"/spec/volumes${'/0'.repeat(89)}/-","value":${nested(30)}}]`, contentType: JSONPATCH },
    status: 400,
    reason: 'BadRequest',
    message: /nests objects and arrays deeper than 100 levels/,
  },
  { name: 'malformed YAML → 400', method: 'POST', path: svcs, send: { body: 'metadata: [name: x\n', contentType: YAML }, status: 400, reason: 'BadRequest', message: /error decoding YAML/ },
  { name: 'YAML whose alias contains itself (a cycle) → 400, not a 500', method: 'POST', path: pods, send: { body: 'metadata: {name: cyc}\nspec:\n  containers: [{name: a}]\n  volumes: &v [*v]\n', contentType: YAML }, status: 400, reason: 'BadRequest' },
  { name: 'YAML alias bomb → 400', method: 'POST', path: svcs, send: { body: `a: &a ["x","x","x","x","x","x","x","x","x"]\n${Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`).join('\n')}\nmetadata: {name: bomb}\n`, contentType: YAML }, status: 400, reason: 'BadRequest' },
  { name: 'XML body → 415', method: 'POST', path: svcs, send: { body: '<Service/>', contentType: 'application/xml' }, status: 415, reason: 'UnsupportedMediaType' },
  { name: 'protobuf body → 415', method: 'POST', path: svcs, send: { body: 'k8s\u0000', contentType: 'application/vnd.kubernetes.protobuf' }, status: 415, reason: 'UnsupportedMediaType' },

  // --- kind / apiVersion / namespace / name of the body against the URL: 400
  { name: 'a Service posted to the pods URL → 400', method: 'POST', path: pods, send: { body: service('web3') }, status: 400, reason: 'BadRequest', message: /kind in the data \(Service\) does not match the expected kind \(Pod\)/ },
  { name: 'a Pod PUT to a Service → 400', method: 'PUT', path: svc('web'), send: { body: { ...podBody('web'), kind: 'Pod' } }, status: 400, reason: 'BadRequest' },
  { name: 'apiVersion v2 → 400', method: 'POST', path: svcs, send: { body: { ...service('v2'), apiVersion: 'v2' } }, status: 400, reason: 'BadRequest', message: /API version in the data \(v2\)/ },
  { name: 'apiVersion of another group → 400', method: 'POST', path: slices, send: { body: { ...slice('es2'), apiVersion: 'v1' } }, status: 400, reason: 'BadRequest', message: /expected API version \(discovery\.k8s\.io\/v1\)/ },
  { name: 'apiVersion that is not a string → 400', method: 'POST', path: leases, send: { body: { ...lease('l2'), apiVersion: 1 } }, status: 400, reason: 'BadRequest' },
  { name: 'body namespace differs from the URL → 400', method: 'POST', path: svcs, send: { body: service('ns', {}, { namespace: 'kube-system' }) }, status: 400, reason: 'BadRequest', message: /namespace of the provided object does not match/ },
  { name: 'PUT body name differs from the URL → 400', method: 'PUT', path: svc('web'), send: { body: service('other') }, status: 400, reason: 'BadRequest', message: /does not match the name on the URL/ },

  // --- unknown fields with fieldValidation=Strict: 400 naming the field
  { name: 'Strict: unknown spec field → 400', method: 'POST', path: `${svcs}?fieldValidation=Strict`, send: { body: service('strict', { bogus: 1 }) }, status: 400, reason: 'BadRequest', fields: ['spec.bogus'], message: /strict decoding error: unknown field "spec\.bogus"/ },
  { name: 'Strict: unknown field inside a list item → 400', method: 'POST', path: `${svcs}?fieldValidation=Strict`, send: { body: service('strict', { ports: [{ port: 80, prot: 'TCP' }] }) }, status: 400, reason: 'BadRequest', fields: ['spec.ports[0].prot'] },
  { name: 'Strict: unknown top-level and metadata fields → 400 naming both', method: 'POST', path: `${nodes}?fieldValidation=Strict`, send: { body: { ...node('strict'), extra: true, metadata: { name: 'strict', lables: {} } } }, status: 400, reason: 'BadRequest', fields: ['extra', 'metadata.lables'] },
  { name: 'Strict: unknown field in an EndpointSlice endpoint → 400', method: 'POST', path: `${slices}?fieldValidation=Strict`, send: { body: slice('strict', { endpoints: [{ addresses: ['10.244.1.9'], ready: true }] }) }, status: 400, reason: 'BadRequest', fields: ['endpoints[0].ready'] },
  { name: 'Strict: unknown field in a merge patch → 400', method: 'PATCH', path: `${svc('web')}?fieldValidation=Strict`, send: { body: { spec: { clusterIp: '10.96.0.51' } }, contentType: MERGE }, status: 400, reason: 'BadRequest', fields: ['spec.clusterIp'] },
  { name: 'Strict: unknown field on PUT → 400', method: 'PUT', path: `${pod('p1')}?fieldValidation=Strict`, send: { body: { ...podBody('p1', { nodeName: 'n1' }), spec: { nodeName: 'n1', containers: [{ name: 'app', imag: 'x' }] } } }, status: 400, reason: 'BadRequest', fields: ['spec.containers[0].imag'] },
  { name: 'fieldValidation=Bogus → 400', method: 'POST', path: `${svcs}?fieldValidation=Bogus`, send: { body: service('fv') }, status: 400, reason: 'BadRequest', message: /fieldValidation must be Strict, Warn or Ignore/ },

  // --- wrong JSON types: 400 (kube: "cannot unmarshal"), naming the field
  { name: 'port as a string → 400 naming spec.ports[0].port', method: 'POST', path: svcs, send: { body: service('t1', { ports: [{ port: '80' }] }) }, status: 400, reason: 'BadRequest', fields: ['spec.ports[0].port'], message: /spec\.ports\[0\]\.port: expected a number, got a string/ },
  { name: 'port 80.5 → 400', method: 'POST', path: svcs, send: { body: service('t2', { ports: [{ port: 80.5 }] }) }, status: 400, reason: 'BadRequest', fields: ['spec.ports[0].port'] },
  { name: 'containers as an object → 400', method: 'POST', path: pods, send: { body: { ...podBody('t3'), spec: { containers: { name: 'a' } } } }, status: 400, reason: 'BadRequest', fields: ['spec.containers'], message: /expected an array, got an object/ },
  { name: 'a label value that is a number → 400', method: 'POST', path: nodes, send: { body: { ...node('t4'), metadata: { name: 't4', labels: { zone: 1 } } } }, status: 400, reason: 'BadRequest', fields: ['metadata.labels.zone'] },
  { name: 'EndpointSlice addresses as a string → 400', method: 'POST', path: slices, send: { body: slice('t5', { endpoints: [{ addresses: '10.244.1.5' }] }) }, status: 400, reason: 'BadRequest', fields: ['endpoints[0].addresses'] },
  { name: 'EndpointSlice without addressType → 400', method: 'POST', path: slices, send: { body: { metadata: { name: 't6' }, endpoints: [] } }, status: 400, reason: 'BadRequest', fields: ['addressType'], message: /Required value/ },
  { name: 'a "__proto__" label key is refused, not silently dropped', method: 'POST', path: svcs, send: { body: '{"metadata":{"name":"proto","labels":{"__proto__":"x","app":"web"}},"spec":{"ports":[{"port":80}]}}' }, status: 400, reason: 'BadRequest', fields: ['metadata.labels.__proto__'] },
  { name: 'a "__proto__" key in a patch → 400', method: 'PATCH', path: svc('web'), send: { body: '{"metadata":{"annotations":{"__proto__":{"polluted":"yes"}}}}', contentType: MERGE }, status: 400, reason: 'BadRequest', fields: ['metadata.annotations.__proto__'] },

  // --- names: 422 naming metadata.name
  { name: 'uppercase Service name → 422', method: 'POST', path: svcs, send: { body: service('Web') }, status: 422, reason: 'Invalid', fields: ['metadata.name'], message: /^Service "Web" is invalid: metadata\.name: Invalid value: "Web": a DNS-1035 label/ },
  { name: 'Service name with an underscore → 422', method: 'POST', path: svcs, send: { body: service('my_svc') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'Service name of 64 characters → 422', method: 'POST', path: svcs, send: { body: service('a'.repeat(64)) }, status: 422, reason: 'Invalid', fields: ['metadata.name'], message: /no more than 63 characters/ },
  { name: 'Service name with a leading dash → 422', method: 'POST', path: svcs, send: { body: service('-web') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'Service name starting with a digit (DNS-1035) → 422', method: 'POST', path: svcs, send: { body: service('1web') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'uppercase Namespace name → 422', method: 'POST', path: p('namespaces'), send: { body: { metadata: { name: 'Team' } } }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'Namespace name with a dot (a label, not a subdomain) → 422', method: 'POST', path: p('namespaces'), send: { body: { metadata: { name: 'a.b' } } }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'a Namespace spec.finalizers entry that is not a qualified name → 422', method: 'POST', path: p('namespaces'), send: { body: { metadata: { name: 'fin' }, spec: { finalizers: ['kubernetes', 'not a name!'] } } }, status: 422, reason: 'Invalid', fields: ['spec.finalizers[1]'] },
  { name: 'a Namespace status.phase that does not exist → 422', method: 'PUT', path: p('namespaces', { name: 'default', subresource: 'status' }), send: { body: { metadata: { name: 'default' }, status: { phase: 'Gone' } } }, status: 422, reason: 'Invalid', fields: ['status.phase'] },
  { name: 'uppercase Node name → 422', method: 'POST', path: nodes, send: { body: node('N1') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'Pod name of 254 characters → 422', method: 'POST', path: pods, send: { body: podBody('a'.repeat(254)) }, status: 422, reason: 'Invalid', fields: ['metadata.name'], message: /no more than 253 characters/ },
  { name: 'Pod name with a slash → 422', method: 'POST', path: pods, send: { body: podBody('a/b') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'Lease name ".." → 422', method: 'POST', path: leases, send: { body: lease('..') }, status: 422, reason: 'Invalid', fields: ['metadata.name'] },
  { name: 'no name and no generateName → 422', method: 'POST', path: slices, send: { body: { ...slice('x'), metadata: {} } }, status: 422, reason: 'Invalid', fields: ['metadata.name'], message: /Required value/ },
  { name: 'invalid generateName → 422 naming metadata.generateName', method: 'POST', path: svcs, send: { body: { ...service('x'), metadata: { generateName: 'Web-' } } }, status: 422, reason: 'Invalid', fields: ['metadata.generateName'] },
  { name: 'generateName too long → 422', method: 'POST', path: pods, send: { body: { ...podBody('x'), metadata: { generateName: `${'a'.repeat(300)}-` } } }, status: 422, reason: 'Invalid', fields: ['metadata.generateName'] },
  { name: 'invalid label key → 422', method: 'POST', path: svcs, send: { body: service('lbl', {}, { labels: { 'bad key': 'x' } }) }, status: 422, reason: 'Invalid', fields: ['metadata.labels'] },
  { name: 'annotations over 256 KiB → 422', method: 'POST', path: svcs, send: { body: service('ann', {}, { annotations: { a: 'x'.repeat(300_000) } }) }, status: 422, reason: 'Invalid', fields: ['metadata.annotations'], message: /Too long/ },

  // --- IPs, CIDRs, ports, protocols, enums: 422 (value validation), naming the field
  { name: 'Service clusterIP "999.1.1.1" → 422', method: 'POST', path: svcs, send: { body: service('ip1', { clusterIP: '999.1.1.1' }) }, status: 422, reason: 'Invalid', fields: ['spec.clusterIP'], message: /must be a valid IP address/ },
  { name: 'Service clusterIPs with a bad entry → 422', method: 'POST', path: svcs, send: { body: service('ip2', { clusterIPs: ['10.96.0.1.1'] }) }, status: 422, reason: 'Invalid', fields: ['spec.clusterIPs[0]'] },
  { name: 'Service externalIPs with a bad entry → 422', method: 'POST', path: svcs, send: { body: service('ip3', { externalIPs: ['198.18.0.1', '1.2.3'] }) }, status: 422, reason: 'Invalid', fields: ['spec.externalIPs[1]'] },
  { name: 'EndpointSlice address "10.0.0.256" → 422', method: 'POST', path: slices, send: { body: slice('ip4', { endpoints: [{ addresses: ['10.0.0.256'] }] }) }, status: 422, reason: 'Invalid', fields: ['endpoints[0].addresses[0]'] },
  { name: 'IPv6 address in an IPv4 EndpointSlice → 422', method: 'POST', path: slices, send: { body: slice('ip5', { endpoints: [{ addresses: ['10.244.1.5'] }, { addresses: ['fd00:10:244::5'] }] }) }, status: 422, reason: 'Invalid', fields: ['endpoints[1].addresses[0]'] },
  { name: 'EndpointSlice addressType "IPv5" → 422', method: 'POST', path: slices, send: { body: slice('ip6', { addressType: 'IPv5' }) }, status: 422, reason: 'Invalid', fields: ['addressType'] },
  { name: 'EndpointSlice endpoint without addresses → 422', method: 'POST', path: slices, send: { body: slice('ip7', { endpoints: [{ addresses: [] }] }) }, status: 422, reason: 'Invalid', fields: ['endpoints[0].addresses'] },
  { name: 'Namespace status phase Terminating without a deletion → 422', method: 'PATCH', path: p('namespaces', { name: 'default', subresource: 'status' }), send: { body: { status: { phase: 'Terminating' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['status.phase'] },
  { name: 'Node podCIDR "10.0.0.0/33" → 422', method: 'POST', path: nodes, send: { body: node('c1', { podCIDR: '10.0.0.0/33' }) }, status: 422, reason: 'Invalid', fields: ['spec.podCIDR'] },
  { name: 'Node podCIDRs with a bad entry → 422', method: 'POST', path: nodes, send: { body: node('c2', { podCIDRs: ['10.244.0.0/24', 'garbage'] }) }, status: 422, reason: 'Invalid', fields: ['spec.podCIDRs[1]'] },
  { name: 'Node podCIDR patched to an invalid CIDR → 422', method: 'PATCH', path: p('nodes', { name: 'n1' }), send: { body: { spec: { podCIDR: '10.244.0.0/-1' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['spec.podCIDR'] },
  { name: 'Node status address that is not an IP → 422', method: 'PATCH', path: p('nodes', { name: 'n1', subresource: 'status' }), send: { body: { status: { addresses: [{ type: 'InternalIP', address: '198.18.0.300' }] } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['status.addresses[0].address'] },
  { name: 'Pod status podIP that is not an IP → 422', method: 'PATCH', path: pod('p1', 'status'), send: { body: { status: { podIP: '10.244.1' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['status.podIP'] },
  { name: 'Service port 0 → 422', method: 'POST', path: svcs, send: { body: service('p0', { ports: [{ port: 0 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].port'], message: /must be between 1 and 65535, inclusive/ },
  { name: 'Service port 70000 → 422', method: 'POST', path: svcs, send: { body: service('p1', { ports: [{ port: 70000 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].port'] },
  { name: 'Service targetPort 70000 → 422', method: 'POST', path: svcs, send: { body: service('p2', { ports: [{ port: 80, targetPort: 70000 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].targetPort'] },
  { name: 'Service named targetPort that is not an IANA name → 422', method: 'POST', path: svcs, send: { body: service('p3', { ports: [{ port: 80, targetPort: 'HTTP_PORT' }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].targetPort'] },
  { name: 'Pod containerPort 0 → 422', method: 'POST', path: pods, send: { body: podBody('p4', { containers: [{ name: 'a', ports: [{ containerPort: 0 }] }] }) }, status: 422, reason: 'Invalid', fields: ['spec.containers[0].ports[0].containerPort'] },
  { name: 'EndpointSlice port 70000 → 422', method: 'POST', path: slices, send: { body: slice('p5', { ports: [{ port: 70000 }] }) }, status: 422, reason: 'Invalid', fields: ['ports[0].port'] },
  { name: 'Service protocol "HTTP" → 422 (FieldValueNotSupported)', method: 'POST', path: svcs, send: { body: service('pr1', { ports: [{ port: 80, protocol: 'HTTP' }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].protocol'], message: /Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"/ },
  { name: 'EndpointSlice protocol "tcp" → 422', method: 'POST', path: slices, send: { body: slice('pr2', { ports: [{ port: 80, protocol: 'tcp' }] }) }, status: 422, reason: 'Invalid', fields: ['ports[0].protocol'] },
  { name: 'Pod container port protocol "ICMP" → 422', method: 'POST', path: pods, send: { body: podBody('pr3', { containers: [{ name: 'a', ports: [{ containerPort: 80, protocol: 'ICMP' }] }] }) }, status: 422, reason: 'Invalid', fields: ['spec.containers[0].ports[0].protocol'] },
  { name: 'Service type "Bogus" → 422', method: 'POST', path: svcs, send: { body: service('ty', { type: 'Bogus' }) }, status: 422, reason: 'Invalid', fields: ['spec.type'] },
  { name: 'two unnamed Service ports → 422', method: 'POST', path: svcs, send: { body: service('two', { ports: [{ port: 80 }, { port: 81 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].name', 'spec.ports[1].name'] },
  { name: 'every problem at once: one 422 naming each field', method: 'POST', path: svcs, send: { body: service('Bad_Name', { clusterIP: '1.2.3.4.5', ports: [{ port: 0, protocol: 'HTTP' }] }) }, status: 422, reason: 'Invalid', fields: ['metadata.name', 'spec.clusterIP', 'spec.ports[0].port', 'spec.ports[0].protocol'] },
  { name: 'a Pod without containers → 422', method: 'POST', path: pods, send: { body: { ...podBody('nc'), spec: { containers: [] } } }, status: 422, reason: 'Invalid', fields: ['spec.containers'] },
  { name: 'changing a bound Pod\'s nodeName → 422', method: 'PATCH', path: pod('p1'), send: { body: { spec: { nodeName: 'n2' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['spec.nodeName'], message: /field is immutable/ },
  { name: 'Lease leaseDurationSeconds 0 → 422', method: 'POST', path: leases, send: { body: lease('ld', { leaseDurationSeconds: 0 }) }, status: 422, reason: 'Invalid', fields: ['spec.leaseDurationSeconds'] },
  { name: 'Lease renewTime that is not RFC 3339 → 422', method: 'PATCH', path: p('leases', { namespace: 'default', name: 'l1' }), send: { body: { spec: { renewTime: 'yesterday' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['spec.renewTime'] },
  { name: 'an Event without involvedObject → 422 naming its kind and name', method: 'POST', path: events, send: { body: { ...event('e1'), involvedObject: undefined } }, status: 422, reason: 'Invalid', fields: ['involvedObject.kind', 'involvedObject.name'] },
  { name: 'an Event type "Info" → 422', method: 'POST', path: events, send: { body: event('e2', { type: 'Info' }) }, status: 422, reason: 'Invalid', fields: ['type'], message: /supported values: "Normal", "Warning"/ },
  { name: 'an Event reason over 128 bytes, message over 4096, count -1 → one 422 naming each', method: 'POST', path: events, send: { body: event('e3', { reason: 'R'.repeat(129), message: 'm'.repeat(4097), count: -1 }) }, status: 422, reason: 'Invalid', fields: ['reason', 'message', 'count'] },
  { name: 'an Event about a pod of another namespace → 422', method: 'POST', path: events, send: { body: event('e4', { involvedObject: { kind: 'Pod', namespace: 'kube-system', name: 'p' } }) }, status: 422, reason: 'Invalid', fields: ['involvedObject.namespace'] },
  { name: 'an Event moved to another object on update → 422', method: 'PATCH', path: p('events', { namespace: 'default', name: 'ev1' }), send: { body: { involvedObject: { name: 'n2' } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['involvedObject.name'], message: /field is immutable/ },
  { name: 'an Event lastTimestamp that is not RFC 3339 → 422', method: 'PATCH', path: p('events', { namespace: 'default', name: 'ev1' }), send: { body: { lastTimestamp: 'now' }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['lastTimestamp'] },
  { name: 'an Event count that is a string → 400', method: 'POST', path: events, send: { body: event('e5', { count: '2' }) }, status: 400, reason: 'BadRequest', fields: ['count'] },

  // --- allocations: 422 (and whatever was claimed is released again)
  { name: 'clusterIP outside the service CIDR → 422', method: 'POST', path: svcs, send: { body: service('out', { clusterIP: '10.0.0.5' }) }, status: 422, reason: 'Invalid', fields: ['spec.clusterIPs[0]'], message: /provided IP is not in the valid range\. The range of valid IPs is 10\.96\.0\.0\/12/, allocates: true },
  { name: 'clusterIP = the network address of the service CIDR → 422', method: 'POST', path: svcs, send: { body: service('net', { clusterIP: '10.96.0.0' }) }, status: 422, reason: 'Invalid', fields: ['spec.clusterIPs[0]'], allocates: true },
  { name: 'an IPv6 clusterIP on a single-stack IPv4 cluster → 422', method: 'POST', path: svcs, send: { body: service('v6', { clusterIP: 'fd00:10:96::5' }) }, status: 422, reason: 'Invalid', allocates: true },
  { name: 'a duplicate clusterIP → 422', method: 'POST', path: svcs, send: { body: service('dup', { clusterIP: WEB_IP }) }, status: 422, reason: 'Invalid', fields: ['spec.clusterIPs[0]'], message: /provided IP is already allocated/, allocates: true },
  { name: 'a nodePort below the range → 422', method: 'POST', path: svcs, send: { body: service('np1', { type: 'NodePort', ports: [{ port: 80, nodePort: 29999 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].nodePort'], message: /provided port is not in the valid range\. The range of valid ports is 30000-32767/, allocates: true },
  { name: 'a nodePort above the range → 422', method: 'POST', path: svcs, send: { body: service('np2', { type: 'NodePort', ports: [{ port: 80, nodePort: 40000 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].nodePort'], allocates: true },
  { name: 'a duplicate nodePort → 422', method: 'POST', path: svcs, send: { body: service('np3', { type: 'NodePort', ports: [{ port: 80, nodePort: NODE_PORT }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].nodePort'], message: /already allocated/, allocates: true },
  { name: 'second nodePort out of range: the first one claimed is released again', method: 'POST', path: svcs, send: { body: service('np4', { type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30081 }, { name: 'b', port: 81, nodePort: 29999 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[1].nodePort'], allocates: true },
  { name: 'a nodePort on a ClusterIP Service → 422', method: 'POST', path: svcs, send: { body: service('np5', { ports: [{ port: 80, nodePort: 30082 }] }) }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].nodePort'] },
  { name: 'changing a Service to NodePort with a nodePort out of range → 422', method: 'PATCH', path: svc('web'), send: { body: { spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 29999 }] } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].nodePort'], allocates: true },
  { name: 'changing an allocated clusterIP → 422', method: 'PATCH', path: svc('web'), send: { body: { spec: { clusterIP: '10.96.0.51', clusterIPs: ['10.96.0.51'] } }, contentType: MERGE }, status: 422, reason: 'Invalid', fields: ['spec.clusterIPs[0]'], allocates: true },

  // --- concurrency and existence: 409
  { name: 'update with a stale resourceVersion → 409', method: 'PUT', path: svc('web'), send: { body: service('web', { clusterIP: WEB_IP }, { resourceVersion: '__stale__' }) }, status: 409, reason: 'Conflict', message: /the object has been modified/ },
  { name: 'merge patch with a stale resourceVersion → 409', method: 'PATCH', path: svc('web'), send: { body: { metadata: { resourceVersion: '__stale__', labels: { x: 'y' } } }, contentType: MERGE }, status: 409, reason: 'Conflict' },
  { name: 'update with another uid → 409', method: 'PUT', path: svc('web'), send: { body: service('web', { clusterIP: WEB_IP }, { uid: '00000000-0000-0000-0000-000000000000' }) }, status: 409, reason: 'Conflict', message: /Precondition failed: UID/ },
  // The ClusterIP is allocated before the create finds the name taken, then released again.
  { name: 'create of an existing Service → 409', method: 'POST', path: svcs, send: { body: service('web') }, status: 409, reason: 'AlreadyExists', message: /^services "web" already exists$/, allocates: true },
  { name: 'create of an existing Node → 409', method: 'POST', path: nodes, send: { body: node('n1') }, status: 409, reason: 'AlreadyExists' },
  { name: 'create of an existing EndpointSlice → 409', method: 'POST', path: slices, send: { body: slice('es1') }, status: 409, reason: 'AlreadyExists', message: /endpointslices\.discovery\.k8s\.io "es1" already exists/ },
  {
    name: 'dryRun create of an existing name → 409 (kube-apiserver checks existence in dry runs too)',
    method: 'POST',
    path: `${svcs}?dryRun=All`,
    send: { body: service('web') },
    status: 409,
    reason: 'AlreadyExists',
  },
  {
    name: 'dryRun create with an allocated clusterIP → 422 (a dry run still checks the allocation)',
    method: 'POST',
    path: `${svcs}?dryRun=All`,
    send: { body: service('dup', { clusterIP: WEB_IP }) },
    status: 422,
    reason: 'Invalid',
    fields: ['spec.clusterIPs[0]'],
  },
  { name: 'delete with a uid precondition that does not hold → 409', method: 'DELETE', path: svc('web'), send: { body: { preconditions: { uid: 'not-the-uid' } } }, status: 409, reason: 'Conflict' },
  { name: 'delete with a stale resourceVersion precondition → 409', method: 'DELETE', path: svc('web'), send: { body: { preconditions: { resourceVersion: '__stale__' } } }, status: 409, reason: 'Conflict' },

  // --- paths and methods: 404 / 405 / 400
  { name: 'unknown resource → 404', method: 'GET', path: '/api/v1/widgets', status: 404, reason: 'NotFound' },
  { name: 'unknown group → 404', method: 'POST', path: '/apis/example.com/v1/namespaces/default/things', send: { body: {} }, status: 404, reason: 'NotFound' },
  { name: 'unknown version → 404', method: 'GET', path: '/api/v2/pods', status: 404, reason: 'NotFound' },
  { name: 'resource in the wrong group → 404', method: 'GET', path: '/apis/discovery.k8s.io/v1/nodes', status: 404, reason: 'NotFound' },
  { name: 'unknown subresource → 404', method: 'GET', path: `${pod('p1')}/log`, status: 404, reason: 'NotFound' },
  { name: 'a path too long → 404', method: 'PUT', path: `${pod('p1')}/status/extra`, send: { body: podBody('p1') }, status: 404, reason: 'NotFound' },
  { name: 'a cluster-scoped resource under a namespace → 404', method: 'DELETE', path: '/api/v1/namespaces/default/nodes/n1', status: 404, reason: 'NotFound' },
  { name: 'a subresource EndpointSlices do not have → 404', method: 'PUT', path: `${p('endpointslices', { namespace: 'default', name: 'es1' })}/status`, send: { body: slice('es1') }, status: 404, reason: 'NotFound' },
  { name: 'update of a missing object → 404', method: 'PUT', path: svc('ghost'), send: { body: service('ghost') }, status: 404, reason: 'NotFound', message: /^services "ghost" not found$/ },
  { name: 'patch of a missing object → 404', method: 'PATCH', path: p('nodes', { name: 'ghost' }), send: { body: {}, contentType: MERGE }, status: 404, reason: 'NotFound' },
  { name: 'delete of a missing object → 404', method: 'DELETE', path: p('leases', { namespace: 'default', name: 'ghost' }), status: 404, reason: 'NotFound' },
  { name: 'create in a namespace that does not exist → 404', method: 'POST', path: p('services', { namespace: 'nope' }), send: { body: service('x') }, status: 404, reason: 'NotFound', message: /namespaces "nope" not found/ },
  { name: 'POST to an object → 405', method: 'POST', path: svc('web'), send: { body: service('web') }, status: 405, reason: 'MethodNotAllowed' },
  { name: 'PUT to a collection → 405', method: 'PUT', path: svcs, send: { body: service('web') }, status: 405, reason: 'MethodNotAllowed' },
  { name: 'PATCH of a collection → 405', method: 'PATCH', path: nodes, send: { body: {}, contentType: MERGE }, status: 405, reason: 'MethodNotAllowed' },
  { name: 'OPTIONS → 405', method: 'OPTIONS', path: svcs, status: 405, reason: 'MethodNotAllowed' },
  { name: 'POST to discovery → 405', method: 'POST', path: '/api/v1', send: { body: {} }, status: 405, reason: 'MethodNotAllowed' },
  { name: 'a malformed %-escape in the path → 400, not a 500', method: 'GET', path: '/api/v1/namespaces/%E0%A4%A/pods', status: 400, reason: 'BadRequest' },
  { name: 'a malformed %-escape in an object name → 400', method: 'DELETE', path: '/api/v1/namespaces/default/pods/p%1', status: 400, reason: 'BadRequest' },
  // The URL parser would resolve these: `/pods/.` is the collection, and a DELETE of it would delete every pod.
  { name: "an object named '.' → 400, not a DELETE of the collection", method: 'DELETE', path: '/api/v1/namespaces/default/pods/.', status: 400, reason: 'BadRequest', message: /may not contain a '\.' segment/ },
  { name: "an object named '.' with DeleteOptions → 400", method: 'DELETE', path: '/api/v1/namespaces/default/pods/.', send: { body: {} }, status: 400, reason: 'BadRequest' },
  { name: "an object named '%2E' → 400", method: 'DELETE', path: '/api/v1/namespaces/default/pods/%2E', status: 400, reason: 'BadRequest' },
  { name: "a '..' segment → 400, not the parent path", method: 'GET', path: '/api/v1/namespaces/default/pods/..', status: 400, reason: 'BadRequest', message: /'\.\.' segment/ },
  { name: "a '.%2e' segment inside the path → 400", method: 'DELETE', path: '/api/v1/namespaces/kube-system/.%2e/default/pods', status: 400, reason: 'BadRequest' },

  // --- PATCH: content types and patch documents
  { name: 'PATCH as application/json → 415', method: 'PATCH', path: svc('web'), send: { body: { metadata: { labels: { a: 'b' } } }, contentType: 'application/json' }, status: 415, reason: 'UnsupportedMediaType', message: /application\/json-patch\+json/ },
  { name: 'server-side apply → 415', method: 'PATCH', path: svc('web'), send: { body: 'metadata: {labels: {a: b}}', contentType: 'application/apply-patch+yaml' }, status: 415, reason: 'UnsupportedMediaType' },
  { name: 'PATCH as text/plain → 415', method: 'PATCH', path: svc('web'), send: { body: '{}', contentType: 'text/plain' }, status: 415, reason: 'UnsupportedMediaType' },
  { name: 'PATCH without a content type → 415', method: 'PATCH', path: svc('web'), send: { body: '{}', contentType: null }, status: 415, reason: 'UnsupportedMediaType' },
  { name: 'merge patch that is not JSON → 400', method: 'PATCH', path: svc('web'), send: { body: '{"spec":', contentType: MERGE }, status: 400, reason: 'BadRequest' },
  { name: 'empty patch body → 400', method: 'PATCH', path: svc('web'), send: { body: '', contentType: MERGE }, status: 400, reason: 'BadRequest' },
  { name: 'merge patch that is an array → 400', method: 'PATCH', path: svc('web'), send: { body: [{ spec: {} }], contentType: MERGE }, status: 400, reason: 'BadRequest' },
  { name: 'JSON patch that is an object → 400', method: 'PATCH', path: svc('web'), send: { body: { op: 'add', path: '/metadata/labels/a', value: 'b' }, contentType: JSONPATCH }, status: 400, reason: 'BadRequest', message: /must be an array of operations/ },
  { name: 'JSON patch op without a path → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'add', value: 'b' }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest' },
  { name: 'JSON patch with an unknown op → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'merge', path: '/spec', value: {} }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest', message: /unknown op "merge"/ },
  { name: 'JSON patch add without a value → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'add', path: '/metadata/labels/a' }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest' },
  { name: 'JSON patch with a path that is not a pointer → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'remove', path: 'spec/ports' }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest' },
  { name: 'JSON patch test that fails → 422', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'test', path: '/spec/type', value: 'NodePort' }, { op: 'replace', path: '/spec/type', value: 'ClusterIP' }], contentType: JSONPATCH }, status: 422, reason: 'Invalid', fields: ['spec.type'] },
  { name: 'JSON patch remove of a missing path → 422', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'remove', path: '/spec/nothing' }], contentType: JSONPATCH }, status: 422, reason: 'Invalid' },
  { name: 'JSON patch add past the end of an array → 422', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'add', path: '/spec/ports/5', value: { port: 81 } }], contentType: JSONPATCH }, status: 422, reason: 'Invalid' },
  { name: 'JSON patch to an invalid port → 422', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'replace', path: '/spec/ports/0/port', value: 70000 }], contentType: JSONPATCH }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].port'] },
  { name: 'JSON patch to a port of the wrong type → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'replace', path: '/spec/ports/0/port', value: 'http' }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest', fields: ['spec.ports[0].port'] },
  { name: 'JSON patch of metadata.name → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'replace', path: '/metadata/name', value: 'other' }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest' },
  { name: 'JSON patch replacing the whole object with a number → 400', method: 'PATCH', path: svc('web'), send: { body: [{ op: 'replace', path: '', value: 5 }], contentType: JSONPATCH }, status: 400, reason: 'BadRequest' },
  { name: 'strategic merge patch with an unknown $patch → 400', method: 'PATCH', path: svc('web'), send: { body: { spec: { $patch: 'bogus' } }, contentType: SMP }, status: 400, reason: 'BadRequest' },
  { name: 'strategic merge patch to an invalid protocol → 422', method: 'PATCH', path: svc('web'), send: { body: { spec: { ports: [{ port: 80, protocol: 'HTTP' }] } }, contentType: SMP }, status: 422, reason: 'Invalid', fields: ['spec.ports[0].protocol'] },

  // --- query parameters: 400
  { name: 'limit=-1 → 400', method: 'GET', path: `${pods}?limit=-1`, status: 400, reason: 'BadRequest' },
  { name: 'limit=abc → 400', method: 'GET', path: `${nodes}?limit=abc`, status: 400, reason: 'BadRequest' },
  { name: 'a label selector that does not parse → 400', method: 'GET', path: `${pods}?labelSelector=${encodeURIComponent('app in (')}`, status: 400, reason: 'BadRequest' },
  { name: 'a field selector on an unsupported field → 400', method: 'GET', path: `${pods}?fieldSelector=${encodeURIComponent('spec.bogus=x')}`, status: 400, reason: 'BadRequest', message: /field label not supported/ },
  { name: 'a continue token we did not hand out → 400', method: 'GET', path: `${pods}?continue=garbage`, status: 400, reason: 'BadRequest' },
  { name: 'list resourceVersion=abc → 400', method: 'GET', path: `${pods}?resourceVersion=abc`, status: 400, reason: 'BadRequest' },
  { name: 'an unknown resourceVersionMatch → 400', method: 'GET', path: `${pods}?resourceVersion=1&resourceVersionMatch=Newest`, status: 400, reason: 'BadRequest' },
  { name: 'watch resourceVersion=abc → 400 before the stream starts', method: 'GET', path: `${pods}?watch=true&resourceVersion=abc`, status: 400, reason: 'BadRequest' },
  { name: 'watch timeoutSeconds=soon → 400', method: 'GET', path: `${pods}?watch=true&timeoutSeconds=soon`, status: 400, reason: 'BadRequest' },
  { name: 'dryRun=Some → 400, nothing stored', method: 'POST', path: `${svcs}?dryRun=Some`, send: { body: service('dry') }, status: 400, reason: 'BadRequest' },
  { name: 'gracePeriodSeconds=-1 → 400', method: 'DELETE', path: `${pod('p1')}?gracePeriodSeconds=-1`, status: 400, reason: 'BadRequest' },
  { name: 'a DeleteOptions body that is an array → 400', method: 'DELETE', path: svc('web'), send: { body: [1] }, status: 400, reason: 'BadRequest' },
  { name: 'DeleteOptions gracePeriodSeconds 1.5 → 400', method: 'DELETE', path: pod('p1'), send: { body: { gracePeriodSeconds: 1.5 } }, status: 400, reason: 'BadRequest' },
  { name: 'DeleteOptions preconditions that are not an object → 400', method: 'DELETE', path: svc('web'), send: { body: { preconditions: 'x' } }, status: 400, reason: 'BadRequest' },
  { name: 'a DeleteOptions body that is not JSON → 400', method: 'DELETE', path: svc('web'), send: { body: '{' }, status: 400, reason: 'BadRequest' },
  { name: 'includeObject=All with a Table → 400', method: 'GET', path: `${pods}?includeObject=All`, send: { headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } }, status: 400, reason: 'BadRequest' },
];

describe('malformed requests', () => {
  it('has unique case names', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  for (const c of cases) {
    (c.knownBug ? it.skip : it)(c.name, async () => {
      const before = await dump();
      const rev = await server.storeHandle!.currentRevision();
      const path = c.path.replace('__stale__', webRV);
      const send = c.send?.body !== undefined && typeof c.send.body !== 'string' ? { ...c.send, body: JSON.parse(JSON.stringify(c.send.body).replaceAll('__stale__', webRV)) as unknown } : c.send;
      const r = await call(c.method, path, send);
      expect(r.status, r.text.slice(0, 500)).toBe(c.status);
      const s = expectStatus(r, c.status, c.reason);
      if (c.message) expect(s.message).toMatch(c.message);
      if (c.fields) {
        const named = (s.details?.causes ?? []).map((x) => x.field);
        for (const f of c.fields) expect(named, `causes name ${f}: ${s.message}`).toContain(f);
      }
      // Nothing stored: the same keys at the same modRevisions.
      expect(await dump()).toEqual(before);
      if (!c.allocates) expect(await server.storeHandle!.currentRevision(), 'not a single write').toBe(rev);
    });
  }

  it('the fixtures are untouched at the end (web keeps its uid, clusterIP and nodePort holder)', async () => {
    const web = await ok<Service>('GET', svc('web'));
    expect(web.metadata.uid).toBe(webUID);
    expect(web.spec?.clusterIP).toBe(WEB_IP);
    expect(web.spec?.type).toBe('ClusterIP');
    const np = await ok<Service>('GET', svc('np'));
    expect(np.spec?.ports?.[0]?.nodePort).toBe(NODE_PORT);
    const keys = [...(await dump()).keys()];
    expect(keys.filter((k) => k.startsWith('/registry/ranges/nodeports/'))).toEqual([`/registry/ranges/nodeports/${NODE_PORT}`]);
    expect(keys.filter((k) => k.startsWith('/registry/services/')).sort()).toEqual(['/registry/services/default/np', '/registry/services/default/web']);
  });

  it('an absolute-form request target that is not a URL → 400 Status, not a 500', async () => {
    const out = await raw('GET http://[::1/api/v1/pods HTTP/1.1\r\nHost: localhost\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4))).toMatchObject({ kind: 'Status', code: 400, reason: 'BadRequest' });
  });

  it(`a body nested exactly ${MAX_BODY_DEPTH} levels is accepted; ${MAX_BODY_DEPTH + 1} is not`, async () => {
    // {metadata, spec: {containers, volumes: [...]}}: the object is 1, spec 2, volumes 3.
    const body = (levels: number) => `{"metadata":{"name":"edge"},"spec":{"containers":[{"name":"a"}],"volumes":${nested(levels - 2)}}}`;
    const over = await call('POST', pods, { body: body(MAX_BODY_DEPTH + 1) });
    expectStatus(over, 400, 'BadRequest');
    const at = await call('POST', pods, { body: body(MAX_BODY_DEPTH) });
    expect(at.status, at.text.slice(0, 300)).toBe(201);
    await ok('DELETE', `${pod('edge')}?gracePeriodSeconds=0`);
  });

  it('unknown fields without Strict are dropped with a Warning, not stored', async () => {
    const r = await call('POST', `${svcs}?fieldValidation=Warn`, { body: service('warned', { bogus: 1 }) });
    expect(r.status, r.text).toBe(201);
    expect(String(r.headers.warning)).toMatch(/^299 - "unknown field \\"spec\.bogus\\""$/);
    const got = await ok<Service>('GET', svc('warned'));
    expect(got.spec).not.toHaveProperty('bogus');
    await ok('DELETE', svc('warned'));
  });

  it('dryRun=All of a valid create answers 201 and stores nothing', async () => {
    const before = await dump();
    const { apiVersion: _a, kind: _k, ...untyped } = service('dry', { type: 'NodePort' });
    const r = await call('POST', `${svcs}?dryRun=All`, { body: untyped });
    expect(r.status, r.text).toBe(201);
    // The answer is a typed object even though it never reached the store.
    expect(r.json).toMatchObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'dry', namespace: 'default' } });
    expect(await dump()).toEqual(before);
    expect((await call('GET', svc('dry'))).status).toBe(404);
  });

  it('the connection survives a 413: the next request on it is answered', async () => {
    const one = new Agent({ connect: { socketPath }, connections: 1 });
    try {
      const r1 = await request(`http://localhost${svcs}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(big(MAX_BODY_BYTES)), dispatcher: one });
      expect(r1.statusCode).toBe(413);
      await r1.body.text();
      const r2 = await request(`http://localhost${svc('web')}`, { dispatcher: one });
      expect(r2.statusCode).toBe(200);
      await r2.body.text();
    } finally {
      await one.close();
    }
  });
});

// ------------------------------------------------------------------ fuzz

/** Values of every JSON type, biased toward what breaks validators. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 65536, 2 ** 53, -(2 ** 31), '', ' ', '-', '__proto__', 'constructor', '\u0000', 'None', '0.0.0.0', '::', '10.96.0.1', 'TCP', 'HTTP', [], {}, [null], { __proto__: null }),
  fc.string({ maxLength: 20, unit: 'binary' }),
  fc.integer({ min: -100_000, max: 100_000 }),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);
// Well-typed values with random content: they get past decoding into validation,
// allocation and storage. Junk of the wrong type is planted separately (bodyFor).
const name = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,8}[a-z0-9]$/) },
  { weight: 1, arbitrary: fc.string({ maxLength: 70, unit: 'grapheme' }) },
  { weight: 1, arbitrary: fc.constantFrom('A', 'a_b', '-a', 'a-', 'a'.repeat(64), 'a'.repeat(254), '..', 'a/b', '%2F', '', 'web', 'p1', 'n1', 'es1', 'l1') },
);
const serviceIP = fc.integer({ min: 0, max: 2 ** 20 - 1 }).map((i) => `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
const ipish = fc.oneof(serviceIP, fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.constantFrom('10.96.0.1', '10.96.0.50', '10.96.0.0', '10.111.255.255', '999.1.1.1', 'None', '', '10.96.0.0/12', 'fd00:10:96::1'), fc.string({ maxLength: 20 }));
const cidrish = fc.oneof(fc.tuple(fc.ipV4(), fc.integer({ min: -1, max: 40 })).map(([a, b]) => `${a}/${b}`), fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 130 })).map(([a, b]) => `${a}/${b}`), fc.constantFrom('10.244.1.0/24', '10.244.1.1/24', '10.0.0.0/33'), fc.string({ maxLength: 20 }));
const port = fc.oneof(fc.integer({ min: -2, max: 70_000 }), fc.constantFrom(0, 1, 80, 29999, 30000, 30080, 30081, 32767, 32768, 65535, 65536));
const protocol = fc.constantFrom('TCP', 'UDP', 'SCTP', 'HTTP', 'tcp', '', undefined);
const strMap = fc.dictionary(fc.oneof(fc.stringMatching(/^[a-z]{1,5}(\/[a-z]{1,5})?$/), fc.string({ maxLength: 10 })), fc.oneof(fc.stringMatching(/^[a-z0-9]{0,6}$/), fc.string({ maxLength: 10 })), { maxKeys: 3 });
const timestamp = fc.oneof(fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')), fc.string({ maxLength: 25 }));
const meta = fc.record({ name, labels: strMap, annotations: strMap, generateName: name }, { requiredKeys: ['name'] });
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

const fuzzService = fc.record({
  metadata: meta,
  spec: fc.record(
    {
      type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName', 'Bogus'),
      clusterIP: ipish,
      clusterIPs: fc.array(ipish, { maxLength: 3 }),
      ipFamilies: fc.array(fc.constantFrom('IPv4', 'IPv6', 'IPv5'), { maxLength: 3 }),
      ipFamilyPolicy: fc.constantFrom('SingleStack', 'PreferDualStack', 'RequireDualStack', 'Sometimes'),
      externalName: name,
      externalIPs: fc.array(ipish, { maxLength: 2 }),
      externalTrafficPolicy: fc.constantFrom('Cluster', 'Local', 'Elsewhere'),
      internalTrafficPolicy: fc.constantFrom('Cluster', 'Local', 'Elsewhere'),
      sessionAffinity: fc.constantFrom('None', 'ClientIP', 'Sticky'),
      sessionAffinityConfig: fc.record({ clientIP: fc.record({ timeoutSeconds: fc.integer({ min: -1, max: 100_000 }) }) }),
      healthCheckNodePort: port,
      allocateLoadBalancerNodePorts: fc.boolean(),
      loadBalancerSourceRanges: fc.array(cidrish, { maxLength: 2 }),
      selector: strMap,
      ports: fc.array(fc.record({ name: opt(name), port, targetPort: fc.oneof(port, name), nodePort: opt(port), protocol }, { requiredKeys: ['port'] }), { maxLength: 3 }),
    },
    { requiredKeys: [] },
  ),
  status: fc.record({ loadBalancer: fc.record({ ingress: fc.array(fc.record({ ip: ipish, hostname: name }, { requiredKeys: [] }), { maxLength: 2 }) }) }),
});
const container = fc.record({ name, image: fc.string({ maxLength: 10 }), ports: fc.array(fc.record({ name: opt(name), containerPort: port, protocol, hostPort: opt(port) }, { requiredKeys: ['containerPort'] }), { maxLength: 2 }) }, { requiredKeys: ['name'] });
const fuzzPod = fc.record({
  metadata: meta,
  spec: fc.record(
    {
      nodeName: name,
      containers: fc.array(container, { maxLength: 2 }),
      initContainers: fc.array(container, { maxLength: 1 }),
      restartPolicy: fc.constantFrom('Always', 'Never', 'OnFailure', 'Sometimes'),
      terminationGracePeriodSeconds: fc.integer({ min: -5, max: 100 }),
      volumes: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: ['containers'] },
  ),
  status: fc.record({ phase: fc.constantFrom('Pending', 'Running', 'Succeeded', 'Exploded'), podIP: ipish, podIPs: fc.array(fc.record({ ip: ipish }), { maxLength: 3 }), hostIP: ipish, conditions: fc.array(fc.record({ type: fc.constantFrom('Ready', 'Ready', 'PodScheduled'), status: fc.constantFrom('True', 'False', 'Maybe'), lastTransitionTime: timestamp }, { requiredKeys: ['type', 'status'] }), { maxLength: 2 }) }, { requiredKeys: [] }),
});
const fuzzNode = fc.record({
  metadata: meta,
  spec: fc.record({ podCIDR: cidrish, podCIDRs: fc.array(cidrish, { maxLength: 3 }), unschedulable: fc.boolean(), taints: fc.array(fc.record({ key: name, effect: fc.constantFrom('NoSchedule', 'NoExecute', 'Bad') }), { maxLength: 2 }) }, { requiredKeys: [] }),
  status: fc.record({ addresses: fc.array(fc.record({ type: fc.constantFrom('InternalIP', 'Hostname', 'Weird'), address: ipish }), { maxLength: 2 }), conditions: fc.array(fc.record({ type: fc.constantFrom('Ready', 'Ready', 'MemoryPressure'), status: fc.constantFrom('True', 'False', 'Maybe'), lastHeartbeatTime: timestamp }, { requiredKeys: ['type', 'status'] }), { maxLength: 3 }) }, { requiredKeys: [] }),
});
const fuzzSlice = fc.record({
  metadata: meta,
  addressType: fc.constantFrom('IPv4', 'IPv4', 'IPv6', 'FQDN', 'IPv5'),
  endpoints: fc.array(fc.record({ addresses: fc.array(ipish, { maxLength: 3 }), nodeName: opt(name), hostname: opt(name), conditions: fc.record({ ready: fc.boolean(), serving: fc.boolean() }, { requiredKeys: [] }) }, { requiredKeys: ['addresses'] }), { maxLength: 3 }),
  ports: fc.array(fc.record({ name: opt(name), port: opt(port), protocol }), { maxLength: 3 }),
}, { requiredKeys: ['metadata', 'addressType', 'endpoints'] });
const fuzzLease = fc.record({
  metadata: meta,
  spec: fc.record({ holderIdentity: fc.string({ maxLength: 10 }), leaseDurationSeconds: fc.integer({ min: -1, max: 100 }), renewTime: timestamp, acquireTime: timestamp, leaseTransitions: fc.integer({ min: -1, max: 10 }) }, { requiredKeys: [] }),
});
const fuzzEvent = fc.record({
  metadata: meta,
  involvedObject: fc.record({ kind: fc.constantFrom('Node', 'Pod', 'Service', ''), name, namespace: fc.constantFrom('default', 'kube-system', ''), uid: fc.string({ maxLength: 10 }), fieldPath: fc.string({ maxLength: 10 }) }, { requiredKeys: [] }),
  reason: fc.oneof(fc.constantFrom('NotOnLink', 'TransportReady', ''), fc.string({ maxLength: 140 })),
  message: fc.string({ maxLength: 40 }),
  type: fc.constantFrom('Normal', 'Warning', 'Info', ''),
  count: fc.integer({ min: -2, max: 10 }),
  firstTimestamp: timestamp,
  lastTimestamp: timestamp,
  source: fc.record({ component: fc.string({ maxLength: 10 }), host: name }, { requiredKeys: [] }),
  series: fc.record({ count: fc.integer({ min: -1, max: 5 }), lastObservedTime: timestamp }, { requiredKeys: [] }),
}, { requiredKeys: ['metadata'] });
const fuzzNamespace = fc.record({ metadata: meta, spec: fc.record({ finalizers: fc.array(fc.string({ maxLength: 10 }), { maxLength: 2 }) }), status: fc.record({ phase: fc.constantFrom('Active', 'Terminating', 'Gone') }, { requiredKeys: [] }) }, { requiredKeys: ['metadata'] });

/** The fixture each resource's PUT / PATCH aims at. */
const TARGET: Record<ResourceName, { namespace?: string; name: string }> = {
  namespaces: { name: 'default' },
  nodes: { name: 'n1' },
  pods: { namespace: 'default', name: 'p1' },
  services: { namespace: 'default', name: 'web' },
  endpointslices: { namespace: 'default', name: 'es1' },
  leases: { namespace: 'default', name: 'l1' },
  events: { namespace: 'default', name: 'ev1' },
};
const BODIES: Record<ResourceName, fc.Arbitrary<unknown>> = { services: fuzzService, pods: fuzzPod, nodes: fuzzNode, endpointslices: fuzzSlice, leases: fuzzLease, namespaces: fuzzNamespace, events: fuzzEvent };
const RESOURCE_NAMES = Object.keys(RESOURCES) as ResourceName[];

/** A body: a well-shaped random object, pure junk, or a shaped one with junk at a random place. */
const bodyFor = (r: ResourceName): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 6, arbitrary: BODIES[r] },
    { weight: 1, arbitrary: junk },
    { weight: 2, arbitrary: fc.tuple(BODIES[r], fc.array(fc.constantFrom('metadata', 'spec', 'status', 'ports', 'endpoints', 'addresses', 'containers', '0', 'name', 'labels', 'port', 'clusterIP', 'podCIDR', 'addressType'), { minLength: 1, maxLength: 4 }), junk).map(([b, path, v]) => plant(b, path, v)) },
    { weight: 1, arbitrary: fc.object({ maxDepth: 3 }) },
  );

/** Puts `v` at `path` in a copy of `b`, creating what is missing. */
function plant(b: unknown, path: string[], v: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(b ?? {}) ?? '{}') as unknown;
  const root = (typeof copy === 'object' && copy !== null ? copy : {}) as Record<string, unknown>;
  let cur: Record<string, unknown> = root;
  for (const k of path.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== 'object' || next === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = v;
  return root;
}

const jsonPatchOp = fc.record({
  op: fc.constantFrom('add', 'remove', 'replace', 'move', 'copy', 'test', 'bogus'),
  path: fc.oneof(fc.constantFrom('', '/', '/spec', '/spec/ports/0/port', '/spec/ports/-', '/metadata/labels/a', '/metadata/name', '/status', '/spec/containers/0', '/endpoints/0/addresses/0', '/addressType', '/spec/podCIDR', '/metadata/resourceVersion', '/metadata/uid', '/spec/~2'), fc.string({ maxLength: 12 })),
  from: fc.constantFrom('/spec', '/metadata', '/spec/ports/0', '/nope'),
  value: junk,
}, { requiredKeys: ['op'] });

const fuzzRequest = fc.constantFrom(...RESOURCE_NAMES).chain((r) => {
  const t = TARGET[r];
  const collection = p(r, t.namespace ? { namespace: t.namespace } : {});
  const object = p(r, t);
  const hasStatus = (RESOURCES[r].subresources as readonly string[]).includes('status');
  const target = fc.constantFrom(object, ...(hasStatus ? [p(r, { ...t, subresource: 'status' })] : []));
  return fc.oneof(
    bodyFor(r).map((body) => ({ method: 'POST', path: collection, body, contentType: 'application/json' })),
    BODIES[r].map((body) => ({ method: 'POST', path: collection, body: stringifyYaml(body), contentType: YAML })),
    fc.tuple(fc.constantFrom('', '?fieldValidation=Strict', '?fieldValidation=Ignore', '?dryRun=All'), bodyFor(r)).map(([q, body]) => ({ method: 'POST', path: `${collection}${q}`, body, contentType: 'application/json' })),
    fc.tuple(target, bodyFor(r), fc.boolean()).map(([path, body, keepName]) => ({ method: 'PUT', path, body: keepName ? plant(body, ['metadata', 'name'], t.name) : body, contentType: 'application/json' })),
    fc.tuple(target, bodyFor(r), fc.constantFrom(MERGE, SMP)).map(([path, body, contentType]) => ({ method: 'PATCH', path, body, contentType })),
    fc.tuple(target, fc.oneof(fc.array(jsonPatchOp, { maxLength: 3 }), junk)).map(([path, body]) => ({ method: 'PATCH', path, body, contentType: JSONPATCH })),
    fc.tuple(name, fc.oneof(fc.constant(undefined), fc.record({ gracePeriodSeconds: fc.oneof(fc.integer({ min: -1, max: 60 }), junk), preconditions: fc.oneof(fc.record({ uid: fc.string(), resourceVersion: fc.string() }, { requiredKeys: [] }), junk) }, { requiredKeys: [] }), junk), fc.constantFrom('', '?gracePeriodSeconds=0', '?dryRun=All', '?gracePeriodSeconds=x'))
      .filter(([n]) => n !== t.name && !['default', 'kube-system', 'kube-public', 'kube-node-lease'].includes(n))
      .map(([n, body, q]) => ({ method: 'DELETE', path: `${collection}/${encodeURIComponent(n) || 'x'}${q}`, body, contentType: 'application/json' })),
    fc.tuple(fc.constantFrom('POST', 'PUT', 'PATCH'), fc.string({ maxLength: 12 }), fc.string({ maxLength: 40, unit: 'binary' }), fc.constantFrom('application/json', YAML, MERGE, 'text/plain', '', 'application/json; charset=utf-8')).map(([method, seg, body, contentType]) => ({
      method,
      path: method === 'POST' ? collection : `${collection}/${encodeURIComponent(seg) || 'x'}`,
      body,
      contentType,
    })),
  );
});

describe('fuzz: random bodies to every resource', () => {
  it('every answer is a 2xx or a 4xx Status; nothing accepted becomes unreadable; the server keeps serving', async () => {
    const seen = new Map<number, number>();
    const seed = process.env.PODNET_FUZZ_SEED ? Number(process.env.PODNET_FUZZ_SEED) : undefined;
    await fc.assert(
      fc.asyncProperty(fuzzRequest, async (q) => {
        const body = q.method === 'DELETE' && q.body === undefined ? undefined : typeof q.body === 'string' ? q.body : (JSON.stringify(q.body) ?? 'null');
        const before = await dump();
        const r = await call(q.method, q.path, { ...(body !== undefined ? { body } : {}), contentType: q.contentType || null });
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
        const good = (r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500);
        if (!good) throw new Error(`${q.method} ${q.path} answered ${r.status}: ${r.text.slice(0, 300)}`);
        if (r.status >= 400) {
          const after = await dump();
          if (JSON.stringify([...after]) !== JSON.stringify([...before])) throw new Error(`${q.method} ${q.path} answered ${r.status} but the store changed: ${r.text.slice(0, 300)}`);
          const s = r.json as Status | undefined;
          if (s?.kind !== 'Status' || s.code !== r.status || typeof s.reason !== 'string' || !s.message) throw new Error(`not a Status: ${r.status} ${r.text.slice(0, 300)}`);
          for (const c of s.details?.causes ?? []) if (typeof c.field !== 'string' && c.field !== undefined) throw new Error(`cause without a field path: ${r.text.slice(0, 300)}`);
        } else {
          const o = r.json as KubeObject | undefined;
          const dryRun = q.path.includes('dryRun=All');
          if (!o?.apiVersion || !o.kind || !o.metadata?.name || (!dryRun && !o.metadata.resourceVersion)) throw new Error(`a success without the object: ${r.text.slice(0, 300)}`);
        }
      }),
      { numRuns: process.env.PODNET_FUZZ_RUNS ? Number(process.env.PODNET_FUZZ_RUNS) : 400, ...(seed !== undefined ? { seed } : {}) },
    );
    // Something was accepted and something refused: the run exercised both paths.
    const count = (lo: number, hi: number) => [...seen].filter(([s]) => s >= lo && s < hi).reduce((a, [, n]) => a + n, 0);
    expect(count(200, 300)).toBeGreaterThan(0);
    expect(count(400, 500)).toBeGreaterThan(100);

    // Still serving.
    expect((await call('GET', '/healthz')).status).toBe(200);
    // Whatever was stored reads back, and is accepted again unchanged (PUT of what GET gave).
    for (const r of RESOURCE_NAMES) {
      const list = await ok<KubeList>('GET', p(r));
      expect(list.items.length, r).toBeGreaterThan(0);
      for (const item of list.items) {
        const path = p(r, { ...(item.metadata.namespace ? { namespace: item.metadata.namespace } : {}), name: item.metadata.name! });
        const again = await call('PUT', `${path}?fieldValidation=Strict`, { body: item });
        expect(again.status, `${path}: ${again.text.slice(0, 400)}`).toBe(200);
        expect((again.json as KubeObject).metadata.resourceVersion, `${path}: a no-op PUT writes nothing`).toBe(item.metadata.resourceVersion);
      }
    }
  }, 60_000);

  // As kube-apiserver: generateName is kept on update, and a PUT of what GET gave does not write.
  it('a no-op PUT of an object created with generateName writes nothing and keeps generateName', async () => {
    const made = await ok<Service>('POST', svcs, { ...service('x'), metadata: { generateName: 'gen-' } });
    const again = await ok<Service>('PUT', svc(made.metadata.name!), made);
    expect(again.metadata.resourceVersion).toBe(made.metadata.resourceVersion);
    expect(again.metadata.generateName).toBe('gen-');
  });
});
