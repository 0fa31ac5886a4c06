/**
 * The rtnetlink handle: one netlink socket bound, at creation, to one network namespace.
 * After creation it works from anywhere (the socket stays in its namespace), so no code
 * ever leaves the event-loop thread in a foreign namespace.
 *
 * Messages are built and parsed with node-netlink's rt structs; this layer adds what
 * the library leaves to callers: errno-typed errors, a request timeout, ordering, and
 * the single wrapper that retries dumps the kernel marks as interrupted (NLM_F_DUMP_INTR).
 *
 * Ordering: requests are written to the socket in call order, and the kernel handles
 * each one inside sendmsg(), so several requests may be in flight at once (pipelining:
 * `await Promise.all([up, addr, route])` costs one round trip, and they still apply in
 * that order). A dump is exclusive: it waits for requests in flight, and later requests
 * wait for it, because the kernel runs one dump per socket and node-netlink groups
 * multipart replies per socket.
 */
import { getSystemErrorMap } from 'node:util';
import { AttrStream, Flags, FlagsGet, Protocol, createNetlink, parseError } from 'netlink';
import type { NetlinkSocket, StreamData } from 'netlink';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import type { ErrorContext } from '../util/errors.js';
import { nativeCall } from './native.js';
import type { NetNS } from './netns.js';

/** A netlink message as received: header fields plus the undecoded payload. */
export interface RawMessage {
  type: number;
  flags: number;
  seq: number;
  data: Buffer;
}

/** NLM_F_* for new objects. */
export const NLM_F = {
  REQUEST: Flags.REQUEST,
  MULTI: Flags.MULTI,
  ACK: Flags.ACK,
  ECHO: Flags.ECHO,
  DUMP_INTR: Flags.DUMP_INTR,
  DUMP: FlagsGet.DUMP,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
} as const;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

export const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * Requests in flight at once per socket. Each answer (an ACK is an skb of ~1 KiB truesize)
 * waits in the socket's receive buffer until read; hundreds of pipelined requests overflow
 * it, and node-netlink then aborts the process (measured: an IPVS full sync of 50
 * services in a guest with small buffers). Past this many, requests queue in call order.
 */
export const MAX_IN_FLIGHT = 64;
const DUMP_RETRIES = 8;

/**
 * Flattens node-netlink StreamData (what its format* functions return) into one Buffer,
 * padded to 4 bytes like iproute2's nests (the library pads between attributes only, so a
 * nested payload would otherwise end unaligned).
 */
export function streamToBuffer(data: StreamData): Buffer {
  const s = new AttrStream();
  s.emit(data);
  const out = Buffer.concat(s.bufs);
  const pad = (4 - (out.length % 4)) % 4;
  return pad ? Buffer.concat([out, Buffer.alloc(pad)]) : out;
}

/** Errno number -> [name, description], from libuv. */
const errnoMap = getSystemErrorMap();

export function errnoName(errno: number): string {
  return errnoMap.get(-Math.abs(errno))?.[0] ?? `errno ${Math.abs(errno)}`;
}

function errnoText(errno: number): string {
  return errnoMap.get(-Math.abs(errno))?.[1] ?? `errno ${Math.abs(errno)}`;
}

/** What a request is for, used in error messages: "adding route 10.244.2.0/24". */
export interface RequestInfo {
  what: string;
  context?: ErrorContext;
}

/** The part of node-netlink's NetlinkSocket the handle uses (a fake one in unit tests). */
export interface RequestSocket {
  request: NetlinkSocket['request'];
  close(): void;
  on(event: 'error', listener: (e: Error) => void): unknown;
  address(): { port: number };
}

export class NetlinkHandle {
  /** The namespace the socket lives in; undefined = the namespace the process started in. */
  readonly netns: NetNS | undefined;
  private readonly sock: RequestSocket;
  /** Requests in flight (settled or not) since the last dump. */
  private inFlight = new Set<Promise<unknown>>();
  /** The last dump (requests issued after it wait for it). */
  private dumpTail: Promise<unknown> | undefined;
  private closedFlag = false;
  /** Free in-flight slots, and the requests waiting for one (FIFO: call order is kept). */
  private slots = MAX_IN_FLIGHT;
  private readonly waiting: (() => void)[] = [];
  /** Our netlink port id, read once (node-netlink would call getsockname on every send). */
  private readonly port: number;
  timeoutMs = DEFAULT_TIMEOUT_MS;

  private constructor(sock: RequestSocket, netns: NetNS | undefined) {
    this.sock = sock;
    this.netns = netns;
    this.port = sock.address().port;
    // Nothing to do with unsolicited messages: we never join multicast groups here.
    sock.on('error', () => undefined);
  }

  /** Opens an rtnetlink socket inside `netns` (or in the current namespace). */
  static open(netns?: NetNS): NetlinkHandle {
    const make = () => createNetlink(Protocol.ROUTE);
    const sock = netns
      ? nativeCall('opening a netlink socket', { netns: netns.label }, () => netns.run(make))
      : make();
    return new NetlinkHandle(sock, netns);
  }

  /** A handle over an already-open socket (tests use a fake one). */
  static fromSocket(sock: RequestSocket, netns?: NetNS): NetlinkHandle {
    return new NetlinkHandle(sock, netns);
  }

  get label(): string {
    return this.netns?.label ?? 'host';
  }

