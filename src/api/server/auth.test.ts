/**
 * The authorization role matrix of `podnet api`, over real HTTP (a unix socket in a temp
 * dir) to an in-process ApiServer with the embedded SQLite store and every controller
 * disabled, so the only writes are the ones a case makes.
 *
 * Each case says who asks, what, the status code expected, and whether the store must
 * have changed: the object the case aims at is read back as admin before and after, and
 * the store's revision is compared (a refused request must not move it at all).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCES, resourcePath } from '../../client/resources.js';
import type { ResourceName } from '../../client/resources.js';
import type { KubeObject, Pod, Status } from '../../client/types.js';
import { Cidr } from '../../util/ipnet.js';
import { silentLogger } from '../../util/log.js';
import { ApiServer, CONTROLLERS } from '../apiserver.js';

// ------------------------------------------------------------------ harness

const TOKENS = {
  admin: 'admin-token',
  n1: 'n1-token',
  n2: 'n2-token',
  n3: 'n3-token',
  /** Authenticated, but neither admin nor node. */
  alice: 'alice-token',
  /** Named like a node, but not in system:nodes. */
  fakeNode: 'fake-node-token',
  /** In system:nodes, but not named system:node:<name>. */
  namelessNode: 'nameless-node-token',
  /** "system:node:" with an empty node name. */
  emptyNode: 'empty-node-token',
} as const;
type Who = keyof typeof TOKENS | 'none' | 'bad' | 'basic';

const TOKEN_FILE = [
  '# token,user,uid,groups',
  `${TOKENS.admin},admin,1,"system:masters"`,
  `${TOKENS.n1},system:node:n1,2,"system:nodes"`,
  `${TOKENS.n2},system:node:n2,3,"system:nodes"`,
  `${TOKENS.n3},system:node:n3,4,"system:nodes"`,
  `${TOKENS.alice},alice,5,"devs,system:authenticated"`,
  `${TOKENS.fakeNode},system:node:n1,6,"devs"`,
  `${TOKENS.namelessNode},kubelet,7,"system:nodes"`,
  `${TOKENS.emptyNode},system:node:,8,"system:nodes"`,
  '',
].join('\n');

interface Reply {
  status: number;
  text: string;
  json: unknown;
}

interface CallOptions {
  body?: unknown;
  contentType?: string;
}

class Harness {
  private constructor(
    readonly dir: string,
    readonly server: ApiServer,
    private readonly agent: Agent,
  ) {}

  static async start(opts: { anonymousAdmin?: boolean; tokens?: boolean } = {}): Promise<Harness> {
    const dir = mkdtempSync(join(tmpdir(), 'podnet-auth-'));
    const tokenFile = join(dir, 'tokens.csv');
    writeFileSync(tokenFile, TOKEN_FILE);
    const socketPath = join(dir, 'api.sock');
    const server = new ApiServer({
      store: { kind: 'sqlite', dataDir: join(dir, 'data') },
      listen: { socketPath },
      serviceCIDRs: [Cidr.parse('10.96.0.0/12')],
      nodePortRange: { min: 30000, max: 32767 },
      ...(opts.tokens === false ? {} : { tokenFile }),
      ...(opts.anonymousAdmin ? { anonymousAdmin: true } : {}),
      disabledControllers: [...CONTROLLERS],
      log: silentLogger(),
    });
    try {
      await server.start();
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return new Harness(dir, server, new Agent({ connect: { socketPath } }));
  }

  async call(who: Who, method: string, path: string, opts: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (who === 'bad') headers.authorization = 'Bearer not-a-known-token';
    else if (who === 'basic') headers.authorization = `Basic ${Buffer.from('admin:admin').toString('base64')}`;
    else if (who !== 'none') headers.authorization = `Bearer ${TOKENS[who]}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    const res = await request(`http://localhost${path}`, { method: method as 'GET', headers, body, dispatcher: this.agent });
    if (/[?&]watch=(true|1)\b/.test(path)) {
      // A watch streams: the status line is the answer; stop reading.
      res.body.on('error', () => undefined);
      res.body.destroy();
      return { status: res.statusCode, text: '', json: undefined };
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, text, json };
  }

  /** The initial events of a watch (up to the initial-events-end bookmark): [type, name]. */
  async watchInitial(who: Who, path: string): Promise<{ status: number; events: [string, string | undefined][] }> {
    const sep = path.includes('?') ? '&' : '?';
    const res = await request(`http://localhost${path}${sep}watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=5`, {
      headers: { authorization: `Bearer ${TOKENS[who as keyof typeof TOKENS]}` },
      dispatcher: this.agent,
    });
    const events: [string, string | undefined][] = [];
    let buf = '';
    if (res.statusCode === 200) {
      outer: for await (const chunk of res.body) {
        buf += String(chunk);
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const ev = JSON.parse(buf.slice(0, nl)) as { type: string; object: KubeObject };
          buf = buf.slice(nl + 1);
          if (ev.type === 'BOOKMARK') break outer;
          events.push([ev.type, ev.object.metadata.name]);
        }
      }
    }
    res.body.on('error', () => undefined);
    res.body.destroy();
    return { status: res.statusCode, events };
  }

