/**
 * A small gRPC client on our own HTTP/2 connection (./h2.ts): unary calls and bidirectional
 * streams, one long-lived HTTP/2 session per endpoint, nothing else (no name resolution, load-balancing
 * policies, retries, compression or interceptors — the etcd store does its own retries).
 * It replaces @grpc/grpc-js, whose per-call machinery (call stacks, filters, metadata
 * objects, protobuf.js conversions) cost the api more CPU than the rest of a create.
 *
 * The protocol (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
 * - a call is one HTTP/2 stream: `POST /package.Service/Method` with `content-type:
 *   application/grpc`, `te: trailers` and optionally `grpc-timeout`, custom metadata as
 *   plain headers;
 * - each message in either direction is a 5-byte prefix (flag 0 = not compressed, then the
 *   length, big-endian uint32) and the protobuf bytes; HTTP/2 DATA frames carry them with no
 *   alignment (a message may span frames, a frame may hold several messages);
 * - the status arrives in trailers (`grpc-status`, percent-encoded `grpc-message`), or in
 *   the response headers alone when there is no body ("trailers-only").
 * HTTP/2 flow control: windows are opened wide (large lists, watch replays) and consumed data
 * is acknowledged as it is read (h2.ts).
 *
 * Endpoints are tried in round-robin order, skipping those whose last connection attempt
 * failed recently. A call that cannot get a connection to one endpoint moves on to the
 * next before anything was sent; once its request is on a stream, a failure is final and
 * `notSent` says whether the server certainly did not see it (a refused stream). Sessions
 * with streams open are pinged every `keepaliveTimeMs` (etcd refuses pings more often than
 * every 5 s, or without a stream) and torn down when a ping is not answered within
 * `keepaliveTimeoutMs`: a member lost to a partition is noticed.
 */
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { H2Code, H2Session } from './h2.js';
import type { H2Stream, StreamEnd, StreamEvents } from './h2.js';
import { encodeHeaders } from './hpack.js';
import type { HeaderList } from './hpack.js';

/** gRPC status codes. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const STATUS_NAME = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k])) as Record<number, string>;

/**
 * A failed call. `message` reads like grpc-js's (`14 UNAVAILABLE: details`), `details` is the
 * server's grpc-message (or what went wrong locally).
 */
export class GrpcError extends Error {
  readonly code: number;
  readonly details: string;
  /** The request certainly did not reach the server (no connection, refused stream): safe to retry, even a write. */
  readonly notSent: boolean;
  /** The endpoint the call went to, when it got that far. */
  readonly endpoint: string | undefined;

  constructor(code: number, details: string, extra: { notSent?: boolean; endpoint?: string; cause?: unknown } = {}) {
    super(`${code} ${STATUS_NAME[code] ?? 'UNKNOWN'}: ${details}`, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'GrpcError';
    this.code = code;
    this.details = details;
    this.notSent = extra.notSent ?? false;
    this.endpoint = extra.endpoint;
  }
}

/** A call on a client that was closed (before or during the call). */
export class GrpcClosedError extends Error {
  constructor() {
    super('the gRPC client is closed');
    this.name = 'GrpcClosedError';
  }
}

// ---- framing ------------------------------------------------------------------------------

/** Bytes before each message: the compressed flag and the big-endian uint32 length. */
export const FRAME_HEADER = 5;

/**
 * Fills in the 5-byte prefix of a message encoded after FRAME_HEADER bytes of headroom
 * (the proto encoders' `headroom` argument), in place; returns the same buffer.
 */
export function frame(buf: Buffer): Buffer {
  if (buf.length < FRAME_HEADER) throw new RangeError('a gRPC frame needs 5 bytes of headroom');
  buf[0] = 0;
  buf.writeUInt32BE(buf.length - FRAME_HEADER, 1);
  return buf;
}

/** Frames a bare message (a copy). */
export function frameMessage(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + msg.length);
  out.set(msg, FRAME_HEADER);
  return frame(out);
}

/**
 * Splits a received byte stream into messages, however DATA frames cut it: a message that
 * lies within one chunk is passed on as a view of it (no copy), one spread over chunks is
 * assembled once into a buffer of its size.
 */
