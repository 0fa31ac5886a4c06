/**
 * IPVS through the kernel's generic netlink family "IPVS" (include/uapi/linux/ip_vs.h), on a
 * NETLINK_GENERIC socket opened inside a network namespace (IPVS tables are per namespace).
 * The messages are encoded here, the way libipvs (ipvsadm) and moby/ipvs shape them:
 *
 *   nlmsghdr(type = IPVS family id) + genlmsghdr{cmd, version 1}
 *     IPVS_CMD_ATTR_SERVICE (nested): AF u16, PROTOCOL u16, ADDR 16 bytes, PORT be16,
 *                                     SCHED_NAME "rr\0", FLAGS {flags, mask}, TIMEOUT u32, NETMASK u32
 *     IPVS_CMD_ATTR_DEST    (nested): ADDR 16 bytes, PORT be16, FWD_METHOD u32, WEIGHT u32,
 *                                     U_THRESH u32, L_THRESH u32, ADDR_FAMILY u16
 *
 * The family id is resolved once per handle with CTRL_CMD_GETFAMILY. Transport, errno-typed
 * errors, timeouts and the dump retry are the shared NetlinkHandle's. Each method names its
 * ipvsadm equivalent; ipvsadm itself is never run (tests use it to read the state).
 */
import { Protocol, createNetlink } from 'netlink';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { familyOf, ipFromBytes, ipToBytes } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { AF_INET, AF_INET6 } from './attrs.js';
import { nativeCall } from './native.js';
import { NetlinkHandle, isErrno } from './netlink.js';
import type { RawMessage } from './netlink.js';
import type { NetNS } from './netns.js';

// ---- uapi numbers (include/uapi/linux/genetlink.h, include/uapi/linux/ip_vs.h)

export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const IPVS_CMD = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  FLUSH: 17,
} as const;

export const IPVS_CMD_ATTR_SERVICE = 1;
export const IPVS_CMD_ATTR_DEST = 2;

export const IPVS_SVC_ATTR = {
  AF: 1,
  PROTOCOL: 2,
  ADDR: 3,
  PORT: 4,
  FWMARK: 5,
  SCHED_NAME: 6,
  FLAGS: 7,
  TIMEOUT: 8,
  NETMASK: 9,
  STATS: 10,
  PE_NAME: 11,
} as const;

export const IPVS_DEST_ATTR = {
  ADDR: 1,
  PORT: 2,
  FWD_METHOD: 3,
  WEIGHT: 4,
  U_THRESH: 5,
  L_THRESH: 6,
  ACTIVE_CONNS: 7,
  INACT_CONNS: 8,
  PERSIST_CONNS: 9,
  ADDR_FAMILY: 11,
} as const;

/** IP_VS_SVC_F_*: persistence (session affinity), kernel-internal "hashed", one-packet scheduling. */
export const IP_VS_SVC_F_PERSISTENT = 0x1;
export const IP_VS_SVC_F_HASHED = 0x2;
export const IP_VS_SVC_F_ONEPACKET = 0x4;

/** IP_VS_CONN_F_* forwarding methods (IPVS_DEST_ATTR_FWD_METHOD). */
export const IPVS_FWD = { masq: 0, local: 1, tunnel: 2, route: 3, bypass: 4 } as const;
export type IpvsForward = keyof typeof IPVS_FWD;
const FWD_NAMES = Object.fromEntries(Object.entries(IPVS_FWD).map(([k, v]) => [v, k])) as Record<number, IpvsForward>;

const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export type IpvsProtocol = 'TCP' | 'UDP' | 'SCTP';
const PROTO_NUMBERS: Record<IpvsProtocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
const PROTO_NAMES: Record<number, IpvsProtocol> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

// ---- the model

/** Which virtual service: what ipvsadm's `-t/-u/--sctp-service ADDR:PORT` names. */
export interface IpvsServiceId {
  family: Family;
  protocol: IpvsProtocol;
  address: string;
  port: number;
}