  /** As admin; throws unless 2xx. */
  async admin<T = KubeObject>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.call('admin', method, path, { body, ...(contentType ? { contentType } : {}) });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.json as T;
  }

  /** What an admin GET of `path` answers: status and body, the fingerprint of the stored object. */
  async snapshot(path: string): Promise<string> {
    const r = await this.call('admin', 'GET', path);
    return `${r.status} ${r.text}`;
  }

  async revision(): Promise<number> {
    return this.server.storeHandle!.currentRevision();
  }

  async stop(): Promise<void> {
    await this.agent.close();
    await this.server.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const p = (resource: ResourceName, opts: { namespace?: string; name?: string; subresource?: string } = {}) => resourcePath(RESOURCES[resource], opts);

function expectStatus(r: Reply, code: number, reason: string): Status {
  const s = r.json as Status;
  expect(s, r.text).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason });
  expect(typeof s.message).toBe('string');
  return s;
}

// ------------------------------------------------------------------ fixtures

const container = { name: 'app', image: 'registry.test/app:1' };

function pod(name: string, nodeName?: string): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'web' } }, spec: { containers: [container], ...(nodeName ? { nodeName } : {}) } };
}

function event(name: string, involvedObject: Record<string, string>, namespace = 'default'): KubeObject {
  return { apiVersion: 'v1', kind: 'Event', metadata: { name, namespace }, involvedObject, reason: 'NotOnLink', message: 'a peer is not on-link', type: 'Warning', count: 1, source: { component: 'podnet-agent' } } as KubeObject;
}

function lease(namespace: string, name: string): KubeObject {
  return { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { holderIdentity: name, leaseDurationSeconds: 40 } } as KubeObject;
}

async function seed(h: Harness): Promise<void> {
  await h.admin('POST', p('namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team' } });
  for (const n of ['n1', 'n2']) await h.admin('POST', p('nodes'), { apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {} });
  for (const n of ['n1', 'n2']) await h.admin('POST', p('leases', { namespace: 'kube-node-lease' }), lease('kube-node-lease', n));
  await h.admin('POST', p('leases', { namespace: 'default' }), lease('default', 'n1'));
  for (const [name, node] of [['p-n1', 'n1'], ['p-n2', 'n2'], ['p-free', undefined], ['p-n1-term', 'n1']] as const) {
    await h.admin('POST', p('pods', { namespace: 'default' }), pod(name, node));
  }
  // p-n1-term is terminating: a graceful delete set its deletionTimestamp.
  const term = await h.admin<Pod>('DELETE', p('pods', { namespace: 'default', name: 'p-n1-term' }));
  expect(term.metadata.deletionTimestamp).toBeTruthy();
  await h.admin('POST', p('services', { namespace: 'default' }), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } });
  for (const n of ['n1', 'n2']) await h.admin('POST', evPath(), event(`${n}.ev`, { kind: 'Node', name: n }));
  await h.admin('POST', p('endpointslices', { namespace: 'default' }), {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abcde', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'n1' }],
    ports: [{ port: 80, protocol: 'TCP' }],
  });
}

// ------------------------------------------------------------------ the matrix

interface Case {
  name: string;
  who: Who;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  /** The request body; a function gets the object at `probe` as the admin reads it now. */
  body?: unknown;
  build?: (current: KubeObject) => unknown;
  contentType?: string;
  status: number;
  /** Admin GET path whose answer must change (written) or not (not written). Defaults to `path` for named paths. */
  probe?: string;
  written: boolean;
  /** Something the Status message must say (errors only). */
  message?: RegExp;
  /** More checks on the probed object afterwards. */
  after?: (obj: KubeObject | undefined) => void;
}

const MERGE = 'application/merge-patch+json';
const ns = (name: string) => p('namespaces', { name });
const node = (name: string, subresource?: string) => p('nodes', { name, ...(subresource ? { subresource } : {}) });
const podPath = (name: string, subresource?: string) => p('pods', { namespace: 'default', name, ...(subresource ? { subresource } : {}) });
const leasePath = (namespace: string, name?: string) => p('leases', { namespace, ...(name ? { name } : {}) });
const svc = (name?: string) => p('services', { namespace: 'default', ...(name ? { name } : {}) });
const slice = (name?: string) => p('endpointslices', { namespace: 'default', ...(name ? { name } : {}) });
const evPath = (name?: string) => p('events', { namespace: 'default', ...(name ? { name } : {}) });
const bumped = (o: KubeObject): KubeObject => ({ ...o, count: 2, lastTimestamp: '2026-01-02T15:04:05Z' } as KubeObject);

