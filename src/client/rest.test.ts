import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { ApiError, ClientError, isAlreadyExists, isConflict, isGone, isNotFound } from './errors.js';
import { RESOURCES } from './resources.js';
import { KubeClient, ResourceClient } from './rest.js';
import { FakeApiServer } from './testing/fake-apiserver.js';
import type { Lease, Node, Pod, Status } from './types.js';
import type { ObjectEvent } from './watch.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
async function setup(opts: Parameters<typeof FakeApiServer.start>[0] = {}): Promise<{ s: FakeApiServer; client: KubeClient }> {
  const s = await FakeApiServer.start(opts);
  const client = new KubeClient(s.config());
  cleanups.push(() => s.close(), () => client.close());
  return { s, client };
}
const pod = (name: string, ns = 'default', labels?: Record<string, string>): Pod => ({ metadata: { name, namespace: ns, ...(labels ? { labels } : {}) }, spec: { containers: [{ name: 'c' }] } });
async function collect<T>(it: AsyncIterable<T>, n = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) {
    out.push(v);
    if (out.length >= n) break;
  }
  return out;
}
async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  );
}

describe('KubeClient.resource', () => {
  it('infers the object type from the resource table, or takes an explicit one', async () => {
    const c = new KubeClient({ server: 'http://localhost' });
    interface MyPod extends Pod {
      extra: string;
    }
    expectTypeOf(c.resource(RESOURCES.pods)).toEqualTypeOf<ResourceClient<Pod>>();
    expectTypeOf(c.resource(RESOURCES.nodes)).toEqualTypeOf<ResourceClient<Node>>();
    expectTypeOf(c.resource(RESOURCES.leases)).toEqualTypeOf<ResourceClient<Lease>>();
    expectTypeOf(c.resource<MyPod>(RESOURCES.pods)).toEqualTypeOf<ResourceClient<MyPod>>();
    expect(c.resource(RESOURCES.pods).info).toBe(RESOURCES.pods);
    await c.close();
  });
});

