/**
 * The UDP transport's packet loop: flannel's "udp" backend, in native code on its own thread.
 *
 *   pod ─► bridge ─► route 10.244.2.0/24 dev podnet.udp ─► TUN fd ─► [loop thread] ─► UDP
 *   datagram (payload = the IP packet) to 198.18.0.2:8285 ─► [peer's loop] ─► its TUN ─► pod
 *
 * A `UdpTunnel` owns one TUN device's fd and one UDP socket bound to the node address, both
 * opened inside the node's network namespace, and a pthread (not the event loop, not the
 * libuv pool) that moves packets between them. The subnet → peer table is replaced
 * atomically while it runs. Datagrams from unknown peers, packets whose source is not in the
 * sending peer's subnets, malformed or oversized packets are dropped and counted; nothing on
 * the wire can stop the loop. The routes into the TUN are the caller's (the agent's) job.
 *
 *   const tun = await UdpTunnel.open({ netns, tunName: 'podnet.udp', localAddress: '198.18.0.1' });
 *   tun.setPeers([{ subnet: '10.244.2.0/24', peer: '198.18.0.2' }]);
 *   tun.start();
 *   ...
 *   tun.stop();
 *
 * Lifecycle is explicit: `open` creates and opens but starts nothing; `start` starts the
 * thread; `stop` joins it and closes the fds (idempotent); a stopped tunnel cannot be
 * restarted — open a new one (the persistent TUN device and its routes stay). A running
 * tunnel is never stopped by the garbage collector.
 *
 * The design of the loop (offloads, batching, the table encoding) is described at the top
 * of native/src/udptun.cc.
 */
import { readFileSync } from 'node:fs';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { Cidr, familyOf, ipFromBytes, ipToBytes, parseIP } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { validateIfName, validateInt } from '../util/validate.js';
import { Netlink } from './index.js';
import { native, nativeCall } from './native.js';
import type { UdpTunnelCounter, UdpTunnelHandle, UdpTunnelNativeInfo } from './native.js';
import { NetNS } from './netns.js';

/** flannel's udp backend port. */
export const UDP_TUNNEL_DEFAULT_PORT = 8285;
/** What the transport adds to each packet: outer IP header + UDP header. */
export const UDP_TUNNEL_OVERHEAD = { 4: 28, 6: 48 } as const;
/** Most entries one table may hold (the native side accepts up to 2^20). */
export const UDP_TUNNEL_MAX_PEERS = 65536;
const MIN_MTU = 68;
const MAX_BATCH = 256;

export interface UdpTunnelOptions {
  /** Namespace of the node (TUN and socket are opened there); default: the current one. */
  netns?: NetNS;
  /** The TUN device, created if missing (a persistent IFF_TUN device). */
  tunName: string;
  /** The node's underlay address: the socket is bound to it; peers are of its family. */
  localAddress: string;
  /** UDP port to bind. Default 8285. */
  port?: number;
  /**
   * MTU of the TUN = the largest inner packet. Default: the MTU of the link that holds
   * localAddress minus 28 (IPv4 underlay) or 48 (IPv6).
   */
  mtu?: number;
  /**
   * TUN offloads (IFF_VNET_HDR + TUNSETOFFLOAD): the kernel hands over 64 KiB TCP
   * super-packets that the loop segments, and received segments are merged back. Default true.
   */
  offload?: boolean;
  /** Socket offloads: UDP_SEGMENT (GSO) sends and UDP_GRO receives. Default true. */
  udpOffload?: boolean;
  /** TUN reads per send batch and buffers per recvmmsg (1–256). Default 32. */
  batch?: number;
}

export interface UdpPeer {
  /** A pod subnet of the peer node, e.g. "10.244.2.0/24" or "fd00:10:244:2::/64". */
  subnet: string;
  /** The peer node's underlay address (same family as localAddress). */
  peer: string;
  /** The peer's UDP port. Default 8285. */
  port?: number;
}

/** A validated table entry. */
export interface UdpPeerEntry {
  subnet: Cidr;
  peer: string;
  port: number;
}

export interface ResolvedUdpTunnelOptions {
  netns: NetNS | undefined;
  tunName: string;
  localAddress: string;
  family: Family;
  port: number;
  mtu: number | undefined;
  offload: boolean;
  udpOffload: boolean;
  batch: number;
}

