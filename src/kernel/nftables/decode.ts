/**
 * Decoders for what the kernel sends back (NFT_MSG_NEWCHAIN / NEWSET of a dump) and a
 * describer of rule expressions in the format of `nft --debug=netlink`
 * (`[ payload load 4b @ network header + 16 => reg 1 ]`), used by the tests to check our
 * encoding against nft's and handy when a rule does not do what it should.
 */
import type { NftBaseChain, NftHook, NftSet, NftType } from './ast.js';
import {
  NFPROTO_IPV6,
  NFTA_BITWISE,
  NFTA_BYTEORDER,
  NFTA_CHAIN,
  NFTA_CMP,
  NFTA_CT,
  NFTA_DATA,
  NFTA_DYNSET,
  NFTA_EXPR,
  NFTA_FIB,
  NFTA_HOOK,
  NFTA_IMMEDIATE,
  NFTA_LOOKUP,
  NFTA_MASQ_FLAGS,
  NFTA_META,
  NFTA_NAT,
  NFTA_NG,
  NFTA_PAYLOAD,
  NFTA_REJECT,
  NFTA_RULE,
  NFTA_SET,
  NFTA_SET_DESC,
  NFTA_VERDICT,
  NFT_DATA_VERDICT,
  NFT_SET,
  NF_INET_HOOKS,
  NFGENMSG_LEN,
  UDATA_CHAIN_COMMENT,
  UDATA_RULE_COMMENT,
  UDATA_SET_COMMENT,
  UDATA_SET_DATA_TYPEOF,
  UDATA_SET_KEY_TYPEOF,
  UDATA_SET_TYPEOF_DATA,
  UDATA_SET_TYPEOF_EXPR,
  EXPR_CONCAT,
  EXPR_NUMGEN,
  EXPR_PAYLOAD,
  PROTO_DESC,
  attrI32,
  attrStr,
  attrU32,
  attrU64,
  parseAttrList,
  parseAttrs,
  parseUdata,
  udataStr,
} from './nfnl.js';
import { TYPES, pad4, readHostU32, typesFromId } from './values.js';
import { ipFromBytes } from '../../util/ipnet.js';

const HOOK_NAMES = Object.fromEntries(Object.entries(NF_INET_HOOKS).map(([k, v]) => [v, k])) as Record<number, NftHook>;

export interface DecodedChain {
  table: string;
  name: string;
  base?: NftBaseChain;
  comment?: string;
}

/** NFT_MSG_NEWCHAIN payload (after nlmsghdr) → a chain. */
export function decodeChain(data: Buffer): DecodedChain {
  const a = parseAttrs(data, NFGENMSG_LEN);
  const out: DecodedChain = { table: attrStr(a.get(NFTA_CHAIN.TABLE)) ?? '', name: attrStr(a.get(NFTA_CHAIN.NAME)) ?? '' };
  const hook = a.get(NFTA_CHAIN.HOOK);
  if (hook) {
    const h = parseAttrs(hook);
    const type = attrStr(a.get(NFTA_CHAIN.TYPE));
    const policy = attrU32(a.get(NFTA_CHAIN.POLICY));
    out.base = {
      type: type === 'nat' ? 'nat' : 'filter',
      hook: HOOK_NAMES[attrU32(h.get(NFTA_HOOK.HOOKNUM)) ?? -1] ?? 'prerouting',
      priority: attrI32(h.get(NFTA_HOOK.PRIORITY)) ?? 0,
      ...(policy !== undefined ? { policy: policy === 1 ? 'accept' : 'drop' } : {}),
    };
  }
  const comment = udataStr(parseUdata(a.get(NFTA_CHAIN.USERDATA)).get(UDATA_CHAIN_COMMENT));
  if (comment !== undefined) out.comment = comment;
  return out;
}

export interface DecodedSet {
  table: string;
  set: NftSet;
  /** False when the key or data type is not one of ast.ts's (another tool made the set). */
  known: boolean;
}