export class MessageDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;

  constructor(
    private readonly onMessage: (msg: Buffer) => void,
    private readonly maxMessageBytes = Number.POSITIVE_INFINITY,
  ) {}

  /** True while part of a message has been received (at the end of a stream: truncated). */
  get partial(): boolean {
    return this.headerFill > 0 || this.body !== undefined;
  }

  /** Feeds received bytes; calls onMessage for each complete message. Throws GrpcError on bad framing. */
  push(chunk: Buffer): void {
    let p = 0;
    const n = chunk.length;
    while (p < n) {
      if (this.body === undefined) {
        // Header: straight from the chunk when it holds all of it.
        let len: number;
        let flag: number;
        if (this.headerFill === 0 && n - p >= FRAME_HEADER) {
          flag = chunk[p]!;
          len = chunk.readUInt32BE(p + 1);
          p += FRAME_HEADER;
        } else {
          const take = Math.min(FRAME_HEADER - this.headerFill, n - p);
          chunk.copy(this.header, this.headerFill, p, p + take);
          this.headerFill += take;
          p += take;
          if (this.headerFill < FRAME_HEADER) return;
          this.headerFill = 0;
          flag = this.header[0]!;
          len = this.header.readUInt32BE(1);
        }
        if (flag !== 0) throw new GrpcError(Status.INTERNAL, flag === 1 ? 'received a compressed message (compression was not requested)' : `bad message flag ${flag}`);
        if (len > this.maxMessageBytes) throw new GrpcError(Status.RESOURCE_EXHAUSTED, `received message of ${len} bytes, more than the limit of ${this.maxMessageBytes}`);
        if (n - p >= len) {
          this.onMessage(chunk.subarray(p, p + len));
          p += len;
          continue;
        }
        this.body = Buffer.allocUnsafe(len);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, n - p);
      chunk.copy(this.body, this.bodyFill, p, p + take);
      this.bodyFill += take;
      p += take;
      if (this.bodyFill === this.body.length) {
        const msg = this.body;
        this.body = undefined;
        this.onMessage(msg);
      }
    }
  }
}

/** Decodes grpc-message (percent-encoded UTF-8); a malformed one is kept as it is. */
export function decodeGrpcMessage(raw: string | string[] | undefined): string {
  if (raw === undefined) return '';
  const s = Array.isArray(raw) ? raw.join(',') : raw;
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** gRPC status for an HTTP status that is not 200 (the gRPC spec's mapping). */
export function statusFromHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/** gRPC status for a stream reset by the peer with an HTTP/2 error code (the gRPC spec's mapping). */
export function statusFromRstCode(rstCode: number): number {
  switch (rstCode) {
    case H2Code.REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case H2Code.CANCEL:
      return Status.CANCELLED;
    case H2Code.ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case H2Code.INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}

/** Received header fields as an object (a repeated name: its values joined with commas). */
export type Headers = Record<string, string | string[] | undefined>;

function headerRecord(fields: HeaderList): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of fields) h[k] = h[k] === undefined ? v : `${h[k]},${v}`;
  return h;
}

/**
 * The status a response's headers (trailers, or the headers of a trailers-only response)
 * carry, or undefined when they carry none.
 */
export function statusFromHeaders(h: Headers): { code: number; details: string } | undefined {
  const raw = h['grpc-status'];
  if (raw === undefined) return undefined;
  const code = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isInteger(code) || code < 0) return { code: Status.UNKNOWN, details: `bad grpc-status ${JSON.stringify(raw)}` };
  return { code, details: decodeGrpcMessage(h['grpc-message']) };
}

/** Why the response headers are not those of a gRPC response, or undefined when they are. */
function badResponse(h: Headers): GrpcError | undefined {
  const httpStatus = Number(h[':status']);
  if (httpStatus !== 200) return new GrpcError(statusFromHttp(httpStatus), `HTTP status ${String(h[':status'])}${h['content-type'] ? ` (${String(h['content-type'])})` : ''}`);
  const ct = h['content-type'];
  if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) return new GrpcError(Status.UNKNOWN, `not a gRPC response (content-type ${JSON.stringify(ct ?? '')})`);
  return undefined;
}

/**
 * What a call has received so far: the first header block is the response's (its problems and
 * a trailers-only status), a later one the trailers.
 */
