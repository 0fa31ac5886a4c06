import { describe, expect, it } from 'vitest';
import { ErrorCodes, PodnetError, errnoOf, formatError, isPodnetError } from './errors.js';

describe('PodnetError', () => {
  it('formats code, sentence and context on one line', () => {
    const e = new PodnetError(ErrorCodes.LINK_EXISTS, 'link pn1 already exists', { netns: 'node-a', link: 'pn1' }, { errno: 'EEXIST' });
    expect(formatError(e)).toBe('PODNET_LINK_EXISTS: link pn1 already exists (netns=node-a, link=pn1)');
    expect(String(e)).toBe(formatError(e));
    expect(e.errno).toBe('EEXIST');
    expect(isPodnetError(e, ErrorCodes.LINK_EXISTS)).toBe(true);
    expect(isPodnetError(e, ErrorCodes.LINK_NOT_FOUND)).toBe(false);
  });
  it('quotes context values with spaces and drops empty ones', () => {
    const e = new PodnetError(ErrorCodes.EXEC, 'iptables-restore failed', { tool: 'iptables-restore', line: 'a b', empty: '', none: undefined });
    expect(formatError(e)).toBe('PODNET_EXEC: iptables-restore failed (tool=iptables-restore, line="a b")');
  });
  it('serialises to JSON with a stable shape', () => {
    const e = new PodnetError(ErrorCodes.NETNS_NOT_FOUND, 'network namespace x does not exist', { netns: 'x' });
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 'PODNET_NETNS_NOT_FOUND', message: 'network namespace x does not exist', context: { netns: 'x' } });
  });
  it('keeps the cause', () => {
    const cause = new Error('boom');
    expect(new PodnetError(ErrorCodes.NATIVE, 'x', {}, { cause }).cause).toBe(cause);
  });
  it('every code is PODNET_-prefixed and unique', () => {
    const codes = Object.values(ErrorCodes);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^PODNET_[A-Z_]+$/);
  });
});

describe('formatError of foreign values', () => {
  it('uses errno codes of system errors', () => {
    const e = Object.assign(new Error('open /x'), { code: 'ENOENT' });
    expect(formatError(e)).toBe('ENOENT: open /x');
    expect(errnoOf(e)).toBe('ENOENT');
  });
  it('handles non-errors', () => {
    expect(formatError('plain')).toBe('plain');
    expect(errnoOf({ code: 'ERR_SOMETHING' })).toBeUndefined();
    expect(errnoOf(null)).toBeUndefined();
  });
});