/** NFT_MSG_NEWSET payload → a set definition. */
export function decodeSet(data: Buffer): DecodedSet {
  const a = parseAttrs(data, NFGENMSG_LEN);
  const flags = attrU32(a.get(NFTA_SET.FLAGS)) ?? 0;
  const keyId = attrU32(a.get(NFTA_SET.KEY_TYPE)) ?? 0;
  const key = typesFromId(keyId);
  let known = key !== undefined;
  const set: NftSet = { name: attrStr(a.get(NFTA_SET.NAME)) ?? '', key: key ?? [] };
  if (flags & NFT_SET.MAP) {
    const d = attrU32(a.get(NFTA_SET.DATA_TYPE)) ?? 0;
    if (d === NFT_DATA_VERDICT) set.data = 'verdict';
    else {
      const dt = typesFromId(d);
      if (dt && dt.length === 1) set.data = dt[0] as NftType;
      else if (dt && dt.length > 1) set.data = dt;
      else known = false;
    }
  }
  if (flags & NFT_SET.INTERVAL) set.interval = true;
  if (flags & NFT_SET.EVAL) set.dynamic = true;
  const desc = a.get(NFTA_SET.DESC);
  const size = desc ? attrU32(parseAttrs(desc).get(NFTA_SET_DESC.SIZE)) : undefined;
  if (size !== undefined) set.size = size;
  const timeout = attrU64(a.get(NFTA_SET.TIMEOUT));
  if (timeout !== undefined) set.timeoutSeconds = Math.round(timeout / 1000);
  const ud = parseUdata(a.get(NFTA_SET.USERDATA));
  const ngt = numgenTypeof(ud);
  if (ngt) set.numgenTypeof = ngt;
  const comment = udataStr(ud.get(UDATA_SET_COMMENT));
  if (comment !== undefined) set.comment = comment;
  return { table: attrStr(a.get(NFTA_SET.TABLE)) ?? '', set, known };
}

/** `typeof numgen random mod M : <addr> . <proto> dport` in a set's user data (as encode.ts writes it). */
function numgenTypeof(ud: Map<number, Buffer>): NftSet['numgenTypeof'] {
  const typeofOf = (b: Buffer | undefined) => {
    const t = parseUdata(b);
    const e = t.get(UDATA_SET_TYPEOF_EXPR);
    return { expr: e && e.length >= 4 ? readHostU32(e, 0) : -1, data: parseUdata(t.get(UDATA_SET_TYPEOF_DATA)) };
  };
  const key = typeofOf(ud.get(UDATA_SET_KEY_TYPEOF));
  if (key.expr !== EXPR_NUMGEN) return undefined;
  const u32 = (b: Buffer | undefined) => (b && b.length >= 4 ? readHostU32(b, 0) : undefined);
  const mod = u32(key.data.get(1));
  const data = typeofOf(ud.get(UDATA_SET_DATA_TYPEOF));
  const l4 = data.expr === EXPR_CONCAT ? typeofOf(data.data.get(1)) : undefined;
  const desc = l4 && l4.expr === EXPR_PAYLOAD ? u32(l4.data.get(0)) : undefined;
  const proto = (Object.entries(PROTO_DESC) as [string, number][]).find(([name, id]) => id === desc && (name === 'tcp' || name === 'udp' || name === 'sctp'))?.[0];
  return mod !== undefined && proto ? { mod, proto: proto as 'tcp' | 'udp' | 'sctp' } : undefined;
}

/** Data bytes as libnftnl prints them: 4-byte words read in host order, `0x%08x` each. */
function words(b: Buffer): string {
  const out: string[] = [];
  for (let o = 0; o < b.length; o += 4) {
    const w = Buffer.alloc(4);
    b.copy(w, 0, o, Math.min(o + 4, b.length));
    out.push(`0x${readHostU32(w, 0).toString(16).padStart(8, '0')}`);
  }
  return out.join(' ');
}

