/**
 * Small encoders the rt structs of node-netlink leave to the caller: MAC addresses,
 * u16/u32 attribute payloads, and the nested IFLA_LINKINFO (the library types it as an
 * opaque Buffer, so veth peers and vxlan parameters are assembled here).
 */
import { ifla, rt } from 'netlink';
import { validateMac } from '../util/validate.js';
import { streamToBuffer } from './netlink.js';

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

export function familyToAf(family: 4 | 6): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function macToBytes(mac: string, field = 'mac'): Buffer {
  return Buffer.from(validateMac(mac, field).split(':').map((h) => parseInt(h, 16)));
}

export function macFromBytes(buf: Uint8Array | undefined): string | undefined {
  if (!buf || buf.length !== 6) return undefined;
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

export function u16be(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** Reads a host-order u32 attribute the library left as a Buffer (e.g. IFLA_LINK). */
export function readU32(buf: Buffer | undefined): number | undefined {
  return buf && buf.length >= 4 ? buf.readUInt32LE(0) : undefined;
}

/** IFLA_LINKINFO { IFLA_INFO_KIND kind, IFLA_INFO_DATA data }. */
export function linkInfo(kind: string, data?: Buffer): Buffer {
  return streamToBuffer(ifla.formatInfo(data ? { kind, data } : { kind }));
}

/** IFLA_INFO_DATA of a veth: VETH_INFO_PEER = struct ifinfomsg + the peer's IFLA_* attrs. */
export function vethInfoData(peerLink: rt.Link, peerAttrs: ifla.LinkAttrs): Buffer {
  const peer = Buffer.concat([rt.formatLink(peerLink), streamToBuffer(ifla.formatLinkAttrs(peerAttrs))]);
  return streamToBuffer(ifla.formatVethInfo({ peer }));
}

export function vxlanInfoData(v: ifla.Vxlan): Buffer {
  return streamToBuffer(ifla.formatVxlan(v));
}
