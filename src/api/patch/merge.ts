/**
 * RFC 7386 JSON merge patch (`application/merge-patch+json`): objects merge recursively,
 * `null` deletes a key, anything else — arrays included — replaces. Plus the inverse,
 * `createMergePatch(a, b)`, for clients that want to send the smallest patch from a to b.
 */
import { cloneJson, getOwn, isObject, jsonEqual, setOwn } from './json.js';
import type { JsonObject } from './json.js';

/**
 * MergePatch(target, patch) exactly as RFC 7386 §2 defines it: any JSON value is a patch;
 * a non-object patch replaces the target. Never mutates its inputs; the result shares
 * nothing with them.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  return mergeInto(isObject(patch) && isObject(target) ? cloneJson(target) : undefined, patch);
}

/** mergePatch on a target this module owns (a fresh clone): it is updated in place. */
function mergeInto(target: JsonObject | undefined, patch: unknown): unknown {
  if (!isObject(patch)) return cloneJson(patch);
  const out = target ?? {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) {
      delete out[k];
      continue;
    }
    const old = getOwn(out, k);
    setOwn(out, k, mergeInto(isObject(old) && isObject(v) ? old : undefined, v));
  }
  return out;
}

/**
 * The merge patch that turns `from` into `to`: removed keys become `null`, changed
 * objects recurse, everything else that changed is copied. `mergePatch(from,
 * createMergePatch(from, to))` equals `to` whenever `to` holds no `null` values (a merge
 * patch cannot say "set this key to null") — RFC 7386 §4.
 */
export function createMergePatch(from: unknown, to: unknown): unknown {
  if (!isObject(from) || !isObject(to)) return cloneJson(to);
  const patch: JsonObject = {};
  for (const k of Object.keys(from)) {
    if (!Object.hasOwn(to, k)) setOwn(patch, k, null);
  }
  for (const [k, v] of Object.entries(to)) {
    const old = getOwn(from, k);
    if (old !== undefined && jsonEqual(old, v)) continue;
    setOwn(patch, k, old !== undefined && isObject(old) && isObject(v) ? createMergePatch(old, v) : cloneJson(v));
  }
  return patch;
}
