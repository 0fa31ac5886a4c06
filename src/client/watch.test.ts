import { describe, expect, it } from 'vitest';
import { ApiError, ClientError, isGone } from './errors.js';
import { JsonObjectSplitter, decodeWatchEvent } from './watch.js';

describe('JsonObjectSplitter', () => {
  const events = [
    { type: 'ADDED', object: { metadata: { name: 'a', annotations: { 'x/y': 'has } and { and "quotes" and \\ backslash' } } } },
    { type: 'MODIFIED', object: { metadata: { name: 'b', labels: { emoji: 'µ€😀' } }, spec: { list: [1, [2, { three: 3 }]] } } },
    { type: 'BOOKMARK', object: { metadata: { resourceVersion: '12' } } },
  ];
  const text = events.map((e) => JSON.stringify(e)).join('\n') + '\n';

  it('frames objects split at every possible position', () => {
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new JsonObjectSplitter();
      const out = [...s.push(text.slice(0, cut)), ...s.push(text.slice(cut))];
      expect(out.map((t) => JSON.parse(t))).toEqual(events);
      expect(s.pending).toBe(0);
    }
  });

  it('frames objects fed one character at a time, with or without newlines between them', () => {
    const s = new JsonObjectSplitter();
    const out: string[] = [];
    for (const ch of events.map((e) => JSON.stringify(e)).join('')) out.push(...s.push(ch));
    expect(out.map((t) => JSON.parse(t))).toEqual(events);
  });

  it('holds back an unfinished object', () => {
    const s = new JsonObjectSplitter();
    expect(s.push('{"type":"ADDED","object":{"metadata":')).toEqual([]);
    expect(s.pending).toBeGreaterThan(0);
  });

  it('rejects text between objects', () => {
    expect(() => new JsonObjectSplitter().push('{"a":1} x')).toThrow(ClientError);
    expect(() => new JsonObjectSplitter().push('[1]')).toThrow(/expected an object/);
    expect(() => new JsonObjectSplitter().push('}')).toThrow(/unbalanced/);
  });
});

describe('decodeWatchEvent', () => {
  it('returns typed object events', () => {
    const ev = decodeWatchEvent('{"type":"DELETED","object":{"metadata":{"name":"x","resourceVersion":"5"}}}');
    expect(ev).toEqual({ type: 'DELETED', object: { metadata: { name: 'x', resourceVersion: '5' } } });
  });

  it('throws an ERROR event as an ApiError; 410 Expired is "gone"', () => {
    const text = JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code: 410, reason: 'Expired', message: 'too old resource version: 1 (5)' } });
    let err: unknown;
    try {
      decodeWatchEvent(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect(isGone(err)).toBe(true);
    expect((err as ApiError).message).toBe('too old resource version: 1 (5)');
  });

  it('an ERROR event without a Status is a 500', () => {
    expect(() => decodeWatchEvent('{"type":"ERROR","object":{"oops":1}}')).toThrow(expect.objectContaining({ code: 500 }) as Error);
  });

  it.each([
    ['not JSON', '{"type":'],
    ['unknown type', '{"type":"SOMETHING","object":{"metadata":{}}}'],
    ['no object', '{"type":"ADDED"}'],
    ['no metadata', '{"type":"ADDED","object":{}}'],
  ])('rejects %s', (_n, text) => {
    expect(() => decodeWatchEvent(text)).toThrow(ClientError);
  });
});
