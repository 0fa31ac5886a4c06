/**
 * The client side of one HTTP/2 connection (RFC 9113), as much as a gRPC client needs:
 * request streams with their headers, DATA in both directions under flow control, trailers,
 * RST_STREAM, SETTINGS, PING, GOAWAY. No server push, no priorities, no upgrade from HTTP/1.1
 * (prior knowledge over TCP, or ALPN `h2` over TLS set up by the caller).
 *
 * Why not node:http2: for every stream it builds header objects, an AsyncResource with a bound
 * callback (and two deprecation wrappers), stream objects with their event machinery; measured
 * on the api's create path that was ~70 µs of ~370 µs per Service create. Here a stream is a
 * small object with three callbacks, request header blocks are encoded once per path, and the
 * frames of every stream opened in one turn of the event loop leave in one socket write.
 */
import type { Duplex } from 'node:stream';
import { HpackDecoder, HpackError } from './hpack.js';
import type { HeaderList } from './hpack.js';

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2Code = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

const enum T {
  DATA = 0,
  HEADERS = 1,
  PRIORITY = 2,
  RST_STREAM = 3,
  SETTINGS = 4,
  PUSH_PROMISE = 5,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

const SETTINGS_HEADER_TABLE_SIZE = 1;
const SETTINGS_ENABLE_PUSH = 2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 3;
const SETTINGS_INITIAL_WINDOW_SIZE = 4;
const SETTINGS_MAX_FRAME_SIZE = 5;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 0x7fffffff;
/** What we accept per frame (the protocol's default; we do not raise it). */
const OUR_MAX_FRAME = 16_384;
/** A header block (with its CONTINUATIONs) larger than this ends the connection. */
const MAX_HEADER_BLOCK = 256 * 1024;

/** How a stream ended. */
export type StreamEnd =
  /** The server ended it (END_STREAM). */
  | { kind: 'ended' }
  /** The server reset it; `refused` (REFUSED_STREAM) means it did not process it. */
  | { kind: 'reset'; code: number; refused: boolean }
  /** `cancel()` was called. */
  | { kind: 'cancelled' }
  /**
   * The connection ended first. `refused`: the server certainly did not see the request (never
   * sent, or above the last stream id of the server's GOAWAY).
   */
  | { kind: 'lost'; error: Error; refused: boolean };

export interface StreamEvents {
  /** A header block: the response headers first, trailers later; `end` when it ends the stream. */
  onHeaders(fields: HeaderList, end: boolean): void;
  /** Received DATA (a view of the received bytes: copy what must outlive the call). */
  onData(chunk: Buffer): void;
  /** Called once, last. */
  onClose(end: StreamEnd): void;
}

export interface H2SessionOptions {
  /** SETTINGS_INITIAL_WINDOW_SIZE we announce (per stream receive window). */
  streamWindow: number;
  /** The connection's receive window. */
  sessionWindow: number;
  /** The server's SETTINGS arrived: streams may be opened. */
  onReady(): void;
  /** The server sent GOAWAY: no new streams here (those in flight below its last id finish). */
  onGoaway(): void;
  /** The connection is gone (every stream got its onClose first). `error` undefined after close(). */
  onClose(error: Error | undefined): void;
}

export class H2Stream {
  id = 0;
  /** Our send window, the server's receive window for this stream. */
  sendWindow = 0;
  /** Bytes received and not yet acknowledged with WINDOW_UPDATE. */
  unacked = 0;
  /** Request bytes waiting for send window. */
  pending: Buffer[] = [];
  pendingEnd = false;
  localEnded = false;
  remoteEnded = false;
  /** Its HEADERS left in a socket write (before that, a lost connection means never sent). */
  sent = false;
  closed = false;

  constructor(
    readonly session: H2Session,
    readonly block: Buffer,
    readonly events: StreamEvents,
  ) {}

  /** Sends request bytes (END_STREAM with the last ones when `end`); queued while the stream waits to open or for window. */
  write(data: Buffer, end = false): void {
    if (this.closed || this.localEnded || this.pendingEnd) return;
    if (data.length) this.pending.push(data);
    if (end) this.pendingEnd = true;
    if (this.id) this.session.sendPending(this);
  }

  /** Resets the stream (RST_STREAM, CANCEL by default); onClose follows at once with `cancelled`. */
  cancel(code: number = H2Code.CANCEL): void {
    this.session.resetStream(this, code);
  }
}

/** A frame's 9-byte header (payload length, type, flags, stream id) in front of `room` more bytes. */
function frameHeader(len: number, type: number, flags: number, sid: number, room = 0): Buffer {
  const b = Buffer.allocUnsafe(9 + room);
  b[0] = (len >>> 16) & 0xff;
  b[1] = (len >>> 8) & 0xff;
  b[2] = len & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(sid & 0x7fffffff, 5);
  return b;
}

/** A whole frame: header and a copy of the payload. */
function frameWith(type: number, flags: number, sid: number, payload: Buffer): Buffer {
  const b = frameHeader(payload.length, type, flags, sid, payload.length);
  payload.copy(b, 9);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A connection-level protocol violation by the server. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class H2Session {
  private readonly streams = new Map<number, H2Stream>();
  /** Streams waiting for the server's concurrency limit. */
  private readonly waiting: H2Stream[] = [];
  /** Streams with data held back by flow control. */
  private readonly blocked = new Set<H2Stream>();
  /** Opened streams whose HEADERS are in `out`, not yet written. */
  private unsent: H2Stream[] = [];
  private nextId = 1;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private inbuf: Buffer | undefined;
  private readonly decoder = new HpackDecoder();
  /** A header block being continued: its stream, pieces and END_STREAM flag. */
  private continuing: { sid: number; parts: Buffer[]; size: number; end: boolean } | undefined;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = 16_384;
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  private connSendWindow = DEFAULT_WINDOW;
  private connUnacked = 0;
  private readonly pings: { id: number; cb: (err: Error | undefined) => void }[] = [];
  private pingSeq = 0;
  private state: 'connecting' | 'ready' | 'goaway' | 'closing' | 'destroyed' = 'connecting';
  private readonly flushNow = () => this.flush();

  constructor(
    private readonly socket: Duplex,
    private readonly opts: H2SessionOptions,
  ) {
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('error', (e: Error) => this.destroy(e));
    socket.on('end', () => this.destroy(new Error('connection closed by the server')));
    socket.on('close', () => this.destroy(new Error('connection closed')));
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(opts.streamWindow, 8);
    settings.writeUInt16BE(SETTINGS_HEADER_TABLE_SIZE, 12);
    settings.writeUInt32BE(4096, 14);
    this.queue(PREFACE);
    this.queue(frameWith(T.SETTINGS, 0, 0, settings));
    if (opts.sessionWindow > DEFAULT_WINDOW) this.queue(frameWith(T.WINDOW_UPDATE, 0, 0, u32(opts.sessionWindow - DEFAULT_WINDOW)));
    this.flush();
  }

  /** Connected, and taking new streams. */
  get usable(): boolean {
    return this.state === 'ready';
  }

  get destroyed(): boolean {
    return this.state === 'destroyed';
  }

  /** Open streams (and those waiting to open). */
  get active(): number {
    return this.streams.size + this.waiting.length;
  }

  /** Keeps the process alive (a socket that supports it). */
  ref(): void {
    (this.socket as { ref?: () => void }).ref?.();
  }

  unref(): void {
    (this.socket as { unref?: () => void }).unref?.();
  }

  /**
   * Opens a request stream with a header block from `encodeHeaders` (request headers only:
   * END_STREAM goes with the last `write`). Throws when the session takes no new streams.
   */
  open(block: Buffer, events: StreamEvents): H2Stream {
    if (this.state !== 'ready') throw new Error(this.state === 'connecting' ? 'the connection is not ready yet' : 'the connection takes no new streams');
    const s = new H2Stream(this, block, events);
    if (this.streams.size >= this.peerMaxStreams) this.waiting.push(s);
    else this.start(s);
    return s;
  }

  /** Sends a PING; `cb` gets an error when the connection ends before the answer. */
  ping(cb: (err: Error | undefined) => void): void {
    if (this.state === 'destroyed') {
      cb(new Error('connection closed'));
      return;
    }
    const id = ++this.pingSeq >>> 0;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(id, 4);
    this.pings.push({ id, cb });
    this.queue(frameWith(T.PING, 0, 0, payload));
  }

  /** Takes no new streams; the connection ends once the open ones are done. */
  close(): void {
    if (this.state === 'destroyed' || this.state === 'closing') return;
    this.state = 'closing';
    this.queue(frameWith(T.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(H2Code.NO_ERROR)])));
    if (this.active === 0) this.destroy(undefined);
  }

  /** Ends the connection now: open streams end `lost`. */
  destroy(error: Error | undefined): void {
    if (this.state === 'destroyed') return;
    if (this.out.length) this.flush();
    this.state = 'destroyed';
    this.socket.destroy();
    const err = error ?? new Error('connection closed');
    for (const p of this.pings.splice(0)) p.cb(err);
    const all = [...this.streams.values(), ...this.waiting.splice(0)];
    this.streams.clear();
    this.blocked.clear();
    for (const s of all) this.finish(s, { kind: 'lost', error: err, refused: !s.sent });
    this.opts.onClose(error);
  }

  // ---- sending ------------------------------------------------------------------------------

  private queue(frame: Buffer): void {
    if (this.state === 'destroyed') return;
    this.out.push(frame);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Writes everything queued in one socket write (each turn of the loop). */
  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    this.out = [];
    if (!out.length || this.socket.destroyed) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    for (const s of this.unsent) s.sent = true;
    this.unsent = [];
  }

  private start(s: H2Stream): void {
    s.id = this.nextId;
    this.nextId += 2;
    s.sendWindow = this.peerInitialWindow;
    this.streams.set(s.id, s);
    const block = s.block;
    const end = s.pendingEnd && s.pending.length === 0 ? END_STREAM : 0;
    if (end) s.localEnded = true;
    if (block.length <= this.peerMaxFrame) this.queue(frameWith(T.HEADERS, END_HEADERS | end, s.id, block));
    else {
      this.queue(frameWith(T.HEADERS, end, s.id, block.subarray(0, this.peerMaxFrame)));
      for (let p = this.peerMaxFrame; p < block.length; p += this.peerMaxFrame) {
        const last = p + this.peerMaxFrame >= block.length;
        this.queue(frameWith(T.CONTINUATION, last ? END_HEADERS : 0, s.id, block.subarray(p, p + this.peerMaxFrame)));
      }
    }
    this.unsent.push(s);
    if (!end) this.sendPending(s);
  }

  /** Sends what the windows allow of a stream's pending bytes (and END_STREAM after the last). */
  sendPending(s: H2Stream): void {
    if (s.closed || s.localEnded || this.state === 'destroyed') return;
    while (s.pending.length) {
      const room = Math.min(s.sendWindow, this.connSendWindow, this.peerMaxFrame);
      if (room <= 0) {
        this.blocked.add(s);
        return;
      }
      const head = s.pending[0]!;
      const chunk = head.length <= room ? head : head.subarray(0, room);
      if (chunk === head) s.pending.shift();
      else s.pending[0] = head.subarray(room);
      s.sendWindow -= chunk.length;
      this.connSendWindow -= chunk.length;
      const last = s.pendingEnd && s.pending.length === 0;
      this.queue(frameHeader(chunk.length, T.DATA, last ? END_STREAM : 0, s.id));
      this.queue(chunk);
      if (last) {
        s.localEnded = true;
        break;
      }
    }
    this.blocked.delete(s);
    if (!s.localEnded && s.pendingEnd) {
      s.localEnded = true;
      this.queue(frameHeader(0, T.DATA, END_STREAM, s.id));
    }
    if (s.localEnded && s.remoteEnded) this.finish(s, { kind: 'ended' });
  }

  resetStream(s: H2Stream, code: number): void {
    if (s.closed) return;
    const waitingAt = this.waiting.indexOf(s);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    else if (this.state !== 'destroyed') this.queue(frameWith(T.RST_STREAM, 0, s.id, u32(code)));
    this.finish(s, { kind: 'cancelled' });
  }

  private finish(s: H2Stream, end: StreamEnd): void {
    if (s.closed) return;
    s.closed = true;
    if (s.id) this.streams.delete(s.id);
    this.blocked.delete(s);
    s.pending = [];
    try {
      s.events.onClose(end);
    } finally {
      if (this.state !== 'destroyed') {
        this.startWaiting();
        if ((this.state === 'closing' || this.state === 'goaway') && this.active === 0) this.destroy(undefined);
      }
    }
  }

  // ---- receiving ----------------------------------------------------------------------------

  private onBytes(chunk: Buffer): void {
    let buf = chunk;
    if (this.inbuf) {
      buf = Buffer.concat([this.inbuf, chunk]);
      this.inbuf = undefined;
    }
    let p = 0;
    try {
      while (buf.length - p >= 9 && this.state !== 'destroyed') {
        if (this.state === 'connecting' && buf[p + 3] !== T.SETTINGS) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'the server did not start with SETTINGS (not an HTTP/2 server?)');
        const len = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
        if (len > OUR_MAX_FRAME) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, `frame of ${len} bytes, over the ${OUR_MAX_FRAME} allowed`);
        if (buf.length - p < 9 + len) break;
        const type = buf[p + 3]!;
        const flags = buf[p + 4]!;
        const sid = buf.readUInt32BE(p + 5) & 0x7fffffff;
        const payload = buf.subarray(p + 9, p + 9 + len);
        p += 9 + len;
        this.onFrame(type, flags, sid, payload);
      }
    } catch (e) {
      // The server broke the protocol, or one of our stream callbacks threw: either way the
      // connection's state is unknown now, so it ends (calls on it fail and are retried).
      const protocol = e instanceof ConnectionError || e instanceof HpackError;
      const code = e instanceof ConnectionError ? e.code : e instanceof HpackError ? H2Code.COMPRESSION_ERROR : H2Code.INTERNAL_ERROR;
      if (this.state !== 'destroyed') {
        this.queue(frameWith(T.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(code)])));
        const msg = e instanceof Error ? e.message : String(e);
        this.destroy(new Error(protocol ? `HTTP/2 protocol error: ${msg}` : `a stream callback threw: ${msg}`, { cause: e }));
      }
      return;
    }
    if (p < buf.length && this.state !== 'destroyed') this.inbuf = p === 0 ? buf : Buffer.from(buf.subarray(p));
  }

  private onFrame(type: number, flags: number, sid: number, payload: Buffer): void {
    if (this.continuing && type !== T.CONTINUATION) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    switch (type) {
      case T.DATA:
        return this.onData(flags, sid, payload);
      case T.HEADERS: {
        if (sid === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'HEADERS on stream 0');
        let p = 0;
        let end = payload.length;
        if (flags & PADDED) {
          end -= payload[p++]!;
        }
        if (flags & PRIORITY_FLAG) p += 5;
        if (end < p) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
        const part = payload.subarray(p, end);
        if (flags & END_HEADERS) return this.onHeaderBlock(sid, part, (flags & END_STREAM) !== 0);
        this.continuing = { sid, parts: [Buffer.from(part)], size: part.length, end: (flags & END_STREAM) !== 0 };
        return;
      }
      case T.CONTINUATION: {
        const c = this.continuing;
        if (!c || c.sid !== sid) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'CONTINUATION without a header block to continue');
        c.parts.push(Buffer.from(payload));
        c.size += payload.length;
        if (c.size > MAX_HEADER_BLOCK) throw new ConnectionError(H2Code.ENHANCE_YOUR_CALM, `header block over ${MAX_HEADER_BLOCK} bytes`);
        if (flags & END_HEADERS) {
          this.continuing = undefined;
          this.onHeaderBlock(sid, Buffer.concat(c.parts), c.end);
        }
        return;
      }
      case T.RST_STREAM: {
        const s = this.streams.get(sid);
        if (s && payload.length >= 4) {
          const code = payload.readUInt32BE(0);
          this.finish(s, { kind: 'reset', code, refused: code === H2Code.REFUSED_STREAM });
        }
        return;
      }
      case T.SETTINGS:
        return this.onSettings(flags, payload);
      case T.PING:
        if (payload.length !== 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'PING payload is not 8 bytes');
        if (flags & ACK) {
          const id = payload.readUInt32BE(4);
          const at = this.pings.findIndex((x) => x.id === id);
          if (at >= 0) this.pings.splice(at, 1)[0]!.cb(undefined);
        } else this.queue(frameWith(T.PING, ACK, 0, payload));
        return;
      case T.GOAWAY:
        return this.onGoaway(payload);
      case T.WINDOW_UPDATE: {
        if (payload.length !== 4) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'WINDOW_UPDATE payload is not 4 bytes');
        const inc = payload.readUInt32BE(0) & 0x7fffffff;
        if (sid === 0) {
          this.connSendWindow += inc;
          if (this.connSendWindow > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, 'connection window over 2^31-1');
          for (const s of [...this.blocked]) this.sendPending(s);
        } else {
          const s = this.streams.get(sid);
          if (s) {
            s.sendWindow += inc;
            this.sendPending(s);
          }
        }
        return;
      }
      case T.PUSH_PROMISE:
        throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'PUSH_PROMISE although push was disabled');
      default:
        // PRIORITY and unknown types are ignored.
        return;
    }
  }

  private onData(flags: number, sid: number, payload: Buffer): void {
    // Flow control counts the whole frame, padding included, whatever became of the stream.
    this.connUnacked += payload.length;
    if (this.connUnacked >= this.opts.sessionWindow / 2) {
      this.queue(frameWith(T.WINDOW_UPDATE, 0, 0, u32(this.connUnacked)));
      this.connUnacked = 0;
    }
    const s = this.streams.get(sid);
    if (!s || s.remoteEnded) return;
    let data = payload;
    if (flags & PADDED) {
      const pad = payload[0]!;
      if (pad >= payload.length) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'DATA padding longer than the frame');
      data = payload.subarray(1, payload.length - pad);
    }
    const end = (flags & END_STREAM) !== 0;
    s.unacked += payload.length;
    if (!end && s.unacked >= this.opts.streamWindow / 2) {
      this.queue(frameWith(T.WINDOW_UPDATE, 0, sid, u32(s.unacked)));
      s.unacked = 0;
    }
    if (data.length) s.events.onData(data);
    if (end && !s.closed) this.remoteEnd(s);
  }

  private onHeaderBlock(sid: number, block: Buffer, end: boolean): void {
    // Decoded even for a stream that is gone: the dynamic table is the connection's.
    const fields = this.decoder.decode(block);
    const s = this.streams.get(sid);
    if (!s || s.remoteEnded) return;
    s.events.onHeaders(fields, end);
    if (end && !s.closed) this.remoteEnd(s);
  }

  /** The server ended its side: the stream is done (our side is reset if still open, as a gRPC client does). */
  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (!s.localEnded) {
      s.localEnded = true;
      this.queue(frameWith(T.RST_STREAM, 0, s.id, u32(H2Code.NO_ERROR)));
    }
    this.finish(s, { kind: 'ended' });
  }

  private onSettings(flags: number, payload: Buffer): void {
    if (flags & ACK) return;
    if (payload.length % 6) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'SETTINGS payload not a multiple of 6');
    for (let p = 0; p < payload.length; p += 6) {
      const id = payload.readUInt16BE(p);
      const v = payload.readUInt32BE(p + 2);
      if (id === SETTINGS_MAX_CONCURRENT_STREAMS) this.peerMaxStreams = v;
      else if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1');
        const delta = v - this.peerInitialWindow;
        this.peerInitialWindow = v;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (id === SETTINGS_MAX_FRAME_SIZE) {
        if (v < 16_384 || v > 16_777_215) throw new ConnectionError(H2Code.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${v} out of range`);
        this.peerMaxFrame = v;
      }
      // HEADER_TABLE_SIZE: our encoder never indexes. MAX_HEADER_LIST_SIZE: our headers are small.
    }
    this.queue(frameHeader(0, T.SETTINGS, ACK, 0));
    if (this.state === 'connecting') {
      this.state = 'ready';
      this.opts.onReady();
    }
    for (const s of [...this.blocked]) this.sendPending(s);
    this.startWaiting();
  }

  /** Opens waiting streams while the server's concurrency limit allows. */
  private startWaiting(): void {
    while (this.waiting.length && this.streams.size < this.peerMaxStreams && this.state !== 'destroyed') this.start(this.waiting.shift()!);
  }

  private onGoaway(payload: Buffer): void {
    if (payload.length < 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'GOAWAY payload under 8 bytes');
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    const wasTaking = this.state === 'ready' || this.state === 'connecting';
    if (this.state !== 'closing') this.state = 'goaway';
    const err = new Error(`the server sent GOAWAY (HTTP/2 error ${code})`);
    for (const s of [...this.streams.values()]) if (s.id > last) this.finish(s, { kind: 'lost', error: err, refused: true });
    for (const s of this.waiting.splice(0)) this.finish(s, { kind: 'lost', error: err, refused: true });
    if (wasTaking) this.opts.onGoaway();
    if (this.active === 0) this.destroy(undefined);
  }
}
