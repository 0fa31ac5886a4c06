/**
 * Typed resource clients: `client.resource(RESOURCES.pods)` gives get / list / create /
 * update / updateStatus / patch / delete / watch on one kind, with URLs from
 * resources.ts and the Kubernetes query parameters. Equivalent to client-go's typed
 * clientsets (`clientset.CoreV1().Pods(ns)`), minus code generation.
 */
import { ClientError, ClientErrorCodes, isGone } from './errors.js';
import { HttpClient } from './http.js';
import type { HttpClientOptions, Query } from './http.js';
import type { ClientConfig } from './kubeconfig.js';
import { apiVersionOf, resourcePath } from './resources.js';
import type { ResourceInfo } from './resources.js';
import type { EndpointSlice, KubeList, KubeObject, Lease, Namespace, Node, Pod, Service, Status } from './types.js';
import { WatchStream } from './watch.js';
import type { ObjectEvent, Watch, WatchHandle } from './watch.js';

/** The object type of each resource in RESOURCES, by plural. */
export interface ObjectTypes {
  namespaces: Namespace;
  nodes: Node;
  pods: Pod;
  services: Service;
  endpointslices: EndpointSlice;
  leases: Lease;
}

/** The object type of a ResourceInfo: Pod for RESOURCES.pods, KubeObject for unknown ones. */
export type ObjectOf<R extends ResourceInfo> = R['resource'] extends keyof ObjectTypes ? ObjectTypes[R['resource']] : KubeObject;

/** A label selector as text (`app=web,tier!=db`) or as equality pairs. */
export type LabelSelector = string | Record<string, string>;

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's default timeout, ms. */
  timeoutMs?: number;
}

export interface ListOptions extends RequestOptions {
  /** Omit (or, for cluster-scoped resources, ignored) to list across all namespaces. */
  namespace?: string;
  labelSelector?: LabelSelector;
  fieldSelector?: string;
  /** Page size. With `all`, the size of each page (default 500). */
  limit?: number;
  /** Continue token from a previous page. */
  continue?: string;
  /** "" / undefined = most recent (consistent read); "0" = any cached state. */
  resourceVersion?: string;
  resourceVersionMatch?: 'NotOlderThan' | 'Exact';
  /**
   * Follow `continue` until the last page and return one list of all items. When a
   * continue token expires (410) the whole list is read again without paging, as
   * client-go's pager does.
   */
  all?: boolean;
}

export interface WatchOptions {
  namespace?: string;
  /** Watch changes after this version (from a list or the last event). Undefined: from now, with synthetic ADDED events for existing objects. */
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** The server ends the watch after this long. */
  timeoutSeconds?: number;
  labelSelector?: LabelSelector;
  fieldSelector?: string;
  /** Ends the watch when it fires. */
  signal?: AbortSignal;
}

export interface WriteOptions extends RequestOptions {
  /** `dryRun=All`: validate and answer, store nothing. */
  dryRun?: boolean;
  fieldManager?: string;
  fieldValidation?: 'Strict' | 'Warn' | 'Ignore';
}

export interface CreateOptions extends WriteOptions {
  /** Used when the object's metadata.namespace is empty. */
  namespace?: string;
}

export type PatchType = 'merge' | 'json' | 'strategic';

export const PATCH_CONTENT_TYPES: Readonly<Record<PatchType, string>> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
};

export interface PatchOptions extends WriteOptions {
  /** Patch a subresource (`status`) instead of the object. */
  subresource?: string;
}

export interface DeleteOptions extends RequestOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  /** Delete only if the object still has this uid / resourceVersion (409 Conflict otherwise). */
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

/** What an informer needs: list and watch. ResourceClient is one; tests may pass another. */
export interface ListerWatcher<T extends KubeObject> {
  readonly info: ResourceInfo;
  list(opts: ListOptions): Promise<KubeList<T>>;
  watch(opts: WatchOptions): Watch<T>;
}

/** A connection to one API server. Holds the connection pool; `close()` releases it. */
export class KubeClient {
  readonly http: HttpClient;

  /** Builds the pool from a config (no connection yet), or wraps an existing HttpClient. */
  constructor(config: ClientConfig | HttpClient, opts: HttpClientOptions = {}) {
    this.http = config instanceof HttpClient ? config : new HttpClient(config, opts);
  }

  /** The typed client of one resource: `resource(RESOURCES.pods)` → ResourceClient<Pod>. */
  resource<R extends ResourceInfo>(info: R): ResourceClient<ObjectOf<R>>;
  /** The same with an explicit object type: `resource<MyPod>(RESOURCES.pods)`. */
  resource<T extends KubeObject>(info: ResourceInfo): ResourceClient<T>;
  resource(info: ResourceInfo): ResourceClient<KubeObject> {
    return new ResourceClient<KubeObject>(this.http, info);
  }