describe('ResourceClient: reads and writes', () => {
  it('creates, gets, updates, updates status, patches and deletes', async () => {
    const { s, client } = await setup();
    const pods = client.resource(RESOURCES.pods);
    const created = await pods.create(pod('web'), { fieldManager: 'podnet' });
    expect(created).toMatchObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' } });
    expect(s.requests.at(-1)?.path).toBe('/api/v1/namespaces/default/pods');
    expect(s.requests.at(-1)?.query.get('fieldManager')).toBe('podnet');
    expect(JSON.parse(s.requests.at(-1)?.body ?? '{}')).toMatchObject({ apiVersion: 'v1', kind: 'Pod' });

    const got = await pods.get('default', 'web');
    expect(got.metadata.uid).toBe(created.metadata.uid);

    got.metadata.labels = { app: 'web' };
    const updated = await pods.update(got);
    expect(updated.metadata.labels).toEqual({ app: 'web' });
    expect(s.requests.at(-1)).toMatchObject({ method: 'PUT', path: '/api/v1/namespaces/default/pods/web' });

    const stale = await failure(pods.update(got));
    expect(isConflict(stale)).toBe(true);

    const withStatus = await pods.updateStatus({ ...updated, status: { phase: 'Running', podIP: '10.244.1.5' } });
    expect(withStatus.status?.podIP).toBe('10.244.1.5');
    expect(s.requests.at(-1)?.path).toBe('/api/v1/namespaces/default/pods/web/status');

    const merged = await pods.patch('default', 'web', { metadata: { labels: { tier: 'front' } } }, 'merge');
    expect(merged.metadata.labels).toEqual({ app: 'web', tier: 'front' });
    expect(s.requests.at(-1)?.headers['content-type']).toBe('application/merge-patch+json');
    await pods.patch('default', 'web', [{ op: 'replace', path: '/metadata/labels/app', value: 'api' }], 'json');
    expect(s.requests.at(-1)?.headers['content-type']).toBe('application/json-patch+json');
    const strategic = await pods.patch('default', 'web', { status: { phase: 'Failed' } }, 'strategic', { subresource: 'status' });
    expect(s.requests.at(-1)).toMatchObject({ method: 'PATCH', path: '/api/v1/namespaces/default/pods/web/status' });
    expect(s.requests.at(-1)?.headers['content-type']).toBe('application/strategic-merge-patch+json');
    expect(strategic.metadata.labels?.['app']).toBe('api');

    const del = (await pods.delete('default', 'web', { propagationPolicy: 'Background', gracePeriodSeconds: 0 })) as Status;
    expect(del.status).toBe('Success');
    expect(JSON.parse(s.requests.at(-1)?.body ?? '{}')).toEqual({ apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', gracePeriodSeconds: 0 });
    expect(isNotFound(await failure(pods.get('default', 'web')))).toBe(true);
  });

  it('maps AlreadyExists and precondition conflicts', async () => {
    const { client } = await setup();
    const pods = client.resource(RESOURCES.pods);
    const p = await pods.create(pod('a'));
    expect(isAlreadyExists(await failure(pods.create(pod('a'))))).toBe(true);
    expect(isConflict(await failure(pods.delete('default', 'a', { preconditions: { resourceVersion: '1' } })))).toBe(true);
    await pods.delete('default', 'a', { preconditions: { resourceVersion: p.metadata.resourceVersion ?? '' } });
  });

  it('uses cluster paths for cluster-scoped resources and group paths for groups', async () => {
    const { s, client } = await setup();
    await client.resource(RESOURCES.nodes).create({ metadata: { name: 'node-a' } });
    expect(s.requests.at(-1)?.path).toBe('/api/v1/nodes');
    await client.resource(RESOURCES.nodes).get(undefined, 'node-a');
    expect(s.requests.at(-1)?.path).toBe('/api/v1/nodes/node-a');
    await client.resource(RESOURCES.leases).create({ metadata: { name: 'node-a', namespace: 'kube-node-lease' }, spec: { holderIdentity: 'node-a' } });
    expect(s.requests.at(-1)?.path).toBe('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases');
  });

  it('refuses namespaced calls without a namespace, and status updates where there is no status subresource', async () => {
    const { client } = await setup();
    expect(() => client.resource(RESOURCES.pods).get(undefined, 'x')).toThrow(ClientError);
    expect(() => client.resource(RESOURCES.pods).create({ metadata: { name: 'x' } })).toThrow(/namespace is required/);
    expect(() => client.resource(RESOURCES.leases).updateStatus({ metadata: { name: 'x', namespace: 'n' } })).toThrow(/no status subresource/);
    expect(() => client.resource(RESOURCES.pods).update({ metadata: { namespace: 'n' } })).toThrow(/without metadata.name/);
  });
});

describe('ResourceClient.list', () => {
  async function seeded(n: number): Promise<{ s: FakeApiServer; client: KubeClient }> {
    const env = await setup();
    for (let i = 0; i < n; i++) env.s.put(RESOURCES.pods, pod(`p${String(i).padStart(2, '0')}`, i % 2 ? 'odd' : 'even', { idx: String(i) }));
    return env;
  }

  it('returns one page with its continue token, and fills apiVersion/kind of items', async () => {
    const { client } = await seeded(5);
    const page = await client.resource(RESOURCES.pods).list({ limit: 2 });
    expect(page.items.map((p) => p.metadata.name)).toEqual(['p00', 'p02']);
    expect(page.metadata.continue).toBeTruthy();
    expect(page.metadata.remainingItemCount).toBe(3);
    expect(page.items[0]).toMatchObject({ apiVersion: 'v1', kind: 'Pod' });
  });

  it('follows continue with all: true; the result has the first page\'s version and no token', async () => {
    const { s, client } = await seeded(7);
    const rv = s.resourceVersion;
    const list = await client.resource(RESOURCES.pods).list({ all: true, limit: 3 });
    expect(list.items).toHaveLength(7);
    expect(list.metadata).toEqual({ resourceVersion: rv });
    const reqs = s.requests.filter((r) => r.method === 'GET');
    expect(reqs.map((r) => [r.query.get('limit'), Boolean(r.query.get('continue'))])).toEqual([
      ['3', false],
      ['3', true],
      ['3', true],
    ]);
  });

  it('passes namespace and selectors', async () => {
    const { s, client } = await seeded(6);
    const list = await client.resource(RESOURCES.pods).list({ namespace: 'odd', labelSelector: { idx: '3' }, fieldSelector: 'spec.nodeName=a' });
    expect(list.items.map((p) => p.metadata.name)).toEqual(['p03']);
    const req = s.requests.at(-1);
    expect(req?.path).toBe('/api/v1/namespaces/odd/pods');
    expect(req?.query.get('labelSelector')).toBe('idx=3');
    expect(req?.query.get('fieldSelector')).toBe('spec.nodeName=a');
  });

  it('falls back to one unpaged list when a continue token has expired (410)', async () => {
    const { s, client } = await seeded(5);
    const pods = client.resource(RESOURCES.pods);
    const first = await pods.list({ limit: 2 });
    s.put(RESOURCES.pods, pod('late'));
    s.compact();
    expect(isGone(await failure(pods.list({ limit: 2, continue: first.metadata.continue ?? '' })))).toBe(true);

    // The same through list-all: page 1 fine, page 2 expired → full list.
    let expired = false;
    s.intercept((req) => {
      if (req.query.get('continue') && !expired) {
        expired = true;
        s.put(RESOURCES.pods, pod('later'));
        s.compact();
      }
      return false;
    });
    const all = await pods.list({ all: true, limit: 2 });
    expect(expired).toBe(true);
    expect(all.items).toHaveLength(7);
    expect(all.metadata.continue).toBeUndefined();
    expect(s.requests.at(-1)?.query.get('limit')).toBeNull();
  });
});

describe('ResourceClient.watch', () => {
  it('streams typed events from a resourceVersion, with bookmarks', async () => {
    const { s, client } = await setup();
    const pods = client.resource(RESOURCES.pods);
    const a = s.put(RESOURCES.pods, pod('a'));
    const w = pods.watch({ resourceVersion: a.metadata.resourceVersion ?? '', allowWatchBookmarks: true, timeoutSeconds: 60, labelSelector: 'x!=y' });
    const events = collect(w, 4);
    await s.waitFor(() => s.openWatches === 1);
    s.put(RESOURCES.pods, { ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    s.put(RESOURCES.pods, pod('b', 'other'));
    s.bookmark();
    s.remove(RESOURCES.pods, 'default', 'a');
    const got = await events;
    expect(got.map((e) => [e.type, e.object.metadata.name ?? '-', e.object.metadata.resourceVersion])).toEqual([
      ['MODIFIED', 'a', '101'],
      ['ADDED', 'b', '102'],
      ['BOOKMARK', '-', '102'],
      ['DELETED', 'a', '103'],
    ]);
    const q = s.watchRequests()[0]?.query;
    expect(Object.fromEntries(q ?? [])).toEqual({ watch: 'true', resourceVersion: '100', allowWatchBookmarks: 'true', timeoutSeconds: '60', labelSelector: 'x!=y' });
    // `break` out of for-await closed the stream.
    await s.waitFor(() => s.openWatches === 0, 'the watch to close');
  });

  it('decodes events split across chunks, including inside a UTF-8 character', async () => {
    const { s, client } = await setup();
    const objs = [pod('µ-one'), pod('two', 'default', { note: '{"not":"an event"}\n😀' })];
    const text = objs.map((o, i) => JSON.stringify({ type: 'ADDED', object: { ...o, metadata: { ...o.metadata, resourceVersion: String(i + 1) } } }) + '\n').join('');
    const bytes = Buffer.from(text);
    const emoji = bytes.indexOf(Buffer.from('😀'));
    const cuts = [5, bytes.indexOf(Buffer.from('µ')) + 1, 70, emoji + 2, bytes.length];
    s.intercept((req, res) => {
      if (req.query.get('watch') !== 'true') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      let from = 0;
      const next = (i: number): void => {
        const to = cuts[i];
        if (to === undefined) return void res.end();
        res.write(bytes.subarray(from, to));
        from = to;
        setTimeout(() => next(i + 1), 5);
      };
      next(0);
      return true;
    });
    const events = await collect(client.resource(RESOURCES.pods).watch({ resourceVersion: '0' }));
    expect(events.map((e) => e.object.metadata.name)).toEqual(['µ-one', 'two']);
    expect(events[1]?.object.metadata.labels?.['note']).toBe('{"not":"an event"}\n😀');
    expect(events[0]?.object.kind).toBe('Pod');
  });

  it('ends with an ApiError that isGone on a 410 ERROR event', async () => {
    const { s, client } = await setup();
    s.put(RESOURCES.pods, pod('a'));
    s.put(RESOURCES.pods, pod('b'));
    s.compact();
    const e = await failure(collect(client.resource(RESOURCES.pods).watch({ resourceVersion: '100' })));
    expect(e).toBeInstanceOf(ApiError);
    expect(isGone(e)).toBe(true);
    expect((e as ApiError).reason).toBe('Expired');
  });

  it('ends with an ApiError that isGone on an HTTP 410', async () => {
    const { s, client } = await setup({ goneAs: 'http' });
    s.put(RESOURCES.pods, pod('a'));
    s.compact();
    const e = await failure(collect(client.resource(RESOURCES.pods).watch({ resourceVersion: '1' })));
    expect(isGone(e)).toBe(true);
    expect((e as ApiError).reason).toBe('Gone');
  });

  it('delivers events sent before an ERROR event, then throws', async () => {
    const { s, client } = await setup();
    const seen: string[] = [];
    const w = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion });
    const done = (async () => {
      for await (const ev of w) seen.push(ev.object.metadata.name ?? '');
    })();
    await s.waitFor(() => s.openWatches === 1);
    s.put(RESOURCES.pods, pod('a'));
    s.watchError({ code: 500, reason: 'InternalError', message: 'etcd is sad' });
    await expect(done).rejects.toThrow('etcd is sad');
    expect(seen).toEqual(['a']);
  });

  it('ends quietly when the server closes the stream', async () => {
    const { s, client } = await setup();
    const p = collect(client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion }));
    await s.waitFor(() => s.openWatches === 1);
    s.put(RESOURCES.pods, pod('a'));
    s.dropWatches();
    expect((await p).map((e) => e.type)).toEqual(['ADDED']);
  });

  it('stop() and an aborted signal end the iteration without an error and close the stream', async () => {
    const { s, client } = await setup();
    const w = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion });
    const p = collect(w);
    await s.waitFor(() => s.openWatches === 1);
    w.stop();
    expect(await p).toEqual([]);
    expect(w.stopped).toBe(true);
    await s.waitFor(() => s.openWatches === 0, 'stop to close the stream');

    const ac = new AbortController();
    const p2 = collect(client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion, signal: ac.signal }));
    await s.waitFor(() => s.openWatches === 1);
    ac.abort();
    expect(await p2).toEqual([]);
    await s.waitFor(() => s.openWatches === 0, 'abort to close the stream');

    const early = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion });
    early.stop();
    expect(await collect(early)).toEqual([]);
    expect(s.watchRequests()).toHaveLength(2);
  });

  it('can be consumed with a callback; done settles when the watch ends', async () => {
    const { s, client } = await setup();
    const seen: ObjectEvent<Pod>[] = [];
    const h = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion }, (ev) => {
      seen.push(ev);
    });
    await s.waitFor(() => s.openWatches === 1);
    s.put(RESOURCES.pods, pod('a'));
    await s.waitFor(() => seen.length === 1);
    h.stop();
    await h.done;
    expect(seen[0]?.type).toBe('ADDED');
    await s.waitFor(() => s.openWatches === 0);

    const gone = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion }, () => undefined);
    await s.waitFor(() => s.openWatches === 1);
    s.watchError({ code: 410, reason: 'Expired', message: 'too old' });
    expect(isGone(await failure(gone.done))).toBe(true);
  });

  it('a watch can be iterated only once', async () => {
    const { s, client } = await setup();
    const w = client.resource(RESOURCES.pods).watch({ resourceVersion: s.resourceVersion });
    w[Symbol.asyncIterator]();
    expect(() => w[Symbol.asyncIterator]()).toThrow(/only once/);
    w.stop();
  });
});
