/**
 * The registry: the Kubernetes semantics of every served resource on top of a Store —
 * admission (structure, defaults, validation), server-owned metadata, status vs spec,
 * optimistic concurrency, generated names, selectors, consistent paging, graceful pod
 * deletion, namespace cascades, and Service allocations. HTTP concerns live in
 * ../server; this module speaks objects and ApiStatusErrors.
 */
import { RESOURCES, apiVersionOf } from '../../client/resources.js';
import type { ResourceInfo, ResourceName } from '../../client/resources.js';
import type { KubeList, KubeObject, Namespace, Pod, Service } from '../../client/types.js';
import { PatchError, applyPatch } from '../patch/index.js';
import { ApiStatusError, errors } from '../server/status.js';
import type { Store, KV, TxnOp } from '../store/types.js';
import { StoreError, isStoreError } from '../store/types.js';
import { applyDefaults } from '../validation/defaults.js';
import { validate } from '../validation/rules.js';
import { checkStructure } from '../validation/schemas.js';
import { AllocationError } from './allocators.js';
import { collectionPrefix, objectKey } from './keys.js';
import { canonical, clone, dropNulls, encode, generateName, isPlainObject, newUid, now, stampStored } from './objects.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { ServiceAllocations, newPlanState, prepareServiceUpdate } from './serviceips.js';
import type { ObjectAllocations } from './serviceips.js';
import { NodeCIDRAllocations } from './nodecidrs.js';
import type { ServiceNetwork } from './serviceips.js';
import { WatchCache, decodeObject } from './watchcache.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export interface WriteOptions {
  fieldValidation?: FieldValidation;
  dryRun?: boolean;
}

export interface WriteResult<T extends KubeObject = KubeObject> {
  object: T;
  warnings: string[];
  /** 201 for creates, 200 otherwise. */
  created?: boolean;
  /** What the store holds now (absent for dry runs and no-op updates): served with stampStored, without decoding. */
  stored?: { value: string; revision: number };
}

