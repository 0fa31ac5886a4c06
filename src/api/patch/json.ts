/**
 * Small helpers over parsed JSON values (`unknown` from JSON.parse): narrowing, deep
 * clone and equality, own-property access that is safe for keys like `__proto__`, and
 * Kubernetes-style field paths (`spec.ports[1]`, `metadata.labels[app.kubernetes.io/name]`).
 */

export type JsonObject = Record<string, unknown>;

/** A JSON object (not an array, not null). */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON scalar: string, number, boolean or null. */
export function isPrimitive(v: unknown): v is string | number | boolean | null {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** Names a value's JSON type for messages: "object", "array", "string", "null"… */
export function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  return Array.isArray(v) ? 'array' : typeof v;
}

/** A value for a message: its JSON, cut at 80 characters. */
export function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** The own property `k` of `o` (never one inherited from Object.prototype). */
export function getOwn(o: JsonObject, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

/** Sets the own property `k`, even for `__proto__` (plain assignment would set the prototype). */
export function setOwn(o: JsonObject, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** A deep copy of a JSON value; the copy shares nothing with the input and is never frozen. */
export function cloneJson<T>(v: T): T {
  if (Array.isArray(v)) return v.map((x: unknown) => cloneJson(x)) as T;
  if (isObject(v)) {
    const out: JsonObject = {};
    for (const [k, x] of Object.entries(v)) setOwn(out, k, cloneJson(x));
    return out as T;
  }
  return v;
}

/** Structural equality of JSON values (key order ignored, array order significant). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (!isObject(a) || !isObject(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `spec` + `ports` → `spec.ports`; keys that are not identifiers go in brackets: `labels[app/x]`. */
export function fieldChild(parent: string, key: string): string {
  if (!IDENT.test(key)) return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}

/** `spec.ports` + 1 → `spec.ports[1]`. */
export function fieldIndex(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** A JSON pointer (`/spec/ports/1`) as a field path (`spec.ports[1]`). */
export function pointerToField(pointer: string): string {
  if (pointer === '' || !pointer.startsWith('/')) return '';
  let field = '';
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    field = /^(0|[1-9][0-9]*|-)$/.test(seg) && field !== '' ? `${field}[${seg}]` : fieldChild(field, seg);
  }
  return field;
}