export interface IpvsServiceSpec extends IpvsServiceId {
  /** Scheduler name: "rr", "sh", "wrr"... (ipvsadm -s). */
  scheduler: string;
  /** Persistence (ipvsadm -p SECONDS): connections from one client go to one real server. */
  persistentTimeout?: number;
  /** Persistence granularity (ipvsadm -M): default the whole address (/32, /128). */
  persistentNetmask?: number;
}

/** A virtual service as the kernel reports it. */
export interface IpvsService extends IpvsServiceId {
  scheduler: string;
  /** IP_VS_SVC_F_* as reported (includes the kernel's HASHED bit). */
  flags: number;
  /** Persistence timeout in seconds (0 = not persistent). */
  timeout: number;
  /** Netmask: an IPv4 mask as a number (0xffffffff) or an IPv6 prefix length (128). */
  netmask: number;
  persistent: boolean;
}

export interface IpvsDestSpec {
  address: string;
  port: number;
  /** Default 1. 0 = quiescent (no new connections). */
  weight?: number;
  /** Default masq (NAT): the only method podnet uses. */
  forward?: IpvsForward;
  upperThreshold?: number;
  lowerThreshold?: number;
}

/** A real server as the kernel reports it. */
export interface IpvsDest {
  family: Family;
  address: string;
  port: number;
  weight: number;
  forward: IpvsForward;
  upperThreshold: number;
  lowerThreshold: number;
  activeConns: number;
  inactiveConns: number;
  persistentConns: number;
}

/** `TCP 10.96.0.1:80`, `UDP [fd00::1]:53`: how ipvsadm prints a service (logs, errors). */
export function serviceLabel(s: IpvsServiceId): string {
  return `${s.protocol} ${s.family === 6 ? `[${s.address}]` : s.address}:${s.port}`;
}

export function destLabel(d: { address: string; port: number }): string {
  return `${familyOf(d.address) === 6 ? `[${d.address}]` : d.address}:${d.port}`;
}

// ---- netlink attribute encoding (pure; exported for golden tests)

function attr(type: number, payload: Uint8Array): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).copy(out, 4);
  return out;
}
const u16Attr = (type: number, v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return attr(type, b);
};
const be16Attr = (type: number, v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return attr(type, b);
};
const u32Attr = (type: number, v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return attr(type, b);
};
const strzAttr = (type: number, s: string) => attr(type, Buffer.from(`${s}\0`, 'latin1'));
const nested = (type: number, parts: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(parts));

/** union nf_inet_addr: 16 bytes, an IPv4 address in the first 4 (as libipvs sends it). */
function inetAddr(ip: string): Buffer {
  const out = Buffer.alloc(16);
  ipToBytes(ip).copy(out);
  return out;
}

/** genlmsghdr: cmd, version, reserved. */
export function genlHeader(cmd: number, version = IPVS_GENL_VERSION): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(cmd, 0);
  b.writeUInt8(version, 1);
  return b;
}