export interface UdpTunnelStats {
  tx: {
    /** IP packets sent to peers (one UDP datagram each), after segmentation of TSO packets. */
    packets: number;
    bytes: number;
    /** Packets read from the TUN (a TSO super-packet counts once). */
    tunReads: number;
    /** Of those, TCP super-packets that were segmented. */
    tunGso: number;
    sendCalls: number;
    /** Sends that carried several datagrams (UDP_SEGMENT). */
    gsoSends: number;
    gsoFallbacks: number;
  };
  rx: {
    /** IP packets written to the TUN. */
    packets: number;
    bytes: number;
    /** Datagrams received, dropped ones included. */
    datagrams: number;
    recvCalls: number;
    groBatches: number;
    tunWrites: number;
    /** Packets merged into a preceding segment of their TCP flow before the TUN write. */
    coalesced: number;
  };
  /** Dropped packets by reason. */
  drops: {
    /** Destination in no subnet of the table. */
    txNoRoute: number;
    txMalformed: number;
    txOversized: number;
    txUnsupported: number;
    txSendError: number;
    /** The socket's send buffer stayed full for 10 ms. */
    txBackpressure: number;
    /** Datagram shorter than an IP header. */
    rxShort: number;
    /** Not IPv4/IPv6, bad header, length or header checksum. */
    rxMalformed: number;
    /** IP length larger than the datagram (or the datagram larger than a receive buffer). */
    rxTruncated: number;
    rxOversized: number;
    /** Datagram from an address:port that is not a peer in the table. */
    rxUnknownPeer: number;
    /** Inner source address not in a subnet of the peer that sent it. */
    rxSpoofed: number;
    rxBadChecksum: number;
    rxTunWriteError: number;
  };
  errors: { tunRead: number; sockRecv: number; /** errno of the last failed syscall, 0 if none. */ lastErrno: number };
  loop: { iterations: number; wakeups: number; tableSwaps: number };
}

export type UdpTunnelState = 'open' | 'running' | 'stopped';

export class UdpTunnel {
  readonly tunName: string;
  readonly localAddress: string;
  readonly port: number;
  readonly mtu: number;
  readonly netns: NetNS | undefined;
  #handle: UdpTunnelHandle;
  #state: UdpTunnelState = 'open';
  #peers: UdpPeerEntry[] = [];

  private constructor(handle: UdpTunnelHandle, o: ResolvedUdpTunnelOptions, mtu: number) {
    this.#handle = handle;
    this.tunName = o.tunName;
    this.localAddress = o.localAddress;
    this.port = o.port;
    this.mtu = mtu;
    this.netns = o.netns;
  }

  /**
   * Creates (or converges) the TUN device, opens it and binds the UDP socket, inside
   * `netns`. Starts nothing. Equivalent to `ip tuntap add dev NAME mode tun` +
   * `ip link set NAME mtu MTU up` + opening /dev/net/tun (TUNSETIFF) and a UDP socket bound
   * to localAddress:port, as flanneld's udp backend does. Errors: PODNET_INVALID_* for bad
   * options (nothing changed), PODNET_LINK_EXISTS when NAME is another kind of link,
   * PODNET_PERMISSION, PODNET_NATIVE with `errno` (EADDRINUSE: the port is taken).
   */
  static async open(opts: UdpTunnelOptions): Promise<UdpTunnel> {
    const o = validateUdpTunnelOptions(opts);
    const context = { netns: o.netns?.label, link: o.tunName, address: o.localAddress, port: o.port };
    const nl = Netlink.open(o.netns);
    let mtu: number;
    try {
      mtu = o.mtu ?? (await underlayMtu(nl, o));
      await nl.links.ensure({ kind: 'tun', name: o.tunName, mtu, up: true });
    } finally {
      nl.close();
    }
    const open = () =>
      native().udpTunnelOpen({
        tunName: o.tunName,
        local: ipToBytes(o.localAddress),
        port: o.port,
        mtu,
        offload: o.offload,
        udpOffload: o.udpOffload,
        batch: o.batch,
      });
    const handle = nativeCall('opening the UDP tunnel', context, () => (o.netns ? o.netns.run(open) : open()));
    return new UdpTunnel(handle, o, mtu);
  }

  get state(): UdpTunnelState {
    return this.#state;
  }

