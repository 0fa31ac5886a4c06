/**
 * core/v1 Events end to end, over real HTTP (a unix socket in a temp dir) to an
 * in-process ApiServer with the embedded SQLite store: the agent's EventRecorder, on a
 * KubeClient with a node's token, writes them; discovery, lists (JSON, by field
 * selector, and the Table kubectl prints), watches, node authorization (its own Node
 * yes, another node's no), and deletion after the event TTL (a second server, with a
 * two-second TTL and only the event TTL controller running).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../testing/eventually.js';
import { EventRecorder, eventSink } from '../../agent/events.js';
import { KubeClient } from '../../client/index.js';
import { RESOURCES } from '../../client/resources.js';
import type { CoreEvent, KubeList, Status } from '../../client/types.js';
import type { ObjectEvent } from '../../client/watch.js';
import { Cidr } from '../../util/ipnet.js';
import { createLogger, silentLogger } from '../../util/log.js';
import { ApiServer, CONTROLLERS } from '../apiserver.js';
import type { ControllerName } from '../apiserver.js';

const TOKENS = { admin: 'admin-token', n1: 'n1-token', n2: 'n2-token' } as const;
type Who = keyof typeof TOKENS;

class Harness {
  readonly clients: KubeClient[] = [];

  private constructor(
    readonly dir: string,
    readonly socketPath: string,
    readonly server: ApiServer,
    private readonly agent: Agent,
  ) {}

  static async start(o: { eventTTLMs?: number; controllers?: ControllerName[] } = {}): Promise<Harness> {
    const dir = mkdtempSync(join(tmpdir(), 'podnet-events-'));
    const tokenFile = join(dir, 'tokens.csv');
    writeFileSync(tokenFile, [`${TOKENS.admin},admin,1,"system:masters"`, `${TOKENS.n1},system:node:n1,2,"system:nodes"`, `${TOKENS.n2},system:node:n2,3,"system:nodes"`, ''].join('\n'));
    const socketPath = join(dir, 'api.sock');
    const enabled = new Set(o.controllers ?? []);
    const server = new ApiServer({
      store: { kind: 'sqlite', dataDir: join(dir, 'data') },
      listen: { socketPath },
      serviceCIDRs: [Cidr.parse('10.96.0.0/12')],
      nodePortRange: { min: 30000, max: 32767 },
      tokenFile,
      disabledControllers: CONTROLLERS.filter((c) => !enabled.has(c)),
      ...(o.eventTTLMs ? { eventTTLMs: o.eventTTLMs } : {}),
      log: silentLogger(),
    });
    await server.start();
    return new Harness(dir, socketPath, server, new Agent({ connect: { socketPath } }));
  }

  client(who: Who): KubeClient {
    const c = new KubeClient({ server: 'http://localhost', socketPath: this.socketPath, token: TOKENS[who] });
    this.clients.push(c);
    return c;
  }

  /** A node's recorder, as the agent builds it; its warnings are collected. */
  recorder(who: 'n1' | 'n2'): { recorder: EventRecorder; warnings: Record<string, unknown>[] } {
    const warnings: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) warnings.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const recorder = new EventRecorder({ sink: eventSink(this.client(who)), component: 'podnet-agent', host: who, log: createLogger({ level: 'warn', destination }) });
    return { recorder, warnings };
  }

  async call<T = unknown>(who: Who, method: string, path: string, o: { body?: unknown; accept?: string; contentType?: string } = {}): Promise<{ status: number; json: T; text: string }> {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKENS[who]}`, accept: o.accept ?? 'application/json' };
    if (o.body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
    const res = await request(`http://localhost${path}`, { method: method as 'GET', headers, body: o.body === undefined ? undefined : JSON.stringify(o.body), dispatcher: this.agent });
    const text = await res.body.text();
    return { status: res.statusCode, json: JSON.parse(text) as T, text };
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.close();
    await this.agent.close();
    await this.server.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const EVENTS = '/api/v1/namespaces/default/events';
const nodeRef = (name: string) => ({ kind: 'Node', apiVersion: 'v1', name, uid: name });

