/**
 * Watch streams: the body of `GET ...?watch=true` is a sequence of JSON objects
 * `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}`, one per line on
 * kube-apiserver, arriving in chunks that may cut an object (or a UTF-8 character)
 * anywhere. `JsonObjectSplitter` frames whole objects without trusting newlines;
 * `WatchStream` turns them into typed events, ERROR events into ApiErrors (410 → `isGone`),
 * and stops cleanly on `stop()`, an AbortSignal, or a `break` out of `for await`.
 */
import { ApiError, ClientError, ClientErrorCodes, isAbortError, isStatus } from './errors.js';
import type { HttpRequest, StreamResponse } from './http.js';
import type { KubeObject, Status } from './types.js';

/** The event kinds a watch yields; ERROR never reaches the consumer (it is thrown). */
export type ObjectEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface ObjectEvent<T extends KubeObject = KubeObject> {
  type: ObjectEventType;
  /** For BOOKMARK: an object of the watched kind carrying only metadata.resourceVersion (and annotations). */
  object: T;
}

/** A running watch: iterate it once; `stop()` ends the iteration without an error. */
export interface Watch<T extends KubeObject = KubeObject> extends AsyncIterable<ObjectEvent<T>> {
  stop(): void;
  readonly stopped: boolean;
}

/** A watch consumed by a callback: `done` settles when it ends (rejects with ApiError on ERROR/410). */
export interface WatchHandle {
  stop(): void;
  readonly done: Promise<void>;
}

/**
 * Frames concatenated JSON objects out of a text stream: tracks depth, strings and
 * escapes across pushes, so an object split over any number of chunks comes out whole.
 * Whitespace between objects is skipped; anything else between objects is an error.
 */
export class JsonObjectSplitter {
  #buf = '';
  #pos = 0;
  #depth = 0;
  #inString = false;
  #escape = false;
  #start = -1;

  /** Adds text and returns the objects completed by it, as JSON text. */
  push(text: string): string[] {
    this.#buf += text;
    const out: string[] = [];
    const buf = this.#buf;
    for (let i = this.#pos; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === 0x5c /* \ */) this.#escape = true;
        else if (c === 0x22 /* " */) this.#inString = false;
        continue;
      }
      if (c === 0x22) {
        this.#inString = true;
      } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        if (this.#depth === 0) {
          if (c !== 0x7b) throw decodeError(`expected an object, got "${buf.slice(i, i + 40)}"`);
          this.#start = i;
        }
        this.#depth++;
      } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        this.#depth--;
        if (this.#depth < 0) throw decodeError(`unbalanced "${buf[i]}"`);
        if (this.#depth === 0) {
          out.push(buf.slice(this.#start, i + 1));
          this.#start = -1;
        }
      } else if (this.#depth === 0 && !(c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) {
        throw decodeError(`unexpected "${buf.slice(i, i + 40)}" between objects`);
      }
    }
    // Keep only the unfinished object.
    if (this.#start >= 0) {
      this.#buf = buf.slice(this.#start);
      this.#pos = this.#buf.length;
      this.#start = 0;
    } else {
      this.#buf = '';
      this.#pos = 0;
    }
    return out;
  }

  /** Characters of an unfinished object held back (0 between objects). */
  get pending(): number {
    return this.#start >= 0 ? this.#buf.length : 0;
  }
}

function decodeError(what: string): ClientError {
  return new ClientError(ClientErrorCodes.DECODE, `watch stream: ${what}`);
}

/** Parses one framed event; ERROR → ApiError (thrown). */
export function decodeWatchEvent<T extends KubeObject>(text: string, decorate?: (obj: T) => T): ObjectEvent<T> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ClientError(ClientErrorCodes.DECODE, `watch stream: an event is not JSON: ${text.slice(0, 120)}`, {}, { cause: e });
  }
  const ev = v as { type?: unknown; object?: unknown };
  if (typeof ev.object !== 'object' || ev.object === null) throw decodeError(`event without an object: ${text.slice(0, 120)}`);
  switch (ev.type) {
    case 'ADDED':
    case 'MODIFIED':
    case 'DELETED':
    case 'BOOKMARK': {
      const obj = ev.object as T;
      if (typeof obj.metadata !== 'object' || obj.metadata === null) throw decodeError(`${ev.type} event without metadata`);
      return { type: ev.type, object: decorate ? decorate(obj) : obj };
    }
    case 'ERROR': {
      const status: Status = isStatus(ev.object)
        ? ev.object
        : { apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', code: 500, reason: 'InternalError', message: `watch ERROR event: ${text.slice(0, 200)}` };
      throw new ApiError(status);
    }
    default:
      throw decodeError(`unknown event type ${JSON.stringify(ev.type)}`);
  }
}

export interface WatchStreamOptions<T extends KubeObject> {
  /** Opens the HTTP stream (called on the first `next()`). */
  open: (req: Pick<HttpRequest, 'signal'>) => Promise<StreamResponse>;
  /** Ends the watch when it fires, like `stop()`. */
  signal?: AbortSignal;
  /** Applied to every event's object (fills apiVersion/kind). */
  decorate?: (obj: T) => T;
}

/**
 * One watch request. Lazy: the request is sent on the first `next()`. Ends without error
 * when the server closes the stream (time to re-watch from the last resourceVersion) or
 * on stop; throws ApiError for an HTTP error or an ERROR event (`isGone(e)` → relist).
 */
export class WatchStream<T extends KubeObject> implements Watch<T> {
  readonly #opts: WatchStreamOptions<T>;
  readonly #abort = new AbortController();
  #stopped = false;
  #iterated = false;
  #res: StreamResponse | undefined;

  constructor(opts: WatchStreamOptions<T>) {
    this.#opts = opts;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort();
    this.#res?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<ObjectEvent<T>> {
    if (this.#iterated) throw new ClientError(ClientErrorCodes.INVALID_ARGUMENT, 'a watch can be iterated only once');
    this.#iterated = true;
    return this.#run();
  }

  /** Consumes the watch with a callback (awaited per event, so events stay in order). */
  consume(onEvent: (ev: ObjectEvent<T>) => void | Promise<void>): WatchHandle {
    const done = (async () => {
      for await (const ev of this) await onEvent(ev);
    })();
    return { stop: () => this.stop(), done };
  }

  async *#run(): AsyncGenerator<ObjectEvent<T>> {
    const outer = this.#opts.signal;
    const onOuterAbort = (): void => this.stop();
    if (outer?.aborted) this.stop();
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    let res: StreamResponse | undefined;
    try {
      if (this.#stopped) return;
      try {
        res = await this.#opts.open({ signal: this.#abort.signal });
      } catch (e) {
        if (this.#stopped || isAbortError(e)) return;
        throw e;
      }
      this.#res = res;
      if (this.#stopped) return;
      const decoder = new TextDecoder('utf-8');
      const splitter = new JsonObjectSplitter();
      try {
        for await (const chunk of res.body) {
          for (const text of splitter.push(decoder.decode(chunk, { stream: true }))) {
            if (this.#stopped) return;
            yield decodeWatchEvent(text, this.#opts.decorate);
          }
        }
      } catch (e) {
        if (this.#stopped || isAbortError(e)) return;
        throw e;
      }
      // A half object at the end means the connection broke mid-event: that event was not
      // delivered, so re-watching from the last delivered resourceVersion gets it again.
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
      res?.close();
    }
  }
}