class Response {
  gotHeaders = false;
  status: { code: number; details: string } | undefined;
  failure: GrpcError | undefined;

  headers(fields: HeaderList): void {
    const h = headerRecord(fields);
    if (!this.gotHeaders) {
      this.gotHeaders = true;
      this.failure ??= badResponse(h);
    }
    this.status ??= statusFromHeaders(h);
  }

  /**
   * How the call ended, as an error; undefined for status OK. A stream reset with
   * REFUSED_STREAM or lost above a GOAWAY's last id never reached the server (`notSent`).
   */
  outcome(ch: Channel, end: StreamEnd): GrpcError | undefined {
    const status = this.status;
    if (status && status.code !== Status.OK) return new GrpcError(status.code, status.details, { endpoint: ch.name });
    if (end.kind === 'lost') {
      return new GrpcError(Status.UNAVAILABLE, end.refused ? `${ch.name}: ${end.error.message} (the request was not processed)` : `connection to ${ch.name} lost before the response: ${end.error.message}`, { notSent: end.refused, endpoint: ch.name, cause: end.error });
    }
    if (end.kind === 'reset') {
      return new GrpcError(statusFromRstCode(end.code), `stream reset by ${ch.name} (HTTP/2 error ${end.code})`, { notSent: end.refused, endpoint: ch.name });
    }
    if (this.failure) return this.failure;
    if (!status) return new GrpcError(Status.UNAVAILABLE, `stream from ${ch.name} ended without a grpc-status`, { endpoint: ch.name });
    return undefined;
  }
}

// ---- client -------------------------------------------------------------------------------

export interface GrpcTlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name the server certificate is checked against, instead of the endpoint host. */
  serverName?: string;
}

export interface GrpcClientOptions {
  /** `http://host:port`, `https://host:port` or `host:port` (port 2379 when left out). */
  endpoints: string[];
  /** Given: every endpoint is reached over TLS (host:port and http:// ones too). */
  tls?: GrpcTlsOptions;
  /** Headers sent with every call (gRPC metadata; names lowercase). */
  metadata?: Record<string, string>;
  /** How long one connection attempt may take. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Ping interval of a session with open streams. Default 10 000 ms. */
  keepaliveTimeMs?: number;
  /** How long a ping may go unanswered. Default 5000 ms. */
  keepaliveTimeoutMs?: number;
  /** Opens the transport instead of TCP / TLS (tests: a unix socket). */
  createConnection?: (endpoint: URL) => Duplex;
}

/** Handlers of a bidirectional stream. */
export interface StreamHandlers {
  onMessage(msg: Buffer): void;
  /** The stream ended: `err` undefined when the server closed it with status OK. Not called after `close()`. */
  onEnd(err: GrpcError | undefined): void;
}

export interface BidiStream {
  /** Sends one framed message (see `frame`); queued until the stream is open. */
  write(framed: Buffer): void;
  /** Cancels the stream (RST_STREAM CANCEL): the server ends the call. No onEnd follows. */
  close(): void;
}

const DEFAULT_PORT = '2379';
/** HTTP/2 receive windows: per stream and per session (the protocol's default is 64 KiB for both). */
const STREAM_WINDOW = 4 << 20;
const SESSION_WINDOW = 32 << 20;
/** Stream ids are 31-bit and odd on a client: start a new session well before they run out. */
const MAX_STREAMS_PER_SESSION = 1 << 29;
const USER_AGENT = 'podnet-etcd-grpc/1';

/** An endpoint as a URL: scheme http (https with `forceTls`) when left out, port 2379 when left out. */
export function parseEndpoint(e: string, forceTls: boolean): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `${forceTls ? 'https' : 'http'}://${e}`;
  const u = new URL(withScheme);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`endpoint ${JSON.stringify(e)}: only http:// and https:// are supported`);
  if (forceTls) u.protocol = 'https:';
  if (!u.port) u.port = DEFAULT_PORT;
  return u;
}

/** A session and what the channel tracks about it. */
interface Session {
  h2: H2Session;
  /** Open streams (pings only while there are some; the session keeps the process alive only then). */
  active: number;
  /** Streams opened so far (ids run out at 2^31). */
  opened: number;
  pingTimer: NodeJS.Timeout | undefined;
}