describe('events: create, list, watch, authorization', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start();
    for (const n of ['n1', 'n2']) expect((await h.call('admin', 'POST', '/api/v1/nodes', { body: { metadata: { name: n } } })).status).toBe(201);
  });
  afterAll(async () => {
    await h.stop();
  });

  it('is served like kube-apiserver\'s: core v1, kind Event, namespaced, short name ev', async () => {
    const r = await h.call<{ resources: { name: string; kind: string; namespaced: boolean; shortNames?: string[]; verbs: string[] }[] }>('n1', 'GET', '/api/v1');
    expect(r.json.resources.find((x) => x.name === 'events')).toMatchObject({ kind: 'Event', namespaced: true, shortNames: ['ev'], verbs: expect.arrayContaining(['create', 'list', 'watch', 'patch']) });
  });

  it('a node\'s recorder writes an Event about its Node; repeats count up one Event; the list and a watch show it', async () => {
    const events = h.client('admin').resource<CoreEvent>(RESOURCES.events);
    const start = await events.list({ namespace: 'default' });
    const seen: ObjectEvent<CoreEvent>[] = [];
    const watch = events.watch({ namespace: 'default', resourceVersion: start.metadata.resourceVersion! }, (ev) => void seen.push(ev));
    try {
      const { recorder, warnings } = h.recorder('n1');
      const problem = { involvedObject: nodeRef('n1'), type: 'Warning' as const, reason: 'NotOnLink', message: 'node n9 (203.0.113.9) is not on-link on eth0' };
      await recorder.record(problem);
      await recorder.record(problem);
      expect(warnings).toEqual([]);

      const list = await h.call<KubeList<CoreEvent>>('n1', 'GET', EVENTS);
      expect(list.json).toMatchObject({ apiVersion: 'v1', kind: 'EventList' });
      const mine = list.json.items.filter((e) => e.involvedObject.name === 'n1');
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ apiVersion: 'v1', kind: 'Event', metadata: { namespace: 'default', name: expect.stringMatching(/^n1\.[0-9a-f]{16}$/) }, reason: 'NotOnLink', type: 'Warning', count: 2, source: { component: 'podnet-agent', host: 'n1' } });

      await eventually(() => expect(seen.map((e) => [e.type, e.object.count])).toEqual([['ADDED', 1], ['MODIFIED', 2]]));
    } finally {
      watch.stop();
    }
  });

  it('is found as `kubectl describe node` and `kubectl get events --field-selector` look for it', async () => {
    const sel = (s: string) => h.call<KubeList<CoreEvent>>('admin', 'GET', `/api/v1/events?fieldSelector=${encodeURIComponent(s)}`);
    const describe = await sel('involvedObject.kind=Node,involvedObject.name=n1,involvedObject.namespace=,involvedObject.uid=n1');
    expect(describe.status, describe.text).toBe(200);
    expect(describe.json.items.map((e) => e.reason)).toEqual(['NotOnLink']);
    expect((await sel('type=Warning,reason=NotOnLink,source=podnet-agent')).json.items).toHaveLength(1);
    expect((await sel('type=Normal')).json.items).toHaveLength(0);
    expect((await sel('involvedObject.name=n2')).json.items).toHaveLength(0);
    const bad = await sel('involvedObject.color=red');
    expect(bad.status).toBe(400);
    expect((bad.json as unknown as Status).message).toMatch(/field label not supported: involvedObject\.color/);
  });

  it('prints the columns of `kubectl get events`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (more with -o wide)', async () => {
    const r = await h.call<{ kind: string; columnDefinitions: { name: string; priority: number }[]; rows: { cells: unknown[] }[] }>('admin', 'GET', EVENTS, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    expect(r.json.kind).toBe('Table');
    expect(r.json.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name)).toEqual(['Last Seen', 'Type', 'Reason', 'Object', 'Message']);
    expect(r.json.columnDefinitions.filter((c) => c.priority === 1).map((c) => c.name)).toEqual(['Subobject', 'Source', 'First Seen', 'Count', 'Name']);
    const row = r.json.rows[0]!.cells;
    expect(row.slice(1, 4)).toEqual(['Warning', 'NotOnLink', 'node/n1']);
    expect(row[0]).toMatch(/^\d+s$/);
    expect(row[5]).toBe('podnet-agent, n1');
    expect(row[6]).toBe('node n9 (203.0.113.9) is not on-link on eth0');
    expect(row[8]).toBe(2);
  });

  it('a node may not write Events about another node: 403 with the reason, the recorder only logs it', async () => {
    const forged = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'n2.forged' }, involvedObject: nodeRef('n2'), reason: 'NodeNotReady', message: 'forged', type: 'Warning' };
    const r = await h.call<Status>('n1', 'POST', EVENTS, { body: forged });
    expect(r.status).toBe(403);
    expect(r.json.message).toBe('events is forbidden: User "system:node:n1" cannot create resource "events" in API group "" in the namespace "default": node "n1" may only write Events about its own Node or pods bound to it (involvedObject is Node "n2")');

    const { recorder, warnings } = h.recorder('n1');
    await expect(recorder.record({ involvedObject: nodeRef('n2'), type: 'Warning', reason: 'NotOnLink', message: 'x' })).resolves.toBeUndefined();
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn', msg: 'cannot record the event', object: 'Node/n2', err: expect.stringContaining('may only write Events about its own Node') })]);

    // n1 cannot count up n2's Event either; n2 can.
    const n2 = h.recorder('n2');
    await n2.recorder.record({ involvedObject: nodeRef('n2'), type: 'Normal', reason: 'TransportReady', message: 'host-gw: every peer is programmed' });
    expect(n2.warnings).toEqual([]);
    const theirs = (await h.call<KubeList<CoreEvent>>('admin', 'GET', `${EVENTS}?fieldSelector=involvedObject.name%3Dn2`)).json.items;
    expect(theirs.map((e) => [e.reason, e.count])).toEqual([['TransportReady', 1]]);
    const patch = await h.call<Status>('n1', 'PATCH', `${EVENTS}/${theirs[0]!.metadata.name}`, { body: { count: 9 }, contentType: 'application/merge-patch+json' });
    expect(patch.status).toBe(403);
    expect(patch.json.message).toMatch(/involvedObject is Node "n2"/);
  });

  it('refuses a bad Event with a 422 naming each field', async () => {
    const r = await h.call<Status>('admin', 'POST', EVENTS, { body: { metadata: { name: 'bad.1' }, involvedObject: { kind: 'Node' }, type: 'Info', reason: 'R'.repeat(129) } });
    expect(r.status).toBe(422);
    expect(r.json.details?.causes?.map((c) => c.field).sort()).toEqual(['involvedObject.name', 'reason', 'type']);
  });
});

