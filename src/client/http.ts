/**
 * The transport: one undici Agent per server (keep-alive pool, TLS with the config's CA,
 * client certificate or insecure mode, or a unix socket), JSON in and out, bearer or
 * basic auth, timeouts, and streamed bodies for watches. Every non-2xx answer becomes an
 * ApiError; every failure to get an answer becomes a ClientError (TRANSPORT, TIMEOUT,
 * DECODE). Knows nothing about resources: rest.ts builds the paths.
 */
import { readFile } from 'node:fs/promises';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import { version } from '../util/version.js';
import { ApiError, ClientError, ClientErrorCodes, isAbortError } from './errors.js';
import type { ClientConfig } from './kubeconfig.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Query parameters; undefined values are left out, booleans become "true"/"false". */
export type Query = Record<string, string | number | boolean | undefined>;

export interface HttpRequest {
  method: HttpMethod;
  /** Absolute API path (`/api/v1/pods`); the server URL's own path prefix is prepended. */
  path: string;
  query?: Query;
  /** Sent as JSON. */
  body?: unknown;
  /** Content-Type of the body (default application/json; patches use their own). */
  contentType?: string;
  /** Accept header (default application/json; e.g. the Table form `application/json;as=Table;v=v1;g=meta.k8s.io`). */
  accept?: string;
  signal?: AbortSignal;
  /** Time allowed for the response headers, ms (default: the client's timeoutMs). */
  timeoutMs?: number;
  /** Time allowed between two body chunks, ms; 0 = none (watches). Default: timeoutMs. */
  bodyTimeoutMs?: number;
}

/** A 2xx response whose body is read as it arrives. */
export interface StreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /** The raw body chunks. Ends when the server ends the response. */
  body: AsyncIterable<Uint8Array>;
  /** Stops reading and releases the connection (idempotent). */
  close(): void;
}

export interface HttpClientOptions {
  /** Default timeout for response headers and body chunks, ms. Default 30 000. */
  timeoutMs?: number;
  /** Default `podnet/<version>`. */
  userAgent?: string;
  /** How long a token read from `tokenFile` is trusted before re-reading, ms. Default 60 000. */
  tokenRefreshMs?: number;
  /** Clock for the token cache (tests). */
  now?: () => number;
  /** Use this dispatcher instead of building an Agent from the config (it is then not closed by `close()`). */
  dispatcher?: Dispatcher;
}

/** Equivalent of client-go's rest.RESTClient transport for one server. */
export class HttpClient {
  readonly config: ClientConfig;
  readonly #origin: string;
  readonly #prefix: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #token: TokenSource;
  #closed = false;