/** One endpoint: its session (at most one takes new streams) and its recent failures. */
class Channel {
  readonly url: URL;
  readonly name: string;
  /** The session new streams go to. */
  current: Session | undefined;
  /** Set while a connection attempt runs. */
  private connecting: Promise<Session> | undefined;
  /** Consecutive failed connection attempts, and when the next one is worth making. */
  failures = 0;
  retryAt = 0;
  /** Request header blocks per path, encoded once (without grpc-timeout). */
  private readonly blocks = new Map<string, Buffer>();

  constructor(
    private readonly client: GrpcClient,
    url: URL,
  ) {
    this.url = url;
    this.name = url.origin;
  }

  /** A connected session taking new streams, or undefined when one must be (re)established. */
  get ready(): Session | undefined {
    const s = this.current;
    return s && s.h2.usable ? s : undefined;
  }

  /** Starts a connection attempt in the background (unless one runs); its outcome updates `failures`. */
  probe(): void {
    if (this.connecting || this.ready) return;
    this.attempt();
  }

  /** The running connection attempt, or a new one (its failure is also seen by whoever waits on it). */
  private attempt(): Promise<Session> {
    if (!this.connecting) {
      this.connecting = this.open().finally(() => (this.connecting = undefined));
      // A probe, or a caller whose deadline passed first, does not wait for the outcome.
      this.connecting.catch(() => undefined);
    }
    return this.connecting;
  }

