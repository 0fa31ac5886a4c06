/**
 * Strategic merge patch (`application/strategic-merge-patch+json`): a JSON merge patch
 * that knows, per path, which lists merge element by element (by a merge key, or as a
 * set of primitives) instead of being replaced — the subset of Kubernetes' algorithm
 * (k8s.io/apimachinery/pkg/util/strategicpatch) that kubectl's client-side apply, `patch`
 * and `edit` produce. Which lists merge is data: ./strategies.ts.
 *
 * Directives understood:
 *   `null`                              delete the key
 *   `$patch: replace | delete | merge`  on a map: replace it by the rest of the patch map,
 *                                       drop it, or merge (the default)
 *   list element `$patch: delete`       remove the elements with that merge key
 *   list element `{"$patch":"replace"}` the list becomes the other patch elements
 *   list element `$patch: merge`        an ordinary element (the default)
 *   `$setElementOrder/<list>`           the order of the resulting list
 *   `$retainKeys: [..]`                 drop every key of the map not listed
 *   `$deleteFromPrimitiveList/<list>`   remove these values from a list of primitives
 *
 * Element order follows Kubernetes: elements named by the patch (or by
 * `$setElementOrder`) come in that order, elements only the server had keep their place
 * relative to them; an element new to the list, with no `$setElementOrder`, goes first.
 */
import { PatchError, badPatch } from './errors.js';
import { cloneJson, fieldChild, fieldIndex, getOwn, isObject, isPrimitive, jsonEqual, jsonTypeOf, setOwn, show } from './json.js';
import type { JsonObject } from './json.js';
import { listStrategyOf } from './strategies.js';
import type { ListStrategy } from './strategies.js';

const PATCH = '$patch';
const RETAIN_KEYS = '$retainKeys';
const SET_ORDER = '$setElementOrder';
const DELETE_PRIMITIVES = '$deleteFromPrimitiveList';

type MapDirective = 'replace' | 'delete' | 'merge';

/** Where the merge is: the resource (for strategy look-ups), the path pattern, the field path. */
interface At {
  resource: string;
  /** `spec.containers[].ports`: keys, `[]` for list elements. */
  pattern: string;
  /** `spec.containers[0].ports`: for messages, with the index in the patch list. */
  field: string;
}

function childAt(at: At, key: string): At {
  return { resource: at.resource, pattern: fieldChild(at.pattern, key), field: fieldChild(at.field, key) };
}

function elementAt(at: At, index: number): At {
  return { resource: at.resource, pattern: `${at.pattern}[]`, field: fieldIndex(at.field, index) };
}

/** A patch map taken apart: its directives and its ordinary fields. */
interface MapPatch {
  directive: MapDirective | undefined;
  retainKeys: string[] | undefined;
  /** List key → its `$setElementOrder` list. */
  order: Map<string, unknown[]>;
  /** List key → values to remove (`$deleteFromPrimitiveList`). */
  deletions: Map<string, unknown[]>;
  fields: [string, unknown][];
}

function directiveOf(m: JsonObject, at: At): MapDirective | undefined {
  if (!Object.hasOwn(m, PATCH)) return undefined;
  const d = m[PATCH];
  if (d === 'replace' || d === 'delete' || d === 'merge') return d;
  throw badPatch(`unknown $patch directive ${show(d)}: want "replace", "delete" or "merge"`, at.field);
}

/** `$setElementOrder/ports` → `ports`; a prefix without a list name is malformed. */
function listKeyOf(key: string, prefix: string, at: At): string {
  const name = key.startsWith(`${prefix}/`) ? key.slice(prefix.length + 1) : '';
  if (!name) throw badPatch(`directive ${show(key)} must name a list: ${prefix}/<list>`, at.field);
  return name;
}

function arrayDirective(key: string, v: unknown, at: At): unknown[] {
  if (!Array.isArray(v)) throw badPatch(`${key} must be a list, got ${jsonTypeOf(v)}`, at.field);
  return v;
}

function parseMapPatch(patch: JsonObject, at: At): MapPatch {
  const p: MapPatch = { directive: directiveOf(patch, at), retainKeys: undefined, order: new Map(), deletions: new Map(), fields: [] };
  for (const [key, v] of Object.entries(patch)) {
    if (key === PATCH) continue;
    if (key === RETAIN_KEYS) {
      const keys = arrayDirective(key, v, at);
      if (!keys.every((k): k is string => typeof k === 'string')) throw badPatch(`${RETAIN_KEYS} must be a list of field names`, at.field);
      p.retainKeys = keys;
    } else if (key.startsWith(SET_ORDER)) {
      p.order.set(listKeyOf(key, SET_ORDER, at), arrayDirective(key, v, at));
    } else if (key.startsWith(DELETE_PRIMITIVES)) {
      const values = arrayDirective(key, v, at);
      if (!values.every(isPrimitive)) throw badPatch(`${key} must list strings, numbers or booleans`, at.field);
      p.deletions.set(listKeyOf(key, DELETE_PRIMITIVES, at), values);
    } else {
      p.fields.push([key, v]);
    }
  }
  return p;
}

