/**
 * PATCH for `podnet api`: the three content types kube-apiserver accepts for PATCH (the
 * fourth, server-side apply's `application/apply-patch+yaml`, is not served: 415).
 *
 *   application/json-patch+json             RFC 6902 operations        ./jsonpatch.ts
 *   application/merge-patch+json            RFC 7386 merge patch       ./merge.ts
 *   application/strategic-merge-patch+json  Kubernetes strategic merge ./strategic.ts
 *
 * Everything here is pure: the server reads the stored object, calls applyPatch, then
 * validates and stores the result like an update. Failures are PatchError (400 / 422 / 415).
 */
import type { ResourceName } from '../../client/resources.js';
import { PatchError } from './errors.js';
import { applyJsonPatch } from './jsonpatch.js';
import { isObject, jsonTypeOf } from './json.js';
import { mergePatch } from './merge.js';
import { strategicMergePatch } from './strategic.js';

export { PatchError, isPatchError } from './errors.js';
export type { PatchErrorReason } from './errors.js';
export { createMergePatch, mergePatch } from './merge.js';
export { applyJsonPatch, parseJsonPatch } from './jsonpatch.js';
export type { JsonPatchOperation } from './jsonpatch.js';
export { strategicMergePatch } from './strategic.js';
export { COMMON_STRATEGIES, PATCH_STRATEGIES, listStrategyOf } from './strategies.js';
export type { ListStrategy, StrategyTable } from './strategies.js';

export const JSON_PATCH = 'application/json-patch+json';
export const MERGE_PATCH = 'application/merge-patch+json';
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';

/** The PATCH content types served, in the order kube-apiserver lists them (Accept-Patch, 415 messages). */
export const contentTypes = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH] as const;

export type PatchType = (typeof contentTypes)[number];

/**
 * The patch type a Content-Type header asks for, or undefined when it is none of ours
 * (answer 415). Parameters and case are ignored: `application/merge-patch+json;
 * charset=utf-8` is a merge patch.
 */
export function patchTypeOf(contentType: string | undefined): PatchType | undefined {
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return contentTypes.find((t) => t === mediaType);
}

/**
 * Parses a PATCH request body. Not JSON is a 400 BadRequest PatchError, as from
 * kube-apiserver.
 */
export function parsePatchBody(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch (e) {
    throw new PatchError('BadRequest', `the patch is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Applies `patch` (parsed JSON) to `original` (the stored object of `resource`) as
 * `contentType` says. Pure: neither input is mutated and the result shares nothing with
 * them. Throws PatchError: 400 for a malformed patch, 422 for one that cannot apply to
 * this object (a failed JSON-patch test, a path that does not exist), 415 for a content
 * type that is not one of `contentTypes`.
 */
export function applyPatch(resource: ResourceName, original: unknown, patch: unknown, contentType: string): unknown {
  const type = patchTypeOf(contentType);
  switch (type) {
    case JSON_PATCH:
      return applyJsonPatch(original, patch);
    case MERGE_PATCH:
      if (!isObject(patch)) throw new PatchError('BadRequest', `a merge patch must be a JSON object, got ${jsonTypeOf(patch)}`);
      return mergePatch(original, patch);
    case STRATEGIC_MERGE_PATCH:
      return strategicMergePatch(resource, original, patch);
    case undefined:
      throw new PatchError('UnsupportedMediaType', `unsupported patch content type ${JSON.stringify(contentType)}: use one of ${contentTypes.join(', ')}`);
  }
}
