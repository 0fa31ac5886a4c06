/**
 * Discovery documents (what kubectl reads before anything else) and a minimal OpenAPI v3
 * description: every resource path with its operations, `x-kubernetes-group-version-kind`
 * and the `fieldValidation` parameter, which makes kubectl leave validation to the server.
 */
import { createHash } from 'node:crypto';
import { RESOURCES, apiVersionOf } from '../../client/resources.js';
import type { ResourceInfo } from '../../client/resources.js';
import { version as podnetVersion } from '../../util/version.js';
import { openapiSchemaOf } from './openapi-schema.js';
import { servedGroupVersions } from './router.js';
import type { ResourceName } from '../../client/resources.js';

const resources = Object.values(RESOURCES) as ResourceInfo[];

/** /version — kubectl's dispatcher picks its client minor from this. */
export function versionInfo(): Record<string, string> {
  return {
    major: '1',
    minor: '32',
    gitVersion: `v1.32.0+podnet-${podnetVersion}`,
    gitCommit: '',
    gitTreeState: 'clean',
    buildDate: '2026-01-01T00:00:00Z',
    goVersion: 'n/a (podnet on Node.js ' + process.versions.node + ')',
    compiler: 'podnet',
    platform: `${process.platform}/${process.arch}`,
  };
}

export function apiVersions(): Record<string, unknown> {
  return { kind: 'APIVersions', apiVersion: 'v1', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '' }] };
}

function groupDoc(group: string): Record<string, unknown> {
  const versions = servedGroupVersions()
    .filter((gv) => gv.group === group)
    .map((gv) => ({ groupVersion: `${group}/${gv.version}`, version: gv.version }));
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions, preferredVersion: versions[0] };
}

export function apiGroupList(): Record<string, unknown> {
  const groups = [...new Set(servedGroupVersions().map((gv) => gv.group).filter((g) => g !== ''))].sort();
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map((g) => { const d = groupDoc(g); delete d.kind; delete d.apiVersion; return d; }) };
}

export function apiGroup(group: string): Record<string, unknown> {
  return groupDoc(group);
}

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export function apiResourceList(group: string, version: string): Record<string, unknown> {
  const list: Record<string, unknown>[] = [];
  for (const r of resources.filter((x) => x.group === group && x.version === version)) {
    list.push({ name: r.resource, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: VERBS, ...(r.shortNames.length ? { shortNames: r.shortNames } : {}), storageVersionHash: hash(`${group}/${version}/${r.kind}`).slice(0, 12) });
    for (const sub of r.subresources) list.push({ name: `${r.resource}/${sub}`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] });
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources: list };
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

// ---- OpenAPI v3

function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

function schemaName(r: ResourceInfo): string {
  const g = r.group ? r.group.split('.')[0] : 'core';
  return `io.k8s.api.${g}.${r.version}.${r.kind}`;
}

const param = (name: string, description: string, where = 'query') => ({ name, in: where, description, schema: { type: 'string', uniqueItems: true } });

function operations(r: ResourceInfo, collection: boolean, sub?: string): Record<string, unknown> {
  const gvk = { group: r.group, version: r.version, kind: r.kind };
  const ref = { $ref: `#/components/schemas/${schemaName(r)}` };
  const op = (action: string, verbDesc: string, extra: Record<string, unknown> = {}) => ({
    description: `${verbDesc} ${r.kind}${sub ? ` ${sub}` : ''}`,
    operationId: `${action}${r.kind}${sub ?? ''}`,
    parameters: [param('dryRun', 'When present, modifications are not persisted'), param('fieldManager', 'Name of the actor making the change'), param('fieldValidation', 'Strict, Warn or Ignore: what to do with unknown or duplicate fields')],
    responses: { '200': { description: 'OK', content: { 'application/json': { schema: ref } } }, '401': { description: 'Unauthorized' } },
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk,
    ...extra,
  });
  if (collection) {
    return {
      get: { ...op('list', 'list or watch objects of kind'), parameters: [param('labelSelector', 'label selector'), param('fieldSelector', 'field selector'), param('limit', 'page size'), param('continue', 'continue token'), param('resourceVersion', 'resource version'), param('watch', 'watch for changes')] },
      post: op('post', 'create a', { requestBody: { content: { '*/*': { schema: ref } }, required: true } }),
      delete: op('deletecollection', 'delete collection of'),
    };
  }
  return {
    get: op('get', 'read the specified'),
    put: op('put', 'replace the specified', { requestBody: { content: { '*/*': { schema: ref } }, required: true } }),
    patch: op('patch', 'partially update the specified', { requestBody: { content: { 'application/json-patch+json': { schema: { type: 'object' } }, 'application/merge-patch+json': { schema: { type: 'object' } }, 'application/strategic-merge-patch+json': { schema: { type: 'object' } } }, required: true } }),
    ...(sub ? {} : { delete: op('delete', 'delete a') }),
  };
}

/** The document of one group/version. */
export function openapiGroupVersion(group: string, version: string): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  for (const r of resources.filter((x) => x.group === group && x.version === version)) {
    const nsPart = r.namespaced ? '/namespaces/{namespace}' : '';
    const nsParam = r.namespaced ? [param('namespace', 'object name and auth scope', 'path')] : [];
    paths[`${base}${nsPart}/${r.resource}`] = { ...operations(r, true), parameters: nsParam };
    paths[`${base}${nsPart}/${r.resource}/{name}`] = { ...operations(r, false), parameters: [...nsParam, param('name', `name of the ${r.kind}`, 'path')] };
    for (const sub of r.subresources) paths[`${base}${nsPart}/${r.resource}/{name}/${sub}`] = { ...operations(r, false, sub), parameters: [...nsParam, param('name', `name of the ${r.kind}`, 'path')] };
    if (r.namespaced) paths[`${base}/${r.resource}`] = { get: (operations(r, true) as { get: unknown }).get };
    schemas[schemaName(r)] = {
      ...openapiSchemaOf(r.resource as ResourceName),
      description: `${r.kind} (${apiVersionOf(r)}), served by podnet`,
      'x-kubernetes-group-version-kind': [{ group: r.group, version: r.version, kind: r.kind }],
    };
  }
  return { openapi: '3.0.0', info: { title: 'podnet', version: `${group || 'core'}/${version}` }, paths, components: { schemas } };
}

let rootDoc: Record<string, unknown> | undefined;

/** /openapi/v3: where each group/version's document is. */
export function openapiRoot(): Record<string, unknown> {
  if (rootDoc) return rootDoc;
  const paths: Record<string, unknown> = {};
  for (const gv of servedGroupVersions()) {
    const doc = JSON.stringify(openapiGroupVersion(gv.group, gv.version));
    paths[gvPath(gv.group, gv.version)] = { serverRelativeURL: `/openapi/v3/${gvPath(gv.group, gv.version)}?hash=${createHash('sha512').update(doc).digest('hex').slice(0, 32).toUpperCase()}` };
  }
  rootDoc = { paths };
  return rootDoc;
}

/** The document for a path under /openapi/v3/, or undefined. */
export function openapiFor(subPath: string): Record<string, unknown> | undefined {
  for (const gv of servedGroupVersions()) if (gvPath(gv.group, gv.version) === subPath) return openapiGroupVersion(gv.group, gv.version);
  return undefined;
}
