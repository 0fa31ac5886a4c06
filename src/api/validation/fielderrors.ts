/**
 * Field errors in Kubernetes form: each cause names its field path and says why, with the
 * offending value, e.g. `spec.ports[0].port: Invalid value: 70000: must be between 1 and
 * 65535, inclusive`. They become the causes of a 422 Invalid Status.
 */
import type { StatusCause } from '../../client/types.js';

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'null';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

export class FieldErrors {
  readonly causes: StatusCause[] = [];

  get empty(): boolean {
    return this.causes.length === 0;
  }

  private add(reason: string, field: string, message: string): void {
    this.causes.push({ reason, field, message });
  }

  required(field: string, detail?: string): void {
    this.add('FieldValueRequired', field, `Required value${detail ? `: ${detail}` : ''}`);
  }

  invalid(field: string, value: unknown, detail: string): void {
    this.add('FieldValueInvalid', field, `Invalid value: ${show(value)}: ${detail}`);
  }

  notSupported(field: string, value: unknown, allowed: readonly string[]): void {
    this.add('FieldValueNotSupported', field, `Unsupported value: ${show(value)}: supported values: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }

  duplicate(field: string, value: unknown): void {
    this.add('FieldValueDuplicate', field, `Duplicate value: ${show(value)}`);
  }

  forbidden(field: string, detail: string): void {
    this.add('FieldValueForbidden', field, `Forbidden: ${detail}`);
  }

  tooLong(field: string, max: number): void {
    this.add('FieldValueTooLong', field, `Too long: must have at most ${max} bytes`);
  }

  tooMany(field: string, max: number): void {
    this.add('FieldValueTooMany', field, `Too many: must have at most ${max} items`);
  }

  immutable(field: string, value: unknown): void {
    this.invalid(field, value, 'field is immutable');
  }
}