  /** Connects (or joins the running attempt); rejects with the connection error. */
  connect(deadline: number): Promise<Session> {
    const ready = this.ready;
    if (ready) return Promise.resolve(ready);
    const left = deadline - Date.now();
    const late = () => new GrpcError(Status.DEADLINE_EXCEEDED, `deadline exceeded while connecting to ${this.name}`, { notSent: true, endpoint: this.name });
    if (left <= 0) return Promise.reject(late());
    const attempt = this.attempt();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(late()), left);
      attempt.then(
        (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** The transport: the test hook's, TLS with ALPN h2, or TCP. */
  private socket(): Duplex {
    const o = this.client.options;
    if (o.createConnection) return o.createConnection(this.url);
    const host = this.url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(this.url.port);
    if (this.url.protocol !== 'https:') return netConnect({ host, port, noDelay: true });
    const tls = o.tls;
    const servername = tls?.serverName ?? (isIP(host) ? undefined : host);
    return tlsConnect({
      host,
      port,
      ALPNProtocols: ['h2'],
      ...(servername ? { servername } : {}),
      ...(tls?.ca ? { ca: tls.ca } : {}),
      ...(tls?.cert ? { cert: tls.cert } : {}),
      ...(tls?.key ? { key: tls.key } : {}),
    });
  }

  private open(): Promise<Session> {
    const connectTimeoutMs = this.client.options.connectTimeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      let settled = false;
      let socket: Duplex;
      try {
        socket = this.socket();
      } catch (e) {
        this.failed();
        reject(new GrpcError(Status.UNAVAILABLE, `No connection established to ${this.name}: ${(e as Error).message}`, { notSent: true, endpoint: this.name, cause: e }));
        return;
      }
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        h2.destroy(e instanceof Error ? e : new Error(String(e)));
        this.failed();
        const msg = e instanceof Error ? e.message : String(e);
        reject(new GrpcError(Status.UNAVAILABLE, `No connection established to ${this.name}: ${msg}`, { notSent: true, endpoint: this.name, cause: e }));
      };
      const timer = setTimeout(() => fail(new Error(`connection attempt timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
      timer.unref();
      // Over TLS the server must have agreed to HTTP/2.
      if (this.url.protocol === 'https:' && !this.client.options.createConnection) {
        socket.once('secureConnect', () => {
          const alpn = (socket as TLSSocket).alpnProtocol;
          if (alpn !== 'h2') fail(new Error(`the server did not agree to HTTP/2 over TLS (ALPN ${JSON.stringify(alpn)})`));
        });
      }
      const h2: H2Session = new H2Session(socket, {
        streamWindow: STREAM_WINDOW,
        sessionWindow: SESSION_WINDOW,
        onReady: () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.failures = 0;
          this.retryAt = 0;
          this.current = sess;
          resolve(sess);
        },
        // A server going away takes no new streams on this session: the next call opens another.
        onGoaway: () => {
          if (this.current === sess) this.current = undefined;
        },
        onClose: (err) => {
          fail(err ?? new Error('connection closed'));
          this.stopPings(sess);
          if (this.current === sess) this.current = undefined;
        },
      });
      // Only open streams keep the process alive (see request()): a background probe does not.
      h2.unref();
      const sess: Session = { h2, active: 0, opened: 0, pingTimer: undefined };
    });
  }

  private failed(): void {
    this.failures++;
    this.retryAt = Date.now() + Math.min(2000, 50 * 2 ** Math.min(this.failures, 6));
  }

  /** The header block of a call to `path` (the fixed part encoded once per path). */
  headersFor(path: string, timeoutMs: number | undefined): Buffer {
    let base = this.blocks.get(path);
    if (!base) {
      const fields: [string, string][] = [
        [':method', 'POST'],
        [':scheme', this.url.protocol === 'https:' ? 'https' : 'http'],
        [':path', path],
        [':authority', this.url.host],
        ['content-type', 'application/grpc'],
        ['te', 'trailers'],
        ['user-agent', USER_AGENT],
        ...Object.entries(this.client.options.metadata ?? {}).map(([k, v]): [string, string] => [k.toLowerCase(), v]),
      ];
      base = encodeHeaders(fields);
      this.blocks.set(path, base);
    }
    if (timeoutMs === undefined) return base;
    // grpc-timeout takes at most 8 digits.
    return Buffer.concat([base, encodeHeaders([['grpc-timeout', `${Math.min(Math.max(1, Math.ceil(timeoutMs)), 99_999_999)}m`]])]);
  }

  /**
   * Opens a stream on `sess` (throws when the session cannot take one), counting it for
   * keepalive, for the process reference and for stream-id exhaustion.
   */
  request(sess: Session, block: Buffer, events: StreamEvents): H2Stream {
    const h2 = sess.h2;
    const onClose = events.onClose;
    const stream = h2.open(block, {
      onHeaders: events.onHeaders,
      onData: events.onData,
      onClose: (end) => {
        if (--sess.active === 0) {
          this.stopPings(sess);
          if (!h2.destroyed) h2.unref();
        }
        onClose(end);
      },
    });
    if (++sess.opened >= MAX_STREAMS_PER_SESSION && this.current === sess) {
      // It finishes its streams; new calls get a new session.
      this.current = undefined;
      h2.close();
    }
    if (sess.active++ === 0) {
      h2.ref();
      this.startPings(sess);
    }
    return stream;
  }

  /** Forgets `sess` for new streams (it could not open one). */
  drop(sess: Session): void {
    if (this.current === sess) this.current = undefined;
  }

  private startPings(sess: Session): void {
    const o = this.client.options;
    const every = o.keepaliveTimeMs ?? 10_000;
    const within = o.keepaliveTimeoutMs ?? 5000;
    const h2 = sess.h2;
    this.stopPings(sess);
    sess.pingTimer = setInterval(() => {
      if (h2.destroyed) return;
      const dead = setTimeout(() => h2.destroy(new Error(`keepalive ping not answered within ${within} ms`)), within);
      h2.ping((err) => {
        clearTimeout(dead);
        if (err && !h2.destroyed) h2.destroy(err);
      });
    }, every);
    sess.pingTimer.unref();
  }

  private stopPings(sess: Session): void {
    if (sess.pingTimer) clearInterval(sess.pingTimer);
    sess.pingTimer = undefined;
  }

  close(): void {
    const s = this.current;
    this.current = undefined;
    if (s) {
      this.stopPings(s);
      s.h2.destroy(undefined);
    }
  }
}

/** Options of one unary call. */
export interface CallOptions {
  /** Absolute time (ms since the epoch) by which the call must have ended. */
  deadline: number;
}

export class GrpcClient {
  readonly options: GrpcClientOptions;
  private readonly channels: Channel[];
  private next = 0;
  private closed = false;

  constructor(options: GrpcClientOptions) {
    if (!options.endpoints.length) throw new Error('gRPC client: no endpoints');
    this.options = options;
    this.channels = options.endpoints.map((e) => new Channel(this, parseEndpoint(e, options.tls !== undefined)));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The endpoints in the order a call should try them: round-robin over those connected
   * or not known to fail; then the failing ones (soonest retry first), so that a lone
   * endpoint that failed is still tried. A failing endpoint whose backoff has passed is
   * probed in the background: calls go back to it once it connects, and a member that
   * vanished (a partition: connection attempts hang) delays no call.
   */
  private order(): Channel[] {
    const n = this.channels.length;
    if (n === 1) return this.channels;
    const start = this.next++ % n;
    const now = Date.now();
    const good: Channel[] = [];
    let failing: Channel[] | undefined;
    for (let i = 0; i < n; i++) {
      const ch = this.channels[(start + i) % n]!;
      if (ch.failures === 0 || ch.ready) {
        good.push(ch);
        continue;
      }
      (failing ??= []).push(ch);
      if (ch.retryAt <= now) ch.probe();
    }
    if (!failing) return good;
    if (failing.length > 1) failing.sort((a, b) => a.retryAt - b.retryAt);
    return good.concat(failing);
  }

  /** A connected session on some endpoint (failing over while nothing was sent). */
  private async session(order: Channel[], deadline: number): Promise<[Channel, Session]> {
    let last: unknown;
    for (const ch of order) {
      const ready = ch.ready;
      if (ready) return [ch, ready];
      try {
        const s = await ch.connect(deadline);
        if (this.closed) throw new GrpcClosedError();
        return [ch, s];
      } catch (e) {
        if (e instanceof GrpcClosedError || this.closed) throw new GrpcClosedError();
        last = e;
        if (e instanceof GrpcError && e.code === Status.DEADLINE_EXCEEDED) throw e;
      }
    }
    if (last instanceof GrpcError) throw last;
    throw new GrpcError(Status.UNAVAILABLE, `No connection established: ${String(last)}`, { notSent: true, cause: last });
  }

  /**
   * One unary call: `framed` is the request message with its 5-byte prefix filled in
   * (see `frame`). Resolves with the response message (a view of the received bytes).
   */
  unary(path: string, framed: Buffer, opts: CallOptions): Promise<Buffer> {
    if (this.closed) return Promise.reject(new GrpcClosedError());
    // Fast path: a connected session on the next endpoint.
    const order = this.order();
    const first = order[0]!;
    const ready = first.ready;
    if (ready) return this.call(first, ready, path, framed, opts.deadline);
    return this.session(order, opts.deadline).then(([ch, s]) => this.call(ch, s, path, framed, opts.deadline));
  }

  private call(ch: Channel, s: Session, path: string, framed: Buffer, deadline: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const left = deadline - Date.now();
      if (left <= 0) {
        reject(new GrpcError(Status.DEADLINE_EXCEEDED, 'deadline exceeded before the call was sent', { notSent: true, endpoint: ch.name }));
        return;
      }
      let first: Buffer | undefined;
      let more: Buffer[] | undefined;
      let timedOut = false;
      const res = new Response();
      let stream: H2Stream;
      try {
        stream = ch.request(s, ch.headersFor(path, left), {
          onHeaders: (fields) => res.headers(fields),
          onData: (chunk) => {
            // Views of received bytes (never reused by the socket): the usual single chunk is kept as it is.
            if (first === undefined) first = chunk;
            else (more ??= [first]).push(chunk);
          },
          onClose: (end) => {
            clearTimeout(timer);
            if (this.closed) return reject(new GrpcClosedError());
            if (timedOut) return reject(new GrpcError(Status.DEADLINE_EXCEEDED, `deadline exceeded (${Math.round(left)} ms) on ${ch.name}`, { endpoint: ch.name }));
            const err = res.outcome(ch, end);
            if (err) return reject(err);
            const body = more ? Buffer.concat(more) : first;
            const msg = body ? unaryMessage(body) : undefined;
            if (msg instanceof GrpcError) return reject(msg);
            if (!msg) return reject(new GrpcError(Status.INTERNAL, `no response message from ${ch.name}`, { endpoint: ch.name }));
            resolve(msg);
          },
        });
      } catch (e) {
        // The session closed under us (GOAWAY, destroyed): nothing was sent.
        ch.drop(s);
        reject(new GrpcError(Status.UNAVAILABLE, `cannot open a stream to ${ch.name}: ${(e as Error).message}`, { notSent: true, endpoint: ch.name, cause: e }));
        return;
      }
      const timer = setTimeout(() => {
        timedOut = true;
        stream.cancel();
      }, left);
      stream.write(framed, true);
    });
  }

  /** A bidirectional stream (a watch). Messages written before it is open are queued. */
  stream(path: string, handlers: StreamHandlers): BidiStream {
    let stream: H2Stream | undefined;
    let queued: Buffer[] | undefined = [];
    let ended = false;
    const end = (err: GrpcError | undefined) => {
      if (ended) return;
      ended = true;
      handlers.onEnd(err);
    };
    const open = (ch: Channel, s: Session) => {
      if (ended) return;
      const res = new Response();
      const decoder = new MessageDecoder((m) => {
        if (!ended) handlers.onMessage(m);
      });
      let st: H2Stream;
      try {
        st = ch.request(s, ch.headersFor(path, undefined), {
          onHeaders: (fields) => res.headers(fields),
          onData: (chunk) => {
            if (ended || res.failure) return;
            try {
              decoder.push(chunk);
            } catch (e) {
              res.failure = e instanceof GrpcError ? e : new GrpcError(Status.INTERNAL, String(e));
              st.cancel();
            }
          },
          onClose: (how) => {
            if (ended) return;
            if (this.closed) return end(new GrpcError(Status.CANCELLED, 'the gRPC client is closed', { cause: new GrpcClosedError() }));
            // Our own cancel after a framing error: the failure is the reason.
            if (how.kind === 'cancelled') return end(res.failure ?? new GrpcError(Status.CANCELLED, 'stream cancelled', { endpoint: ch.name }));
            end(res.outcome(ch, how));
          },
        });
      } catch (e) {
        ch.drop(s);
        // Never synchronously from stream(): the caller has not got its handle yet.
        const err = new GrpcError(Status.UNAVAILABLE, `cannot open a stream to ${ch.name}: ${(e as Error).message}`, { notSent: true, endpoint: ch.name, cause: e });
        queueMicrotask(() => end(err));
        return;
      }
      stream = st;
      for (const m of queued!) st.write(m);
      queued = undefined;
    };
    if (this.closed) {
      queueMicrotask(() => end(new GrpcError(Status.CANCELLED, 'the gRPC client is closed', { notSent: true, cause: new GrpcClosedError() })));
    } else {
      const order = this.order();
      const ready = order[0]!.ready;
      if (ready) open(order[0]!, ready);
      else
        this.session(order, Date.now() + (this.options.connectTimeoutMs ?? 5000)).then(
          ([ch, s]) => open(ch, s),
          (e: unknown) => end(e instanceof GrpcError ? e : new GrpcError(Status.CANCELLED, String(e), { notSent: true, cause: e })),
        );
    }
    return {
      write(framed: Buffer) {
        if (ended) return;
        if (stream) stream.write(framed);
        else queued?.push(framed);
      },
      close() {
        if (ended) return;
        ended = true;
        stream?.cancel();
      },
    };
  }

  /** Ends every session at once; calls in flight fail with GrpcClosedError. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ch of this.channels) ch.close();
  }
}

/** The one message of a unary response body, or a GrpcError when it is not exactly one. */
function unaryMessage(body: Buffer): Buffer | GrpcError | undefined {
  // The usual case: one uncompressed message filling the body.
  if (body.length >= FRAME_HEADER && body[0] === 0 && body.readUInt32BE(1) === body.length - FRAME_HEADER) return body.subarray(FRAME_HEADER);
  let msg: Buffer | undefined;
  let count = 0;
  const d = new MessageDecoder((m) => {
    msg = m;
    count++;
  });
  try {
    d.push(body);
  } catch (e) {
    return e instanceof GrpcError ? e : new GrpcError(Status.INTERNAL, String(e));
  }
  if (d.partial) return new GrpcError(Status.INTERNAL, 'response message truncated');
  if (count > 1) return new GrpcError(Status.UNIMPLEMENTED, `${count} response messages for a unary call`);
  return msg;
}