function checkService(s: IpvsServiceId): void {
  const bad = (why: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS service ${s.protocol} ${s.address}:${s.port}: ${why}`, { field: 'service' });
  if (!(s.protocol in PROTO_NUMBERS)) throw bad(`protocol must be TCP, UDP or SCTP`);
  if (familyOf(s.address) !== s.family) throw bad(`address is not IPv${s.family}`);
  if (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535) throw bad('port must be 0..65535');
}

/** The nested IPVS_CMD_ATTR_SERVICE naming a service (delete, dest operations, dest dumps). */
export function encodeServiceId(s: IpvsServiceId): Buffer {
  checkService(s);
  return nested(IPVS_CMD_ATTR_SERVICE, serviceIdAttrs(s));
}

function serviceIdAttrs(s: IpvsServiceId): Buffer[] {
  return [
    u16Attr(IPVS_SVC_ATTR.AF, s.family === 4 ? AF_INET : AF_INET6),
    u16Attr(IPVS_SVC_ATTR.PROTOCOL, PROTO_NUMBERS[s.protocol]),
    attr(IPVS_SVC_ATTR.ADDR, inetAddr(s.address)),
    be16Attr(IPVS_SVC_ATTR.PORT, s.port),
  ];
}

/** The full IPVS_CMD_ATTR_SERVICE of a new or changed service (the kernel wants every field). */
export function encodeService(s: IpvsServiceSpec): Buffer {
  checkService(s);
  if (!/^[a-z]{1,15}$/.test(s.scheduler)) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS scheduler ${JSON.stringify(s.scheduler)} is not a scheduler name`, { field: 'scheduler' });
  }
  const persistent = s.persistentTimeout !== undefined;
  if (persistent && (!Number.isInteger(s.persistentTimeout) || s.persistentTimeout! < 1 || s.persistentTimeout! > 0x7fffffff)) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS persistence timeout ${s.persistentTimeout} must be a positive number of seconds`, { field: 'persistentTimeout' });
  }
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(persistent ? IP_VS_SVC_F_PERSISTENT : 0, 0);
  flags.writeUInt32LE(0xffffffff, 4); // mask: set the flags exactly
  return nested(IPVS_CMD_ATTR_SERVICE, [
    ...serviceIdAttrs(s),
    strzAttr(IPVS_SVC_ATTR.SCHED_NAME, s.scheduler),
    attr(IPVS_SVC_ATTR.FLAGS, flags),
    u32Attr(IPVS_SVC_ATTR.TIMEOUT, persistent ? s.persistentTimeout! : 0),
    u32Attr(IPVS_SVC_ATTR.NETMASK, s.persistentNetmask ?? (s.family === 4 ? 0xffffffff : 128)),
  ]);
}

/** The IPVS_CMD_ATTR_DEST of a real server; `full` for add / set (every field), else address + port. */
export function encodeDest(family: Family, d: IpvsDestSpec, full = true): Buffer {
  if (familyOf(d.address) !== family) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS real server ${d.address} is not IPv${family} like its service`, { field: 'dest' });
  }
  if (!Number.isInteger(d.port) || d.port < 0 || d.port > 65535) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS real server port ${d.port} must be 0..65535`, { field: 'dest' });
  }
  const parts = [attr(IPVS_DEST_ATTR.ADDR, inetAddr(d.address)), be16Attr(IPVS_DEST_ATTR.PORT, d.port)];
  if (full) {
    const weight = d.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 0 || weight > 0x7fffffff) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `IPVS real server weight ${weight} must be a non-negative integer`, { field: 'weight' });
    }
    parts.push(
      u32Attr(IPVS_DEST_ATTR.FWD_METHOD, IPVS_FWD[d.forward ?? 'masq']),
      u32Attr(IPVS_DEST_ATTR.WEIGHT, weight),
      u32Attr(IPVS_DEST_ATTR.U_THRESH, d.upperThreshold ?? 0),
      u32Attr(IPVS_DEST_ATTR.L_THRESH, d.lowerThreshold ?? 0),
    );
  }
  parts.push(u16Attr(IPVS_DEST_ATTR.ADDR_FAMILY, family === 4 ? AF_INET : AF_INET6));
  return nested(IPVS_CMD_ATTR_DEST, parts);
}

/** CTRL_CMD_GETFAMILY body for a family name. */
export function encodeGetFamily(name: string): Buffer {
  return Buffer.concat([genlHeader(CTRL_CMD_GETFAMILY, 1), strzAttr(CTRL_ATTR_FAMILY_NAME, name)]);
}

// ---- decoding

/** Attributes of one level: type (flags masked off) -> payload. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

function malformed(what: string): PodnetError {
  return new PodnetError(ErrorCodes.NETLINK, `malformed IPVS netlink message: ${what}`, {});
}

const rdU16 = (a: Map<number, Buffer>, t: number) => {
  const b = a.get(t);
  return b && b.length >= 2 ? b.readUInt16LE(0) : undefined;
};
const rdBe16 = (a: Map<number, Buffer>, t: number) => {
  const b = a.get(t);
  return b && b.length >= 2 ? b.readUInt16BE(0) : undefined;
};
const rdU32 = (a: Map<number, Buffer>, t: number) => {
  const b = a.get(t);
  return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
};
const afToFamily = (af: number | undefined): Family | undefined => (af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined);
const addrOf = (raw: Buffer | undefined, family: Family) => {
  if (!raw || raw.length < (family === 4 ? 4 : 16)) throw malformed('address missing');
  return ipFromBytes(raw.subarray(0, family === 4 ? 4 : 16));
};

/**
 * A service from a GET_SERVICE reply (genlmsghdr + IPVS_CMD_ATTR_SERVICE). Firewall-mark
 * services (no address) and protocols podnet does not know are returned as undefined.
 */
export function parseService(data: Buffer): IpvsService | undefined {
  const top = parseAttrs(data.subarray(4));
  const body = top.get(IPVS_CMD_ATTR_SERVICE);
  if (!body) throw malformed('no IPVS_CMD_ATTR_SERVICE');
  const a = parseAttrs(body);
  const family = afToFamily(rdU16(a, IPVS_SVC_ATTR.AF));
  const protocol = PROTO_NAMES[rdU16(a, IPVS_SVC_ATTR.PROTOCOL) ?? -1];
  if (!family || !protocol || !a.has(IPVS_SVC_ATTR.ADDR) || rdU32(a, IPVS_SVC_ATTR.FWMARK)) return undefined;
  const flagsBuf = a.get(IPVS_SVC_ATTR.FLAGS);
  const flags = flagsBuf && flagsBuf.length >= 4 ? flagsBuf.readUInt32LE(0) : 0;
  const sched = a.get(IPVS_SVC_ATTR.SCHED_NAME);
  return {
    family,
    protocol,
    address: addrOf(a.get(IPVS_SVC_ATTR.ADDR), family),
    port: rdBe16(a, IPVS_SVC_ATTR.PORT) ?? 0,
    scheduler: sched ? sched.toString('latin1').replace(/\0.*$/s, '') : '',
    flags,
    timeout: rdU32(a, IPVS_SVC_ATTR.TIMEOUT) ?? 0,
    netmask: rdU32(a, IPVS_SVC_ATTR.NETMASK) ?? 0,
    persistent: (flags & IP_VS_SVC_F_PERSISTENT) !== 0,
  };
}

/** A real server from a GET_DEST reply (genlmsghdr + IPVS_CMD_ATTR_DEST). */
export function parseDest(data: Buffer, serviceFamily: Family): IpvsDest {
  const top = parseAttrs(data.subarray(4));
  const body = top.get(IPVS_CMD_ATTR_DEST);
  if (!body) throw malformed('no IPVS_CMD_ATTR_DEST');
  const a = parseAttrs(body);
  const family = afToFamily(rdU16(a, IPVS_DEST_ATTR.ADDR_FAMILY)) ?? serviceFamily;
  const fwd = (rdU32(a, IPVS_DEST_ATTR.FWD_METHOD) ?? 0) & 0x7;
  return {
    family,
    address: addrOf(a.get(IPVS_DEST_ATTR.ADDR), family),
    port: rdBe16(a, IPVS_DEST_ATTR.PORT) ?? 0,
    weight: rdU32(a, IPVS_DEST_ATTR.WEIGHT) ?? 0,
    forward: FWD_NAMES[fwd] ?? 'masq',
    upperThreshold: rdU32(a, IPVS_DEST_ATTR.U_THRESH) ?? 0,
    lowerThreshold: rdU32(a, IPVS_DEST_ATTR.L_THRESH) ?? 0,
    activeConns: rdU32(a, IPVS_DEST_ATTR.ACTIVE_CONNS) ?? 0,
    inactiveConns: rdU32(a, IPVS_DEST_ATTR.INACT_CONNS) ?? 0,
    persistentConns: rdU32(a, IPVS_DEST_ATTR.PERSIST_CONNS) ?? 0,
  };
}

/** The family id in a CTRL_CMD_NEWFAMILY reply. */
export function parseFamilyId(data: Buffer): number | undefined {
  return rdU16(parseAttrs(data.subarray(4)), CTRL_ATTR_FAMILY_ID);
}

// ---- the executor

/**
 * An IPVS handle bound to one network namespace. Requests pipeline like the rtnetlink
 * handle's (written in call order, applied by the kernel in that order).
 */
export class Ipvs {
  private constructor(
    readonly handle: NetlinkHandle,
    /** The generic netlink id of "IPVS" in this kernel. */
    readonly familyId: number,
  ) {}

  /**
   * Opens a generic netlink socket in `netns` (default: the current namespace) and resolves
   * the IPVS family. PODNET_UNSUPPORTED when the kernel has no IPVS (`modprobe ip_vs`).
   */
  static async open(netns?: NetNS): Promise<Ipvs> {
    const make = () => createNetlink(Protocol.GENERIC);
    const sock = netns ? nativeCall('opening a generic netlink socket', { netns: netns.label }, () => netns.run(make)) : make();
    const handle = NetlinkHandle.fromSocket(sock, netns);
    try {
      return new Ipvs(handle, await resolveFamily(handle, IPVS_GENL_NAME));
    } catch (e) {
      handle.close();
      throw e;
    }
  }

  /** Over an existing generic netlink handle (tests use a fake socket). */
  static fromHandle(handle: NetlinkHandle, familyId: number): Ipvs {
    return new Ipvs(handle, familyId);
  }

  get label(): string {
    return this.handle.label;
  }

  /** Every virtual service (address-based ones; fwmark services are skipped). Equivalent to `ipvsadm -Ln` (services only). */
  async listServices(): Promise<IpvsService[]> {
    const msgs = await this.handle.dump(this.familyId, [genlHeader(IPVS_CMD.GET_SERVICE)], { what: 'listing IPVS services' });
    return msgs.map((m) => parseService(m.data)).filter((s): s is IpvsService => s !== undefined);
  }

  /** One service, or undefined. Equivalent to `ipvsadm -Ln -t ADDR:PORT` (the service line). */
  async getService(id: IpvsServiceId): Promise<IpvsService | undefined> {
    try {
      const msgs = await this.send(IPVS_CMD.GET_SERVICE, [encodeServiceId(id)], 0, `reading IPVS service ${serviceLabel(id)}`, id);
      return msgs[0] ? parseService(msgs[0].data) : undefined;
    } catch (e) {
      if (isErrno(e, 'ESRCH', 'ENOENT')) return undefined;
      throw e;
    }
  }

  /** Creates a service. Equivalent to `ipvsadm -A -t ADDR:PORT -s SCHED [-p TIMEOUT]`. EEXIST when present. */
  async addService(s: IpvsServiceSpec): Promise<void> {
    await this.send(IPVS_CMD.NEW_SERVICE, [encodeService(s)], 0, `adding IPVS service ${serviceLabel(s)}`, s);
  }

  /** Changes scheduler / persistence of a service. Equivalent to `ipvsadm -E -t ADDR:PORT -s SCHED [-p TIMEOUT]`. */
  async updateService(s: IpvsServiceSpec): Promise<void> {
    await this.send(IPVS_CMD.SET_SERVICE, [encodeService(s)], 0, `updating IPVS service ${serviceLabel(s)}`, s);
  }

  /** Deletes a service and its real servers; false when it was not there. Equivalent to `ipvsadm -D -t ADDR:PORT`. */
  async deleteService(id: IpvsServiceId): Promise<boolean> {
    try {
      await this.send(IPVS_CMD.DEL_SERVICE, [encodeServiceId(id)], 0, `deleting IPVS service ${serviceLabel(id)}`, id);
      return true;
    } catch (e) {
      if (isErrno(e, 'ESRCH', 'ENOENT')) return false;
      throw e;
    }
  }

  /** The real servers of a service. Equivalent to `ipvsadm -Ln -t ADDR:PORT`. */
  async listDests(id: IpvsServiceId): Promise<IpvsDest[]> {
    let msgs: RawMessage[];
    try {
      msgs = await this.handle.dump(this.familyId, [genlHeader(IPVS_CMD.GET_DEST), encodeServiceId(id)], {
        what: `listing the real servers of IPVS service ${serviceLabel(id)}`,
        context: { service: serviceLabel(id) },
      });
    } catch (e) {
      if (isErrno(e, 'ESRCH', 'ENOENT')) return [];
      throw e;
    }
    return msgs.map((m) => parseDest(m.data, id.family));
  }

  /** Adds a real server. Equivalent to `ipvsadm -a -t ADDR:PORT -r RIP:RPORT -m -w WEIGHT`. */
  async addDest(svc: IpvsServiceId, d: IpvsDestSpec): Promise<void> {
    await this.send(IPVS_CMD.NEW_DEST, [encodeServiceId(svc), encodeDest(svc.family, d)], 0, `adding real server ${destLabel(d)} to IPVS service ${serviceLabel(svc)}`, svc, d);
  }

  /** Changes a real server's weight / method. Equivalent to `ipvsadm -e -t ADDR:PORT -r RIP:RPORT -m -w WEIGHT`. */
  async updateDest(svc: IpvsServiceId, d: IpvsDestSpec): Promise<void> {
    await this.send(IPVS_CMD.SET_DEST, [encodeServiceId(svc), encodeDest(svc.family, d)], 0, `updating real server ${destLabel(d)} of IPVS service ${serviceLabel(svc)}`, svc, d);
  }

  /** Removes a real server; false when it (or its service) was not there. Equivalent to `ipvsadm -d -t ADDR:PORT -r RIP:RPORT`. */
  async deleteDest(svc: IpvsServiceId, d: { address: string; port: number }): Promise<boolean> {
    try {
      await this.send(IPVS_CMD.DEL_DEST, [encodeServiceId(svc), encodeDest(svc.family, d, false)], 0, `deleting real server ${destLabel(d)} from IPVS service ${serviceLabel(svc)}`, svc, d);
      return true;
    } catch (e) {
      if (isErrno(e, 'ESRCH', 'ENOENT')) return false;
      throw e;
    }
  }

  /** Deletes every service in the namespace (not used by the proxy: it owns only its own). Equivalent to `ipvsadm -C`. */
  async flush(): Promise<void> {
    await this.send(IPVS_CMD.FLUSH, [], 0, 'flushing the IPVS table');
  }

  close(): void {
    this.handle.close();
  }

  private send(cmd: number, attrs: Buffer[], flags: number, what: string, svc?: IpvsServiceId, dest?: { address: string; port: number }): Promise<RawMessage[]> {
    const body = [genlHeader(cmd), ...attrs];
    const context = { ...(svc ? { service: serviceLabel(svc) } : {}), ...(dest ? { dest: destLabel(dest) } : {}) };
    return this.handle.request(this.familyId, body, flags, { what, context });
  }
}

/** Resolves a generic netlink family name to its id (CTRL_CMD_GETFAMILY). */
export async function resolveFamily(handle: NetlinkHandle, name: string): Promise<number> {
  let msgs: RawMessage[];
  try {
    msgs = await handle.request(GENL_ID_CTRL, [encodeGetFamily(name)], 0, { what: `resolving the generic netlink family ${name}` });
  } catch (e) {
    if (isErrno(e, 'ENOENT')) {
      throw new PodnetError(
        ErrorCodes.UNSUPPORTED,
        name === IPVS_GENL_NAME ? 'the kernel has no IPVS (generic netlink family "IPVS" not found; modprobe ip_vs)' : `the kernel has no generic netlink family ${name}`,
        { netns: handle.label, family: name },
        { cause: e, errno: 'ENOENT' },
      );
    }
    throw e;
  }
  const id = msgs[0] ? parseFamilyId(msgs[0].data) : undefined;
  if (id === undefined) throw malformed(`no family id for ${name} in the controller's reply`);
  return id;
}