const withLabel = (o: KubeObject): KubeObject => ({ ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, touched: 'yes' } } });
const withPhase = (phase: string) => (o: KubeObject): KubeObject => ({ ...o, status: { ...(o as Pod).status, phase } } as KubeObject);
const readyCondition = { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: '2026-01-02T15:04:05Z', lastTransitionTime: '2026-01-02T15:04:05Z' }] } };

const cases: Case[] = [
  // --- authentication
  { name: 'no token → 401', who: 'none', method: 'GET', path: p('pods'), status: 401, written: false, message: /Unauthorized/ },
  { name: 'no token, write → 401, nothing stored', who: 'none', method: 'POST', path: p('namespaces'), body: { metadata: { name: 'anon' } }, probe: ns('anon'), status: 401, written: false },
  { name: 'unknown bearer token → 401', who: 'bad', method: 'GET', path: node('n1'), status: 401, written: false },
  { name: 'unknown bearer token, delete → 401, nothing deleted', who: 'bad', method: 'DELETE', path: ns('team'), status: 401, written: false },
  { name: 'basic auth is not accepted → 401', who: 'basic', method: 'GET', path: p('nodes'), status: 401, written: false, message: /bearer/ },
  { name: 'discovery needs a token → 401', who: 'none', method: 'GET', path: '/api/v1', status: 401, written: false },

  // --- identities that are neither admin nor node
  { name: 'plain user cannot read → 403', who: 'alice', method: 'GET', path: p('pods'), status: 403, written: false, message: /User "alice" cannot list resource "pods"/ },
  { name: 'plain user cannot write → 403', who: 'alice', method: 'POST', path: p('namespaces'), body: { metadata: { name: 'alice' } }, probe: ns('alice'), status: 403, written: false },
  { name: 'node name without group system:nodes → 403', who: 'fakeNode', method: 'PATCH', path: node('n1'), body: { metadata: { labels: { x: 'y' } } }, contentType: MERGE, status: 403, written: false },
  { name: 'system:nodes member without a node name → 403', who: 'namelessNode', method: 'GET', path: node('n1'), status: 403, written: false },
  { name: '"system:node:" with an empty name → 403', who: 'emptyNode', method: 'GET', path: p('nodes'), status: 403, written: false },

  // --- admin can do everything
  { name: 'admin creates a namespace', who: 'admin', method: 'POST', path: p('namespaces'), body: { metadata: { name: 'made' } }, probe: ns('made'), status: 201, written: true },
  { name: 'admin deletes a namespace', who: 'admin', method: 'DELETE', path: ns('team'), status: 200, written: true },
  { name: 'admin creates a Service', who: 'admin', method: 'POST', path: svc(), body: { metadata: { name: 'api' }, spec: { ports: [{ port: 443 }] } }, probe: svc('api'), status: 201, written: true },
  { name: 'admin updates an EndpointSlice', who: 'admin', method: 'PUT', path: slice('web-abcde'), build: withLabel, status: 200, written: true },
  { name: 'admin patches a pod spec-side field (labels)', who: 'admin', method: 'PATCH', path: podPath('p-n2'), body: { metadata: { labels: { tier: 'x' } } }, contentType: MERGE, status: 200, written: true },
  { name: 'admin writes pod status', who: 'admin', method: 'PATCH', path: podPath('p-free', 'status'), body: { status: { phase: 'Running' } }, contentType: MERGE, probe: podPath('p-free'), status: 200, written: true },
  { name: 'admin deletes another node', who: 'admin', method: 'DELETE', path: node('n2'), status: 200, written: true },
  { name: 'admin deletes a Lease in any namespace', who: 'admin', method: 'DELETE', path: leasePath('default', 'n1'), status: 200, written: true },
  { name: 'admin deletes a collection', who: 'admin', method: 'DELETE', path: leasePath('kube-node-lease'), probe: leasePath('kube-node-lease', 'n2'), status: 200, written: true },

  // --- node: reads of everything (get / list / watch per resource below, plus these)
  { name: 'node reads another node', who: 'n1', method: 'GET', path: node('n2'), status: 200, written: false },
  { name: 'node reads another node\'s status', who: 'n1', method: 'GET', path: node('n2', 'status'), status: 200, written: false },
  { name: 'node reads a pod bound elsewhere', who: 'n1', method: 'GET', path: podPath('p-n2'), status: 200, written: false },
  { name: 'node reads discovery', who: 'n1', method: 'GET', path: '/apis/discovery.k8s.io/v1', status: 200, written: false },

  // --- node: its own Node
  { name: 'node creates its own Node', who: 'n3', method: 'POST', path: p('nodes'), body: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n3' } }, probe: node('n3'), status: 201, written: true },
  { name: 'node updates its own Node', who: 'n1', method: 'PUT', path: node('n1'), build: withLabel, status: 200, written: true },
  { name: 'node patches its own Node (podCIDR claim)', who: 'n1', method: 'PATCH', path: node('n1'), body: { spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] } }, contentType: MERGE, status: 200, written: true, after: (o) => expect((o as { spec?: { podCIDR?: string } }).spec?.podCIDR).toBe('10.244.1.0/24') },
  { name: 'node updates its own Node status', who: 'n1', method: 'PUT', path: node('n1', 'status'), build: (o) => ({ ...o, ...readyCondition }), probe: node('n1'), status: 200, written: true },
  { name: 'node patches its own Node status', who: 'n1', method: 'PATCH', path: node('n1', 'status'), body: readyCondition, contentType: MERGE, probe: node('n1'), status: 200, written: true },
  { name: 'node creating its own Node again → 409 (authorized, then AlreadyExists)', who: 'n1', method: 'POST', path: p('nodes'), body: { metadata: { name: 'n1' } }, probe: node('n1'), status: 409, written: false },

  { name: 'node creates another Node → 403', who: 'n3', method: 'POST', path: p('nodes'), body: { metadata: { name: 'n4' } }, probe: node('n4'), status: 403, written: false, message: /may only create objects named "n3"/ },
  { name: 'node creates a Node by generateName → 403', who: 'n3', method: 'POST', path: p('nodes'), body: { metadata: { generateName: 'n3' } }, probe: p('nodes'), status: 403, written: false },
  { name: 'node updates another Node → 403', who: 'n1', method: 'PUT', path: node('n2'), build: withLabel, status: 403, written: false, message: /may only change its own Node/ },
  { name: 'node patches another Node → 403', who: 'n1', method: 'PATCH', path: node('n2'), body: { spec: { unschedulable: true } }, contentType: MERGE, status: 403, written: false, message: /User "system:node:n1" cannot patch resource "nodes"/ },
  { name: 'node patches another Node\'s status → 403', who: 'n1', method: 'PATCH', path: node('n2', 'status'), body: readyCondition, contentType: MERGE, probe: node('n2'), status: 403, written: false, message: /^nodes "n2" is forbidden: User "system:node:n1" cannot patch resource "nodes\/status" in API group "" at the cluster scope: node "n1" may only change its own Node object$/ },
  { name: 'node deletes another Node → 403', who: 'n1', method: 'DELETE', path: node('n2'), status: 403, written: false },
  { name: 'node deletes its own Node → 403 (not among the writes a node may make)', who: 'n1', method: 'DELETE', path: node('n1'), status: 403, written: false },
  { name: 'node deletes the Node collection → 403', who: 'n1', method: 'DELETE', path: p('nodes'), probe: node('n1'), status: 403, written: false },

  // --- node: its own Lease in kube-node-lease
  { name: 'node creates its own Lease', who: 'n3', method: 'POST', path: leasePath('kube-node-lease'), body: lease('kube-node-lease', 'n3'), probe: leasePath('kube-node-lease', 'n3'), status: 201, written: true },
  { name: 'node renews its own Lease (PUT)', who: 'n1', method: 'PUT', path: leasePath('kube-node-lease', 'n1'), build: (o) => ({ ...o, spec: { ...(o as { spec?: object }).spec, renewTime: '2026-01-02T15:04:05.000000Z' } }), status: 200, written: true },
  { name: 'node renews its own Lease (PATCH)', who: 'n1', method: 'PATCH', path: leasePath('kube-node-lease', 'n1'), body: { spec: { renewTime: '2026-01-02T15:04:06.000000Z' } }, contentType: MERGE, status: 200, written: true },
  { name: 'node deletes its own Lease', who: 'n1', method: 'DELETE', path: leasePath('kube-node-lease', 'n1'), status: 200, written: true },
  { name: 'node creates another node\'s Lease → 403', who: 'n3', method: 'POST', path: leasePath('kube-node-lease'), body: lease('kube-node-lease', 'n4'), probe: leasePath('kube-node-lease', 'n4'), status: 403, written: false, message: /may only create objects named "n3"/ },
  { name: 'node updates another node\'s Lease → 403', who: 'n1', method: 'PUT', path: leasePath('kube-node-lease', 'n2'), build: withLabel, status: 403, written: false, message: /its own Lease \(kube-node-lease\/n1\)/ },
  { name: 'node patches another node\'s Lease → 403', who: 'n1', method: 'PATCH', path: leasePath('kube-node-lease', 'n2'), body: { spec: { holderIdentity: 'n1' } }, contentType: MERGE, status: 403, written: false },
  { name: 'node deletes another node\'s Lease → 403', who: 'n1', method: 'DELETE', path: leasePath('kube-node-lease', 'n2'), status: 403, written: false },
  { name: 'node writes a Lease of its name in another namespace → 403', who: 'n1', method: 'PATCH', path: leasePath('default', 'n1'), body: { spec: { holderIdentity: 'x' } }, contentType: MERGE, status: 403, written: false, message: /only write Leases in the kube-node-lease namespace/ },
  { name: 'node creates a Lease in another namespace → 403', who: 'n3', method: 'POST', path: leasePath('default'), body: lease('default', 'n3'), probe: leasePath('default', 'n3'), status: 403, written: false },
  { name: 'node deletes the Lease collection → 403', who: 'n1', method: 'DELETE', path: leasePath('kube-node-lease'), probe: leasePath('kube-node-lease', 'n1'), status: 403, written: false },
  { name: 'node creating its Lease with a body naming another namespace → 400, nothing stored', who: 'n3', method: 'POST', path: leasePath('kube-node-lease'), body: lease('default', 'n3'), probe: leasePath('default', 'n3'), status: 400, written: false },

  // --- node: pods bound to it
  { name: 'node updates the status of its pod (PUT)', who: 'n1', method: 'PUT', path: podPath('p-n1', 'status'), build: withPhase('Running'), probe: podPath('p-n1'), status: 200, written: true, after: (o) => expect((o as Pod).status?.phase).toBe('Running') },
  { name: 'node patches the status of its pod', who: 'n1', method: 'PATCH', path: podPath('p-n1', 'status'), body: { status: { phase: 'Running', podIP: '10.244.1.7', podIPs: [{ ip: '10.244.1.7' }] } }, contentType: MERGE, probe: podPath('p-n1'), status: 200, written: true, after: (o) => expect((o as Pod).status?.podIP).toBe('10.244.1.7') },
  {
    name: 'a status update cannot smuggle spec changes',
    who: 'n1',
    method: 'PUT',
    path: podPath('p-n1', 'status'),
    build: (o) => ({ ...withPhase('Running')(o), spec: { ...(o as Pod).spec, containers: [{ name: 'app', image: 'evil:1' }] } }),
    probe: podPath('p-n1'),
    status: 200,
    written: true,
    after: (o) => expect((o as Pod).spec?.containers[0]?.image).toBe('registry.test/app:1'),
  },
  { name: 'node finally deletes its terminating pod (gracePeriodSeconds=0)', who: 'n1', method: 'DELETE', path: `${podPath('p-n1-term')}?gracePeriodSeconds=0`, probe: podPath('p-n1-term'), status: 200, written: true, after: (o) => expect(o).toBeUndefined() },
  { name: 'node deletes its terminating pod without a grace period: still terminating, unchanged', who: 'n1', method: 'DELETE', path: podPath('p-n1-term'), status: 200, written: false },
  { name: 'node deletes its running pod: graceful', who: 'n1', method: 'DELETE', path: podPath('p-n1'), status: 200, written: true, after: (o) => expect(o?.metadata.deletionTimestamp).toBeTruthy() },

  { name: 'node patches the status of a pod bound elsewhere → 403', who: 'n1', method: 'PATCH', path: podPath('p-n2', 'status'), body: { status: { phase: 'Failed' } }, contentType: MERGE, probe: podPath('p-n2'), status: 403, written: false, message: /^pods "p-n2" is forbidden: User "system:node:n1" cannot patch resource "pods\/status" in API group "" in the namespace "default": node "n1" can only update the status of pods bound to it \(spec\.nodeName is "n2"\)$/ },
  { name: 'node PUTs the status of a pod bound elsewhere, body claiming it → 403', who: 'n1', method: 'PUT', path: podPath('p-n2', 'status'), build: (o) => ({ ...withPhase('Failed')(o), spec: { ...(o as Pod).spec, nodeName: 'n1' } }), probe: podPath('p-n2'), status: 403, written: false },
  { name: 'node patches the status of an unbound pod → 403', who: 'n1', method: 'PATCH', path: podPath('p-free', 'status'), body: { status: { phase: 'Running' } }, contentType: MERGE, probe: podPath('p-free'), status: 403, written: false, message: /spec\.nodeName is ""/ },
  { name: 'node updates its pod\'s spec → 403', who: 'n1', method: 'PUT', path: podPath('p-n1'), build: withLabel, status: 403, written: false, message: /may only update the status of pods bound to it/ },
  { name: 'node patches its pod (not status) → 403', who: 'n1', method: 'PATCH', path: podPath('p-n1'), body: { metadata: { labels: { x: 'y' } } }, contentType: MERGE, status: 403, written: false },
  { name: 'node creates a pod → 403', who: 'n1', method: 'POST', path: p('pods', { namespace: 'default' }), body: pod('mine', 'n1'), probe: podPath('mine'), status: 403, written: false },
  { name: 'node deletes a pod bound elsewhere → 403', who: 'n1', method: 'DELETE', path: `${podPath('p-n2')}?gracePeriodSeconds=0`, probe: podPath('p-n2'), status: 403, written: false, message: /can only delete pods bound to it/ },
  { name: 'node deletes an unbound pod → 403', who: 'n1', method: 'DELETE', path: podPath('p-free'), status: 403, written: false },
  { name: 'node deletes the pod collection → 403', who: 'n1', method: 'DELETE', path: p('pods', { namespace: 'default' }), probe: podPath('p-n1'), status: 403, written: false },
  { name: 'node patches the status of a pod that does not exist → 403', who: 'n1', method: 'PATCH', path: podPath('ghost', 'status'), body: { status: { phase: 'Running' } }, contentType: MERGE, probe: podPath('ghost'), status: 403, written: false },

  // --- node: Events about its own Node or pods bound to it (kube's system:node role: create, update, patch)
  { name: 'node creates an Event about its own Node', who: 'n1', method: 'POST', path: evPath(), body: event('n1.mine', { kind: 'Node', name: 'n1' }), probe: evPath('n1.mine'), status: 201, written: true },
  { name: 'node creates an Event about a pod bound to it', who: 'n1', method: 'POST', path: evPath(), body: event('p-n1.ev', { kind: 'Pod', namespace: 'default', name: 'p-n1' }), probe: evPath('p-n1.ev'), status: 201, written: true },
  { name: 'node patches the count of an Event about its own Node', who: 'n1', method: 'PATCH', path: evPath('n1.ev'), body: { count: 2, lastTimestamp: '2026-01-02T15:04:05Z' }, contentType: MERGE, status: 200, written: true, after: (o) => expect((o as { count?: number }).count).toBe(2) },
  { name: 'node updates an Event about its own Node (PUT)', who: 'n1', method: 'PUT', path: evPath('n1.ev'), build: bumped, status: 200, written: true },
  { name: 'node creates an Event about another Node → 403', who: 'n1', method: 'POST', path: evPath(), body: event('n2.forged', { kind: 'Node', name: 'n2' }), probe: evPath('n2.forged'), status: 403, written: false, message: /node "n1" may only write Events about its own Node or pods bound to it \(involvedObject is Node "n2"\)$/ },
  { name: 'node creates an Event about a pod bound elsewhere → 403', who: 'n1', method: 'POST', path: evPath(), body: event('p-n2.ev', { kind: 'Pod', namespace: 'default', name: 'p-n2' }), probe: evPath('p-n2.ev'), status: 403, written: false, message: /involvedObject is Pod "default\/p-n2", bound to "n2"/ },
  { name: 'node creates an Event about a pod that does not exist → 403', who: 'n1', method: 'POST', path: evPath(), body: event('ghost.ev', { kind: 'Pod', namespace: 'default', name: 'ghost' }), probe: evPath('ghost.ev'), status: 403, written: false, message: /which does not exist/ },
  { name: 'node creates an Event about a Service → 403', who: 'n1', method: 'POST', path: evPath(), body: event('web.ev', { kind: 'Service', namespace: 'default', name: 'web' }), probe: evPath('web.ev'), status: 403, written: false, message: /involvedObject is Service "default\/web"/ },
  { name: 'node patches an Event about another Node → 403', who: 'n1', method: 'PATCH', path: evPath('n2.ev'), body: { count: 5 }, contentType: MERGE, status: 403, written: false, message: /involvedObject is Node "n2"/ },
  { name: 'node PUTs an Event about another Node, body claiming its own → 403', who: 'n1', method: 'PUT', path: evPath('n2.ev'), build: (o) => ({ ...bumped(o), involvedObject: { kind: 'Node', name: 'n1' } }), status: 403, written: false },
  { name: 'node moves its own Node\'s Event to another Node → 422 (involvedObject is immutable)', who: 'n1', method: 'PATCH', path: evPath('n1.ev'), body: { involvedObject: { name: 'n2' } }, contentType: MERGE, status: 422, written: false, message: /involvedObject\.name: Invalid value: "n2": field is immutable/ },
  { name: 'node patches an Event that does not exist → 404 (not 403: its recorder then creates it anew)', who: 'n1', method: 'PATCH', path: evPath('n1.gone'), body: { count: 2 }, contentType: MERGE, status: 404, written: false },
  { name: 'node deletes an Event about its own Node → 403', who: 'n1', method: 'DELETE', path: evPath('n1.ev'), status: 403, written: false, message: /may only create, update and patch Events/ },
  { name: 'node deletes the Event collection → 403', who: 'n1', method: 'DELETE', path: evPath(), probe: evPath('n1.ev'), status: 403, written: false },
  { name: 'admin creates an Event about any object', who: 'admin', method: 'POST', path: evPath(), body: event('web.admin', { kind: 'Service', namespace: 'default', name: 'web' }), probe: evPath('web.admin'), status: 201, written: true },

  // --- node: everything else
  { name: 'node creates a Service → 403', who: 'n1', method: 'POST', path: svc(), body: { metadata: { name: 'x' }, spec: { ports: [{ port: 80 }] } }, probe: svc('x'), status: 403, written: false, message: /nodes may not create services/ },
  { name: 'node updates a Service → 403', who: 'n1', method: 'PUT', path: svc('web'), build: withLabel, status: 403, written: false },
  { name: 'node patches a Service\'s status → 403', who: 'n1', method: 'PATCH', path: p('services', { namespace: 'default', name: 'web', subresource: 'status' }), body: { status: { loadBalancer: { ingress: [{ ip: '198.18.0.9' }] } } }, contentType: MERGE, probe: svc('web'), status: 403, written: false },
  { name: 'node deletes a Service → 403', who: 'n1', method: 'DELETE', path: svc('web'), status: 403, written: false },
  { name: 'node creates an EndpointSlice → 403', who: 'n1', method: 'POST', path: slice(), body: { metadata: { name: 's' }, addressType: 'IPv4', endpoints: [] }, probe: slice('s'), status: 403, written: false },
  { name: 'node patches an EndpointSlice → 403', who: 'n1', method: 'PATCH', path: slice('web-abcde'), body: { endpoints: [] }, contentType: MERGE, status: 403, written: false },
  { name: 'node deletes an EndpointSlice → 403', who: 'n1', method: 'DELETE', path: slice('web-abcde'), status: 403, written: false },
  { name: 'node creates a Namespace → 403', who: 'n1', method: 'POST', path: p('namespaces'), body: { metadata: { name: 'node-ns' } }, probe: ns('node-ns'), status: 403, written: false, message: /nodes may not create namespaces/ },
  { name: 'node deletes a Namespace → 403', who: 'n1', method: 'DELETE', path: ns('team'), status: 403, written: false },
  { name: 'node patches a Namespace\'s status → 403', who: 'n1', method: 'PATCH', path: p('namespaces', { name: 'team', subresource: 'status' }), body: { status: { phase: 'Terminating' } }, contentType: MERGE, probe: ns('team'), status: 403, written: false },
];

