import { describe, expect, it } from 'vitest';
import {
  ApiError,
  ClientError,
  ClientErrorCodes,
  isAbortError,
  isAlreadyExists,
  isClientError,
  isConflict,
  isForbidden,
  isGone,
  isInvalid,
  isNotFound,
  isTooManyRequests,
  isUnauthorized,
  parseStatus,
} from './errors.js';

const status = (code: number, reason?: string, message = 'm'): string =>
  JSON.stringify({ apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', code, message, ...(reason ? { reason } : {}) });

const HELPERS = { isNotFound, isAlreadyExists, isConflict, isGone, isForbidden, isUnauthorized, isInvalid, isTooManyRequests };
type Helper = keyof typeof HELPERS;

describe('ApiError mapping', () => {
  it.each<[string, number, string, Helper[]]>([
    ['NotFound Status', 404, status(404, 'NotFound'), ['isNotFound']],
    ['bare 404 without a Status', 404, '404 page not found', ['isNotFound']],
    ['AlreadyExists (409, not a Conflict)', 409, status(409, 'AlreadyExists'), ['isAlreadyExists']],
    ['Conflict', 409, status(409, 'Conflict'), ['isConflict']],
    ['a 409 with an unknown reason counts as a Conflict', 409, status(409, 'Weird'), ['isConflict']],
    ['Gone', 410, status(410, 'Gone'), ['isGone']],
    ['Expired (compacted continue token or watch version)', 410, status(410, 'Expired'), ['isGone']],
    ['bare 410', 410, '', ['isGone']],
    ['Forbidden', 403, status(403, 'Forbidden'), ['isForbidden']],
    ['Unauthorized', 401, status(401, 'Unauthorized'), ['isUnauthorized']],
    ['Invalid', 422, status(422, 'Invalid'), ['isInvalid']],
    ['TooManyRequests', 429, status(429, 'TooManyRequests'), ['isTooManyRequests']],
    ['a known reason decides over the code', 404, status(404, 'Forbidden'), ['isForbidden']],
    ['InternalError', 500, status(500, 'InternalError'), []],
    ['bad gateway text', 502, '<html>bad gateway</html>', []],
  ])('%s', (_name, code, body, truthy) => {
    const e = ApiError.fromResponse({ statusCode: code, body, target: { method: 'GET', path: '/api/v1/pods' } });
    expect(e.code).toBe(code);
    for (const [name, fn] of Object.entries(HELPERS)) expect([name, fn(e)]).toEqual([name, truthy.includes(name as Helper)]);
  });

  it('keeps the Status: reason, message, details, causes', () => {
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      code: 422,
      reason: 'Invalid',
      message: 'Service "x" is invalid: spec.ports[0].port: Invalid value: 0',
      details: { name: 'x', kind: 'services', causes: [{ field: 'spec.ports[0].port', reason: 'FieldValueInvalid', message: 'Invalid value: 0' }] },
    });
    const e = ApiError.fromResponse({ statusCode: 422, body, target: { method: 'POST', path: '/api/v1/namespaces/d/services' } });
    expect(e.message).toBe('Service "x" is invalid: spec.ports[0].port: Invalid value: 0');
    expect(e.reason).toBe('Invalid');
    expect(e.details?.name).toBe('x');
    expect(e.causes[0]?.field).toBe('spec.ports[0].port');
    expect(e.method).toBe('POST');
    expect(String(e)).toBe('ApiError 422 Invalid: Service "x" is invalid: spec.ports[0].port: Invalid value: 0');
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 422, reason: 'Invalid', message: e.message, method: 'POST', path: '/api/v1/namespaces/d/services' });
  });

  it('synthesises a Status from a non-Status body', () => {
    const e = ApiError.fromResponse({ statusCode: 503, body: 'upstream down\n', retryAfter: '7' });
    expect(e.reason).toBe('ServiceUnavailable');
    expect(e.message).toBe('the server answered 503: upstream down');
    expect(e.status.kind).toBe('Status');
    expect(e.retryAfterSeconds).toBe(7);
  });

  it('uses the HTTP code when the Status has none', () => {
    const e = ApiError.fromResponse({ statusCode: 404, body: JSON.stringify({ kind: 'Status', message: 'gone fishing' }) });
    expect(e.code).toBe(404);
    expect(isNotFound(e)).toBe(true);
  });

  it('helpers are false for anything that is not an ApiError', () => {
    for (const fn of Object.values(HELPERS)) {
      expect(fn(new Error('404'))).toBe(false);
      expect(fn(undefined)).toBe(false);
      expect(fn({ code: 404, reason: 'NotFound' })).toBe(false);
    }
  });

  it('parseStatus only accepts Status objects', () => {
    expect(parseStatus(status(404, 'NotFound'))?.code).toBe(404);
    expect(parseStatus('{"kind":"Pod"}')).toBeUndefined();
    expect(parseStatus('nope')).toBeUndefined();
  });
});

describe('ClientError', () => {
  it('formats code, sentence and context on one line and serialises stably', () => {
    const e = new ClientError(ClientErrorCodes.TRANSPORT, 'GET /api to http://x failed: connect ENOENT', { method: 'GET', path: '/api', none: undefined });
    expect(String(e)).toBe('PODNET_TRANSPORT: GET /api to http://x failed: connect ENOENT (method=GET, path=/api)');
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: 'PODNET_TRANSPORT', message: e.message, context: { method: 'GET', path: '/api' } });
    expect(isClientError(e, ClientErrorCodes.TRANSPORT)).toBe(true);
    expect(isClientError(e, ClientErrorCodes.TIMEOUT)).toBe(false);
  });

  it('every code is PODNET_-prefixed and unique', () => {
    const codes = Object.values(ClientErrorCodes);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^PODNET_[A-Z_]+$/);
  });

  it('recognises aborts', () => {
    const ac = new AbortController();
    ac.abort();
    expect(isAbortError(ac.signal.reason)).toBe(true);
    expect(isAbortError(Object.assign(new Error('x'), { code: 'UND_ERR_ABORTED' }))).toBe(true);
    expect(isAbortError(new Error('x'))).toBe(false);
  });
});