  /** GET of any path, decoded as JSON (discovery, /version, /healthz). */
  getJson<T>(path: string, opts: RequestOptions & { query?: Query } = {}): Promise<T> {
    return this.http.requestJson<T>({ method: 'GET', path, ...opts });
  }

  /** Closes the pool; open watches end. */
  close(): Promise<void> {
    return this.http.close();
  }
}

/** Calls on one resource. Namespaced calls require a namespace; cluster-scoped ones ignore it. */
export class ResourceClient<T extends KubeObject> implements ListerWatcher<T> {
  readonly http: HttpClient;
  readonly info: ResourceInfo;

  constructor(http: HttpClient, info: ResourceInfo) {
    this.http = http;
    this.info = info;
  }

  /** Equivalent to `kubectl get <resource> NAME -n NS -o json`. NotFound → ApiError (isNotFound). */
  get(namespace: string | undefined, name: string, opts: RequestOptions = {}): Promise<T> {
    return this.#json<T>('GET', this.#objectPath(namespace, name), undefined, opts).then(this.decorate);
  }

  /**
   * One page (with `limit`) or, with `all: true`, every page joined: the returned list
   * has all items, the resourceVersion of the read, and no continue token.
   */
  async list(opts: ListOptions = {}): Promise<KubeList<T>> {
    if (!opts.all) return this.#listPage(opts);
    const pageSize = opts.limit ?? 500;
    const items: T[] = [];
    let page = await this.#listPage({ ...opts, limit: pageSize });
    items.push(...page.items);
    while (page.metadata.continue) {
      try {
        // The continue token carries the version of the first page: no resourceVersion with it.
        page = await this.#listPage({ ...opts, resourceVersion: undefined, resourceVersionMatch: undefined, limit: pageSize, continue: page.metadata.continue });
      } catch (e) {
        if (!isGone(e)) throw e;
        const full = await this.#listPage({ ...opts, limit: undefined, continue: undefined });
        return { ...full, metadata: { ...full.metadata, continue: undefined } };
      }
      items.push(...page.items);
    }
    const { continue: _c, remainingItemCount: _r, ...meta } = page.metadata;
    return { ...page, metadata: meta, items };
  }

  /** POST. The namespace is the object's, else `opts.namespace`. AlreadyExists → ApiError. */
  create(obj: T, opts: CreateOptions = {}): Promise<T> {
    const ns = obj.metadata.namespace || opts.namespace;
    this.#needNamespace(ns, `create ${this.info.kind} "${obj.metadata.name ?? obj.metadata.generateName ?? ''}"`);
    const path = resourcePath(this.info, { namespace: ns });
    return this.#json<T>('POST', path, this.#withKind(obj), opts, writeQuery(opts)).then(this.decorate);
  }

  /** PUT of the whole object; its resourceVersion makes it a compare-and-swap (Conflict → ApiError). */
  update(obj: T, opts: WriteOptions = {}): Promise<T> {
    return this.#put(obj, undefined, opts);
  }

  /** PUT to the status subresource (only status changes are kept by the server). */
  updateStatus(obj: T, opts: WriteOptions = {}): Promise<T> {
    if (!this.info.subresources.includes('status')) {
      throw new ClientError(ClientErrorCodes.INVALID_ARGUMENT, `${this.info.resource} has no status subresource`, { resource: this.info.resource });
    }
    return this.#put(obj, 'status', opts);
  }

  /**
   * PATCH with `type` merge (RFC 7386), json (RFC 6902 operations) or strategic (Kubernetes
   * strategic merge). Equivalent to `kubectl patch --type merge|json|strategic`.
   */
  patch(namespace: string | undefined, name: string, patch: unknown, type: PatchType, opts: PatchOptions = {}): Promise<T> {
    const path = this.#objectPath(namespace, name, opts.subresource);
    return this.http
      .requestJson<T>({ method: 'PATCH', path, query: writeQuery(opts), body: patch, contentType: PATCH_CONTENT_TYPES[type], ...reqOpts(opts) })
      .then(this.decorate);
  }

  /**
   * DELETE. Answers the object (when deletion is deferred: finalizers, graceful pod
   * deletion) or a Success Status. NotFound → ApiError.
   */
  delete(namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<T | Status> {
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      ...(opts.gracePeriodSeconds !== undefined ? { gracePeriodSeconds: opts.gracePeriodSeconds } : {}),
      ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
      ...(opts.preconditions ? { preconditions: opts.preconditions } : {}),
      ...(opts.dryRun ? { dryRun: ['All'] } : {}),
    };
    return this.#json<T | Status>('DELETE', this.#objectPath(namespace, name), body, opts);
  }