  /** Builds the connection pool; nothing is connected until the first request. */
  constructor(config: ClientConfig, opts: HttpClientOptions = {}) {
    this.config = config;
    let url: URL;
    try {
      url = new URL(config.server);
    } catch {
      throw new ClientError(ClientErrorCodes.KUBECONFIG, `server: "${config.server}" is not a URL`, { field: 'server' });
    }
    this.#origin = url.origin;
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#userAgent = opts.userAgent ?? `podnet/${version}`;
    this.#token = new TokenSource(config, opts.tokenRefreshMs ?? 60_000, opts.now ?? Date.now);
    if (opts.dispatcher) {
      this.#dispatcher = opts.dispatcher;
      this.#ownsDispatcher = false;
    } else {
      this.#dispatcher = new Agent({
        ...(config.socketPath ? { socketPath: config.socketPath } : {}),
        connect: {
          ...(config.ca ? { ca: config.ca } : {}),
          ...(config.cert ? { cert: config.cert } : {}),
          ...(config.key ? { key: config.key } : {}),
          ...(config.tlsServerName ? { servername: config.tlsServerName } : {}),
          rejectUnauthorized: !config.insecureSkipTLSVerify,
        },
        keepAliveTimeout: 30_000,
      });
      this.#ownsDispatcher = true;
    }
  }

  /** Sends a request and decodes the JSON answer. Non-2xx → ApiError. */
  async requestJson<T>(req: HttpRequest): Promise<T> {
    const res = await this.#send(req);
    let text: string;
    try {
      text = await res.body.text();
    } catch (e) {
      throw this.#wrap(e, req);
    }
    if (res.statusCode < 200 || res.statusCode > 299) throw this.#apiError(res, text, req);
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new ClientError(ClientErrorCodes.DECODE, `the answer to ${req.method} ${req.path} is not JSON: ${text.slice(0, 120)}`, { method: req.method, path: req.path, status: res.statusCode }, { cause: e });
    }
  }

  /**
   * Sends a request and returns the body as a stream of chunks (watches). Non-2xx → ApiError
   * (with the body read). The caller must consume the body or `close()` it.
   */
  async stream(req: HttpRequest): Promise<StreamResponse> {
    const res = await this.#send(req);
    if (res.statusCode < 200 || res.statusCode > 299) {
      let text = '';
      try {
        text = await res.body.text();
      } catch {
        /* the code alone will do */
      }
      throw this.#apiError(res, text, req);
    }
    const body = res.body;
    const wrap = (e: unknown): unknown => this.#wrap(e, req);
    return {
      statusCode: res.statusCode,
      headers: res.headers,
      body: {
        async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
          try {
            for await (const chunk of body) yield chunk as Uint8Array;
          } catch (e) {
            throw wrap(e);
          }
        },
      },
      close: () => {
        if (!body.destroyed) body.destroy();
      },
    };
  }

  /** Closes idle connections and refuses new requests; open watches are ended. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsDispatcher) await this.#dispatcher.destroy();
  }

  /** The path with the server's prefix and the query string. */
  url(path: string, query?: Query): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const q = qs.toString();
    return `${this.#prefix}${path}${q ? `?${q}` : ''}`;
  }

  async #send(req: HttpRequest): Promise<Dispatcher.ResponseData> {
    if (this.#closed) throw new ClientError(ClientErrorCodes.TRANSPORT, 'the client is closed', { method: req.method, path: req.path });
    const headers: Record<string, string> = { accept: req.accept ?? 'application/json', 'user-agent': this.#userAgent };
    const auth = await this.#token.header();
    if (auth) headers['authorization'] = auth;
    let body: string | undefined;
    if (req.body !== undefined) {
      body = JSON.stringify(req.body);
      headers['content-type'] = req.contentType ?? 'application/json';
    }
    const timeout = req.timeoutMs ?? this.#timeoutMs;
    try {
      return await this.#dispatcher.request({
        origin: this.#origin,
        path: this.url(req.path, req.query),
        method: req.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        headersTimeout: timeout,
        bodyTimeout: req.bodyTimeoutMs ?? timeout,
      });
    } catch (e) {
      throw this.#wrap(e, req);
    }
  }

  #apiError(res: Dispatcher.ResponseData, text: string, req: HttpRequest): ApiError {
    const ra = res.headers['retry-after'];
    return ApiError.fromResponse({
      statusCode: res.statusCode,
      body: text,
      target: { method: req.method, path: this.url(req.path, req.query) },
      retryAfter: Array.isArray(ra) ? ra[0] : ra,
    });
  }

  /** Aborts and our own errors pass through; undici and socket errors become ClientErrors. */
  #wrap(e: unknown, req: HttpRequest): unknown {
    if (isAbortError(e) || e instanceof ClientError || e instanceof ApiError) return e;
    if (req.signal?.aborted) return req.signal.reason ?? e;
    if (this.#closed) return new ClientError(ClientErrorCodes.TRANSPORT, 'the client is closed', { method: req.method, path: req.path }, { cause: e });
    const code = (e as { code?: unknown } | undefined)?.code;
    const codeText = typeof code === 'string' ? code : undefined;
    const where = this.config.socketPath ? `${this.config.server} (via ${this.config.socketPath})` : this.config.server;
    const ctx = { method: req.method, path: req.path, server: where, cause: codeText };
    if (codeText === 'UND_ERR_HEADERS_TIMEOUT' || codeText === 'UND_ERR_BODY_TIMEOUT' || codeText === 'UND_ERR_CONNECT_TIMEOUT') {
      return new ClientError(ClientErrorCodes.TIMEOUT, `${req.method} ${req.path} to ${where} timed out`, ctx, { cause: e });
    }
    const msg = e instanceof Error ? e.message : String(e);
    return new ClientError(ClientErrorCodes.TRANSPORT, `${req.method} ${req.path} to ${where} failed: ${msg}`, ctx, { cause: e });
  }
}

/** The Authorization header: static token, a token file re-read every `refreshMs`, or basic auth. */
class TokenSource {
  #token: string | undefined;
  #readAt = 0;

  constructor(
    readonly config: ClientConfig,
    readonly refreshMs: number,
    readonly now: () => number,
  ) {
    this.#token = config.token;
    this.#readAt = now();
  }

  async header(): Promise<string | undefined> {
    const c = this.config;
    if (c.tokenFile && this.now() - this.#readAt >= this.refreshMs) {
      try {
        const t = (await readFile(c.tokenFile, 'utf8')).trim();
        if (t) this.#token = t;
      } catch {
        /* keep the last good token; the server will say 401 if it has expired */
      }
      this.#readAt = this.now();
    }
    if (this.#token) return `Bearer ${this.#token}`;
    if (c.username !== undefined) return `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
    return undefined;
  }
}