function dataValue(nest: Buffer | undefined): Buffer {
  return nest ? (parseAttrs(nest).get(NFTA_DATA.VALUE) ?? Buffer.alloc(0)) : Buffer.alloc(0);
}

function verdictText(nest: Buffer | undefined): string {
  const v = parseAttrs(parseAttrs(nest ?? Buffer.alloc(0)).get(NFTA_DATA.VERDICT) ?? Buffer.alloc(0));
  const code = attrI32(v.get(NFTA_VERDICT.CODE));
  const chain = attrStr(v.get(NFTA_VERDICT.CHAIN));
  switch (code) {
    case 0:
      return 'drop';
    case 1:
      return 'accept';
    case -1:
      return 'continue';
    case -3:
      return `jump -> ${chain}`;
    case -4:
      return `goto -> ${chain}`;
    case -5:
      return 'return';
    default:
      return `verdict ${code}`;
  }
}

const BASES = ['link layer header', 'network header', 'transport header', 'inner header'];
const META_KEYS: Record<number, string> = { 3: 'mark', 16: 'l4proto' };

/** One expression (NFTA_LIST_ELEM payload) in `nft --debug=netlink` format. */
export function describeExpr(elem: Buffer): string {
  const e = parseAttrs(elem);
  const name = attrStr(e.get(NFTA_EXPR.NAME)) ?? '?';
  const d = parseAttrs(e.get(NFTA_EXPR.DATA) ?? Buffer.alloc(0));
  const u = (t: number) => attrU32(d.get(t));
  switch (name) {
    case 'payload':
      return `[ payload load ${u(NFTA_PAYLOAD.LEN)}b @ ${BASES[u(NFTA_PAYLOAD.BASE) ?? 0]} + ${u(NFTA_PAYLOAD.OFFSET)} => reg ${u(NFTA_PAYLOAD.DREG)} ]`;
    case 'meta':
      if (d.has(NFTA_META.SREG)) return `[ meta set ${META_KEYS[u(NFTA_META.KEY) ?? -1]} with reg ${u(NFTA_META.SREG)} ]`;
      return `[ meta load ${META_KEYS[u(NFTA_META.KEY) ?? -1]} => reg ${u(NFTA_META.DREG)} ]`;
    case 'ct':
      return `[ ct load ${u(NFTA_CT.KEY) === 0 ? 'state' : u(NFTA_CT.KEY)} => reg ${u(NFTA_CT.DREG)} ]`;
    case 'fib':
      return `[ fib ${(u(NFTA_FIB.FLAGS) ?? 0) & 1 ? 'saddr' : 'daddr'} type => reg ${u(NFTA_FIB.DREG)} ]`;
    case 'numgen':
      return `[ numgen reg ${u(NFTA_NG.DREG)} = ${u(NFTA_NG.TYPE) === 1 ? 'random' : 'inc'} mod ${u(NFTA_NG.MODULUS)}${u(NFTA_NG.OFFSET) ? ` offset ${u(NFTA_NG.OFFSET)}` : ''} ]`;
    case 'cmp':
      return `[ cmp ${['eq', 'neq', 'lt', 'lte', 'gt', 'gte'][u(NFTA_CMP.OP) ?? 0]} reg ${u(NFTA_CMP.SREG)} ${words(dataValue(d.get(NFTA_CMP.DATA)))} ]`;
    case 'bitwise':
      return `[ bitwise reg ${u(NFTA_BITWISE.DREG)} = ( reg ${u(NFTA_BITWISE.SREG)} & ${words(dataValue(d.get(NFTA_BITWISE.MASK)))} ) ^ ${words(dataValue(d.get(NFTA_BITWISE.XOR)))} ]`;
    case 'lookup': {
      const flags = u(NFTA_LOOKUP.FLAGS);
      return `[ lookup reg ${u(NFTA_LOOKUP.SREG)} set ${attrStr(d.get(NFTA_LOOKUP.SET))}${d.has(NFTA_LOOKUP.DREG) ? ` dreg ${u(NFTA_LOOKUP.DREG)}` : ''}${flags ? ` 0x${flags.toString(16)}` : ''} ]`;
    }
    case 'dynset':
      return `[ dynset ${['add', 'update', 'delete'][u(NFTA_DYNSET.OP) ?? 0]} reg_key ${u(NFTA_DYNSET.SREG_KEY)} set ${attrStr(d.get(NFTA_DYNSET.SET_NAME))} ]`;
    case 'immediate':
      if (u(NFTA_IMMEDIATE.DREG) === 0) return `[ immediate reg 0 ${verdictText(d.get(NFTA_IMMEDIATE.DATA))} ]`;
      return `[ immediate reg ${u(NFTA_IMMEDIATE.DREG)} ${words(dataValue(d.get(NFTA_IMMEDIATE.DATA)))} ]`;
    case 'nat': {
      const flags = u(NFTA_NAT.FLAGS);
      return `[ nat ${u(NFTA_NAT.TYPE) === 1 ? 'dnat' : 'snat'} ${u(NFTA_NAT.FAMILY) === NFPROTO_IPV6 ? 'ip6' : 'ip'} addr_min reg ${u(NFTA_NAT.REG_ADDR_MIN)} proto_min reg ${u(NFTA_NAT.REG_PROTO_MIN)}${flags ? ` flags 0x${flags.toString(16)}` : ''} ]`;
    }
    case 'byteorder':
      return `[ byteorder reg ${u(NFTA_BYTEORDER.DREG)} = ${u(NFTA_BYTEORDER.OP) === 1 ? 'hton' : 'ntoh'}(reg ${u(NFTA_BYTEORDER.SREG)}, ${u(NFTA_BYTEORDER.SIZE)}, ${u(NFTA_BYTEORDER.LEN)}) ]`;
    case 'masq': {
      const flags = u(NFTA_MASQ_FLAGS);
      return flags ? `[ masq flags 0x${flags.toString(16)} ]` : '[ masq ]';
    }
    case 'reject':
      return `[ reject type ${u(NFTA_REJECT.TYPE)} code ${d.get(NFTA_REJECT.ICMP_CODE)?.[0] ?? 0} ]`;
    case 'counter':
      return '[ counter pkts 0 bytes 0 ]';
    default:
      return `[ ${name} ]`;
  }
}

