/**
 * nfnetlink / nf_tables wire constants and the byte writer the encoder uses.
 *
 * Numbers are from the kernel's uapi headers (include/uapi/linux/netfilter/nf_tables.h,
 * nfnetlink.h, nf_nat.h) and libnftnl's udata.h; nft's own type ids are from nftables'
 * include/datatype.h. Integer attributes of nf_tables are big endian (nla_get_be32);
 * netlink headers and attribute headers are host order; user data (NFTA_*_USERDATA)
 * is nft's private TLV format with host-order u32 values.
 */
import { endianness } from 'node:os';

export const NETLINK_NETFILTER = 12;
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNETLINK_V0 = 0;

/** nlmsghdr types. */
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NFNL_MSG_BATCH_BEGIN = 16;
export const NFNL_MSG_BATCH_END = 17;

/** nlmsghdr flags. */
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;

/** NFPROTO_* (the nfgenmsg family). */
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;

/** enum nf_tables_msg_types. */
export const NFT_MSG = {
  NEWTABLE: 0,
  GETTABLE: 1,
  DELTABLE: 2,
  NEWCHAIN: 3,
  GETCHAIN: 4,
  DELCHAIN: 5,
  NEWRULE: 6,
  GETRULE: 7,
  DELRULE: 8,
  NEWSET: 9,
  GETSET: 10,
  DELSET: 11,
  NEWSETELEM: 12,
  GETSETELEM: 13,
  DELSETELEM: 14,
  NEWGEN: 15,
  GETGEN: 16,
} as const;

/** The nlmsg_type of an nf_tables message. */
export function nftType(msg: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | msg;
}

export const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = 0x3fff;

export const NFTA_LIST_ELEM = 1;

export const NFTA_TABLE = { NAME: 1, FLAGS: 2, USE: 3, HANDLE: 4, USERDATA: 6 } as const;
export const NFTA_CHAIN = { TABLE: 1, HANDLE: 2, NAME: 3, HOOK: 4, POLICY: 5, USE: 6, TYPE: 7, COUNTERS: 8, FLAGS: 10, ID: 11, USERDATA: 12 } as const;
export const NFTA_HOOK = { HOOKNUM: 1, PRIORITY: 2 } as const;
export const NFTA_RULE = { TABLE: 1, CHAIN: 2, HANDLE: 3, EXPRESSIONS: 4, USERDATA: 7 } as const;
export const NFTA_SET = {
  TABLE: 1,
  NAME: 2,
  FLAGS: 3,
  KEY_TYPE: 4,
  KEY_LEN: 5,
  DATA_TYPE: 6,
  DATA_LEN: 7,
  POLICY: 8,
  DESC: 9,
  ID: 10,
  TIMEOUT: 11,
  GC_INTERVAL: 12,
  USERDATA: 13,
} as const;
export const NFTA_SET_DESC = { SIZE: 1, CONCAT: 2 } as const;
export const NFTA_SET_FIELD_LEN = 1;
export const NFTA_SET_ELEM_LIST = { TABLE: 1, SET: 2, ELEMENTS: 3, SET_ID: 4 } as const;
export const NFTA_SET_ELEM = { KEY: 1, DATA: 2, FLAGS: 3, TIMEOUT: 4, EXPIRATION: 5, USERDATA: 6 } as const;
export const NFTA_DATA = { VALUE: 1, VERDICT: 2 } as const;
export const NFTA_VERDICT = { CODE: 1, CHAIN: 2 } as const;
export const NFTA_EXPR = { NAME: 1, DATA: 2 } as const;
export const NFTA_GEN_ID = 1;

/** enum nft_set_flags. */
export const NFT_SET = {
  ANONYMOUS: 0x1,
  CONSTANT: 0x2,
  INTERVAL: 0x4,
  MAP: 0x8,
  TIMEOUT: 0x10,
  EVAL: 0x20,
  OBJECT: 0x40,
  CONCAT: 0x80,
} as const;
export const NFT_SET_ELEM_INTERVAL_END = 0x1;
/** NFT_DATA_VERDICT: the data type of verdict maps. */
export const NFT_DATA_VERDICT = 0xffffff00;

/** Registers: NFT_REG_VERDICT, the 16-byte NFT_REG_1..4, and the 4-byte NFT_REG32_00..15. */
export const NFT_REG_VERDICT = 0;
export const NFT_REG_1 = 1;
export const NFT_REG_2 = 2;
export const NFT_REG32_00 = 8;
/** Bytes of register space (NFT_REG32_COUNT * 4). */
export const NFT_REG_SPACE = 64;