  /** The peers installed last (validated). */
  get peers(): readonly UdpPeerEntry[] {
    return this.#peers;
  }

  /**
   * Starts the loop thread. Equivalent to flanneld's udp backend entering its proxy loop.
   * A no-op when running; after stop() it is an error (open a new tunnel).
   */
  start(): void {
    if (this.#state === 'running') return;
    if (this.#state === 'stopped') {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `UDP tunnel on ${this.tunName} was stopped; open a new one`, { ...this.#context(), state: 'stopped' });
    }
    nativeCall('starting the UDP tunnel thread', this.#context(), () => this.#handle.start());
    this.#state = 'running';
  }

  /**
   * Replaces the whole subnet → peer table atomically (the loop sees the old table or the
   * new one, never a mix); allowed before start and while running. Equivalent to flannel
   * rewriting its udp backend's route table from the subnet leases. Invalid input throws
   * PODNET_INVALID_CIDR / _IP / _ARGUMENT and leaves the installed table as it was.
   */
  setPeers(peers: readonly UdpPeer[]): void {
    this.#assertNotStopped('setPeers');
    const entries = normalizePeers(peers, familyOf(this.localAddress));
    const table = encodePeerTable(entries, familyOf(this.localAddress));
    nativeCall('installing the UDP tunnel peer table', this.#context(), () => this.#handle.setPeers(table));
    this.#peers = entries;
  }

  /** Counters of the loop (monotonic; like `ip -s link show NAME` for the tunnel). */
  stats(): UdpTunnelStats {
    return shapeStats(this.#handle.stats());
  }

  /** The native loop's view: thread id, effective offloads, table size. */
  info(): UdpTunnelNativeInfo {
    return this.#handle.info();
  }

  /** Kernel thread id of the loop thread (0 when not running). */
  get threadId(): number {
    return this.#handle.info().threadId;
  }

  /** CPU time the loop thread has used, in seconds, from /proc/self/task/TID/stat. */
  cpuTime(): { user: number; system: number } | undefined {
    const tid = this.threadId;
    return tid ? threadCpuTime(tid) : undefined;
  }

  /**
   * Stops the thread (joined before this returns) and closes the TUN fd and the socket.
   * Idempotent. The TUN device itself stays (persistent, with the caller's routes); remove
   * it with `links.delete(NAME)`. Equivalent to flanneld's udp backend shutting down.
   */
  stop(): void {
    if (this.#state === 'stopped') return;
    this.#handle.stop();
    this.#state = 'stopped';
  }

  /** start(), then stop() when `signal` aborts; resolves once stopped. */
  async run(signal: AbortSignal): Promise<void> {
    this.start();
    if (signal.aborted) {
      this.stop();
      return;
    }
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    this.stop();
  }

  #assertNotStopped(what: string): void {
    if (this.#state === 'stopped') {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${what}: UDP tunnel on ${this.tunName} was stopped`, { ...this.#context(), state: 'stopped' });
    }
  }

  #context() {
    return { netns: this.netns?.label, link: this.tunName, address: this.localAddress, port: this.port };
  }

  toString(): string {
    return `udp-tunnel:${this.tunName}@${this.localAddress}:${this.port}`;
  }
}

// ---------------------------------------------------------------------------------------
// Validation and encoding (pure: unit-tested without root).

/** Checks every option; returns them with defaults applied (mtu stays undefined = derive). */
export function validateUdpTunnelOptions(opts: unknown): ResolvedUdpTunnelOptions {
  if (typeof opts !== 'object' || opts === null) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'UDP tunnel options must be an object', { field: 'options' });
  }
  const o = opts as Record<string, unknown>;
  if (o.netns !== undefined && !(o.netns instanceof NetNS)) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'netns must be a NetNS handle', { field: 'netns' });
  }
  const netns = o.netns as NetNS | undefined;
  if (netns?.closed) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `netns handle ${netns.label} is closed`, { field: 'netns', netns: netns.label });
  const tunName = validateIfName(o.tunName, 'tunName');
  const localAddress = parseUnicast(o.localAddress, 'localAddress');
  const family = familyOf(localAddress);
  const port = o.port === undefined ? UDP_TUNNEL_DEFAULT_PORT : validateInt(o.port, 'port', 1, 65535);
  const mtu = o.mtu === undefined ? undefined : validateInt(o.mtu, 'mtu', MIN_MTU, 65535 - UDP_TUNNEL_OVERHEAD[family]);
  const offload = optBool(o.offload, 'offload', true);
  const udpOffload = optBool(o.udpOffload, 'udpOffload', true);
  const batch = o.batch === undefined ? 32 : validateInt(o.batch, 'batch', 1, MAX_BATCH);
  return { netns, tunName, localAddress, family, port, mtu, offload, udpOffload, batch };
}