// Reads: every node may get / list / watch every resource.
const SAMPLE: Record<ResourceName, { namespace?: string; name: string }> = {
  namespaces: { name: 'team' },
  nodes: { name: 'n2' },
  pods: { namespace: 'default', name: 'p-n2' },
  services: { namespace: 'default', name: 'web' },
  endpointslices: { namespace: 'default', name: 'web-abcde' },
  leases: { namespace: 'kube-node-lease', name: 'n2' },
  events: { namespace: 'default', name: 'n2.ev' },
};
for (const r of Object.keys(RESOURCES) as ResourceName[]) {
  const s = SAMPLE[r];
  cases.push(
    { name: `node gets ${r}`, who: 'n1', method: 'GET', path: p(r, s), status: 200, written: false },
    { name: `node lists ${r} (all namespaces)`, who: 'n1', method: 'GET', path: p(r), probe: p(r, s), status: 200, written: false },
    { name: `node watches ${r}`, who: 'n1', method: 'GET', path: `${p(r, s.namespace ? { namespace: s.namespace } : {})}?watch=true&timeoutSeconds=5`, probe: p(r, s), status: 200, written: false },
  );
  if (s.namespace) cases.push({ name: `node lists ${r} in one namespace`, who: 'n1', method: 'GET', path: p(r, { namespace: s.namespace }), probe: p(r, s), status: 200, written: false });
}