/** `$retainKeys`: every key the patch sets must be listed; keys not listed are dropped. */
function retainKeys(out: JsonObject, p: MapPatch, keep: string[], at: At): void {
  const kept = new Set(keep);
  for (const [k, v] of p.fields) {
    if (v !== null && !kept.has(k)) throw badPatch(`the patch sets ${show(k)} but ${RETAIN_KEYS} does not list it`, at.field);
  }
  for (const k of Object.keys(out)) {
    if (!kept.has(k)) delete out[k];
  }
}

/**
 * Merges a patch map into `target` (owned by the caller: changed in place). Returns the
 * result — `target`, a new map for `$patch: replace`, or undefined for `$patch: delete`.
 */
function mergeMap(target: JsonObject | undefined, patch: JsonObject, at: At): JsonObject | undefined {
  const p = parseMapPatch(patch, at);
  if (p.directive === 'delete') return undefined;
  const out = p.directive === 'replace' || !target ? {} : target;
  if (p.retainKeys) retainKeys(out, p, p.retainKeys, at);
  const patched = new Set<string>();
  for (const [k, v] of p.fields) {
    mergeField(out, k, v, p.order.get(k), childAt(at, k));
    patched.add(k);
  }
  for (const [k, order] of p.order) {
    const current = getOwn(out, k);
    if (!patched.has(k) && Array.isArray(current)) setOwn(out, k, mergeList(current, undefined, order, childAt(at, k)));
  }
  for (const [k, values] of p.deletions) {
    const current = getOwn(out, k);
    if (Array.isArray(current)) setOwn(out, k, current.filter((x) => !values.some((d) => jsonEqual(d, x))));
  }
  return out;
}

function mergeField(out: JsonObject, k: string, v: unknown, order: unknown[] | undefined, at: At): void {
  const current = getOwn(out, k);
  if (v === null) {
    delete out[k];
  } else if (isObject(v)) {
    const merged = mergeMap(isObject(current) ? current : undefined, v, at);
    if (merged === undefined) delete out[k];
    else setOwn(out, k, merged);
  } else if (Array.isArray(v)) {
    setOwn(out, k, mergeList(Array.isArray(current) ? current : undefined, v, order, at));
  } else {
    setOwn(out, k, v);
  }
}

/** Merges a patch list (or only a `$setElementOrder`) into an owned list, per the strategy table. */
function mergeList(current: unknown[] | undefined, patch: unknown[] | undefined, order: unknown[] | undefined, at: At): unknown[] {
  const strategy = listStrategyOf(at.resource, at.pattern);
  if (!strategy) return patch ? cloneJson(patch) : (current ?? []);
  if (strategy.mergeKey === undefined) return mergeSet(current ?? [], patch ?? [], order, at);
  return mergeKeyed(current ?? [], patch ?? [], order, { ...strategy, mergeKey: strategy.mergeKey }, at);
}

// ---- lists of primitives (set semantics)

function mergeSet(current: unknown[], patch: unknown[], order: unknown[] | undefined, at: At): unknown[] {
  patch.forEach((x, i) => {
    if (!isPrimitive(x)) throw badPatch(`this list holds strings, numbers or booleans, got ${jsonTypeOf(x)}`, fieldIndex(at.field, i));
  });
  const merged = [...current];
  for (const x of patch) {
    if (!merged.some((y) => jsonEqual(x, y))) merged.push(x);
  }
  if (order) checkOrder(patch, order, jsonEqual, at);
  return arrange(merged, order ?? patch, current, jsonEqual);
}

// ---- lists of objects with a merge key

type Keyed = ListStrategy & { mergeKey: string };

/** Same element: equal merge key, and equal `alsoKeys` where both elements give them. */
function sameElement(s: Keyed): (a: unknown, b: unknown) => boolean {
  return (a, b) => {
    if (!isObject(a) || !isObject(b)) return false;
    const ka = getOwn(a, s.mergeKey);
    if (ka === undefined || ka === null || !jsonEqual(ka, getOwn(b, s.mergeKey))) return false;
    return (s.alsoKeys ?? []).every((k) => {
      const [va, vb] = [getOwn(a, k), getOwn(b, k)];
      return va === undefined || vb === undefined || jsonEqual(va, vb);
    });
  };
}

interface Element {
  patch: JsonObject;
  at: At;
}