/** Verdict codes: netfilter's NF_DROP / NF_ACCEPT and nf_tables' own (negative). */
export const NF_DROP = 0;
export const NF_ACCEPT = 1;
export const NFT_CONTINUE = -1;
export const NFT_JUMP = -3;
export const NFT_GOTO = -4;
export const NFT_RETURN = -5;

export const NFTA_IMMEDIATE = { DREG: 1, DATA: 2 } as const;
export const NFTA_CMP = { SREG: 1, OP: 2, DATA: 3 } as const;
export const NFT_CMP_EQ = 0;
export const NFT_CMP_NEQ = 1;
export const NFTA_BITWISE = { SREG: 1, DREG: 2, LEN: 3, MASK: 4, XOR: 5, OP: 6 } as const;
export const NFT_BITWISE_MASK_XOR = 0;
export const NFTA_LOOKUP = { SET: 1, SREG: 2, DREG: 3, SET_ID: 4, FLAGS: 5 } as const;
export const NFT_LOOKUP_F_INV = 0x1;
export const NFTA_DYNSET = { SET_NAME: 1, SET_ID: 2, OP: 3, SREG_KEY: 4, SREG_DATA: 5, TIMEOUT: 6 } as const;
export const NFT_DYNSET_OP_ADD = 0;
export const NFT_DYNSET_OP_UPDATE = 1;
export const NFTA_PAYLOAD = { DREG: 1, BASE: 2, OFFSET: 3, LEN: 4 } as const;
export const NFT_PAYLOAD_NETWORK_HEADER = 1;
export const NFT_PAYLOAD_TRANSPORT_HEADER = 2;
export const NFTA_META = { DREG: 1, KEY: 2, SREG: 3 } as const;
export const NFT_META_MARK = 3;
export const NFT_META_L4PROTO = 16;
export const NFTA_CT = { DREG: 1, KEY: 2 } as const;
export const NFT_CT_STATE = 0;
export const NFTA_FIB = { DREG: 1, RESULT: 2, FLAGS: 3 } as const;
export const NFT_FIB_RESULT_ADDRTYPE = 3;
export const NFTA_FIB_F_SADDR = 0x1;
export const NFTA_FIB_F_DADDR = 0x2;
export const NFTA_NG = { DREG: 1, MODULUS: 2, TYPE: 3, OFFSET: 4 } as const;
export const NFTA_BYTEORDER = { SREG: 1, DREG: 2, OP: 3, LEN: 4, SIZE: 5 } as const;
export const NFT_BYTEORDER_HTON = 1;
export const NFT_NG_RANDOM = 1;
export const NFTA_NAT = { TYPE: 1, FAMILY: 2, REG_ADDR_MIN: 3, REG_ADDR_MAX: 4, REG_PROTO_MIN: 5, REG_PROTO_MAX: 6, FLAGS: 7 } as const;
export const NFT_NAT_DNAT = 1;
export const NFTA_MASQ_FLAGS = 1;
/** nf_nat.h range flags. */
export const NF_NAT_RANGE_PROTO_SPECIFIED = 0x2;
export const NF_NAT_RANGE_PROTO_RANDOM_FULLY = 0x10;
export const NFTA_REJECT = { TYPE: 1, ICMP_CODE: 2 } as const;
export const NFT_REJECT_ICMP_UNREACH = 0;
export const NFT_REJECT_TCP_RST = 1;
/** ICMP_PORT_UNREACH (icmp code 3) and ICMPV6_PORT_UNREACH (icmpv6 code 4). */
export const ICMP_PORT_UNREACH = 3;
export const ICMPV6_PORT_UNREACH = 4;

/** Hook numbers (NF_INET_*). */
export const NF_INET_HOOKS = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;