/** A write's result whose object is decoded from the stored value only when someone reads it. */
function storedResult<T extends KubeObject>(resource: ResourceName, kv: KV, warnings: string[], created?: boolean): WriteResult<T> {
  let object: T | undefined;
  return {
    get object(): T {
      return (object ??= decodeObject(resource, kv.value, kv.modRevision) as T);
    },
    warnings,
    ...(created ? { created } : {}),
    stored: { value: kv.value, revision: kv.modRevision },
  };
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

export interface RegistryOptions {
  store: Store;
  network: ServiceNetwork;
  watchCache?: WatchCache;
  clock?: () => number;
}

/** A list's metadata. */
export interface ListMeta {
  resourceVersion: string;
  continue?: string;
}

/** Read access to current Namespaces by name (an informer's cache). */
export interface NamespaceLister {
  get(name: string): Namespace | undefined;
}

/** Keys read from the store per page of a list (a full list is read in pages at one revision). */
const LIST_PAGE = 500;

/** Attempts of one write that keeps meeting changed preconditions (kube's GuaranteedUpdate retries too). */
const MAX_WRITE_ATTEMPTS = 16;

/** Namespaces that exist from the start and cannot be deleted. */
export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

const WITH_STATUS = new Set<ResourceName>(['namespaces', 'nodes', 'pods', 'services']);

export class Registry {
  readonly store: Store;
  readonly watchCache: WatchCache;
  private readonly clock: () => number;
  /** What writes of a resource take from allocators (Service IPs and ports, Node subnets). */
  private readonly allocators: Partial<Record<ResourceName, ObjectAllocations>>;
  private namespaces: NamespaceLister | undefined;

  constructor(opts: RegistryOptions) {
    this.store = opts.store;
    this.watchCache = opts.watchCache ?? new WatchCache(opts.store);
    this.clock = opts.clock ?? Date.now;
    this.allocators = { services: new ServiceAllocations(opts.network), nodes: new NodeCIDRAllocations(opts.store) };
  }

  /**
   * Lets admission read namespaces from an informer's cache instead of the store (as
   * kube-apiserver's NamespaceLifecycle plugin does): one store round trip less per create.
   */
  useNamespaceLister(lister: NamespaceLister): void {
    this.namespaces = lister;
  }

  /** Creates the system namespaces that are missing. */
  async bootstrap(): Promise<void> {
    for (const name of SYSTEM_NAMESPACES) {
      if (await this.store.get(objectKey('namespaces', undefined, name))) continue;
      try {
        await this.create('namespaces', undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      } catch (e) {
        if (!(e instanceof ApiStatusError && e.reason === 'AlreadyExists')) throw e;
      }
    }
  }

  // ---------------------------------------------------------------- reads

  async get<T extends KubeObject = KubeObject>(resource: ResourceName, namespace: string | undefined, name: string): Promise<T> {
    const kv = await this.read(() => this.store.get(objectKey(resource, namespace, name)));
    if (!kv) throw errors.notFound(target(resource, name));
    return decodeObject(resource, kv.value, kv.modRevision) as T;
  }

  async list<T extends KubeObject = KubeObject>(resource: ResourceName, opts: ListOptions = {}): Promise<KubeList<T>> {
    const { metadata, items } = await this.scan(resource, opts, (kv, obj) => (obj ?? decodeObject(resource, kv.value, kv.modRevision)) as T);
    const info = RESOURCES[resource];
    return { apiVersion: apiVersionOf(info), kind: info.listKind, metadata, items };
  }

  /**
   * list(), streamed: every item as its JSON text, handed to `onPage` one store page at a
   * time (the next page is read once the promise resolves, so a slow reader holds back the
   * reads). No object is built unless a selector needs one, so a full list of a large
   * collection costs a page of text, not the collection's objects. Errors found before
   * the first page (a bad selector, a compacted revision) throw before `onPage` is called.
   */
  async listJSON(resource: ResourceName, opts: ListOptions, onPage: (items: string[]) => Promise<void>): Promise<{ apiVersion: string; kind: string; metadata: ListMeta }> {
    const info = RESOURCES[resource];
    const apiVersion = apiVersionOf(info);
    const make = (kv: KV, obj: KubeObject | undefined) => (obj ? JSON.stringify(obj) : stampStored(kv.value, apiVersion, info.kind, kv.modRevision, () => decodeObject(resource, kv.value, kv.modRevision)));
    const { metadata } = await this.scan(resource, opts, make, onPage);
    return { apiVersion, kind: info.listKind, metadata };
  }

  /**
   * The paging, selectors and consistency of a list: the items of `resource` matching
   * `opts`, read at one revision in store pages of LIST_PAGE keys, each made by `make`
   * (given the decoded object when a selector needed it). With `onPage`, each page's items
   * go there instead of into the result.
   */
  private async scan<I>(resource: ResourceName, opts: ListOptions, make: (kv: KV, obj: KubeObject | undefined) => I, onPage?: (items: I[]) => Promise<void>): Promise<{ metadata: ListMeta; items: I[] }> {
    const info = RESOURCES[resource];
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(resource, opts.fieldSelector);
    const filtered = !!opts.labelSelector?.trim() || !!opts.fieldSelector?.trim();
    const namespace = opts.namespace ?? (info.namespaced ? fields.equals['metadata.namespace'] : undefined);
    if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 0)) throw errors.badRequest(`limit must be a non-negative integer, got ${opts.limit}`);
    const limit = opts.limit || 0;
    let revision: number | undefined;
    let startAfter: string | undefined;
    if (opts.continue) {
      const tok = decodeContinue(opts.continue);
      revision = tok.rv;
      startAfter = tok.start;
    } else if (opts.resourceVersion && opts.resourceVersion !== '0') {
      const rv = Number(opts.resourceVersion);
      if (!Number.isInteger(rv) || rv < 0) throw errors.badRequest(`resourceVersion ${JSON.stringify(opts.resourceVersion)} is not a valid resource version`);
      if (opts.resourceVersionMatch === 'Exact') revision = rv;
      else if (opts.resourceVersionMatch && opts.resourceVersionMatch !== 'NotOlderThan') throw errors.badRequest(`resourceVersionMatch ${JSON.stringify(opts.resourceVersionMatch)} is not supported (Exact, NotOlderThan)`);
    }
    const prefix = collectionPrefix(resource, namespace);
    let items: I[] = [];
    let count = 0;
    let cont: string | undefined;
    let readRev = revision;
    for (;;) {
      const page = await this.read(() => this.store.list(prefix, { limit: Math.max(limit, LIST_PAGE), ...(startAfter ? { startAfter } : {}), ...(readRev !== undefined ? { revision: readRev } : {}) }), opts.continue ? 'continue' : 'list');
      readRev = page.revision;
      let stoppedAt = -1;
      for (let i = 0; i < page.kvs.length; i++) {
        const kv = page.kvs[i]!;
        if (filtered) {
          const obj = decodeObject(resource, kv.value, kv.modRevision);
          if (!(labels(obj.metadata.labels) && fields(obj))) continue;
          items.push(make(kv, obj));
        } else {
          items.push(make(kv, undefined));
        }
        if (limit && ++count === limit) {
          stoppedAt = i;
          break;
        }
      }
      if (onPage && items.length) {
        await onPage(items);
        items = [];
      }
      if (stoppedAt >= 0) {
        if (stoppedAt < page.kvs.length - 1 || page.more) cont = encodeContinue(readRev, page.kvs[stoppedAt]!.key);
        break;
      }
      if (!page.more || !page.kvs.length) break;
      startAfter = page.kvs[page.kvs.length - 1]!.key;
    }
    return { metadata: { resourceVersion: String(readRev ?? (await this.store.currentRevision())), ...(cont ? { continue: cont } : {}) }, items };
  }

  // ---------------------------------------------------------------- writes

  async create<T extends KubeObject = KubeObject>(resource: ResourceName, namespace: string | undefined, body: unknown, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    const info = RESOURCES[resource];
    const { obj, warnings } = this.admitBody(resource, body, opts);
    const meta = obj.metadata;
    let nsCheck: TxnOp | undefined;
    if (info.namespaced) {
      if (meta.namespace && namespace && meta.namespace !== namespace) throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
      meta.namespace = namespace ?? meta.namespace;
      if (!meta.namespace) throw errors.badRequest('a namespace is required to create this resource');
      nsCheck = await this.requireActiveNamespace(meta.namespace);
    } else {
      delete meta.namespace;
    }
    const generated = !meta.name && !!meta.generateName;
    if (generated) meta.name = generateName(meta.generateName!);
    applyDefaults(resource, obj);
    this.validateOrThrow(resource, obj, { op: 'create' });
    // Server-owned metadata.
    meta.uid = newUid();
    meta.creationTimestamp = now(this.clock);
    meta.generation = 1;
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    prepareCreate(resource, obj);
    const alloc = this.allocators[resource];
    const state = newPlanState();
    for (let attempt = 0; ; attempt++) {
      // Each attempt plans from the object as admitted: a retry may choose other values.
      const toStore = alloc ? clone(obj) : obj;
      const owner = { namespace: meta.namespace ?? '', name: meta.name!, uid: meta.uid };
      const plan = alloc ? await this.allocations(resource, () => alloc.plan(toStore, undefined, owner, state), obj) : undefined;
      const key = objectKey(resource, meta.namespace, meta.name!);
      try {
        // One transaction: the object, its allocation records, and the check that its
        // namespace is still the active one we read.
        const [kv] = await this.write(() => this.commit([{ kind: 'create', key, value: encode(toStore) }, ...(plan?.ops ?? []), ...(nsCheck ? [nsCheck] : [])], opts.dryRun));
        if (!opts.dryRun) return storedResult<T>(resource, kv!, warnings, true);
        const object = decodeObject(resource, kv!.value, kv!.modRevision) as T;
        delete object.metadata.resourceVersion; // nothing was stored
        return { object, warnings, created: true };
      } catch (e) {
        if (attempt >= MAX_WRITE_ATTEMPTS && isPrecondition(e)) throw errors.conflict(target(resource, meta.name), 'too many concurrent writers; try again');
        if (isStoreError(e, 'KeyExists') && e.key === key) {
          if (!generated) throw errors.alreadyExists(target(resource, meta.name));
          meta.name = generateName(meta.generateName!);
          continue;
        }
        if (isStoreError(e, 'KeyExists') && alloc && plan && e.key && (await this.allocations(resource, () => alloc.onKeyExists(plan, e.key!, owner, state), obj))) continue;
        if (nsCheck && (isStoreError(e, 'Conflict') || isStoreError(e, 'NotFound')) && e.key === nsCheck.key) {
          nsCheck = await this.requireActiveNamespace(meta.namespace!, { live: true });
          continue;
        }
        if (isPrecondition(e)) throw errors.conflict(target(resource, meta.name), 'a precondition of the write changed; try again');
        throw e;
      }
    }
  }

  /** PUT: replace an object (or its status). */
  async update<T extends KubeObject = KubeObject>(resource: ResourceName, namespace: string | undefined, name: string, body: unknown, opts: WriteOptions & { subresource?: string } = {}): Promise<WriteResult<T>> {
    const { obj, warnings } = this.admitBody(resource, body, opts);
    if (obj.metadata.name && obj.metadata.name !== name) throw errors.badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    if (RESOURCES[resource].namespaced && obj.metadata.namespace && obj.metadata.namespace !== namespace) throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    obj.metadata.name = name;
    const requestedRV = obj.metadata.resourceVersion;
    return this.guaranteedUpdate<T>(resource, namespace, name, requestedRV, opts, warnings, () => clone(obj));
  }

  /** PATCH: merge / JSON / strategic merge patch of an object (or its status). */
  async patch<T extends KubeObject = KubeObject>(resource: ResourceName, namespace: string | undefined, name: string, patch: unknown, contentType: string, opts: WriteOptions & { subresource?: string } = {}): Promise<WriteResult<T>> {
    const warnings: string[] = [];
    return this.guaranteedUpdate<T>(resource, namespace, name, undefined, opts, warnings, (current) => {
      let patched: unknown;
      try {
        patched = applyPatch(resource, current, patch, contentType);
      } catch (e) {
        if (e instanceof PatchError) {
          if (e.reason === 'BadRequest') throw errors.badRequest(e.message, e.field ? [{ field: e.field, message: e.message, reason: 'FieldValueInvalid' }] : undefined);
          throw errors.invalid(RESOURCES[resource].kind, RESOURCES[resource].group, name, [{ field: e.field ?? '', message: e.message, reason: 'FieldValueInvalid' }]);
        }
        throw e;
      }
      const admitted = this.admitBody(resource, patched, opts);
      warnings.push(...admitted.warnings);
      const obj = admitted.obj;
      if (obj.metadata.name && obj.metadata.name !== name) throw errors.badRequest('the patch may not change metadata.name');
      obj.metadata.name = name;
      // A patch that sets resourceVersion is a precondition on it.
      const rv = obj.metadata.resourceVersion;
      if (rv !== undefined && rv !== current.metadata.resourceVersion) throw errors.conflict(target(resource, name));
      return obj;
    });
  }

  /**
   * Read-modify-write with compare-and-swap. `requestedRV` (from the client's object) is a
   * precondition: a stale one is 409. Without it the write retries on conflicts, as
   * kube-apiserver's GuaranteedUpdate does.
   */
  private async guaranteedUpdate<T extends KubeObject>(
    resource: ResourceName,
    namespace: string | undefined,
    name: string,
    requestedRV: string | undefined,
    opts: WriteOptions & { subresource?: string },
    warnings: string[],
    build: (current: KubeObject) => KubeObject,
  ): Promise<WriteResult<T>> {
    if (opts.subresource && !(RESOURCES[resource].subresources as readonly string[]).includes(opts.subresource)) throw errors.notFoundPath(`${resource}/${opts.subresource}`);
    const key = objectKey(resource, namespace, name);
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const kv = await this.read(() => this.store.get(key));
      if (!kv) throw errors.notFound(target(resource, name));
      const old = decodeObject(resource, kv.value, kv.modRevision);
      if (requestedRV !== undefined && requestedRV !== '' && requestedRV !== old.metadata.resourceVersion) throw errors.conflict(target(resource, name));
      const obj = build(clone(old));
      if (resource === 'services' && !opts.subresource) prepareServiceUpdate(obj as Service, old as Service);
      if (obj.metadata.uid && obj.metadata.uid !== old.metadata.uid) {
        throw errors.conflict(target(resource, name), `Precondition failed: UID in precondition: ${obj.metadata.uid}, UID in object meta: ${old.metadata.uid}`);
      }
      applyDefaults(resource, obj);
      this.mergeServerFields(resource, obj, old, opts.subresource);
      this.validateOrThrow(resource, obj, { op: 'update', old });
      if (canonical(encodeForCompare(obj)) === canonical(encodeForCompare(old))) return { object: old as T, warnings };
      const owner = { namespace: old.metadata.namespace ?? '', name, uid: old.metadata.uid ?? '' };
      const alloc = opts.subresource ? undefined : this.allocators[resource];
      if (!alloc) {
        if (opts.dryRun) return { object: obj as T, warnings };
        try {
          const next = await this.write(() => this.store.update(key, encode(obj), kv.modRevision));
          return storedResult<T>(resource, next, warnings);
        } catch (e) {
          if (isStoreError(e, 'Conflict')) {
            if (requestedRV) throw errors.conflict(target(resource, name));
            continue;
          }
          if (isStoreError(e, 'NotFound')) throw errors.notFound(target(resource, name));
          throw e;
        }
      }
      const state = newPlanState();
      for (let round = 0; ; round++) {
        const toStore = clone(obj);
        const plan = await this.allocations(resource, () => alloc.plan(toStore, old, owner, state), obj);
        this.validateOrThrow(resource, toStore, { op: 'update', old });
        try {
          const [next] = await this.write(() => this.commit([{ kind: 'update', key, value: encode(toStore), expectedModRevision: kv.modRevision }, ...plan.ops], opts.dryRun));
          if (opts.dryRun) return { object: decodeObject(resource, next!.value, next!.modRevision) as T, warnings };
          await plan.releaseUnused();
          return storedResult<T>(resource, next!, warnings);
        } catch (e) {
          if (round < MAX_WRITE_ATTEMPTS && isStoreError(e, 'KeyExists') && e.key && (await this.allocations(resource, () => alloc.onKeyExists(plan, e.key!, owner, state), obj))) continue;
          if (isStoreError(e, 'Conflict') && e.key === key) {
            if (requestedRV) throw errors.conflict(target(resource, name));
            break; // re-read and rebuild
          }
          if (isStoreError(e, 'NotFound') && e.key === key) throw errors.notFound(target(resource, name));
          if (isPrecondition(e)) throw errors.conflict(target(resource, name), 'too many concurrent writers; try again');
          throw e;
        }
      }
    }
    throw errors.conflict(target(resource, name), 'too many concurrent writers; try again');
  }

  async delete<T extends KubeObject = KubeObject>(resource: ResourceName, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<T> {
    const key = objectKey(resource, namespace, name);
    if (resource === 'namespaces' && SYSTEM_NAMESPACES.includes(name)) {
      throw new ApiStatusError(403, 'Forbidden', `namespace "${name}" is forbidden: this namespace may not be deleted`, { name, kind: 'namespaces' });
    }
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const kv = await this.read(() => this.store.get(key));
      if (!kv) throw errors.notFound(target(resource, name));
      const obj = decodeObject(resource, kv.value, kv.modRevision);
      const pre = opts.preconditions;
      if (pre?.uid && pre.uid !== obj.metadata.uid) throw errors.conflict(target(resource, name), `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${obj.metadata.uid}`);
      if (pre?.resourceVersion && pre.resourceVersion !== obj.metadata.resourceVersion) throw errors.conflict(target(resource, name), `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${obj.metadata.resourceVersion}`);
      if (opts.dryRun) return obj as T;
      if (resource === 'pods') {
        const graceful = await this.gracefulPodDelete(kv, obj as Pod, opts.gracePeriodSeconds);
        if (graceful === 'conflict') continue;
        if (graceful) return graceful as unknown as T;
      }
      if (resource === 'namespaces') await this.terminateNamespace(obj as Namespace);
      try {
        const gone = await this.write(() => this.store.delete(key, kv.modRevision));
        await this.allocators[resource]?.onDelete(obj, { namespace: namespace ?? '', name, uid: obj.metadata.uid ?? '' });
        return decodeObject(resource, gone.value, gone.modRevision) as T;
      } catch (e) {
        if (isStoreError(e, 'Conflict')) continue;
        if (isStoreError(e, 'NotFound')) throw errors.notFound(target(resource, name));
        throw e;
      }
    }
    throw errors.conflict(target(resource, name), 'too many concurrent writers; try again');
  }

  /**
   * Pods bound to a node are deleted gracefully: deletionTimestamp = now + grace, and the
   * node's agent (or the api's terminating-pod collector when the grace period has run
   * out) removes the object. Returns the updated pod, undefined to delete now, or
   * 'conflict' to retry.
   */
  private async gracefulPodDelete(kv: KV, pod: Pod, requested: number | undefined): Promise<Pod | undefined | 'conflict'> {
    const grace = requested ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const terminal = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
    if (grace <= 0 || !pod.spec?.nodeName || terminal) return undefined;
    const deadline = this.clock() + grace * 1000;
    const current = pod.metadata.deletionTimestamp ? Date.parse(pod.metadata.deletionTimestamp) : Infinity;
    if (deadline >= current) return pod; // already terminating, no sooner
    const next = clone(pod);
    next.metadata.deletionTimestamp = now(() => deadline);
    next.metadata.deletionGracePeriodSeconds = grace;
    try {
      const kv2 = await this.write(() => this.store.update(kv.key, encode(next), kv.modRevision));
      return decodeObject('pods', kv2.value, kv2.modRevision) as Pod;
    } catch (e) {
      if (isStoreError(e, 'Conflict')) return 'conflict';
      throw e;
    }
  }

  /** Marks a namespace Terminating and deletes everything in it. */
  private async terminateNamespace(ns: Namespace): Promise<void> {
    const name = ns.metadata.name!;
    // Terminating, with the deletion timestamp that only the server sets (so no client can
    // make a namespace terminate by writing its status).
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const key = objectKey('namespaces', undefined, name);
      const kv = await this.read(() => this.store.get(key));
      if (!kv) return;
      const cur = decodeObject('namespaces', kv.value, kv.modRevision) as Namespace;
      if (cur.status?.phase === 'Terminating' && cur.metadata.deletionTimestamp) break;
      const next = clone(cur);
      next.metadata.deletionTimestamp ??= now(this.clock);
      next.status = { ...next.status, phase: 'Terminating' };
      try {
        await this.write(() => this.store.update(key, encode(next), kv.modRevision));
        break;
      } catch (e) {
        if (isStoreError(e, 'NotFound')) return;
        if (!isStoreError(e, 'Conflict')) throw e;
      }
    }
    for (const r of Object.keys(RESOURCES) as ResourceName[]) {
      if (!RESOURCES[r].namespaced) continue;
      const items = await this.read(() => this.store.list(collectionPrefix(r, name)));
      for (const kv of items.kvs) {
        const obj = decodeObject(r, kv.value, kv.modRevision);
        try {
          await this.delete(r, name, obj.metadata.name!, { gracePeriodSeconds: 0 });
        } catch (e) {
          if (!(e instanceof ApiStatusError && e.reason === 'NotFound')) throw e;
        }
      }
    }
  }

  /**
   * NamespaceLifecycle admission: content may be created only in an existing namespace
   * that is not terminating. Read from the namespace lister when there is one (no store
   * round trip), else from the store. Returns the check op that makes the create's
   * transaction fail if the namespace changed since this read, so a stale cache can
   * never let an object into a namespace being deleted.
   */
  private async requireActiveNamespace(name: string, opts: { live?: boolean } = {}): Promise<TxnOp> {
    const key = objectKey('namespaces', undefined, name);
    let ns = opts.live ? undefined : this.namespaces?.get(name);
    let revision = Number(ns?.metadata.resourceVersion);
    // Missing or terminating in the cache: the store has the last word (it may be newer).
    if (!ns || !Number.isInteger(revision) || ns.status?.phase === 'Terminating') {
      const kv = await this.read(() => this.store.get(key));
      if (!kv) throw errors.notFound({ group: '', resource: 'namespaces', name });
      ns = JSON.parse(kv.value) as Namespace;
      revision = kv.modRevision;
    }
    if (ns.status?.phase === 'Terminating') {
      throw new ApiStatusError(403, 'Forbidden', `unable to create new content in namespace ${name} because it is being terminated`, { name, kind: 'namespaces' });
    }
    return { kind: 'check', key, expectedModRevision: revision };
  }

  // ---------------------------------------------------------------- admission

  /** Structural check (400), null removal; the warnings of fieldValidation=Warn. */
  private admitBody(resource: ResourceName, body: unknown, opts: WriteOptions): { obj: KubeObject; warnings: string[] } {
    const info = RESOURCES[resource];
    if (!isPlainObject(body)) throw errors.badRequest(`the body of the request must be a JSON object (a ${info.kind})`);
    const apiVersion = body.apiVersion;
    const kind = body.kind;
    if (apiVersion !== undefined && apiVersion !== apiVersionOf(info)) {
      throw errors.badRequest(`the API version in the data (${String(apiVersion)}) does not match the expected API version (${apiVersionOf(info)})`);
    }
    if (kind !== undefined && kind !== info.kind) throw errors.badRequest(`the kind in the data (${String(kind)}) does not match the expected kind (${info.kind})`);
    if (!isPlainObject(body.metadata)) {
      if (body.metadata === undefined) body = { ...body, metadata: {} };
      else throw errors.badRequest(`${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: metadata: expected an object`);
    }
    const mode = opts.fieldValidation ?? 'Strict';
    const checked = checkStructure(resource, body, mode === 'Strict');
    if (!checked.ok) {
      const unknown = checked.issues.filter((i) => i.unknownField);
      if (unknown.length && unknown.length === checked.issues.length) {
        throw errors.badRequest(`strict decoding error: ${unknown.map((i) => i.message).join(', ')}`, unknown.map((i) => ({ reason: 'FieldValueInvalid', field: i.field, message: i.message })));
      }
      const typed = checked.issues.filter((i) => !i.unknownField);
      throw errors.badRequest(`${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: ${typed.map((i) => `${i.field}: ${i.message}`).join('; ')}`, typed.map((i) => ({ reason: 'FieldValueInvalid', field: i.field, message: i.message })));
    }
    const warnings = mode === 'Warn' ? checked.unknown.map((f) => `unknown field "${f}"`) : [];
    // dropNulls builds a new tree (the value is JSON data): no copy needed before it.
    const obj = dropNulls(checked.value) as unknown as KubeObject;
    obj.metadata ??= {};
    return { obj, warnings };
  }

  private validateOrThrow(resource: ResourceName, obj: KubeObject, ctx: { op: 'create' | 'update'; old?: KubeObject }): void {
    const e = validate(resource, obj, ctx);
    if (!e.empty) throw errors.invalid(RESOURCES[resource].kind, RESOURCES[resource].group, obj.metadata.name ?? obj.metadata.generateName ?? '', e.causes);
  }

  private async allocations<T>(resource: ResourceName, fn: () => Promise<T>, obj: KubeObject): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AllocationError) {
        const info = RESOURCES[resource];
        throw errors.invalid(info.kind, info.group, obj.metadata.name ?? '', [{ reason: 'FieldValueInvalid', field: e.field, message: `Invalid value: ${JSON.stringify(e.value)}: ${e.message}` }]);
      }
      throw e;
    }
  }


  /** Copies what an update may not change: identity, timestamps, and spec or status. */
  private mergeServerFields(resource: ResourceName, obj: KubeObject, old: KubeObject, subresource: string | undefined): void {
    const m = obj.metadata;
    const o = old.metadata;
    m.uid = o.uid;
    m.creationTimestamp = o.creationTimestamp;
    m.namespace = o.namespace;
    if (o.deletionTimestamp) m.deletionTimestamp = o.deletionTimestamp;
    else delete m.deletionTimestamp;
    if (o.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = o.deletionGracePeriodSeconds;
    else delete m.deletionGracePeriodSeconds;
    // generateName is set once, at create.
    if (o.generateName !== undefined) m.generateName = o.generateName;
    else delete m.generateName;
    const rec = obj as unknown as Record<string, unknown>;
    const orec = old as unknown as Record<string, unknown>;
    if (subresource === 'status') {
      // Only status changes; metadata and spec stay as stored.
      for (const k of Object.keys(rec)) if (k !== 'status' && k !== 'apiVersion' && k !== 'kind') delete rec[k];
      for (const [k, v] of Object.entries(orec)) if (k !== 'status') rec[k] = clone(v);
      obj.metadata = clone(old.metadata);
      return;
    }
    if (WITH_STATUS.has(resource)) {
      if (orec.status === undefined) delete rec.status;
      else rec.status = clone(orec.status);
    }
    const specChanged = WITH_STATUS.has(resource) ? canonical(rec.spec) !== canonical(orec.spec) : canonical(withoutMeta(rec)) !== canonical(withoutMeta(orec));
    m.generation = (o.generation ?? 1) + (specChanged ? 1 : 0);
  }

  // ---------------------------------------------------------------- store error mapping

  private async read<T>(fn: () => Promise<T>, what: 'list' | 'continue' | 'get' = 'get'): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw mapStoreError(e, what);
    }
  }

  /**
   * Applies a transaction, or with `dryRun` only checks its preconditions (reads, no
   * write) and answers as the store would: the same StoreErrors, KVs of what would be
   * stored (a create's revision 0, an update's the current one).
   */
  private async commit(ops: TxnOp[], dryRun: boolean | undefined): Promise<KV[]> {
    if (!dryRun) return this.store.transaction(ops);
    const out: KV[] = [];
    for (const op of ops) {
      const cur = await this.store.get(op.key);
      if (op.kind === 'create') {
        if (cur) throw new StoreError('KeyExists', `${op.key} already exists`, { key: op.key });
        out.push({ key: op.key, value: op.value, createRevision: 0, modRevision: 0 });
        continue;
      }
      if (!cur) throw new StoreError('NotFound', `${op.key} not found`, { key: op.key });
      if (op.expectedModRevision !== undefined && op.expectedModRevision !== cur.modRevision) {
        throw new StoreError('Conflict', `${op.key} was modified: expected revision ${op.expectedModRevision}, stored ${cur.modRevision}`, { key: op.key, current: cur });
      }
      out.push(op.kind === 'update' ? { ...cur, value: op.value } : cur);
    }
    return out;
  }

  private async write<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof StoreError && (e.code === 'KeyExists' || e.code === 'Conflict' || e.code === 'NotFound')) throw e;
      throw mapStoreError(e, 'get');
    }
  }
}

