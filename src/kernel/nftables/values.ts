/**
 * Values in nft notation → the bytes nf_tables compares: addresses and ports in network
 * order, marks / ct states / fib address types / numgen results in host order (they are
 * u32 kernel fields, as nft stores them), protocols as one byte. Each parser names the
 * field it was given when the text does not parse, so a planner bug reads as
 * `ops[4].rule.stmts[1].value: "10.96.0.300" is not an ipv4_addr`.
 */
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import type { ErrorContext } from '../../util/errors.js';
import type { NftType } from './ast.js';
import { BYTEORDER_BIG, BYTEORDER_HOST, BYTEORDER_INVALID, HOST_LE, NFT_TYPE_IDS, TYPE_BITS } from './nfnl.js';

export interface TypeInfo {
  /** nft's datatype id (NFTA_SET_KEY_TYPE / DATA_TYPE). */
  id: number;
  /** Bytes of a value. */
  len: number;
  /** What nft stores as NFTNL_UDATA_SET_KEYBYTEORDER for a set of this type. */
  byteorder: number;
}

export const TYPES: Readonly<Record<NftType, TypeInfo>> = {
  ipv4_addr: { id: NFT_TYPE_IDS.ipv4_addr, len: 4, byteorder: BYTEORDER_BIG },
  ipv6_addr: { id: NFT_TYPE_IDS.ipv6_addr, len: 16, byteorder: BYTEORDER_BIG },
  // nft's inet_proto is one byte and has no byte order (nft writes BYTEORDER_INVALID).
  inet_proto: { id: NFT_TYPE_IDS.inet_proto, len: 1, byteorder: BYTEORDER_INVALID },
  inet_service: { id: NFT_TYPE_IDS.inet_service, len: 2, byteorder: BYTEORDER_BIG },
  mark: { id: NFT_TYPE_IDS.mark, len: 4, byteorder: BYTEORDER_HOST },
  // Network order in the set (a numgen key is converted with byteorder hton before the lookup).
  integer: { id: NFT_TYPE_IDS.integer, len: 4, byteorder: BYTEORDER_BIG },
};

export const pad4 = (n: number): number => (n + 3) & ~3;

/** nft's id of a (possibly concatenated) key type: each part shifts the previous by TYPE_BITS. */
export function typeId(types: readonly NftType[]): number {
  let id = 0;
  for (const t of types) id = id * (1 << TYPE_BITS) + TYPES[t].id;
  return id >>> 0;
}

/** The key length nf_tables stores: the value length, or for a concatenation the sum of 4-byte padded parts. */
export function keyLen(types: readonly NftType[]): number {
  if (types.length === 1) return TYPES[types[0]!].len;
  let n = 0;
  for (const t of types) n += pad4(TYPES[t].len);
  return n;
}

/** Inverse of typeId: the parts of a concatenated type id (undefined when one part is not ours). */
export function typesFromId(id: number): NftType[] | undefined {
  const byId = new Map<number, NftType>(Object.entries(TYPES).map(([name, info]) => [info.id, name as NftType]));
  const parts: NftType[] = [];
  let v = id;
  const mask = (1 << TYPE_BITS) - 1;
  while (v > 0) {
    const t = byId.get(v & mask);
    if (!t) return undefined;
    parts.unshift(t);
    v = Math.floor(v / (1 << TYPE_BITS));
  }
  return parts.length ? parts : undefined;
}

/** A field name, or a function making it (built only when an error needs it). */
export type Field = string | (() => string);

/** An error's context, or how to build it (hot paths pass a function: nothing is built unless a value is bad). */
export type Context = ErrorContext | (() => ErrorContext);

