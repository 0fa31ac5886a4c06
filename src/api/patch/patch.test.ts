import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PatchError,
  applyPatch,
  contentTypes,
  createMergePatch,
  listStrategyOf,
  mergePatch,
  parsePatchBody,
  patchTypeOf,
  strategicMergePatch,
} from './index.js';
import type { PatchErrorReason } from './index.js';

const SMP = 'application/strategic-merge-patch+json';
const MERGE = 'application/merge-patch+json';
const JSONP = 'application/json-patch+json';

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** The PatchError `fn` throws (fails the test if it throws nothing or something else). */
function patchError(fn: () => unknown): PatchError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PatchError) return e;
    throw e;
  }
  throw new Error('expected a PatchError, nothing was thrown');
}

function expectPatchError(fn: () => unknown, reason: PatchErrorReason, message: RegExp, field?: string): PatchError {
  const e = patchError(fn);
  expect(e.reason).toBe(reason);
  expect(e.message).toMatch(message);
  if (field !== undefined) expect(e.field).toBe(field);
  return e;
}

// ---------------------------------------------------------------- content types

describe('content types', () => {
  it('lists the three patch types', () => {
    expect([...contentTypes].sort()).toEqual([JSONP, MERGE, SMP].sort());
  });
  it.each([
    [MERGE, MERGE],
    ['application/merge-patch+json; charset=utf-8', MERGE],
    ['Application/JSON-Patch+JSON;charset=UTF-8', JSONP],
    [` ${SMP} `, SMP],
  ])('%j is %s', (header, type) => expect(patchTypeOf(header)).toBe(type));
  it.each(['application/json', 'application/apply-patch+yaml', 'text/plain', '', undefined])('%j is unsupported', (header) => {
    expect(patchTypeOf(header)).toBeUndefined();
  });
  it('applyPatch answers 415 for other types', () => {
    const e = expectPatchError(() => applyPatch('services', {}, {}, 'application/apply-patch+yaml'), 'UnsupportedMediaType', /application\/apply-patch\+yaml.*use one of/);
    expect(e.code).toBe(415);
  });
  it('parsePatchBody: not JSON is a 400', () => {
    expect(parsePatchBody('{"a":1}')).toEqual({ a: 1 });
    expect(expectPatchError(() => parsePatchBody('{"a":'), 'BadRequest', /not valid JSON/).code).toBe(400);
  });
});

// ---------------------------------------------------------------- RFC 7386

describe('merge patch (RFC 7386)', () => {
  // Appendix A, every row.
  it.each([
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ])('appendix A: %j + %j', (target, patch, result) => {
    expect(mergePatch(deepFreeze(target), deepFreeze(patch))).toEqual(result);
  });

  it('section 3 example', () => {
    const target = {
      title: 'Goodbye!',
      author: { givenName: 'John', familyName: 'Doe' },
      tags: ['example', 'sample'],
      content: 'This will be unchanged',
    };
    const patch = { title: 'Hello!', phoneNumber: '+01-123-456-7890', author: { familyName: null }, tags: ['example'] };
    expect(mergePatch(target, patch)).toEqual({
      title: 'Hello!',
      author: { givenName: 'John' },
      tags: ['example'],
      content: 'This will be unchanged',
      phoneNumber: '+01-123-456-7890',
    });
  });

  it('applyPatch: merges into a Service, arrays replace (port 80 + 443 → 8080 only)', () => {
    const svc = { metadata: { name: 'web', labels: { app: 'web', tier: 'x' } }, spec: { ports: [{ port: 80 }, { port: 443 }], selector: { app: 'web' } } };
    expect(applyPatch('services', svc, { metadata: { labels: { tier: null } }, spec: { ports: [{ port: 8080 }] } }, MERGE)).toEqual({
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: { ports: [{ port: 8080 }], selector: { app: 'web' } },
    });
  });

  it.each([[['a']], ['x'], [null], [42]])('applyPatch: a non-object merge patch %j is a 400', (patch) => {
    expect(expectPatchError(() => applyPatch('pods', {}, patch, MERGE), 'BadRequest', /merge patch must be a JSON object/).code).toBe(400);
  });

  it('a "__proto__" key is data, never a prototype', () => {
    const patch = JSON.parse('{"__proto__":{"polluted":true},"a":1}') as unknown;
    const out = mergePatch({}, patch) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.hasOwn(out, '__proto__')).toBe(true);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"polluted":true},"a":1}');
  });
});

