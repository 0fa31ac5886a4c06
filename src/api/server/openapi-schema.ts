/**
 * OpenAPI schemas of the served kinds, generated from the structural zod schemas
 * (../validation/schemas.ts) and the strategic-merge list strategies
 * (../patch/strategies.ts), so kubectl can compute apply patches from the server's own
 * description: the same facts that validate a write describe it.
 */
import type { z } from 'zod';
import type { ResourceName } from '../../client/resources.js';
import { COMMON_STRATEGIES, PATCH_STRATEGIES } from '../patch/strategies.js';
import type { ListStrategy } from '../patch/strategies.js';
import { strippingSchemas } from '../validation/schemas.js';

type Json = Record<string, unknown>;

interface ZodDefLike {
  type: string;
  innerType?: ZodLike;
  shape?: Record<string, ZodLike>;
  element?: ZodLike;
  valueType?: ZodLike;
  options?: ZodLike[];
  checks?: unknown[];
}
interface ZodLike {
  _zod: { def: ZodDefLike };
}

function unwrap(t: ZodLike): ZodLike {
  while (t._zod.def.innerType) t = t._zod.def.innerType;
  return t;
}

function listExtensions(s: ListStrategy | undefined): Json {
  if (!s) return { 'x-kubernetes-list-type': 'atomic' };
  if (!s.mergeKey) return { 'x-kubernetes-patch-strategy': 'merge', 'x-kubernetes-list-type': 'set' };
  return {
    'x-kubernetes-patch-strategy': 'merge',
    'x-kubernetes-patch-merge-key': s.mergeKey,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': [s.mergeKey, ...(s.alsoKeys ?? [])],
  };
}

function convert(t: ZodLike, path: string, table: Record<string, ListStrategy>): Json {
  const def = unwrap(t)._zod.def;
  switch (def.type) {
    case 'object': {
      const properties: Json = {};
      const required: string[] = [];
      for (const [k, v] of Object.entries(def.shape ?? {})) {
        properties[k] = convert(v, path ? `${path}.${k}` : k, table);
        if (!v._zod.def.innerType && v._zod.def.type !== 'unknown') required.push(k);
      }
      return { type: 'object', properties, ...(required.length ? { required } : {}) };
    }
    case 'array':
      return { type: 'array', items: convert(def.element!, `${path}[]`, table), ...listExtensions(table[path]) };
    case 'record':
      return { type: 'object', additionalProperties: convert(def.valueType!, `${path}.*`, table) };
    case 'union':
      return { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] };
    case 'string':
      return { type: 'string' };
    case 'number':
      return { type: 'integer', format: 'int64' };
    case 'boolean':
      return { type: 'boolean' };
    default:
      return { 'x-kubernetes-preserve-unknown-fields': true };
  }
}

const cache = new Map<ResourceName, Json>();

export function openapiSchemaOf(resource: ResourceName): Json {
  let s = cache.get(resource);
  if (!s) {
    s = convert(strippingSchemas[resource] as unknown as z.ZodType & ZodLike, '', { ...COMMON_STRATEGIES, ...PATCH_STRATEGIES[resource] });
    cache.set(resource, s);
  }
  return s;
}
