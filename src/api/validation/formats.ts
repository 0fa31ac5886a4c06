/**
 * Value formats shared by the resource rules: DNS names (RFC 1123 / 1035), label keys and
 * values, IANA service names, IPs, CIDRs, ports. Each check reports into FieldErrors and
 * returns whether the value was valid.
 */
import { isIP } from 'node:net';
import { Cidr } from '../../util/ipnet.js';
import type { FieldErrors } from './fielderrors.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export function dns1123Label(e: FieldErrors, field: string, v: string): boolean {
  if (v.length > 63) return e.invalid(field, v, 'must be no more than 63 characters'), false;
  if (!DNS1123_LABEL.test(v)) {
    e.invalid(field, v, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
    return false;
  }
  return true;
}

export function dns1035Label(e: FieldErrors, field: string, v: string): boolean {
  if (v.length > 63) return e.invalid(field, v, 'must be no more than 63 characters'), false;
  if (!DNS1035_LABEL.test(v)) {
    e.invalid(field, v, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')");
    return false;
  }
  return true;
}

export function dns1123Subdomain(e: FieldErrors, field: string, v: string): boolean {
  if (v.length > 253) return e.invalid(field, v, 'must be no more than 253 characters'), false;
  if (!v.split('.').every((p) => DNS1123_LABEL.test(p))) {
    e.invalid(field, v, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
    return false;
  }
  return true;
}

/** Label / annotation key: [prefix/]name, prefix a DNS subdomain, name ≤ 63. */
export function qualifiedName(e: FieldErrors, field: string, key: string): boolean {
  const parts = key.split('/');
  if (parts.length > 2) return e.invalid(field, key, "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'"), false;
  const name = parts[parts.length - 1]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (!prefix) return e.invalid(field, key, 'prefix part must be non-empty'), false;
    if (!dns1123Subdomain(e, field, prefix)) return false;
  }
  if (!name || name.length > 63 || !LABEL_NAME.test(name)) {
    e.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and be at most 63 characters");
    return false;
  }
  return true;
}

export function labelValue(e: FieldErrors, field: string, v: string): boolean {
  if (v === '') return true;
  if (v.length > 63 || !LABEL_NAME.test(v)) {
    e.invalid(field, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and be at most 63 characters");
    return false;
  }
  return true;
}

export function labels(e: FieldErrors, field: string, m: Record<string, string> | null | undefined): void {
  for (const [k, v] of Object.entries(m ?? {})) {
    qualifiedName(e, field, k);
    labelValue(e, `${field}[${k}]`, v);
  }
}

export const ANNOTATIONS_MAX_BYTES = 256 * 1024;

export function annotations(e: FieldErrors, field: string, m: Record<string, string> | null | undefined): void {
  let size = 0;
  for (const [k, v] of Object.entries(m ?? {})) {
    qualifiedName(e, field, k);
    size += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (size > ANNOTATIONS_MAX_BYTES) e.tooLong(field, ANNOTATIONS_MAX_BYTES);
}

/** IANA service name (named ports): ≤ 15, lower-case alphanumerics and '-', one letter at least. */
export function ianaServiceName(e: FieldErrors, field: string, v: string): boolean {
  if (v.length > 15) return e.invalid(field, v, 'must be no more than 15 characters'), false;
  if (!IANA_SVC_NAME.test(v)) return e.invalid(field, v, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"), false;
  if (v.includes('--')) return e.invalid(field, v, 'must not contain consecutive hyphens'), false;
  if (!/[a-z]/.test(v)) return e.invalid(field, v, 'must contain at least one letter (a-z)'), false;
  return true;
}

export function ip(e: FieldErrors, field: string, v: string): 0 | 4 | 6 {
  const f = isIP(v);
  if (f === 0) e.invalid(field, v, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)');
  return f as 0 | 4 | 6;
}

export function cidr(e: FieldErrors, field: string, v: string): Cidr | undefined {
  try {
    return Cidr.parse(v, field);
  } catch (err) {
    e.invalid(field, v, (err as Error).message.replace(/^.*?"\s*/, '').replace(/^[^ ]* /, '') || 'must be a valid CIDR');
    return undefined;
  }
}

export function port(e: FieldErrors, field: string, v: number): boolean {
  if (!Number.isInteger(v) || v < 1 || v > 65535) return e.invalid(field, v, 'must be between 1 and 65535, inclusive'), false;
  return true;
}

export const PROTOCOLS = ['SCTP', 'TCP', 'UDP'] as const;

export function protocol(e: FieldErrors, field: string, v: string | null | undefined): void {
  if (v === undefined || v === null) return;
  if (!(PROTOCOLS as readonly string[]).includes(v)) e.notSupported(field, v, PROTOCOLS);
}

export function oneOf<T extends string>(e: FieldErrors, field: string, v: string | null | undefined, allowed: readonly T[]): v is T {
  if (v === undefined || v === null) return false;
  if (!(allowed as readonly string[]).includes(v)) {
    e.notSupported(field, v, allowed);
    return false;
  }
  return true;
}

/** RFC 3339 timestamp (Kubernetes Time / MicroTime). */
export function timestamp(e: FieldErrors, field: string, v: string | null | undefined): void {
  if (v === undefined || v === null) return;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(v) || Number.isNaN(Date.parse(v))) {
    e.invalid(field, v, 'must be an RFC 3339 timestamp, e.g. 2026-01-02T15:04:05Z');
  }
}
