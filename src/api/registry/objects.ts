/**
 * Small object helpers of the registry: timestamps, uids, generated names, deep copies,
 * canonical comparison, and the stored encoding (no apiVersion / kind / resourceVersion:
 * those are stamped on the way out, resourceVersion from the store's modRevision).
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { KubeObject } from '../../client/types.js';

/** RFC 3339 with second precision, as Kubernetes' metav1.Time serialises. */
export function now(clock: () => number = Date.now): string {
  // toISOString is always YYYY-MM-DDTHH:mm:ss.sssZ for the years a clock gives
  return `${new Date(clock()).toISOString().slice(0, 19)}Z`;
}

/** RFC 3339 with microseconds (metav1.MicroTime). */
export function nowMicro(clock: () => number = Date.now): string {
  return new Date(clock()).toISOString().replace(/Z$/, '000Z');
}

export function newUid(): string {
  return randomUUID();
}

const GEN_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

/** generateName + 5 random characters, as the apiserver's name generator does. */
export function generateName(base: string): string {
  let s = base.length > 58 ? base.slice(0, 58) : base;
  for (let i = 0; i < 5; i++) s += GEN_CHARS[randomInt(0, GEN_CHARS.length)];
  return s;
}

/**
 * A deep copy of JSON data (decoded bodies and stored values: trees of plain objects,
 * arrays and primitives, no cycles, depth bounded by validation), by a plain walk —
 * several times faster than structuredClone on objects of this size. Anything that is not
 * a plain object or array (a Date, a Map, a class instance) is handed to structuredClone.
 */
export function clone<T>(v: T): T {
  return copyValue(v) as T;
}

function copyValue(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = copyValue(v[i]);
    return out;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return structuredClone(v);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    const x = (v as Record<string, unknown>)[k];
    // A `__proto__` key must stay an own property (assignment would set the prototype).
    if (k === '__proto__') Object.defineProperty(out, k, { value: copyValue(x), enumerable: true, writable: true, configurable: true });
    else out[k] = copyValue(x);
  }
  return out;
}

/**
 * The stored form of an object: its JSON with `metadata` first (so that reads can stamp
 * resourceVersion into the text without decoding it: see stampStored).
 */
export function encode(obj: KubeObject): string {
  const { apiVersion: _a, kind: _k, metadata, ...rest } = obj;
  const { resourceVersion: _rv, selfLink: _sl, managedFields: _mf, ...meta } = metadata as unknown as Record<string, unknown>;
  return JSON.stringify({ metadata: meta, ...rest });
}

const STORED_HEAD = '{"metadata":{';

/**
 * The JSON of a stored object as served — apiVersion, kind and resourceVersion stamped —
 * built from the stored text without parsing it when it has encode()'s shape, else by
 * decoding (`decode`). Equal, as JSON, to JSON.stringify(decode()).
 */
export function stampStored(value: string, apiVersion: string, kind: string, revision: number, decode: () => unknown): string {
  if (!value.startsWith(STORED_HEAD)) return JSON.stringify(decode());
  const rv = `"resourceVersion":${JSON.stringify(String(revision))}`;
  const rest = value.slice(STORED_HEAD.length);
  return `{"apiVersion":${JSON.stringify(apiVersion)},"kind":${JSON.stringify(kind)},"metadata":{${rv}${rest.startsWith('}') ? '' : ','}${rest}`;
}

/** JSON with object keys sorted: equal values give equal strings. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : val,
  );
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Removes null values (JSON `null` for an optional field means "not set"). */
export function dropNulls<T>(v: T): T {
  if (Array.isArray(v)) return v.map(dropNulls) as T;
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = dropNulls(x);
    return out as T;
  }
  return v;
}