/**
 * Validates a peer list for an underlay of `underlay` family: subnets are strict CIDRs
 * (IPv4 or IPv6, host bits zero), peers unicast addresses of the underlay family, ports
 * 1–65535 (default 8285), no subnet listed twice. Overlapping subnets are allowed: the
 * longest prefix wins.
 */
export function normalizePeers(peers: unknown, underlay: Family): UdpPeerEntry[] {
  if (!Array.isArray(peers)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'peers must be an array', { field: 'peers' });
  if (peers.length > UDP_TUNNEL_MAX_PEERS) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `peers has ${peers.length} entries; at most ${UDP_TUNNEL_MAX_PEERS}`, { field: 'peers' });
  }
  const seen = new Map<string, number>();
  return peers.map((p: unknown, i): UdpPeerEntry => {
    const field = `peers[${i}]`;
    if (typeof p !== 'object' || p === null) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} must be an object {subnet, peer, port?}`, { field });
    const e = p as Record<string, unknown>;
    const subnet = Cidr.parse(e.subnet, `${field}.subnet`);
    const peer = parseUnicast(e.peer, `${field}.peer`);
    if (familyOf(peer) !== underlay) {
      throw new PodnetError(ErrorCodes.INVALID_IP, `${field}.peer ${peer} is not an IPv${underlay} address like the tunnel's local address`, { field: `${field}.peer` });
    }
    const port = e.port === undefined ? UDP_TUNNEL_DEFAULT_PORT : validateInt(e.port, `${field}.port`, 1, 65535);
    const key = subnet.toString();
    const prev = seen.get(key);
    if (prev !== undefined) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field}.subnet ${key} is already listed as peers[${prev}].subnet`, { field: `${field}.subnet`, subnet: key });
    }
    seen.set(key, i);
    return { subnet, peer, port };
  });
}

export const PEER_TABLE_MAGIC = 'PNUT';
export const PEER_TABLE_VERSION = 1;
const HEADER = 16;
const ENTRY = 40;

/**
 * The bytes that cross into native code (layout documented in native/src/udptun.cc):
 * a 16-byte header ("PNUT", version 1, underlay family, u32le count) and one 40-byte entry
 * per subnet (family, prefix length, u16be port, 16-byte network, 16-byte peer address).
 */
export function encodePeerTable(entries: readonly UdpPeerEntry[], underlay: Family): Buffer {
  const buf = Buffer.alloc(HEADER + ENTRY * entries.length);
  buf.write(PEER_TABLE_MAGIC, 0, 'latin1');
  buf[4] = PEER_TABLE_VERSION;
  buf[5] = underlay;
  buf.writeUInt32LE(entries.length, 8);
  entries.forEach((e, i) => {
    const o = HEADER + ENTRY * i;
    buf[o] = e.subnet.family;
    buf[o + 1] = e.subnet.prefix;
    buf.writeUInt16BE(e.port, o + 2);
    ipToBytes(e.subnet.network).copy(buf, o + 4);
    ipToBytes(e.peer).copy(buf, o + 20);
  });
  return buf;
}

/** The inverse of encodePeerTable (for tests and debugging); throws on a malformed buffer. */
export function decodePeerTable(buf: Buffer): { underlay: Family; entries: UdpPeerEntry[] } {
  const bad = (why: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `peer table: ${why}`, { field: 'table' });
  if (buf.length < HEADER || buf.toString('latin1', 0, 4) !== PEER_TABLE_MAGIC) throw bad('bad magic');
  if (buf[4] !== PEER_TABLE_VERSION) throw bad(`unsupported version ${buf[4]}`);
  const underlay = buf[5];
  if (underlay !== 4 && underlay !== 6) throw bad(`bad underlay family ${underlay}`);
  const count = buf.readUInt32LE(8);
  if (buf.length !== HEADER + ENTRY * count) throw bad('length does not match the entry count');
  const entries: UdpPeerEntry[] = [];
  for (let i = 0; i < count; i++) {
    const o = HEADER + ENTRY * i;
    const fam = buf[o];
    if (fam !== 4 && fam !== 6) throw bad(`entry ${i}: bad family ${fam}`);
    const net = ipFromBytes(buf.subarray(o + 4, o + 4 + (fam === 4 ? 4 : 16)));
    const peer = ipFromBytes(buf.subarray(o + 20, o + 20 + (underlay === 4 ? 4 : 16)));
    entries.push({ subnet: Cidr.parse(`${net}/${buf[o + 1]}`), peer, port: buf.readUInt16BE(o + 2) });
  }
  return { underlay, entries };
}

/** Groups the native counters (flat names from udptun.cc) into UdpTunnelStats. */
export function shapeStats(c: Record<UdpTunnelCounter, number>): UdpTunnelStats {
  return {
    tx: {
      packets: c.txPackets,
      bytes: c.txBytes,
      tunReads: c.txTunReads,
      tunGso: c.txTunGso,
      sendCalls: c.txSendCalls,
      gsoSends: c.txGsoSends,
      gsoFallbacks: c.txGsoFallbacks,
    },
    rx: {
      packets: c.rxPackets,
      bytes: c.rxBytes,
      datagrams: c.rxDatagrams,
      recvCalls: c.rxRecvCalls,
      groBatches: c.rxGroBatches,
      tunWrites: c.rxTunWrites,
      coalesced: c.rxCoalesced,
    },
    drops: {
      txNoRoute: c.dropTxNoRoute,
      txMalformed: c.dropTxMalformed,
      txOversized: c.dropTxOversized,
      txUnsupported: c.dropTxUnsupported,
      txSendError: c.dropTxSendError,
      txBackpressure: c.dropTxBackpressure,
      rxShort: c.dropRxShort,
      rxMalformed: c.dropRxMalformed,
      rxTruncated: c.dropRxTruncated,
      rxOversized: c.dropRxOversized,
      rxUnknownPeer: c.dropRxUnknownPeer,
      rxSpoofed: c.dropRxSpoofed,
      rxBadChecksum: c.dropRxBadChecksum,
      rxTunWriteError: c.dropRxTunWriteError,
    },
    errors: { tunRead: c.tunReadErrors, sockRecv: c.sockRecvErrors, lastErrno: c.lastErrno },
    loop: { iterations: c.loopIterations, wakeups: c.loopWakeups, tableSwaps: c.tableSwaps },
  };
}

/** Sum of all drop counters. */
export function totalDrops(s: UdpTunnelStats): number {
  return Object.values(s.drops).reduce((a, b) => a + b, 0);
}

/**
 * CPU time of thread `tid` of this process in seconds (utime, stime of
 * /proc/self/task/TID/stat, in USER_HZ = 100 ticks per second).
 */
export function threadCpuTime(tid: number): { user: number; system: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the parenthesised command (which may contain spaces): state is field 3.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return { user: utime / 100, system: stime / 100 };
}

function parseUnicast(v: unknown, field: string): string {
  const ip = parseIP(v, field);
  const b = ipToBytes(ip);
  const multicast = b.length === 4 ? b[0]! >= 224 : b[0] === 0xff;
  const unspecified = b.every((x) => x === 0);
  if (multicast || unspecified || (b.length === 4 && b.every((x) => x === 255))) {
    throw new PodnetError(ErrorCodes.INVALID_IP, `${field} ${ip} must be a unicast address`, { field });
  }
  return ip;
}

function optBool(v: unknown, field: string, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} must be true or false`, { field });
  return v;
}

/** MTU of the link holding the local address, minus the transport overhead. */
async function underlayMtu(nl: Netlink, o: ResolvedUdpTunnelOptions): Promise<number> {
  const addrs = await nl.addrs.list({ family: o.family });
  const a = addrs.find((x) => x.ip === o.localAddress);
  if (!a) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `localAddress ${o.localAddress} is not an address of any link in netns ${nl.handle.label}`, {
      field: 'localAddress',
      netns: nl.handle.label,
    });
  }
  const link = await nl.links.require(a.devIndex);
  // A datagram carries at most 65535 - overhead bytes (loopback's MTU is 65536).
  return Math.min(link.mtu, 65535) - UDP_TUNNEL_OVERHEAD[o.family];
}