describe('createMergePatch', () => {
  it('is minimal: only what changed, nulls for what went away', () => {
    const a = { metadata: { name: 'x', labels: { a: '1', b: '2' } }, spec: { ports: [{ port: 80 }], type: 'ClusterIP' } };
    const b = { metadata: { name: 'x', labels: { a: '1', c: '3' } }, spec: { ports: [{ port: 80 }], type: 'NodePort' } };
    expect(createMergePatch(a, b)).toEqual({ metadata: { labels: { b: null, c: '3' } }, spec: { type: 'NodePort' } });
    expect(createMergePatch(a, a)).toEqual({});
  });

  // JSON objects without nulls: mergePatch(a, createMergePatch(a, b)) must give b back.
  const { obj } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.string({ maxLength: 3 }), fc.integer(), fc.boolean(), fc.array(tie('value'), { maxLength: 3 }), tie('obj')),
    obj: fc.dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 4 }),
  }));

  it('round-trips: mergePatch(a, createMergePatch(a, b)) equals b (property)', () => {
    fc.assert(
      fc.property(obj, obj, (a, b) => {
        deepFreeze(a);
        deepFreeze(b);
        expect(mergePatch(a, createMergePatch(a, b))).toEqual(b);
      }),
      { numRuns: 300 },
    );
  });

  it('strategic merge of an unknown resource agrees with merge patch (property)', () => {
    const plain = obj.filter((o) => !JSON.stringify(o).includes('"$'));
    fc.assert(
      fc.property(plain, plain, (a, b) => {
        const p = createMergePatch(a, b);
        expect(strategicMergePatch('widgets', a, p)).toEqual(mergePatch(a, p));
      }),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------- RFC 6902

describe('json patch (RFC 6902)', () => {
  const apply = (doc: unknown, ops: unknown) => applyPatch('pods', deepFreeze(doc), deepFreeze(ops), JSONP);

  // Appendix A.
  it.each([
    ['A.1 add an object member', { foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux' }], { baz: 'qux', foo: 'bar' }],
    ['A.2 add an array element', { foo: ['bar', 'baz'] }, [{ op: 'add', path: '/foo/1', value: 'qux' }], { foo: ['bar', 'qux', 'baz'] }],
    ['A.3 remove an object member', { baz: 'qux', foo: 'bar' }, [{ op: 'remove', path: '/baz' }], { foo: 'bar' }],
    ['A.4 remove an array element', { foo: ['bar', 'qux', 'baz'] }, [{ op: 'remove', path: '/foo/1' }], { foo: ['bar', 'baz'] }],
    ['A.5 replace a value', { baz: 'qux', foo: 'bar' }, [{ op: 'replace', path: '/baz', value: 'boo' }], { baz: 'boo', foo: 'bar' }],
    [
      'A.6 move a value',
      { foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } },
      [{ op: 'move', from: '/foo/waldo', path: '/qux/thud' }],
      { foo: { bar: 'baz' }, qux: { corge: 'grault', thud: 'fred' } },
    ],
    ['A.7 move an array element', { foo: ['all', 'grass', 'cows', 'eat'] }, [{ op: 'move', from: '/foo/1', path: '/foo/3' }], { foo: ['all', 'cows', 'eat', 'grass'] }],
    [
      'A.8 test a value: success',
      { baz: 'qux', foo: ['a', 2, 'c'] },
      [
        { op: 'test', path: '/baz', value: 'qux' },
        { op: 'test', path: '/foo/1', value: 2 },
      ],
      { baz: 'qux', foo: ['a', 2, 'c'] },
    ],
    ['A.10 add a nested member object', { foo: 'bar' }, [{ op: 'add', path: '/child', value: { grandchild: {} } }], { foo: 'bar', child: { grandchild: {} } }],
    ['A.11 ignore unrecognized elements', { foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux', xyz: 123 }], { foo: 'bar', baz: 'qux' }],
    ['A.14 ~ escape ordering', { '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: 10 }], { '/': 9, '~1': 10 }],
    ['A.16 add an array value', { foo: ['bar'] }, [{ op: 'add', path: '/foo/-', value: ['abc', 'def'] }], { foo: ['bar', ['abc', 'def']] }],
    ['copy', { foo: { bar: [1] } }, [{ op: 'copy', from: '/foo/bar', path: '/baz' }], { foo: { bar: [1] }, baz: [1] }],
    ['replace the whole document', { a: 1 }, [{ op: 'replace', path: '', value: { b: 2 } }], { b: 2 }],
  ])('%s', (_name, doc, ops, result) => {
    expect(apply(doc, ops)).toEqual(result);
  });

  it('A.9 test a value: error names the operation, the path and both values (422)', () => {
    const e = expectPatchError(
      () => apply({ baz: 'qux' }, [{ op: 'add', path: '/x', value: 1 }, { op: 'test', path: '/baz', value: 'bar' }]),
      'Invalid',
      /^json patch operation 1 \(test \/baz\): test failed: the value is "qux", expected "bar"$/,
      'baz',
    );
    expect(e.code).toBe(422);
  });

  it('A.15 comparing strings and numbers fails the test', () => {
    expectPatchError(() => apply({ '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: '10' }]), 'Invalid', /test failed: the value is 10, expected "10"/);
  });

  it('a test of a missing path fails', () => {
    expectPatchError(() => apply({}, [{ op: 'test', path: '/metadata/resourceVersion', value: '5' }]), 'Invalid', /operation 0 \(test \/metadata\/resourceVersion\): test failed: the path does not exist/, 'metadata.resourceVersion');
  });

  it('A.12 add to a nonexistent target (422)', () => {
    expectPatchError(() => apply({ foo: 'bar' }, [{ op: 'add', path: '/baz/bat', value: 'qux' }]), 'Invalid', /operation 0 \(add \/baz\/bat\): cannot add here: \/baz does not exist/, 'baz.bat');
  });

  it.each([
    ['remove', [{ op: 'remove', path: '/spec/ports/2' }], /operation 0 \(remove \/spec\/ports\/2\): the path does not exist/, 'spec.ports[2]'],
    ['replace', [{ op: 'replace', path: '/spec/type', value: 'NodePort' }], /operation 0 \(replace \/spec\/type\): the path does not exist/, 'spec.type'],
    ['move', [{ op: 'move', from: '/spec/nope', path: '/spec/x' }], /operation 0 \(move \/spec\/x\): from \/spec\/nope does not exist/, 'spec.x'],
    ['copy', [{ op: 'copy', from: '/nope', path: '/x' }], /from \/nope does not exist/, 'x'],
    ['add past the end', [{ op: 'add', path: '/spec/ports/5', value: {} }], /array index "5" is out of range \(the array has 2 elements\)/, 'spec.ports[5]'],
    ['add at a non-index', [{ op: 'add', path: '/spec/ports/x', value: {} }], /array index "x" is out of range/, undefined],
    ['an inherited property is not there', [{ op: 'remove', path: '/spec/toString' }], /the path does not exist/, 'spec.toString'],
  ])('%s of a path that does not exist is 422 Invalid', (_name, ops, message, field) => {
    const svc = { spec: { ports: [{ port: 80 }, { port: 443 }] } };
    expect(expectPatchError(() => apply(svc, ops), 'Invalid', message, field).code).toBe(422);
  });

  it.each([
    ['not an array', { op: 'add', path: '/a', value: 1 }, /^a json patch must be an array of operations, got object$/],
    ['an operation that is not an object', ['add'], /^json patch operation 0: must be an object, got string$/],
    ['an unknown op', [{ op: 'merge', path: '/a' }], /operation 0 \(merge \/a\): unknown op "merge": want one of add, remove, replace, move, copy, test/],
    ['a missing op', [{ path: '/a', value: 1 }], /operation 0 \(\/a\): unknown op undefined/],
    ['a missing path', [{ op: 'add', value: 1 }], /operation 0 \(add\): path must be a JSON pointer like "\/spec\/replicas", got undefined/],
    ['a path that is not a pointer', [{ op: 'remove', path: 'spec/replicas' }], /path must be a JSON pointer/],
    ['a bad escape', [{ op: 'remove', path: '/a~2b' }], /path must be a JSON pointer/],
    ['a missing value', [{ op: 'test', path: '/a', value: 1 }, { op: 'add', path: '/b' }], /^json patch operation 1 \(add \/b\): missing value$/],
    ['a missing from', [{ op: 'copy', path: '/b' }], /operation 0 \(copy \/b\): from must be a JSON pointer, got undefined/],
    ['a move into its own child', [{ op: 'move', from: '/a', path: '/a/b' }], /cannot move \/a into its own child/],
  ])('%s is a 400 BadRequest', (_name, ops, message) => {
    expect(expectPatchError(() => apply({ a: 1 }, ops), 'BadRequest', message).code).toBe(400);
  });

  it('is all or nothing and never touches its inputs', () => {
    const doc = deepFreeze({ a: { b: [1, 2] } });
    const ops = deepFreeze([
      { op: 'add', path: '/a/b/-', value: { deep: [3] } },
      { op: 'remove', path: '/a/b/0' },
    ]);
    const out = applyPatch('pods', doc, ops, JSONP) as { a: { b: unknown[] } };
    expect(out).toEqual({ a: { b: [2, { deep: [3] }] } });
    (out.a.b[1] as { deep: number[] }).deep.push(4); // shares nothing with the (frozen) patch
    expect(ops[0]).toEqual({ op: 'add', path: '/a/b/-', value: { deep: [3] } });
    expect(() => applyPatch('pods', doc, [...ops, { op: 'test', path: '/a', value: 0 }], JSONP)).toThrow(PatchError);
    expect(doc).toEqual({ a: { b: [1, 2] } });
  });

  it('refuses to write through __proto__', () => {
    expectPatchError(() => apply({}, [{ op: 'add', path: '/__proto__/polluted', value: true }]), 'Invalid', /__proto__/);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

// ---------------------------------------------------------------- strategic merge patch

const service = () =>
  deepFreeze({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'demo', namespace: 'default', uid: 'u1', resourceVersion: '7', labels: { app: 'demo' }, finalizers: ['a', 'b', 'c'] },
    spec: {
      type: 'ClusterIP',
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10'],
      selector: { app: 'demo' },
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 80 }],
      externalIPs: ['198.18.0.1', '198.18.0.2'],
    },
  });

const pod = () =>
  deepFreeze({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'default', ownerReferences: [{ apiVersion: 'v1', kind: 'X', name: 'o1', uid: 'o1' }] },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'app:1',
          args: ['--a', '--b'],
          ports: [{ containerPort: 80, protocol: 'TCP' }],
          env: [
            { name: 'A', value: '1' },
            { name: 'B', value: '2' },
            { name: 'C', value: '3' },
          ],
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        },
        { name: 'sidecar', image: 'side:1' },
      ],
      volumes: [{ name: 'data', emptyDir: { medium: 'Memory' } }],
    },
    status: {
      phase: 'Running',
      conditions: [
        { type: 'Ready', status: 'False', lastTransitionTime: 't0' },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: 't0' },
      ],
    },
  });

const smp = (resource: 'services' | 'pods' | 'nodes' | 'endpointslices', original: unknown, patch: unknown) => applyPatch(resource, original, deepFreeze(patch), SMP);

describe('strategic merge patch', () => {
  it("applies kubectl client-side apply's patch: port 80 → port 8080 only", () => {
    // What kubectl apply sends after the manifest's port changed from 80 to 8080
    // (reference/kubectl.md), including the last-applied annotation.
    const patch = {
      metadata: { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1","kind":"Service"}\n' } },
      spec: {
        '$setElementOrder/ports': [{ port: 8080 }],
        ports: [{ port: 8080, protocol: 'TCP', targetPort: 8080 }, { $patch: 'delete', port: 80 }],
      },
    };
    const out = smp('services', service(), patch) as ReturnType<typeof service>;
    expect(out.spec.ports).toEqual([{ port: 8080, protocol: 'TCP', targetPort: 8080 }]);
    expect(out.spec.clusterIP).toBe('10.96.0.10');
    expect(out.spec.selector).toEqual({ app: 'demo' });
    expect(out.metadata).toMatchObject({ name: 'demo', resourceVersion: '7', labels: { app: 'demo' } });
    expect(Object.keys(out.metadata)).toContain('annotations');
  });

  it('adds a container port (merged by containerPort; Kubernetes puts an unordered new element first)', () => {
    const patch = { spec: { containers: [{ name: 'app', ports: [{ containerPort: 443, protocol: 'TCP' }] }] } };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    const [app, sidecar] = out.spec.containers;
    expect(app?.ports).toEqual([
      { containerPort: 443, protocol: 'TCP' },
      { containerPort: 80, protocol: 'TCP' },
    ]);
    expect(app?.image).toBe('app:1');
    expect(app?.env).toHaveLength(3);
    expect(sidecar).toEqual({ name: 'sidecar', image: 'side:1' });
  });

  it('adds a container port where $setElementOrder says (what kubectl sends)', () => {
    const patch = {
      spec: {
        '$setElementOrder/containers': [{ name: 'app' }, { name: 'sidecar' }],
        containers: [{ name: 'app', '$setElementOrder/ports': [{ containerPort: 80 }, { containerPort: 443 }], ports: [{ containerPort: 443, protocol: 'TCP' }] }],
      },
    };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    expect(out.spec.containers.map((c) => c.name)).toEqual(['app', 'sidecar']);
    expect(out.spec.containers[0]?.ports).toEqual([
      { containerPort: 80, protocol: 'TCP' },
      { containerPort: 443, protocol: 'TCP' },
    ]);
  });

  it('$setElementOrder reorders a list the patch does not otherwise touch', () => {
    const patch = { spec: { '$setElementOrder/containers': [{ name: 'sidecar' }, { name: 'app' }] } };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    expect(out.spec.containers.map((c) => c.name)).toEqual(['sidecar', 'app']);
  });

  it('deletes an env var with $patch: delete and changes another in place', () => {
    const patch = { spec: { containers: [{ name: 'app', env: [{ name: 'B', $patch: 'delete' }, { name: 'C', value: '30' }] }] } };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    expect(out.spec.containers[0]?.env).toEqual([
      { name: 'A', value: '1' },
      { name: 'C', value: '30' },
    ]);
  });

  it('replaces a whole map with $patch: replace', () => {
    const patch = { metadata: { labels: { $patch: 'replace', tier: 'web' } }, spec: { selector: { $patch: 'replace', tier: 'web' } } };
    const out = smp('services', service(), patch) as ReturnType<typeof service>;
    expect(out.metadata.labels).toEqual({ tier: 'web' });
    expect(out.spec.selector).toEqual({ tier: 'web' });
  });

  it('drops a map with $patch: delete, and a key with null', () => {
    const patch = { metadata: { labels: { $patch: 'delete' } }, spec: { clusterIPs: null, selector: { app: null } } };
    const out = smp('services', service(), patch) as Record<string, Record<string, unknown>>;
    expect(out['metadata']).not.toHaveProperty('labels');
    expect(out['spec']).not.toHaveProperty('clusterIPs');
    expect(out['spec']?.['selector']).toEqual({});
  });

  it('$patch: merge is the ordinary merge, on a map and on a list element', () => {
    const patch = { metadata: { labels: { $patch: 'merge', tier: 'web' } }, spec: { ports: [{ $patch: 'merge', port: 80, targetPort: 8080 }] } };
    const out = smp('services', service(), patch) as ReturnType<typeof service>;
    expect(out.metadata.labels).toEqual({ app: 'demo', tier: 'web' });
    expect(out.spec.ports).toEqual([{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }]);
  });

  it('a {"$patch":"replace"} element replaces the whole list', () => {
    const patch = { spec: { containers: [{ name: 'app', env: [{ $patch: 'replace' }, { name: 'Z', value: '26' }] }] } };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    expect(out.spec.containers[0]?.env).toEqual([{ name: 'Z', value: '26' }]);
  });

  it('$retainKeys drops the keys it does not list (a volume changing its source)', () => {
    const patch = { spec: { volumes: [{ name: 'data', $retainKeys: ['hostPath', 'name'], hostPath: { path: '/srv' } }] } };
    const out = smp('pods', pod(), patch) as ReturnType<typeof pod>;
    expect(out.spec.volumes).toEqual([{ name: 'data', hostPath: { path: '/srv' } }]);
  });

  it('$retainKeys must list every key the patch sets', () => {
    const patch = { spec: { volumes: [{ name: 'data', $retainKeys: ['name'], hostPath: { path: '/srv' } }] } };
    expectPatchError(() => smp('pods', pod(), patch), 'BadRequest', /spec\.volumes\[0\]: the patch sets "hostPath" but \$retainKeys does not list it/, 'spec.volumes[0]');
  });

  it('$deleteFromPrimitiveList/finalizers removes values; finalizers merge as a set', () => {
    const del = smp('services', service(), { metadata: { '$deleteFromPrimitiveList/finalizers': ['b'] } }) as ReturnType<typeof service>;
    expect(del.metadata.finalizers).toEqual(['a', 'c']);
    const add = smp('services', service(), { metadata: { finalizers: ['c', 'd'] } }) as ReturnType<typeof service>;
    expect(add.metadata.finalizers).toEqual(['a', 'b', 'c', 'd']);
    // What kubectl sends when one finalizer goes away and another arrives.
    const both = smp('services', service(), {
      metadata: { '$setElementOrder/finalizers': ['a', 'c', 'd'], '$deleteFromPrimitiveList/finalizers': ['b'], finalizers: ['d'] },
    }) as ReturnType<typeof service>;
    expect(both.metadata.finalizers).toEqual(['a', 'c', 'd']);
  });

  it('merges Pod and Node conditions by type, keeping the fields the patch leaves out', () => {
    const out = smp('pods', pod(), { status: { conditions: [{ type: 'Ready', status: 'True' }] } }) as ReturnType<typeof pod>;
    expect(out.status.conditions).toEqual([
      { type: 'Ready', status: 'True', lastTransitionTime: 't0' },
      { type: 'PodScheduled', status: 'True', lastTransitionTime: 't0' },
    ]);
    const node = deepFreeze({
      metadata: { name: 'n1' },
      status: {
        conditions: [{ type: 'MemoryPressure', status: 'False' }, { type: 'Ready', status: 'Unknown' }],
        addresses: [{ type: 'InternalIP', address: '198.18.0.1' }, { type: 'Hostname', address: 'n1' }],
      },
    });
    const n = smp('nodes', node, {
      status: { conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: 't1' }], addresses: [{ type: 'InternalIP', address: '198.18.0.9' }] },
    }) as typeof node;
    expect(n.status.conditions).toEqual([{ type: 'MemoryPressure', status: 'False' }, { type: 'Ready', status: 'True', lastHeartbeatTime: 't1' }]);
    expect(n.status.addresses).toEqual([{ type: 'InternalIP', address: '198.18.0.9' }, { type: 'Hostname', address: 'n1' }]);
  });

  it('replaces atomic lists whole', () => {
    const svc = smp('services', service(), { spec: { externalIPs: ['198.18.0.3'] } }) as ReturnType<typeof service>;
    expect(svc.spec.externalIPs).toEqual(['198.18.0.3']);
    const p = smp('pods', pod(), { spec: { containers: [{ name: 'app', args: ['--c'] }] } }) as ReturnType<typeof pod>;
    expect(p.spec.containers[0]?.args).toEqual(['--c']);
    const slice = deepFreeze({ addressType: 'IPv4', endpoints: [{ addresses: ['10.244.1.2'] }, { addresses: ['10.244.2.2'] }] });
    expect(smp('endpointslices', slice, { endpoints: [{ addresses: ['10.244.3.2'] }] })).toEqual({ addressType: 'IPv4', endpoints: [{ addresses: ['10.244.3.2'] }] });
  });

  it('unknown resources merge maps and replace lists; metadata lists still merge', () => {
    const widget = deepFreeze({ metadata: { finalizers: ['x'] }, spec: { items: [{ name: 'a' }], size: { w: 1, h: 2 } } });
    expect(strategicMergePatch('widgets', widget, { metadata: { finalizers: ['y'] }, spec: { items: [{ name: 'b' }], size: { h: null, d: 3 } } })).toEqual({
      metadata: { finalizers: ['y', 'x'] },
      spec: { items: [{ name: 'b' }], size: { w: 1, d: 3 } },
    });
  });

  it('Service ports: protocol is part of the identity when both sides give it', () => {
    const dns = deepFreeze({
      spec: {
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    });
    const udp = smp('services', dns, { spec: { ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }] } }) as typeof dns;
    expect(udp.spec.ports.map((p) => [p.protocol, p.targetPort])).toEqual([
      ['UDP', 5353],
      ['TCP', 53],
    ]);
    const noTcp = smp('services', dns, { spec: { ports: [{ $patch: 'delete', port: 53, protocol: 'TCP' }] } }) as typeof dns;
    expect(noTcp.spec.ports.map((p) => p.name)).toEqual(['dns']);
    const none = smp('services', dns, { spec: { ports: [{ $patch: 'delete', port: 53 }] } }) as typeof dns;
    expect(none.spec.ports).toEqual([]);
  });

  it('merges ownerReferences by uid and taints by key', () => {
    const p = smp('pods', pod(), { metadata: { ownerReferences: [{ uid: 'o1', controller: true }] } }) as ReturnType<typeof pod>;
    expect(p.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'X', name: 'o1', uid: 'o1', controller: true }]);
    const node = deepFreeze({ spec: { taints: [{ key: 'a', effect: 'NoSchedule' }, { key: 'b', effect: 'NoSchedule' }] } });
    const n = smp('nodes', node, { spec: { taints: [{ key: 'b', $patch: 'delete' }] } });
    expect(n).toEqual({ spec: { taints: [{ key: 'a', effect: 'NoSchedule' }] } });
  });

  it('directives inside new elements are applied, not stored', () => {
    const bare = deepFreeze({ metadata: { name: 'p' } });
    const out = smp('pods', bare, { spec: { containers: [{ name: 'app', env: [{ name: 'A', value: '1' }, { name: 'GONE', $patch: 'delete' }], resources: { limits: null } }] } });
    expect(out).toEqual({ metadata: { name: 'p' }, spec: { containers: [{ name: 'app', env: [{ name: 'A', value: '1' }], resources: {} }] } });
  });

  it('never mutates its inputs and shares nothing with them', () => {
    const original = pod();
    const patch = deepFreeze({ metadata: { labels: { new: 'x' } }, spec: { containers: [{ name: 'app', env: [{ name: 'D', value: '4' }] }], volumes: [{ name: 'v2', emptyDir: {} }] } });
    const before = JSON.stringify(original);
    const out = applyPatch('pods', original, patch, SMP) as ReturnType<typeof pod> & { metadata: { labels: Record<string, string> } };
    expect(JSON.stringify(original)).toBe(before);
    // Every part of the result is writable: nothing is a frozen input reused.
    out.metadata.labels['more'] = 'y';
    out.metadata.ownerReferences?.push({ apiVersion: 'v1', kind: 'Y', name: 'o2', uid: 'o2' });
    out.spec.containers[1]!.image = 'side:2';
    out.spec.containers[0]!.env!.push({ name: 'E', value: '5' });
    (out.spec.volumes[0] as Record<string, unknown>)['x'] = 1;
    out.status.conditions[0]!.status = 'True';
  });

  describe('malformed patches are 400 BadRequest with a clear message', () => {
    it.each([
      ['an array', [{ spec: {} }], /^a strategic merge patch must be a JSON object, got array$/, undefined],
      ['a string', 'spec', /must be a JSON object, got string/, undefined],
      ['null', null, /must be a JSON object, got null/, undefined],
      ['$patch: bogus on a map', { spec: { selector: { $patch: 'bogus' } } }, /^spec\.selector: unknown \$patch directive "bogus": want "replace", "delete" or "merge"$/, 'spec.selector'],
      ['$patch: bogus on an element', { spec: { ports: [{ port: 80, $patch: 'bogus' }] } }, /unknown \$patch directive "bogus"/, 'spec.ports[0]'],
      ['an element without its merge key', { spec: { ports: [{ port: 81 }, { name: 'x', targetPort: 9 }] } }, /^spec\.ports\[1\]: list element has no merge key "port"$/, 'spec.ports[1]'],
      ['a delete without its merge key', { spec: { ports: [{ $patch: 'delete' }] } }, /list element has no merge key "port"/, 'spec.ports[0]'],
      ['an element that is not an object', { spec: { ports: [80] } }, /list element must be an object with a "port" field, got number/, 'spec.ports[0]'],
      ['an object in a list of primitives', { metadata: { finalizers: [{ name: 'x' }] } }, /holds strings, numbers or booleans, got object/, 'metadata.finalizers[0]'],
      ['$setElementOrder that is not a list', { spec: { '$setElementOrder/ports': { port: 80 } } }, /\$setElementOrder\/ports must be a list, got object/, 'spec'],
      ['$setElementOrder without a list name', { spec: { $setElementOrder: [] } }, /must name a list: \$setElementOrder\/<list>/, 'spec'],
      ['$setElementOrder missing a patch element', { spec: { '$setElementOrder/ports': [{ port: 80 }], ports: [{ port: 8080 }] } }, /\$setElementOrder does not list the patch element \{"port":8080\}/, 'spec.ports'],
      ['$setElementOrder entries without the merge key', { spec: { '$setElementOrder/ports': [{ name: 'http' }] } }, /entry 0 must be an object with a "port" field/, 'spec.ports'],
      ['$retainKeys that is not a list of names', { spec: { $retainKeys: [1] } }, /\$retainKeys must be a list of field names/, 'spec'],
      ['$deleteFromPrimitiveList of objects', { metadata: { '$deleteFromPrimitiveList/finalizers': [{}] } }, /must list strings, numbers or booleans/, 'metadata'],
    ])('%s', (_name, patch, message, field) => {
      const e = expectPatchError(() => smp('services', service(), patch), 'BadRequest', message);
      expect(e.field).toBe(field);
      expect(e.code).toBe(400);
    });
  });
});

describe('strategy table', () => {
  it.each([
    ['pods', 'spec.containers', { mergeKey: 'name' }],
    ['pods', 'spec.initContainers[].env', { mergeKey: 'name' }],
    ['pods', 'spec.containers[].ports', { mergeKey: 'containerPort', alsoKeys: ['protocol'] }],
    ['pods', 'spec.containers[].volumeMounts', { mergeKey: 'mountPath' }],
    ['pods', 'spec.volumes', { mergeKey: 'name' }],
    ['services', 'spec.ports', { mergeKey: 'port', alsoKeys: ['protocol'] }],
    ['nodes', 'status.addresses', { mergeKey: 'type' }],
    ['nodes', 'spec.taints', { mergeKey: 'key', alsoKeys: ['effect'] }],
    ['leases', 'metadata.ownerReferences', { mergeKey: 'uid' }],
    ['widgets', 'metadata.finalizers', {}],
  ])('%s %s', (resource, pattern, strategy) => expect(listStrategyOf(resource, pattern)).toEqual(strategy));
  it.each([
    ['services', 'spec.externalIPs'],
    ['pods', 'spec.containers[].args'],
    ['endpointslices', 'endpoints'],
    ['widgets', 'spec.containers'],
    ['pods', 'toString'],
  ])('%s %s is atomic', (resource, pattern) => expect(listStrategyOf(resource, pattern)).toBeUndefined());
});
