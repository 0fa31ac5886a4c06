/**
 * Serving one watch request: a chunked stream of JSON lines
 * {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}. Without a
 * resourceVersion (or with "0") it starts with the current objects as ADDED events, then
 * follows the watch cache; from a resourceVersion it sends every change after it. A
 * version the cache no longer holds ends the stream with an ERROR event carrying a 410
 * Expired Status, so clients relist. Bookmarks carry the newest revision seen.
 */
import type { ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import { RESOURCES, apiVersionOf } from '../../client/resources.js';
import type { ResourceName } from '../../client/resources.js';
import type { KubeObject } from '../../client/types.js';
import type { Registry } from '../registry/registry.js';
import { parseFieldSelector, parseLabelSelector } from '../registry/selectors.js';
import type { CachedEvent } from '../registry/watchcache.js';
import { errors } from './status.js';
import { tableOf } from './table.js';
import type { IncludeObject } from './table.js';

export interface WatchRequest {
  resource: ResourceName;
  namespace: string | undefined;
  /** A watch on an object's path (`/api/v1/nodes/n1?watch=true`) sees that object only. */
  name?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  resourceVersion?: string | undefined;
  allowWatchBookmarks?: boolean;
  sendInitialEvents?: boolean;
  timeoutSeconds?: number | undefined;
  table?: { include: IncludeObject } | undefined;
}

export interface WatchServeOptions {
  bookmarkIntervalMs: number;
  /** Bytes buffered for a client before it is considered too slow and cut off. */
  maxBufferedBytes: number;
  onEventSent?: () => void;
  onOpen?: () => void;
  onClose?: () => void;
}

/** Streams a watch; resolves when the stream is over. Throws ApiStatusErrors before the headers are sent. */
export async function serveWatch(res: ServerResponse, registry: Registry, req: WatchRequest, opts: WatchServeOptions): Promise<void> {
  const labels = parseLabelSelector(req.labelSelector);
  const fields = parseFieldSelector(req.resource, req.fieldSelector);
  const namespace = req.namespace ?? (RESOURCES[req.resource].namespaced ? fields.equals['metadata.namespace'] : undefined);
  let from: number | undefined;
  const rv = req.resourceVersion;
  if (rv !== undefined && rv !== '' && rv !== '0') {
    from = Number(rv);
    if (!Number.isInteger(from) || from < 0) throw errors.badRequest(`resourceVersion ${JSON.stringify(rv)} is not a valid resource version`);
  }
  // Initial state (validated before the headers go out, so bad selectors are a plain 400).
  const initial = from === undefined ? await registry.list(req.resource, { ...(namespace ? { namespace } : {}), ...(req.labelSelector ? { labelSelector: req.labelSelector } : {}), ...(req.fieldSelector ? { fieldSelector: req.fieldSelector } : {}) }) : undefined;

  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'X-Content-Type-Options': 'nosniff' });
  res.flushHeaders();
  opts.onOpen?.();

  const info = RESOURCES[req.resource];
  const render = (obj: KubeObject, cacheKey?: { ev: CachedEvent; left: boolean }): string => {
    if (!req.table) {
      if (cacheKey && !cacheKey.left) return cacheKey.ev.json;
      return JSON.stringify(obj);
    }
    const key = `table:${req.table.include}:${cacheKey?.left ? 'prev' : 'cur'}`;
    const cached = cacheKey?.ev.renders.get(key);
    if (cached) return cached;
    const t = JSON.stringify(tableOf(req.resource, [obj], { resourceVersion: obj.metadata.resourceVersion ?? '' }, req.table.include));
    cacheKey?.ev.renders.set(key, t);
    return t;
  };

  let ended = false;
  let lastRev = from ?? Number(initial?.metadata.resourceVersion ?? 0);
  let sentRev = lastRev;
  const timers: NodeJS.Timeout[] = [];
  let cancel: () => void = () => undefined;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));

  const finish = () => {
    if (ended) return;
    ended = true;
    cancel();
    for (const t of timers) clearTimeout(t);
    opts.onClose?.();
    if (!res.writableEnded) res.end();
    done();
  };
  const line = (type: string, json: string) => {
    if (ended) return;
    res.write(`{"type":"${type}","object":${json}}\n`);
    opts.onEventSent?.();
    if (res.writableLength > opts.maxBufferedBytes) {
      // Too slow: end the stream; the client resumes from the last version it processed.
      finish();
    }
  };
  const bookmark = (extra?: Record<string, string>) => {
    const obj = { kind: info.kind, apiVersion: apiVersionOf(info), metadata: { resourceVersion: String(lastRev), ...(extra ? { annotations: extra } : {}) } };
    line('BOOKMARK', JSON.stringify(obj));
    sentRev = lastRev;
  };

  res.on('close', finish);

  const named = (o: KubeObject) => req.name === undefined || o.metadata.name === req.name;
  if (initial) {
    for (const item of initial.items) if (named(item)) line('ADDED', render(item));
    if (req.sendInitialEvents && req.allowWatchBookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
  }

  cancel = registry.watchCache.watch({ resource: req.resource, ...(namespace !== undefined ? { namespace } : {}), matches: (o) => named(o) && labels(o.metadata.labels) && fields(o) }, lastRev, {
    event: (type, ev, left) => {
      const obj = left ? ev.previousStamped! : ev.object;
      line(type, render(obj, { ev, left }));
      lastRev = ev.revision;
      sentRev = ev.revision;
    },
    progress: (rev) => {
      if (rev > lastRev) lastRev = rev;
    },
    end: (reason) => {
      if (reason.kind === 'expired') line('ERROR', JSON.stringify(errors.gone(reason.message).toStatus()));
      else if (reason.kind === 'error') line('ERROR', JSON.stringify(errors.internal(reason.message).toStatus()));
      finish();
    },
  });

  if (req.allowWatchBookmarks) {
    const tick = () => {
      if (ended) return;
      if (lastRev > sentRev) bookmark();
      timers.push(setTimeout(tick, opts.bookmarkIntervalMs));
    };
    timers.push(setTimeout(tick, opts.bookmarkIntervalMs));
  }
  // kube-apiserver ends watches after timeoutSeconds, else after a random 30-60 minutes.
  const timeout = req.timeoutSeconds !== undefined ? req.timeoutSeconds * 1000 : randomInt(1800, 3600) * 1000;
  timers.push(setTimeout(finish, timeout));
  return finished;
}
