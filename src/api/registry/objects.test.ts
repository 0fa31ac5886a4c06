import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../client/types.js';
import { encode, stampStored } from './objects.js';
import { decodeObject } from './watchcache.js';

const stamped = (obj: KubeObject, rev: number) => {
  const value = encode(obj);
  return stampStored(value, 'v1', 'Service', rev, () => decodeObject('services', value, rev));
};

describe('stored objects', () => {
  it('encode puts metadata first and drops what is stamped on the way out', () => {
    const value = encode({ apiVersion: 'v1', kind: 'Service', spec: { type: 'ClusterIP' }, metadata: { name: 'web', resourceVersion: '7', managedFields: [] } } as unknown as KubeObject);
    expect(value).toBe('{"metadata":{"name":"web"},"spec":{"type":"ClusterIP"}}');
  });

  it('stampStored gives the JSON of the decoded object, without decoding', () => {
    const meta = fc.record({ name: fc.string(), namespace: fc.option(fc.string(), { nil: undefined }), labels: fc.option(fc.dictionary(fc.string(), fc.string()), { nil: undefined }) }, { requiredKeys: [] });
    fc.assert(
      fc.property(meta, fc.dictionary(fc.string(), fc.jsonValue()), fc.integer({ min: 1, max: 2 ** 40 }), (metadata, rest, rev) => {
        const obj = { ...rest, metadata } as unknown as KubeObject;
        const value = encode(obj);
        expect(JSON.parse(stamped(obj, rev))).toEqual(decodeObject('services', value, rev));
      }),
      { numRuns: 300 },
    );
  });

  it('an empty metadata and a value of another shape are served right', () => {
    expect(JSON.parse(stamped({ metadata: {} } as KubeObject, 3))).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { resourceVersion: '3' } });
    const legacy = '{"spec":{},"metadata":{"name":"old"}}';
    expect(JSON.parse(stampStored(legacy, 'v1', 'Service', 9, () => decodeObject('services', legacy, 9)))).toEqual({ apiVersion: 'v1', kind: 'Service', spec: {}, metadata: { name: 'old', resourceVersion: '9' } });
  });
});