// ------------------------------------------------------------------ running it

describe('authorization matrix', () => {
  let h: Harness | undefined;

  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('has unique case names', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  for (const c of cases) {
    it(c.name, async () => {
      h = await Harness.start();
      await seed(h);
      const probe = c.probe ?? c.path.split('?')[0]!;
      const before = await h.snapshot(probe);
      const rev = await h.revision();
      let body = c.body;
      if (c.build) {
        const cur = await h.call('admin', 'GET', probe);
        expect(cur.status, `fixture ${probe}`).toBe(200);
        body = c.build(cur.json as KubeObject);
      }
      const r = await h.call(c.who, c.method, c.path, { ...(body !== undefined ? { body } : {}), ...(c.contentType ? { contentType: c.contentType } : {}) });
      expect(r.status, r.text).toBe(c.status);
      if (c.status >= 400) {
        const s = expectStatus(r, c.status, { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'AlreadyExists', 422: 'Invalid' }[c.status] ?? '?');
        if (c.message) expect(s.message).toMatch(c.message);
        if (c.status === 403) {
          // kube-apiserver names the resource, not the subresource, in details.kind.
          expect(s.details?.kind, 'details.kind').toMatch(/^[a-z]+$/);
          expect(s.message).toMatch(/ is forbidden: User "[^"]*" cannot [a-z]+ resource "[a-z/]+" in API group "[a-z0-9.]*" (in the namespace "[a-z-]+"|at the cluster scope): ./);
        }
      } else if (c.message) {
        throw new Error('message is for errors only');
      }
      const after = await h.snapshot(probe);
      const rev2 = await h.revision();
      if (c.written) {
        expect(after, 'the store must have changed').not.toBe(before);
        expect(rev2).toBeGreaterThan(rev);
      } else {
        expect(after, 'the store must not have changed').toBe(before);
        expect(rev2, 'no write at all').toBe(rev);
      }
      if (c.after) {
        const got = await h.call('admin', 'GET', probe);
        c.after(got.status === 200 ? (got.json as KubeObject) : undefined);
      }
    });
  }
});

describe('watch of one object', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
    await seed(h);
  });
  afterAll(async () => {
    await h.stop();
  });

  it('a node watching its own Node by path sees that Node only (not every node)', async () => {
    const w = await h.watchInitial('n1', node('n1'));
    expect(w.status).toBe(200);
    expect(w.events).toEqual([['ADDED', 'n1']]);
  });

  it('a node watching the collection sees every Node', async () => {
    const w = await h.watchInitial('n1', p('nodes'));
    expect(w.events).toEqual([['ADDED', 'n1'], ['ADDED', 'n2']]);
  });

  it('a watch by path in a namespace sees that object only', async () => {
    const w = await h.watchInitial('n2', podPath('p-n2'));
    expect(w.events).toEqual([['ADDED', 'p-n2']]);
  });
});