/** libnftnl user data types (NFTNL_UDATA_*), as nft writes them. */
export const UDATA_RULE_COMMENT = 0;
export const UDATA_CHAIN_COMMENT = 0;
export const UDATA_SET_KEYBYTEORDER = 0;
export const UDATA_SET_DATABYTEORDER = 1;
export const UDATA_SET_KEY_TYPEOF = 3;
export const UDATA_SET_DATA_TYPEOF = 4;
export const UDATA_SET_DATA_INTERVAL = 6;
/** Inside KEY_TYPEOF: NFTNL_UDATA_SET_TYPEOF_EXPR (nft's expression type) and _DATA. */
export const UDATA_SET_TYPEOF_EXPR = 0;
export const UDATA_SET_TYPEOF_DATA = 1;
/** nft's enum expr_types: EXPR_CONCAT. */
export const EXPR_CONCAT = 13;
/** nft's enum expr_types: EXPR_PAYLOAD and EXPR_NUMGEN (in typeof user data). */
export const EXPR_PAYLOAD = 7;
export const EXPR_NUMGEN = 23;
/** nft's proto_desc ids and header field indexes (payload typeof user data: DESC, TYPE). */
export const PROTO_DESC = { udp: 6, tcp: 8, sctp: 10, ip: 12, ip6: 13 } as const;
export const IPHDR_DADDR = 12;
export const IP6HDR_DADDR = 9;
export const L4HDR_DPORT = 2;
export const UDATA_SET_COMMENT = 7;
export const UDATA_SET_ELEM_COMMENT = 0;
/** nft's enum byteorder. */
export const BYTEORDER_INVALID = 0;
export const BYTEORDER_HOST = 1;
export const BYTEORDER_BIG = 2;

/** nft's datatype ids (TYPE_*) and how many bits TYPE_BITS a concatenation shifts by. */
export const NFT_TYPE_IDS = { verdict: 1, integer: 4, ipv4_addr: 7, ipv6_addr: 8, inet_proto: 12, inet_service: 13, mark: 19 } as const;
export const TYPE_BITS = 6;

export const HOST_LE = endianness() === 'LE';

export const NLMSG_HDRLEN = 16;
export const NFGENMSG_LEN = 4;
/** Largest attribute payload: nla_len is a u16. */
export const NLA_MAX_LEN = 0xffff;

/**
 * A forward-only writer of netlink messages into one Buffer (grown by doubling). Every
 * attribute is padded to 4 bytes with explicit zeros; nests get NLA_F_NESTED like
 * libmnl's mnl_attr_nest_start, so the bytes equal what nft sends.
 */
export class NlWriter {
  buf: Buffer;
  off = 0;

  /** `initial` bytes up front (not zeroed: every byte of a message is written, padding included). */
  constructor(initial = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  /** nlmsghdr (length patched by msgEnd) + nfgenmsg; returns the message's offset. */
  msgBegin(type: number, flags: number, seq: number, family: number, resId = 0): number {
    this.ensure(NLMSG_HDRLEN + NFGENMSG_LEN);
    const b = this.buf;
    const o = this.off;
    le32(b, o, 0);
    b[o + 4] = type & 0xff;
    b[o + 5] = type >>> 8;
    b[o + 6] = flags & 0xff;
    b[o + 7] = flags >>> 8;
    le32(b, o + 8, seq);
    le32(b, o + 12, 0);
    b[o + 16] = family;
    b[o + 17] = NFNETLINK_V0;
    b[o + 18] = resId >>> 8;
    b[o + 19] = resId & 0xff;
    this.off = o + 20;
    return o;
  }

  msgEnd(start: number): void {
    le32(this.buf, start, this.off - start);
  }

  /** Attribute header; leaves off at the payload. */
  private hdr(type: number, payload: number): number {
    if (this.off + payload + 8 > this.buf.length) this.ensure(payload + 8);
    const b = this.buf;
    const o = this.off;
    const len = 4 + payload;
    b[o] = len & 0xff;
    b[o + 1] = len >>> 8;
    b[o + 2] = type & 0xff;
    b[o + 3] = type >>> 8;
    this.off = o + 4;
    return o;
  }

  private pad(): void {
    const b = this.buf;
    while (this.off & 3) b[this.off++] = 0;
  }

  u32(type: number, v: number): void {
    this.hdr(type, 4);
    const b = this.buf;
    const o = this.off;
    b[o] = v >>> 24;
    b[o + 1] = (v >>> 16) & 0xff;
    b[o + 2] = (v >>> 8) & 0xff;
    b[o + 3] = v & 0xff;
    this.off = o + 4;
  }

  u8(type: number, v: number): void {
    this.hdr(type, 1);
    this.buf[this.off++] = v;
    this.pad();
  }

  /** Big-endian u64 (timeouts in ms). */
  u64(type: number, v: number): void {
    this.hdr(type, 8);
    this.buf.writeUInt32BE(Math.floor(v / 0x100000000) >>> 0, this.off);
    this.buf.writeUInt32BE(v >>> 0, this.off + 4);
    this.off += 8;
  }

  /** Raw bytes (a NUL-terminated name, a value, user data). */
  bytes(type: number, data: Uint8Array, len = data.length): void {
    this.hdr(type, len);
    const b = this.buf;
    let o = this.off;
    if (len <= 64) for (let i = 0; i < len; i++) b[o++] = data[i]!;
    else {
      b.set(data.length === len ? data : data.subarray(0, len), o);
      o += len;
    }
    this.off = o;
    this.pad();
  }

  /**
   * nft user data holding one string: [udType][len]["text\0"] as attribute `type`. Returns
   * the text's length in bytes (the caller checks its limit).
   */
  udataString(type: number, udType: number, text: string): number {
    const max = 3 * text.length + 3;
    if (this.off + max + 8 > this.buf.length) this.ensure(max + 8);
    const start = this.off;
    const b = this.buf;
    let o = start + 6;
    let ascii = true;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
      b[o++] = c;
    }
    if (!ascii) o = start + 6 + b.write(text, start + 6, 'utf8');
    const n = o - (start + 6);
    b[o++] = 0;
    b[start + 4] = udType;
    b[start + 5] = (n + 1) & 0xff;
    const len = o - start;
    b[start] = len & 0xff;
    b[start + 1] = len >>> 8;
    b[start + 2] = type & 0xff;
    b[start + 3] = type >>> 8;
    this.off = o;
    this.pad();
    return n;
  }