describe('events: TTL', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.start({ eventTTLMs: 2000, controllers: ['eventttl'] });
  });
  afterAll(async () => {
    await h.stop();
  });

  it('deletes an Event a TTL after its last occurrence; a watch sees it go', async () => {
    const events = h.client('admin').resource<CoreEvent>(RESOURCES.events);
    const start = await events.list({ namespace: 'default' });
    const seen: ObjectEvent<CoreEvent>[] = [];
    const watch = events.watch({ namespace: 'default', resourceVersion: start.metadata.resourceVersion! }, (ev) => void seen.push(ev));
    try {
      const t0 = Date.now();
      const made = await h.call<CoreEvent>('admin', 'POST', EVENTS, { body: { metadata: { name: 'n1.ttl' }, involvedObject: nodeRef('n1'), reason: 'NotOnLink', message: 'x', type: 'Warning', count: 1, lastTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') } });
      expect(made.status, made.text).toBe(201);
      expect((await h.call('admin', 'GET', `${EVENTS}/n1.ttl`)).status).toBe(200);
      await eventually(async () => expect((await h.call('admin', 'GET', `${EVENTS}/n1.ttl`)).status).toBe(404), 6000);
      // Not before the TTL (2 s; timestamps have whole seconds, so up to a second early),
      // and within TTL + the 1 s period + slack.
      const gone = Date.now() - t0;
      expect(gone).toBeGreaterThanOrEqual(950);
      expect(gone).toBeLessThan(5000);
      await eventually(() => expect(seen.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'n1.ttl'], ['DELETED', 'n1.ttl']]));
    } finally {
      watch.stop();
    }
  });

  it('a node\'s recorder whose Event expired creates it anew on the next occurrence', async () => {
    const { recorder, warnings } = h.recorder('n1');
    const problem = { involvedObject: nodeRef('n1'), type: 'Warning' as const, reason: 'NotOnLink', message: 'node n9 is not on-link' };
    const list = async () => (await h.call<KubeList<CoreEvent>>('admin', 'GET', EVENTS)).json.items.filter((e) => e.reason === 'NotOnLink');
    await recorder.record(problem);
    const first = await list();
    expect(first.map((e) => e.count)).toEqual([1]);
    await eventually(async () => expect(await list()).toEqual([]), 6000);
    await recorder.record(problem);
    const again = await list();
    expect(again.map((e) => e.count)).toEqual([1]);
    expect(again[0]!.metadata.uid).not.toBe(first[0]!.metadata.uid);
    expect(warnings).toEqual([]);
  });
});