  /**
   * Starts a watch (`GET ...?watch=true`). Without `onEvent`: an async iterable of events,
   * ending when the server closes the stream, throwing ApiError on an ERROR event or a
   * non-2xx answer (`isGone(e)`: the resourceVersion is too old, list again). With
   * `onEvent`: consumed for you; `done` settles the same way.
   */
  watch(opts: WatchOptions): Watch<T>;
  watch(opts: WatchOptions, onEvent: (ev: ObjectEvent<T>) => void | Promise<void>): WatchHandle;
  watch(opts: WatchOptions, onEvent?: (ev: ObjectEvent<T>) => void | Promise<void>): Watch<T> | WatchHandle {
    const path = resourcePath(this.info, { namespace: opts.namespace });
    const query: Query = {
      watch: true,
      resourceVersion: opts.resourceVersion,
      allowWatchBookmarks: opts.allowWatchBookmarks || undefined,
      timeoutSeconds: opts.timeoutSeconds,
      labelSelector: formatLabelSelector(opts.labelSelector),
      fieldSelector: opts.fieldSelector || undefined,
    };
    // The server sends nothing for long stretches: no body timeout unless it promised to end.
    const bodyTimeoutMs = opts.timeoutSeconds ? (opts.timeoutSeconds + 30) * 1000 : 0;
    const stream = new WatchStream<T>({
      open: ({ signal }) => this.http.stream({ method: 'GET', path, query, bodyTimeoutMs, ...(signal ? { signal } : {}) }),
      ...(opts.signal ? { signal: opts.signal } : {}),
      decorate: this.decorate,
    });
    return onEvent ? stream.consume(onEvent) : stream;
  }

  /** Fills apiVersion and kind when the server left them out (list items on kube-apiserver). */
  readonly decorate = (obj: T): T => {
    if (obj && typeof obj === 'object' && (!obj.apiVersion || !obj.kind)) {
      obj.apiVersion ||= apiVersionOf(this.info);
      obj.kind ||= this.info.kind;
    }
    return obj;
  };

  async #listPage(opts: ListOptions): Promise<KubeList<T>> {
    const query: Query = {
      labelSelector: formatLabelSelector(opts.labelSelector),
      fieldSelector: opts.fieldSelector || undefined,
      limit: opts.limit,
      continue: opts.continue || undefined,
      resourceVersion: opts.resourceVersion,
      resourceVersionMatch: opts.resourceVersionMatch,
    };
    const list = await this.http.requestJson<KubeList<T>>({ method: 'GET', path: resourcePath(this.info, { namespace: opts.namespace }), query, ...reqOpts(opts) });
    if (!list || !Array.isArray(list.items)) {
      throw new ClientError(ClientErrorCodes.DECODE, `the list of ${this.info.resource} has no items array`, { resource: this.info.resource });
    }
    list.metadata ??= {};
    list.items.forEach(this.decorate);
    return list;
  }

  #put(obj: T, subresource: string | undefined, opts: WriteOptions): Promise<T> {
    const name = obj.metadata.name;
    if (!name) throw new ClientError(ClientErrorCodes.INVALID_ARGUMENT, `cannot update a ${this.info.kind} without metadata.name`, { resource: this.info.resource });
    const path = this.#objectPath(obj.metadata.namespace, name, subresource);
    return this.#json<T>('PUT', path, this.#withKind(obj), opts, writeQuery(opts)).then(this.decorate);
  }

  #json<R>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body: unknown, opts: RequestOptions, query?: Query): Promise<R> {
    return this.http.requestJson<R>({ method, path, ...(body !== undefined ? { body } : {}), ...(query ? { query } : {}), ...reqOpts(opts) });
  }

  #objectPath(namespace: string | undefined, name: string, subresource?: string): string {
    if (!name) throw new ClientError(ClientErrorCodes.INVALID_ARGUMENT, `a ${this.info.kind} name is required`, { resource: this.info.resource });
    this.#needNamespace(namespace, `${this.info.kind} "${name}"`);
    return resourcePath(this.info, { namespace, name, ...(subresource ? { subresource } : {}) });
  }

  #needNamespace(namespace: string | undefined, what: string): void {
    if (this.info.namespaced && !namespace) {
      throw new ClientError(ClientErrorCodes.INVALID_ARGUMENT, `${this.info.resource} are namespaced: a namespace is required (${what})`, { resource: this.info.resource });
    }
  }

  #withKind(obj: T): T {
    return { ...obj, apiVersion: obj.apiVersion || apiVersionOf(this.info), kind: obj.kind || this.info.kind };
  }
}

/** `{app: 'web', tier: 'db'}` → `app=web,tier=db`; strings pass through; empty → undefined. */
export function formatLabelSelector(sel: LabelSelector | undefined): string | undefined {
  if (sel === undefined) return undefined;
  const text = typeof sel === 'string' ? sel : Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',');
  return text || undefined;
}

function writeQuery(opts: WriteOptions): Query {
  return { dryRun: opts.dryRun ? 'All' : undefined, fieldManager: opts.fieldManager, fieldValidation: opts.fieldValidation };
}

function reqOpts(opts: RequestOptions): { signal?: AbortSignal; timeoutMs?: number } {
  return { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
}