  /** Bytes as they are (a cached, already framed expression). */
  raw(data: Uint8Array): void {
    const n = data.length;
    if (this.off + n > this.buf.length) this.ensure(n);
    const b = this.buf;
    let o = this.off;
    if (n <= 96) for (let i = 0; i < n; i++) b[o++] = data[i]!;
    else {
      b.set(data, o);
      o += n;
    }
    this.off = o;
  }

  nestBegin(type: number): number {
    return this.hdr(type | NLA_F_NESTED, 0);
  }

  /** Closes a nest; false when it grew beyond what nla_len can say (the caller errs). */
  nestEnd(start: number): boolean {
    const len = this.off - start;
    if (len > NLA_MAX_LEN) return false;
    this.buf[start] = len & 0xff;
    this.buf[start + 1] = len >>> 8;
    return true;
  }
}

function le32(b: Buffer, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = v >>> 24;
}

/** One netlink message of a received buffer. */
export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  /** Payload (after nlmsghdr). */
  data: Buffer;
}

/** Splits a received buffer into messages. */
export function parseMessages(buf: Buffer): NlMsg[] {
  const out: NlMsg[] = [];
  let o = 0;
  while (o + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || o + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(o + 4), flags: buf.readUInt16LE(o + 6), seq: buf.readUInt32LE(o + 8), data: buf.subarray(o + NLMSG_HDRLEN, o + len) });
    o += (len + 3) & ~3;
  }
  return out;
}

/** Attributes of a payload region, by type (the last one wins; nf_tables never repeats). */
export function parseAttrs(buf: Buffer, start = 0, end = buf.length): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let o = start;
  while (o + 4 <= end) {
    const len = buf.readUInt16LE(o);
    if (len < 4 || o + len > end) break;
    out.set(buf.readUInt16LE(o + 2) & NLA_TYPE_MASK, buf.subarray(o + 4, o + len));
    o += (len + 3) & ~3;
  }
  return out;
}

/** Attributes in order (for lists: NFTA_LIST_ELEM repeated). */
export function parseAttrList(buf: Buffer): { type: number; data: Buffer }[] {
  const out: { type: number; data: Buffer }[] = [];
  let o = 0;
  while (o + 4 <= buf.length) {
    const len = buf.readUInt16LE(o);
    if (len < 4 || o + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(o + 2) & NLA_TYPE_MASK, data: buf.subarray(o + 4, o + len) });
    o += (len + 3) & ~3;
  }
  return out;
}

export function attrStr(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

export function attrU32(b: Buffer | undefined): number | undefined {
  return b && b.length >= 4 ? b.readUInt32BE(0) : undefined;
}

export function attrI32(b: Buffer | undefined): number | undefined {
  return b && b.length >= 4 ? b.readInt32BE(0) : undefined;
}

export function attrU64(b: Buffer | undefined): number | undefined {
  return b && b.length >= 8 ? b.readUInt32BE(0) * 0x100000000 + b.readUInt32BE(4) : undefined;
}

/** nft user data TLVs: [type u8][len u8][value]. */
export function parseUdata(b: Buffer | undefined): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  if (!b) return out;
  let o = 0;
  while (o + 2 <= b.length) {
    const type = b[o]!;
    const len = b[o + 1]!;
    if (o + 2 + len > b.length) break;
    out.set(type, b.subarray(o + 2, o + 2 + len));
    o += 2 + len;
  }
  return out;
}

export function udataStr(b: Buffer | undefined): string | undefined {
  return b ? attrStr(b) : undefined;
}