export function badValue(fieldRef: Field, text: unknown, what: string, context: Context = {}): PodnetError {
  const field = typeof fieldRef === 'function' ? fieldRef() : fieldRef;
  const shown = typeof text === 'string' ? JSON.stringify(text) : String(text);
  return new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field}: ${shown} is not ${what}`, { field, value: typeof text === 'string' ? text : String(text), ...(typeof context === 'function' ? context() : context) });
}

/** Parses a dotted quad into out[off..off+4); false when it is not one. */
export function parseIPv4Into(s: string, out: Uint8Array, off: number): boolean {
  let part = 0;
  let digits = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return false; // no leading zeros ("010")
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return false;
    } else if (c === 46) {
      if (digits === 0 || n === 3) return false;
      out[off + n++] = part;
      part = 0;
      digits = 0;
    } else return false;
  }
  if (digits === 0 || n !== 3) return false;
  out[off + 3] = part;
  return true;
}

const hexVal = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1);

/** Parses an IPv6 address (with `::` and an optional dotted-quad tail) into out[off..off+16). */
export function parseIPv6Into(s: string, out: Uint8Array, off: number): boolean {
  if (s.length < 2 || s.length > 45) return false;
  const groups: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.startsWith('::')) {
    gap = 0;
    i = 2;
    if (i === s.length) {
      out.fill(0, off, off + 16);
      return true;
    }
  } else if (s.charCodeAt(0) === 58) return false;
  let v4tail = false;
  while (i < s.length) {
    // one group, or a dotted quad at the end
    let j = i;
    let val = 0;
    while (j < s.length && j - i < 5) {
      const h = hexVal(s.charCodeAt(j));
      if (h < 0) break;
      val = val * 16 + h;
      j++;
    }
    if (j < s.length && s.charCodeAt(j) === 46) {
      const tmp = new Uint8Array(4);
      if (!parseIPv4Into(s.slice(i), tmp, 0)) return false;
      groups.push((tmp[0]! << 8) | tmp[1]!, (tmp[2]! << 8) | tmp[3]!);
      v4tail = true;
      i = s.length;
      break;
    }
    if (j === i || j - i > 4) return false;
    groups.push(val);
    i = j;
    if (i === s.length) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < s.length && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = groups.length;
      i++;
      if (i === s.length) break;
    } else if (i === s.length) return false; // trailing single ':'
  }
  void v4tail;
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return false;
  const full = new Array<number>(8).fill(0);
  if (gap < 0) for (let k = 0; k < 8; k++) full[k] = groups[k]!;
  else {
    for (let k = 0; k < gap; k++) full[k] = groups[k]!;
    const tail = groups.length - gap;
    for (let k = 0; k < tail; k++) full[8 - tail + k] = groups[gap + k]!;
  }
  for (let k = 0; k < 8; k++) {
    out[off + 2 * k] = full[k]! >> 8;
    out[off + 2 * k + 1] = full[k]! & 0xff;
  }
  return true;
}

/** A non-negative integer in decimal or 0x hex, at most `max`; undefined when it is not one. */
export function parseUint(s: string, max: number): number | undefined {
  if (typeof s !== 'string') s = String(s);
  // Decimal without a leading zero, up to 10 digits (a loop: this runs for every element of a full sync).
  const n = s.length;
  if (n > 0 && n <= 10 && (n === 1 || s.charCodeAt(0) !== 48)) {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return hexUint(s, max);
      v = v * 10 + c;
    }
    return v <= max ? v : undefined;
  }
  return hexUint(s, max);
}

function hexUint(s: string, max: number): number | undefined {
  if (!/^0x[0-9a-f]{1,8}$/i.test(s)) return undefined;
  const v = parseInt(s.slice(2), 16);
  return v <= max ? v : undefined;
}

const PROTOS: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  'ipv6-icmp': 58,
  sctp: 132,
  udplite: 136,
  dccp: 33,
};

/** Writes a u32 in host order (marks, ct states, fib types, numgen values). */
export function writeHostU32(out: Uint8Array, off: number, v: number): void {
  const x = v >>> 0;
  if (HOST_LE) {
    out[off] = x & 0xff;
    out[off + 1] = (x >>> 8) & 0xff;
    out[off + 2] = (x >>> 16) & 0xff;
    out[off + 3] = x >>> 24;
  } else {
    out[off] = x >>> 24;
    out[off + 1] = (x >>> 16) & 0xff;
    out[off + 2] = (x >>> 8) & 0xff;
    out[off + 3] = x & 0xff;
  }
}

export function readHostU32(b: Uint8Array, off: number): number {
  return HOST_LE
    ? (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0
    : ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

/** What a value of `type` looks like, for "… is not <this>" messages. */
export const TYPE_TEXT: Readonly<Record<NftType, string>> = {
  ipv4_addr: 'an ipv4_addr',
  ipv6_addr: 'an ipv6_addr',
  inet_proto: 'an inet_proto (tcp, udp, sctp, … or 0-255)',
  inet_service: 'an inet_service (a port 0-65535)',
  mark: 'a mark (a 32-bit number, decimal or 0x hex)',
  integer: 'an integer (a 32-bit number, decimal or 0x hex)',
};

/**
 * Writes one value of `type` at out[off..off+TYPES[type].len); false when `text` is not
 * one (the caller names the field: see TYPE_TEXT). Prefixes and ranges: prefixInto,
 * parseInterval.
 */
export function writeValue(type: NftType, text: string, out: Uint8Array, off: number): boolean {
  if (typeof text !== 'string') return false;
  switch (type) {
    case 'ipv4_addr':
      return parseIPv4Into(text, out, off);
    case 'ipv6_addr':
      return parseIPv6Into(text, out, off);
    case 'inet_proto': {
      const v = PROTOS[text] ?? parseUint(text, 255);
      if (v === undefined) return false;
      out[off] = v;
      return true;
    }
    case 'inet_service': {
      let v = 0;
      if (text.length === 0 || text.length > 5 || (text.length > 1 && text.charCodeAt(0) === 48)) return false;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i) - 48;
        if (c < 0 || c > 9) return false;
        v = v * 10 + c;
      }
      if (v > 65535) return false;
      out[off] = v >> 8;
      out[off + 1] = v & 0xff;
      return true;
    }
    case 'mark': {
      const v = parseUint(text, 0xffffffff);
      if (v === undefined) return false;
      writeHostU32(out, off, v);
      return true;
    }
    case 'integer': {
      const v = parseUint(text, 0xffffffff);
      if (v === undefined) return false;
      out[off] = v >>> 24;
      out[off + 1] = (v >>> 16) & 0xff;
      out[off + 2] = (v >>> 8) & 0xff;
      out[off + 3] = v & 0xff;
      return true;
    }
    default:
      return false;
  }
}

/** Throwing form of writeValue, naming `field`. */
export function parseValueInto(type: NftType, text: string, out: Uint8Array, off: number, field: Field, context?: Context): void {
  if (!writeValue(type, text, out, off)) throw badValue(field, text, TYPE_TEXT[type] ?? `a ${type}`, context);
}

/**
 * `addr/len` (or a bare address = full length) of an address type, masked, into out[0..len);
 * returns the prefix length, or -1 when `text` is not one.
 */
export function prefixInto(type: 'ipv4_addr' | 'ipv6_addr', text: string, out: Uint8Array): number {
  if (typeof text !== 'string') return -1;
  const bits = type === 'ipv4_addr' ? 32 : 128;
  const slash = text.indexOf('/');
  let plen = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > bits) return -1;
    plen = Number(p);
  }
  if (!writeValue(type, slash < 0 ? text : text.slice(0, slash), out, 0)) return -1;
  if (plen < bits) maskInPlace(out.subarray(0, bits / 8), plen);
  return plen;
}

/** Throwing form of prefixInto. */
export function parsePrefix(type: 'ipv4_addr' | 'ipv6_addr', text: string, field: Field, context?: Context): { bytes: Uint8Array; plen: number } {
  const bytes = new Uint8Array(type === 'ipv4_addr' ? 4 : 16);
  const plen = prefixInto(type, text, bytes);
  if (plen < 0) throw badValue(field, text, `an ${type} prefix (prefix length 0-${type === 'ipv4_addr' ? 32 : 128})`, context);
  return { bytes, plen };
}

/** Zeroes the bits after the first `plen`. */
export function maskInPlace(bytes: Uint8Array, plen: number): void {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, plen - i * 8));
    bytes[i] = bytes[i]! & ((0xff00 >> keep) & 0xff);
  }
}

/** The network-order mask of a prefix length. */
export function prefixMask(len: number, plen: number): Uint8Array {
  const m = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const keep = Math.max(0, Math.min(8, plen - i * 8));
    m[i] = (0xff00 >> keep) & 0xff;
  }
  return m;
}

/**
 * An interval of a set element: a prefix ("10.244.0.0/16"), a range ("10.0.0.1-10.0.0.9",
 * "8000-8080") or one value. Returns [start, end) in network order; `end` is undefined when
 * the interval runs to the top of the type's space (no end element is needed then).
 */
export function parseInterval(type: NftType, text: string, field: Field, context?: Context): { start: Uint8Array; end: Uint8Array | undefined } {
  const len = TYPES[type].len;
  const start = new Uint8Array(len);
  const end = new Uint8Array(len);
  return { start, end: parseIntervalInto(type, text, start, end, field, context) ? end : undefined };
}

/**
 * parseInterval into the caller's arrays (at least the type's length each: the encoder reuses
 * two for every element). Returns false when the interval has no end (it runs to the top of
 * the space).
 */
export function parseIntervalInto(type: NftType, text: string, start: Uint8Array, end: Uint8Array, field: Field, context?: Context): boolean {
  const len = TYPES[type].len;
  if (TYPES[type].byteorder === BYTEORDER_HOST) throw badValue(field, text, `an interval: ${type} sets cannot be interval sets`, context);
  // end holds the last value first, then becomes last + 1.
  const dash = typeof text === 'string' ? text.indexOf('-', 1) : -1;
  if ((type === 'ipv4_addr' || type === 'ipv6_addr') && text.includes('/')) {
    const { bytes, plen } = parsePrefix(type, text, field, context);
    const mask = prefixMask(len, plen);
    for (let i = 0; i < len; i++) {
      start[i] = bytes[i]!;
      end[i] = bytes[i]! | (~mask[i]! & 0xff);
    }
  } else if (dash > 0) {
    parseValueInto(type, text.slice(0, dash), start, 0, field, context);
    parseValueInto(type, text.slice(dash + 1), end, 0, field, context);
    if (Buffer.compare(start.subarray(0, len), end.subarray(0, len)) > 0) throw badValue(field, text, `a range (its start is above its end)`, context);
  } else {
    parseValueInto(type, text, start, 0, field, context);
    for (let i = 0; i < len; i++) end[i] = start[i]!;
  }
  // end = last + 1 (network order), or none when last is all ones.
  let i = len - 1;
  for (; i >= 0; i--) {
    if (end[i] === 0xff) end[i] = 0;
    else {
      end[i] = end[i]! + 1;
      break;
    }
  }
  return i >= 0;
}

/** ct state bits (nf_conntrack_common.h: NF_CT_STATE_BIT / IP_CT_*; invalid = 1, untracked = 64). */
export const CT_STATES: Record<string, number> = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 };

export const CT_STATE_TEXT = 'a ct state list (new, established, related, invalid, untracked, comma separated)';

/** `established,related` → bits and how many; undefined when it is not a list of states. */
export function parseCtStates(text: string): { mask: number; count: number } | undefined {
  let mask = 0;
  let count = 0;
  const parts = typeof text === 'string' ? text.split(',') : [];
  for (const raw of parts) {
    const bit = CT_STATES[raw.trim()];
    if (bit === undefined) return undefined;
    if (!(mask & bit)) count++;
    mask |= bit;
  }
  return count ? { mask, count } : undefined;
}

/** Route types (RTN_*) as `fib ... type` compares them. */
export const FIB_ADDRTYPES: Record<string, number> = {
  unspec: 0,
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
};