/** A store write refused because something it depended on changed. */
function isPrecondition(e: unknown): e is StoreError {
  return isStoreError(e, 'KeyExists') || isStoreError(e, 'Conflict') || isStoreError(e, 'NotFound');
}

function withoutMeta(rec: Record<string, unknown>): Record<string, unknown> {
  const { metadata: _m, apiVersion: _a, kind: _k, ...rest } = rec;
  return rest;
}

function encodeForCompare(obj: KubeObject): unknown {
  return JSON.parse(encode(obj));
}

function mapStoreError(e: unknown, what: 'list' | 'continue' | 'get'): unknown {
  if (!(e instanceof StoreError)) return e;
  if (e.code === 'Compacted') {
    return what === 'continue'
      ? errors.gone('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.')
      : errors.gone(`The resourceVersion for the provided list is too old: ${e.message}`);
  }
  if (e.code === 'Unavailable' || e.code === 'Closed') return errors.unavailable(`the storage backend is unavailable: ${e.message}`);
  return errors.internal(`${e.code}: ${e.message}`);
}

/** Server-set status on create. */
function prepareCreate(resource: ResourceName, obj: KubeObject): void {
  const rec = obj as unknown as Record<string, unknown>;
  switch (resource) {
    case 'pods':
      rec.status = { phase: 'Pending' };
      break;
    case 'services':
      rec.status = { loadBalancer: {} };
      break;
    case 'namespaces':
      rec.status = { phase: 'Active' };
      break;
    default:
      break;
  }
}

export function target(resource: ResourceName, name?: string): { group: string; resource: string; name?: string } {
  const info: ResourceInfo = RESOURCES[resource];
  return { group: info.group, resource: info.resource, ...(name ? { name } : {}) };
}

function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'podnet/1', rv, start })).toString('base64url');
}

function decodeContinue(tok: string): { rv: number; start: string } {
  try {
    const v = JSON.parse(Buffer.from(tok, 'base64url').toString()) as { v?: string; rv?: unknown; start?: unknown };
    if (v.v === 'podnet/1' && typeof v.rv === 'number' && typeof v.start === 'string') return { rv: v.rv, start: v.start };
  } catch {
    /* fall through */
  }
  throw errors.badRequest('invalid continue token: it must be a value returned by a previous list call');
}