/** Splits a patch list into its ordinary elements, the deletions, and whether it replaces. */
function splitElements(patch: unknown[], s: Keyed, at: At): { elements: Element[]; deletions: JsonObject[]; replace: boolean } {
  const out = { elements: [] as Element[], deletions: [] as JsonObject[], replace: false };
  patch.forEach((raw, i) => {
    const eat = elementAt(at, i);
    if (!isObject(raw)) throw badPatch(`list element must be an object with a ${show(s.mergeKey)} field, got ${jsonTypeOf(raw)}`, eat.field);
    const directive = directiveOf(raw, eat);
    if (directive === 'replace') {
      out.replace = true;
      return;
    }
    const key = getOwn(raw, s.mergeKey);
    if (key === undefined || key === null) throw badPatch(`list element has no merge key ${show(s.mergeKey)}`, eat.field);
    if (directive === 'delete') out.deletions.push(raw);
    else out.elements.push({ patch: directive === 'merge' ? withoutDirective(raw) : raw, at: eat });
  });
  return out;
}

function withoutDirective(m: JsonObject): JsonObject {
  const copy: JsonObject = {};
  for (const [k, v] of Object.entries(m)) if (k !== PATCH) setOwn(copy, k, v);
  return copy;
}

function mergeKeyed(current: unknown[], patch: unknown[], order: unknown[] | undefined, s: Keyed, at: At): unknown[] {
  const same = sameElement(s);
  const { elements, deletions, replace } = splitElements(patch, s, at);
  if (replace) return elements.map((e) => mergeMap(undefined, e.patch, e.at) ?? {});
  const base = current.filter((x) => !deletions.some((d) => same(x, d)));
  const merged = [...base];
  for (const e of elements) {
    const i = merged.findIndex((x) => same(x, e.patch));
    const into = i >= 0 ? merged[i] : undefined;
    const result = mergeMap(isObject(into) ? into : undefined, e.patch, e.at) ?? {};
    if (i >= 0) merged[i] = result;
    else merged.push(result);
  }
  if (order) {
    order.forEach((o, i) => {
      if (!isObject(o) || getOwn(o, s.mergeKey) === undefined) throw badPatch(`${SET_ORDER} entry ${i} must be an object with a ${show(s.mergeKey)} field`, at.field);
    });
    checkOrder(elements.map((e) => e.patch), order, same, at);
  }
  return arrange(merged, order ?? elements.map((e) => e.patch), base, same);
}

// ---- element order

/** Every element the patch sets must appear in `$setElementOrder`, in the same relative order. */
function checkOrder(patch: unknown[], order: unknown[], same: (a: unknown, b: unknown) => boolean, at: At): void {
  let p = 0;
  for (let o = 0; o < order.length && p < patch.length; o++) {
    if (same(patch[p], order[o])) p++;
  }
  if (p < patch.length) {
    throw badPatch(`${SET_ORDER} does not list the patch element ${show(patch[p])}, or lists it out of order`, at.field);
  }
}

function indexIn(list: unknown[], item: unknown, same: (a: unknown, b: unknown) => boolean): number {
  return list.findIndex((x) => same(x, item));
}

function sortedBy(items: unknown[], order: unknown[], same: (a: unknown, b: unknown) => boolean): unknown[] {
  const rank = (x: unknown) => {
    const i = indexIn(order, x, same);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return items.map((x) => ({ x, r: rank(x) })).sort((a, b) => a.r - b.r).map((e) => e.x);
}

/**
 * The final order of a merged list: the elements the patch names (sorted by `order`)
 * with the server-only elements (sorted by `serverOrder`) woven in where the server's
 * order puts them before a patch element. Kubernetes' normalizeElementOrder.
 */
function arrange(merged: unknown[], order: unknown[], serverOrder: unknown[], same: (a: unknown, b: unknown) => boolean): unknown[] {
  const named = (x: unknown) => indexIn(order, x, same) >= 0;
  const fromPatch = sortedBy(merged.filter(named), order, same);
  const serverOnly = sortedBy(merged.filter((x) => !named(x)), serverOrder, same);
  const out: unknown[] = [];
  let i = 0;
  let j = 0;
  while (i < serverOnly.length || j < fromPatch.length) {
    if (j >= fromPatch.length) out.push(serverOnly[i++]);
    else if (i >= serverOnly.length) out.push(fromPatch[j++]);
    else {
      const l = indexIn(serverOrder, serverOnly[i], same);
      const r = indexIn(serverOrder, fromPatch[j], same);
      out.push(l >= 0 && r >= 0 && l < r ? serverOnly[i++] : fromPatch[j++]);
    }
  }
  return out;
}

/**
 * Applies a strategic merge patch to an object of `resource` (a plural like "services";
 * unknown resources merge with atomic lists). Pure: inputs are never mutated and the
 * result shares nothing with them.
 */
export function strategicMergePatch(resource: string, original: unknown, patch: unknown): unknown {
  if (!isObject(patch)) throw new PatchError('BadRequest', `a strategic merge patch must be a JSON object, got ${jsonTypeOf(patch)}`);
  const target = isObject(original) ? cloneJson(original) : {};
  return mergeMap(target, patch, { resource, pattern: '', field: '' }) ?? {};
}
