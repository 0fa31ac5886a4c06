/**
 * RFC 6902 JSON patch (`application/json-patch+json`), applied by fast-json-patch after
 * our own checks: the document must be an array of operations of the right shape, and
 * each operation is checked against the document as it stands before it runs, so a
 * failure names the operation (its index, op and path) and says why in one sentence.
 *
 * Malformed operations are 400 BadRequest; a failed `test`, a path or `from` that does
 * not exist, or an array index out of range is 422 Invalid (what kube-apiserver answers).
 */
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { PatchError } from './errors.js';
import { cloneJson, isObject, jsonEqual, jsonTypeOf, pointerToField, show } from './json.js';

export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

const OPS = ['add', 'remove', 'replace', 'move', 'copy', 'test'] as const;
type OpName = (typeof OPS)[number];

function isOpName(v: unknown): v is OpName {
  return typeof v === 'string' && (OPS as readonly string[]).includes(v);
}

/** "" (the whole document) or "/a/b~1c"; "~" only as "~0" or "~1". */
function isPointer(v: unknown): v is string {
  return typeof v === 'string' && (v === '' || v.startsWith('/')) && !/~(?![01])/.test(v);
}

/** "operation 2 (remove /spec/ports/1)": how messages name an operation. */
function opLabel(i: number, op: unknown, path: unknown): string {
  const what = [typeof op === 'string' ? op : undefined, typeof path === 'string' ? path || '""' : undefined].filter(Boolean).join(' ');
  return what ? `operation ${i} (${what})` : `operation ${i}`;
}

function fail(reason: 'BadRequest' | 'Invalid', i: number, op: unknown, path: unknown, why: string, cause?: unknown): PatchError {
  const field = typeof path === 'string' ? pointerToField(path) : '';
  return new PatchError(reason, `json patch ${opLabel(i, op, path)}: ${why}`, { ...(field ? { field } : {}), ...(cause === undefined ? {} : { cause }) });
}

/** Checks one operation's shape; returns it typed (and deep-copied, so it never aliases the input). */
function parseOperation(raw: unknown, i: number): JsonPatchOperation {
  if (!isObject(raw)) throw fail('BadRequest', i, undefined, undefined, `must be an object, got ${jsonTypeOf(raw)}`);
  const { op, path } = raw;
  if (!isOpName(op)) throw fail('BadRequest', i, op, path, `unknown op ${show(op)}: want one of ${OPS.join(', ')}`);
  if (!isPointer(path)) throw fail('BadRequest', i, op, undefined, `path must be a JSON pointer like "/spec/replicas", got ${show(path)}`);
  if (op === 'remove') return { op, path };
  if (op === 'move' || op === 'copy') {
    const from = raw['from'];
    if (!isPointer(from)) throw fail('BadRequest', i, op, path, `from must be a JSON pointer, got ${show(from)}`);
    if (op === 'move' && path.startsWith(`${from}/`)) throw fail('BadRequest', i, op, path, `cannot move ${from} into its own child`);
    return { op, from, path };
  }
  if (!Object.hasOwn(raw, 'value')) throw fail('BadRequest', i, op, path, 'missing value');
  return { op, path, value: cloneJson(raw['value']) };
}

/** Checks the shape of a whole JSON patch document: an array of operations. */
export function parseJsonPatch(patch: unknown): JsonPatchOperation[] {
  if (!Array.isArray(patch)) throw new PatchError('BadRequest', `a json patch must be an array of operations, got ${jsonTypeOf(patch)}`);
  return patch.map((raw, i) => parseOperation(raw, i));
}

function unescapeSegment(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

type Lookup = { found: true; value: unknown } | { found: false };

/** The value at a JSON pointer, following own properties and in-range indices only. */
function lookup(doc: unknown, pointer: string): Lookup {
  let cur = doc;
  if (pointer === '') return { found: true, value: cur };
  for (const seg of pointer.slice(1).split('/').map(unescapeSegment)) {
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(seg) || Number(seg) >= cur.length) return { found: false };
      cur = cur[Number(seg)];
    } else if (isObject(cur) && Object.hasOwn(cur, seg)) {
      cur = cur[seg];
    } else {
      return { found: false };
    }
  }
  return { found: true, value: cur };
}

/** The container an `add` at `path` writes into must exist; an array index must be in range. */
function checkAddTarget(doc: unknown, op: JsonPatchOperation, i: number): void {
  if (op.path === '') return;
  const cut = op.path.lastIndexOf('/');
  const parent = lookup(doc, op.path.slice(0, cut));
  const last = unescapeSegment(op.path.slice(cut + 1));
  if (!parent.found || (!isObject(parent.value) && !Array.isArray(parent.value))) {
    throw fail('Invalid', i, op.op, op.path, `cannot add here: ${op.path.slice(0, cut) || 'the document'} does not exist or is not an object or array`);
  }
  if (Array.isArray(parent.value) && last !== '-' && (!/^(0|[1-9][0-9]*)$/.test(last) || Number(last) > parent.value.length)) {
    throw fail('Invalid', i, op.op, op.path, `array index ${show(last)} is out of range (the array has ${parent.value.length} elements)`);
  }
}

/** Checks an operation against the document it is about to change. */
function checkAgainst(doc: unknown, op: JsonPatchOperation, i: number): void {
  switch (op.op) {
    case 'remove':
    case 'replace':
      if (!lookup(doc, op.path).found) throw fail('Invalid', i, op.op, op.path, 'the path does not exist');
      return;
    case 'test': {
      const at = lookup(doc, op.path);
      if (!at.found) throw fail('Invalid', i, op.op, op.path, `test failed: the path does not exist (expected ${show(op.value)})`);
      if (!jsonEqual(at.value, op.value)) throw fail('Invalid', i, op.op, op.path, `test failed: the value is ${show(at.value)}, expected ${show(op.value)}`);
      return;
    }
    case 'move':
    case 'copy':
      if (!lookup(doc, op.from).found) throw fail('Invalid', i, op.op, op.path, `from ${op.from} does not exist`);
      checkAddTarget(doc, op, i);
      return;
    case 'add':
      checkAddTarget(doc, op, i);
      return;
  }
}

/** fast-json-patch's own failures (a backstop: our checks run first). */
function translate(e: unknown, i: number, op: JsonPatchOperation): PatchError {
  if (e instanceof PatchError) return e;
  const name = e instanceof Error ? e.name : '';
  const message = e instanceof Error ? e.message.split('\n')[0] ?? '' : String(e);
  const invalid = /UNRESOLVABLE|CANNOT_ADD|ILLEGAL_ARRAY_INDEX|OUT_OF_BOUNDS|TEST_OPERATION_FAILED/.test(name);
  return fail(invalid ? 'Invalid' : 'BadRequest', i, op.op, op.path, message, e);
}

/**
 * Applies an RFC 6902 patch. Pure: `original` and `patch` are never mutated and the
 * result shares nothing with them. Operations run in order; the first that fails stops
 * the patch (nothing is applied: the caller gets an error, not a half-patched object).
 */
export function applyJsonPatch(original: unknown, patch: unknown): unknown {
  const ops = parseJsonPatch(patch);
  let doc = cloneJson(original);
  ops.forEach((op, i) => {
    checkAgainst(doc, op, i);
    try {
      doc = jsonpatch.applyOperation(doc, op as Operation, true, true, true, i).newDocument;
    } catch (e) {
      throw translate(e, i, op);
    }
  });
  return doc;
}
