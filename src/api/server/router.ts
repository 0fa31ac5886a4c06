/**
 * URL routing of the Kubernetes API paths podnet serves:
 *   /api, /apis, /api/v1, /apis/<group>[/<version>]           discovery
 *   /api/v1[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]     core resources
 *   /apis/<group>/<version>[/namespaces/<ns>]/<resource>...   grouped resources
 * and the verb each method + path means (get, list, watch, create, update, patch,
 * delete, deletecollection), like kube-apiserver's RequestInfo.
 */
import { RESOURCES } from '../../client/resources.js';
import type { ResourceName } from '../../client/resources.js';

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

export interface ResourceRequest {
  kind: 'resource';
  resource: ResourceName;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  verb: Verb;
}

export interface DiscoveryRequest {
  kind: 'discovery';
  /** "api" (/api), "apis" (/apis), or "group" / "groupversion" with the group and version. */
  what: 'api' | 'apis' | 'group' | 'groupversion';
  group: string;
  version: string;
}

export type Route =
  | ResourceRequest
  | DiscoveryRequest
  | { kind: 'other'; path: string }
  | { kind: 'notfound'; path: string }
  /** A served path, but not with this method (POST to an object, PUT to a collection...): 405. */
  | { kind: 'methodnotallowed'; method: string; path: string }
  /** A path that cannot be decoded (a malformed %-escape): 400. */
  | { kind: 'badpath'; path: string; message: string };

const byGroupVersion = new Map<string, Map<string, ResourceName>>();
for (const [name, r] of Object.entries(RESOURCES)) {
  const gv = `${r.group}/${r.version}`;
  if (!byGroupVersion.has(gv)) byGroupVersion.set(gv, new Map());
  byGroupVersion.get(gv)!.set(r.resource, name as ResourceName);
}

export function servedGroupVersions(): { group: string; version: string }[] {
  return [...byGroupVersion.keys()].map((gv) => {
    const [group, version] = gv.split('/') as [string, string];
    return { group, version };
  });
}

export function route(method: string, path: string, query: URLSearchParams): Route {
  let parts: string[];
  try {
    parts = path.split('/').filter((p) => p !== '').map((p) => decodeURIComponent(p));
  } catch (e) {
    return { kind: 'badpath', path, message: `the request path ${JSON.stringify(path)} is not valid: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (parts[0] === 'api') {
    if (parts.length === 1) return { kind: 'discovery', what: 'api', group: '', version: '' };
    const version = parts[1]!;
    if (parts.length === 2) return byGroupVersion.has(`/${version}`) ? { kind: 'discovery', what: 'groupversion', group: '', version } : { kind: 'notfound', path };
    return resourceRoute(method, path, '', version, parts.slice(2), query);
  }
  if (parts[0] === 'apis') {
    if (parts.length === 1) return { kind: 'discovery', what: 'apis', group: '', version: '' };
    const group = parts[1]!;
    if (parts.length === 2) return [...byGroupVersion.keys()].some((gv) => gv.startsWith(`${group}/`)) ? { kind: 'discovery', what: 'group', group, version: '' } : { kind: 'notfound', path };
    const version = parts[2]!;
    if (parts.length === 3) return byGroupVersion.has(`${group}/${version}`) ? { kind: 'discovery', what: 'groupversion', group, version } : { kind: 'notfound', path };
    return resourceRoute(method, path, group, version, parts.slice(3), query);
  }
  return { kind: 'other', path };
}

function resourceRoute(method: string, path: string, group: string, version: string, rest: string[], query: URLSearchParams): Route {
  const resources = byGroupVersion.get(`${group}/${version}`);
  if (!resources) return { kind: 'notfound', path };
  let namespace: string | undefined;
  // /namespaces/<ns>/<resource>... (but /namespaces/<name>[/status] is the Namespace itself)
  if (rest[0] === 'namespaces' && rest.length >= 3 && group === '' && rest[2] !== 'status' && rest[2] !== 'finalize') {
    namespace = rest[1];
    rest = rest.slice(2);
  } else if (rest[0] === 'namespaces' && rest.length >= 3 && group !== '') {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const resource = resources.get(rest[0]!);
  if (!resource || rest.length > 3) return { kind: 'notfound', path };
  const info = RESOURCES[resource];
  if (namespace !== undefined && !info.namespaced) return { kind: 'notfound', path };
  const name = rest[1];
  const subresource = rest[2];
  if (subresource !== undefined && !(info.subresources as readonly string[]).includes(subresource)) return { kind: 'notfound', path };
  const verb = verbOf(method, name !== undefined, query);
  if (!verb) return { kind: 'methodnotallowed', method, path };
  return { kind: 'resource', resource, namespace, name, subresource, verb };
}

function verbOf(method: string, hasName: boolean, query: URLSearchParams): Verb | undefined {
  const watch = query.get('watch');
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (watch === 'true' || watch === '1') return 'watch';
      return hasName ? 'get' : 'list';
    case 'POST':
      return hasName ? undefined : 'create';
    case 'PUT':
      return hasName ? 'update' : undefined;
    case 'PATCH':
      return hasName ? 'patch' : undefined;
    case 'DELETE':
      return hasName ? 'delete' : 'deletecollection';
    default:
      return undefined;
  }
}
