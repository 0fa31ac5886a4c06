/**
 * Small typed readers for untrusted JSON values. Each throws a CniError with the code it
 * is given and a message that names the field (its JSON path) and the reason.
 */
import { CniError } from './errors.js';

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A short rendering of a value for an error message. */
export function show(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Readers that report failures with one CNI code. */
export class FieldReader {
  constructor(readonly code: number) {}

  /** `<path> <reason>`. */
  fail(path: string, reason: string): CniError {
    return new CniError(this.code, `${path} ${reason}`);
  }

  /** `<path> <reason>, got <value>`. */
  bad(path: string, reason: string, value: unknown): CniError {
    return new CniError(this.code, `${path} ${reason}, got ${show(value)}`);
  }

  object(v: unknown, path: string): JsonObject {
    if (!isObject(v)) throw this.bad(path, 'must be a JSON object', v);
    return v;
  }

  optObject(v: unknown, path: string): JsonObject | undefined {
    return v === undefined ? undefined : this.object(v, path);
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) throw this.bad(path, 'must be a JSON array', v);
    return v;
  }

  optArray(v: unknown, path: string): unknown[] | undefined {
    return v === undefined ? undefined : this.array(v, path);
  }

  /** A string; `nonEmpty` (default true) rejects "". */
  string(v: unknown, path: string, nonEmpty = true): string {
    if (typeof v !== 'string') throw v === undefined ? this.fail(path, 'is required (a string)') : this.bad(path, 'must be a string', v);
    if (nonEmpty && v === '') throw this.fail(path, 'must not be empty');
    return v;
  }

  optString(v: unknown, path: string, nonEmpty = true): string | undefined {
    return v === undefined ? undefined : this.string(v, path, nonEmpty);
  }

  optBool(v: unknown, path: string): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw this.bad(path, 'must be true or false', v);
    return v;
  }

  optInt(v: unknown, path: string, min: number, max: number): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw this.bad(path, `must be an integer between ${min} and ${max}`, v);
    }
    return v;
  }

  optStringArray(v: unknown, path: string): string[] | undefined {
    const a = this.optArray(v, path);
    return a?.map((s, i) => this.string(s, `${path}[${i}]`));
  }
}