describe('TokenReview', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
  });
  afterAll(async () => {
    await h.stop();
  });
  const review = (who: Who, token: unknown) => h.call(who, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });

  it('a node asks who a token belongs to (as a kubelet does for its own endpoint)', async () => {
    const r = await review('n1', TOKENS.admin);
    expect(r.status, r.text).toBe(201);
    expect(JSON.parse(r.text)).toMatchObject({ kind: 'TokenReview', status: { authenticated: true, user: { username: 'admin', uid: '1', groups: expect.arrayContaining(['system:masters']) } } });
    const n2 = JSON.parse((await review('admin', TOKENS.n2)).text) as { status: { user: { username: string; groups: string[] } } };
    expect(n2.status.user).toMatchObject({ username: 'system:node:n2', groups: expect.arrayContaining(['system:nodes']) });
  });

  it('an unknown token is reviewed as not authenticated', async () => {
    const r = await review('n1', 'no-such-token');
    expect(r.status).toBe(201);
    expect(JSON.parse(r.text)).toMatchObject({ status: { authenticated: false } });
  });

  it('only admins and nodes may review; a missing token field is 422; no caller is 401', async () => {
    expect((await review('alice', TOKENS.admin)).status).toBe(403);
    expect((await review('n1', '')).status).toBe(422);
    expect((await review('none', TOKENS.admin)).status).toBe(401);
    expect((await h.call('admin', 'GET', '/apis/authentication.k8s.io/v1/tokenreviews')).status).toBe(405);
  });
});

