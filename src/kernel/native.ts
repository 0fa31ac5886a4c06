/**
 * Loader for the native addon (native/src/addon.cc) and the path of the pause program.
 * Both are built by `npm run build:native` (scripts/setup.sh runs it).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';

export interface NativeAddon {
  runInNetns<T>(fd: number, fn: () => T): T;
  prepareNetnsDir(dir: string): void;
  createNetns(path: string): void;
  deleteNetns(path: string): void;
  nsType(fd: number): number;
  openTun(name: string, persist: boolean): { fd: number; name: string };
  /** posix_spawn (on a libuv thread) in a new session; stdout+stderr on a pipe whose read end is `fd`. */
  spawnDetached(path: string, argv: string[]): Promise<{ pid: number; fd: number }>;
  /** waitpid(pid, WNOHANG): true once reaped (or not our child). */
  reap(pid: number): boolean;
  /** RTM_DELLINK of `name` in the namespace at `nsPath`, on a libuv thread; false when already gone. */
  deleteLinkAsync(nsPath: string, name: string): Promise<boolean>;
  /**
   * The UDP transport's packet loop (native/src/udptun.cc): opens the TUN `tunName`
   * (IFF_TUN | IFF_NO_PI, plus IFF_VNET_HDR + TUNSETOFFLOAD with `offload`) and a UDP socket
   * bound to local:port, both in the calling thread's network namespace. Nothing runs until
   * `start()`. Validated and wrapped by src/kernel/udptunnel.ts.
   */
  udpTunnelOpen(opts: UdpTunnelNativeOptions): UdpTunnelHandle;
  /**
   * Of the candidate `fds`, the one AF_NETLINK socket of `protocol` bound to `port`:
   * SO_SNDBUFFORCE / SO_RCVBUFFORCE (sizes > 0 only; past net.core.wmem_max / rmem_max, needs
   * CAP_NET_ADMIN) and, with `capAck`, NETLINK_CAP_ACK. Returns the sizes the kernel set, or
   * null when not exactly one candidate matches.
   */
  tuneNetlinkSocket(fds: number[], protocol: number, port: number, sndbuf: number, rcvbuf: number, capAck: boolean): { fd: number; sndbuf: number; rcvbuf: number } | null;
}

export interface UdpTunnelNativeOptions {
  tunName: string;
  /** Underlay address to bind: 4 bytes (IPv4 socket) or 16 bytes (IPv6 socket). */
  local: Buffer;
  port: number;
  /** Largest inner packet (the TUN's MTU). */
  mtu: number;
  /** TUN offloads: TSO super-packets in, userspace segmentation, GRO'd super-packets out. */
  offload: boolean;
  /** Socket offloads: UDP_SEGMENT sends and UDP_GRO receives. */
  udpOffload: boolean;
  /** Packets per TUN read batch and buffers per recvmmsg. */
  batch: number;
  sndbuf?: number;
  rcvbuf?: number;
}

/** Counter names of the native loop (see PN_COUNTERS in udptun.cc). */
export type UdpTunnelCounter =
  | 'txPackets' | 'txBytes' | 'txTunReads' | 'txTunGso' | 'txSendCalls' | 'txGsoSends' | 'txGsoFallbacks'
  | 'rxPackets' | 'rxBytes' | 'rxDatagrams' | 'rxRecvCalls' | 'rxGroBatches' | 'rxTunWrites' | 'rxCoalesced'
  | 'dropTxNoRoute' | 'dropTxMalformed' | 'dropTxOversized' | 'dropTxUnsupported' | 'dropTxSendError' | 'dropTxBackpressure'
  | 'dropRxShort' | 'dropRxMalformed' | 'dropRxTruncated' | 'dropRxOversized' | 'dropRxUnknownPeer' | 'dropRxSpoofed'
  | 'dropRxBadChecksum' | 'dropRxTunWriteError'
  | 'tunReadErrors' | 'sockRecvErrors' | 'loopIterations' | 'loopWakeups' | 'tableSwaps' | 'lastErrno';

export interface UdpTunnelNativeInfo {
  running: boolean;
  stopped: boolean;
  /** Kernel thread id of the loop thread (/proc/self/task/TID), 0 when not running. */
  threadId: number;
  offload: boolean;
  udpOffload: boolean;
  udpGro: boolean;
  udpGso: boolean;
  batch: number;
  mtu: number;
  entries: number;
  peers: number;
}

export interface UdpTunnelHandle {
  /** Starts the loop thread (no-op when running; an error once stopped). */
  start(): void;
  /** Joins the thread and closes the fds; idempotent. */
  stop(): void;
  /** Installs an encoded peer table (TypeError when the encoding is invalid). */
  setPeers(table: Buffer): void;
  stats(): Record<UdpTunnelCounter, number>;
  info(): UdpTunnelNativeInfo;
}

/** CLONE_NEWNET: the value NS_GET_NSTYPE returns for a network namespace. */
export const CLONE_NEWNET = 0x40000000;

/** The repository root, found from this file (dist/src/kernel or src/kernel). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'cannot find the podnet package root (package.json next to native/)');
})();

const releaseDir = join(packageRoot, 'native', 'build', 'Release');

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (addon) return addon;
  const file = join(releaseDir, 'podnet_native.node');
  if (!existsSync(file)) {
    throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'the native addon is not built: run scripts/setup.sh (or npm run build:native)', { file });
  }
  addon = createRequire(import.meta.url)(file) as NativeAddon;
  return addon;
}

/** Absolute path of the pause program. */
export function pauseBinary(): string {
  const file = join(releaseDir, 'pause');
  if (!existsSync(file)) {
    throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'the pause program is not built: run scripts/setup.sh (or npm run build:native)', { file });
  }
  return file;
}

/** Wraps an addon call: system errors become PODNET_NATIVE errors with the errno. */
export function nativeCall<T>(what: string, context: Record<string, string | number | undefined>, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PodnetError) throw e;
    const errno = errnoOf(e);
    const msg = e instanceof Error ? e.message : String(e);
    if (errno === 'EPERM' || errno === 'EACCES') {
      throw new PodnetError(ErrorCodes.PERMISSION, `${what}: permission denied (podnet must run as root)`, context, { cause: e, errno });
    }
    throw new PodnetError(ErrorCodes.NATIVE, `${what}: ${msg}`, context, { cause: e, ...(errno ? { errno } : {}) });
  }
}