/** NFT_MSG_NEWRULE payload → table, chain, expressions in nft debug format, comment. */
export function describeRule(data: Buffer): { table: string; chain: string; exprs: string[]; comment?: string } {
  const a = parseAttrs(data, NFGENMSG_LEN);
  const exprs = parseAttrList(a.get(NFTA_RULE.EXPRESSIONS) ?? Buffer.alloc(0)).map((x) => describeExpr(x.data));
  const comment = udataStr(parseUdata(a.get(NFTA_RULE.USERDATA)).get(UDATA_RULE_COMMENT));
  return { table: attrStr(a.get(NFTA_RULE.TABLE)) ?? '', chain: attrStr(a.get(NFTA_RULE.CHAIN)) ?? '', exprs, ...(comment !== undefined ? { comment } : {}) };
}

// ---------------------------------------------------------------- set elements

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp', 132: 'sctp' };

/** One value of a set key or data part in nft's notation (the inverse of values.ts writeValue). */
export function valueText(type: NftType, b: Buffer): string {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr':
      return ipFromBytes(b.subarray(0, type === 'ipv4_addr' ? 4 : 16));
    case 'inet_proto':
      return PROTO_NAMES[b[0]!] ?? String(b[0]);
    case 'inet_service':
      return String(b.readUInt16BE(0));
    case 'mark':
      return `0x${readHostU32(b, 0).toString(16).padStart(8, '0')}`;
    case 'integer':
      return String(b.readUInt32BE(0));
  }
}