describe('authentication without a token file', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start({ anonymousAdmin: true, tokens: false });
  });
  afterAll(async () => {
    await h.stop();
  });

  it('anonymousAdmin: a caller without a token is admin (reads and writes)', async () => {
    const rev = await h.revision();
    const r = await h.call('none', 'POST', p('namespaces'), { body: { metadata: { name: 'anon' } } });
    expect(r.status, r.text).toBe(201);
    expect(await h.revision()).toBeGreaterThan(rev);
    expect((await h.call('none', 'GET', ns('anon'))).status).toBe(200);
  });

  it('anonymousAdmin: a bearer token that is not known is still 401, nothing stored', async () => {
    const rev = await h.revision();
    const r = await h.call('bad', 'POST', p('namespaces'), { body: { metadata: { name: 'bad' } } });
    expect(r.status).toBe(401);
    expectStatus(r, 401, 'Unauthorized');
    expect(await h.revision()).toBe(rev);
    expect((await h.call('none', 'GET', ns('bad'))).status).toBe(404);
  });

  it('health and version need no token', async () => {
    for (const path of ['/healthz', '/livez', '/readyz', '/version']) expect((await h.call('bad', 'GET', path)).status, path).toBe(200);
  });
});

describe('authentication with a token file', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
  });
  afterAll(async () => {
    await h.stop();
  });

  it('health endpoints answer without a token; everything else is 401 with a Status', async () => {
    expect((await h.call('none', 'GET', '/healthz')).status).toBe(200);
    for (const path of ['/api', '/apis', '/api/v1/namespaces', '/openapi/v3', '/metrics']) {
      const r = await h.call('none', 'GET', path);
      expect(r.status, path).toBe(401);
      expectStatus(r, 401, 'Unauthorized');
    }
  });

  it('a malformed Authorization header is 401', async () => {
    const agent = new Agent({ connect: { socketPath: join(h.dir, 'api.sock') } });
    try {
      for (const authorization of ['Bearer', 'Bearer a b', 'Token admin-token']) {
        const res = await request('http://localhost/api/v1/nodes', { headers: { authorization }, dispatcher: agent });
        expect(res.statusCode, authorization).toBe(401);
        expect(JSON.parse(await res.body.text())).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 });
      }
    } finally {
      await agent.close();
    }
  });
});