  /**
   * Sends one request with NLM_F_REQUEST|NLM_F_ACK and resolves with the reply messages
   * (empty for a plain ACK). A kernel error becomes a PODNET_NETLINK error with `errno`.
   */
  request(type: number, body: Uint8Array[], flags: number, info: RequestInfo): Promise<RawMessage[]> {
    const dump = this.dumpTail;
    // No dump pending: send now, synchronously, so call order is wire order.
    const send = () => this.limited(() => this.requestNow(type, body, flags, info));
    const p = dump ? dump.then(send) : send();
    this.track(p);
    return p;
  }

  /** Runs `fn` in a free slot (at once, synchronously, when one is free and nobody waits). */
  private limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.slots > 0 && this.waiting.length === 0) {
      this.slots--;
      return this.released(fn());
    }
    return new Promise<void>((r) => this.waiting.push(r)).then(() => this.released(fn()));
  }

  /** Hands the slot of `p` to the next waiting request (or frees it) once `p` settles. */
  private released<T>(p: Promise<T>): Promise<T> {
    const done = () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.slots++;
    };
    p.then(done, done);
    return p;
  }

  /** A dump request (NLM_F_DUMP), retried while the kernel flags it as interrupted. */
  dump(type: number, body: Uint8Array[], info: RequestInfo): Promise<RawMessage[]> {
    const before = [...this.inFlight, ...(this.dumpTail ? [this.dumpTail] : [])];
    this.inFlight = new Set();
    const run = async () => {
      await Promise.allSettled(before);
      for (let attempt = 1; ; attempt++) {
        const msgs = await this.requestNow(type, body, NLM_F.DUMP, info);
        if (!msgs.some((m) => m.flags & NLM_F.DUMP_INTR)) return msgs;
        if (attempt >= DUMP_RETRIES) {
          throw new PodnetError(ErrorCodes.DUMP_INTERRUPTED, `${info.what}: the dump was interrupted ${attempt} times by concurrent changes`, { netns: this.label, ...info.context });
        }
      }
    };
    const p = run();
    const tail = p.catch(() => undefined);
    this.dumpTail = tail;
    void tail.then(() => {
      if (this.dumpTail === tail) this.dumpTail = undefined;
    });
    return p;
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.sock.close();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  private track(p: Promise<unknown>): void {
    const settled = p.catch(() => undefined);
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
  }

  private async requestNow(type: number, body: Uint8Array[], flags: number, info: RequestInfo): Promise<RawMessage[]> {
    if (this.closedFlag) {
      throw new PodnetError(ErrorCodes.NETLINK, `${info.what}: the netlink handle is closed`, { netns: this.label, ...info.context });
    }
    let reply: { type: number; flags: number; seq: number; data: Buffer }[];
    try {
      // The socket's own timeout (a plain timer) is only the backstop that frees its entry;
      // ours gives a reply that arrived while the event loop was blocked a chance first.
      [reply] = await settleWithin(this.sock.request(type, body, { flags, timeout: this.timeoutMs * 4, checkError: false, localPort: this.port }), this.timeoutMs);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (/timeout/i.test(msg)) {
        throw new PodnetError(ErrorCodes.NETLINK_TIMEOUT, `${info.what}: no answer from the kernel in ${this.timeoutMs} ms`, { netns: this.label, ...info.context }, { cause: e });
      }
      throw new PodnetError(ErrorCodes.NETLINK, `${info.what}: ${msg}`, { netns: this.label, ...info.context }, { cause: e });
    }
    const out: RawMessage[] = [];
    for (const m of reply) {
      if (m.type === NLMSG_ERROR) {
        const { errno } = parseError(m.data, m.flags);
        if (errno !== 0) throw kernelError(errno, info, this.label);
        continue;
      }
      if (m.type === NLMSG_DONE) {
        // A dump that failed half-way reports the error in DONE's payload.
        if (m.data.length >= 4) {
          const errno = m.data.readInt32LE(0);
          if (errno < 0) throw kernelError(errno, info, this.label);
        }
        continue;
      }
      out.push({ type: m.type, flags: m.flags, seq: m.seq, data: m.data });
    }
    return out;
  }
}

function kernelError(errno: number, info: RequestInfo, netns: string): PodnetError {
  const name = errnoName(errno);
  if (name === 'EPERM' || name === 'EACCES') {
    return new PodnetError(ErrorCodes.PERMISSION, `${info.what}: operation not permitted (podnet must run as root)`, { netns, ...info.context }, { errno: name });
  }
  return new PodnetError(ErrorCodes.NETLINK, `${info.what}: ${errnoText(errno)}`, { netns, ...info.context }, { errno: name });
}

/** True for a PODNET_NETLINK error whose errno is one of `names`. */
export function isErrno(e: unknown, ...names: string[]): e is PodnetError {
  return e instanceof PodnetError && e.errno !== undefined && names.includes(e.errno);
}

/**
 * `p`, or a 'Timeout has been reached' error when it has not settled `ms` after the call.
 * After a long synchronous stretch (a big plan, a GC pause — minutes on a slow guest) the
 * timer fires before the poll phase reads a reply that arrived meanwhile: the timeout is
 * declared one loop turn later (setImmediate runs after the poll phase), so that reply wins.
 */
export function settleWithin<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (done) return;
        done = true;
        reject(new Error('Timeout has been reached'));
      });
    }, ms);
    p.then(
      (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