/** Splits a (possibly concatenated) value into its parts' texts: each part padded to 4 bytes. */
export function valueParts(types: readonly NftType[], b: Buffer): string[] {
  const out: string[] = [];
  let off = 0;
  for (const t of types) {
    const len = TYPES[t].len;
    out.push(valueText(t, b.subarray(off, off + len)));
    off += types.length === 1 ? len : pad4(len);
  }
  return out;
}

export interface DecodedElement {
  key: string[];
  /** Raw key bytes (intervals: for ordering). */
  keyBytes: Buffer;
  /** NFT_SET_ELEM_INTERVAL_END: this element ends the interval before it (its key is the end + 1). */
  intervalEnd: boolean;
  verdict?: { kind: 'accept' | 'drop' | 'return' | 'continue' } | { kind: 'jump' | 'goto'; chain: string };
  data?: string[];
}

/**
 * NFT_MSG_NEWSETELEM payloads (a dump, or the answer to a get) → the elements, keys and data
 * in nft's notation for a set of these key / data types. Interval sets come back as start
 * elements and end markers; see joinIntervals.
 */
export function decodeElements(payloads: readonly Buffer[], key: readonly NftType[], data: NftSet['data']): DecodedElement[] {
  const out: DecodedElement[] = [];
  const dataTypes = data === undefined || data === 'verdict' ? [] : Array.isArray(data) ? data : [data];
  for (const p of payloads) {
    const a = parseAttrs(p, NFGENMSG_LEN);
    const list = a.get(3 /* NFTA_SET_ELEM_LIST_ELEMENTS */);
    if (!list) continue;
    for (const item of parseAttrList(list)) {
      const e = parseAttrs(item.data);
      const keyBytes = dataValue(e.get(1 /* NFTA_SET_ELEM_KEY */));
      const flags = attrU32(e.get(3 /* NFTA_SET_ELEM_FLAGS */)) ?? 0;
      const el: DecodedElement = { key: valueParts(key, keyBytes), keyBytes, intervalEnd: (flags & 1) !== 0 };
      const d = e.get(2 /* NFTA_SET_ELEM_DATA */);
      if (d && data === 'verdict') {
        const v = parseAttrs(parseAttrs(d).get(NFTA_DATA.VERDICT) ?? Buffer.alloc(0));
        const code = attrI32(v.get(NFTA_VERDICT.CODE));
        const chain = attrStr(v.get(NFTA_VERDICT.CHAIN)) ?? '';
        el.verdict = code === -3 ? { kind: 'jump', chain } : code === -4 ? { kind: 'goto', chain } : code === 0 ? { kind: 'drop' } : code === 1 ? { kind: 'accept' } : code === -5 ? { kind: 'return' } : { kind: 'continue' };
      } else if (d && dataTypes.length) el.data = valueParts(dataTypes, dataValue(d));
      out.push(el);
    }
  }
  return out;
}

/**
 * Interval elements (single integer / address key) as `start-end` ranges: the kernel lists a
 * start element per range and an end marker holding end + 1 (or none for a range that ends
 * at the type's maximum).
 */
export function joinIntervals(els: readonly DecodedElement[], key: NftType): { from: bigint; to: bigint; element: DecodedElement }[] {
  const num = (b: Buffer) => BigInt(`0x${b.toString('hex') || '0'}`);
  const max = (1n << BigInt(TYPES[key].len * 8)) - 1n;
  const sorted = [...els].sort((a, b) => (num(a.keyBytes) < num(b.keyBytes) ? -1 : num(a.keyBytes) > num(b.keyBytes) ? 1 : a.intervalEnd ? -1 : 1));
  const out: { from: bigint; to: bigint; element: DecodedElement }[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    if (e.intervalEnd) continue;
    // The range ends before the next element (its end marker, or the next range's start).
    const next = sorted[i + 1];
    const to = next ? num(next.keyBytes) - 1n : max;
    out.push({ from: num(e.keyBytes), to, element: e });
  }
  return out;
}
