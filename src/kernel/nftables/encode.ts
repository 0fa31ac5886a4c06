/**
 * Pure encoders: an NftTransaction (ops.ts) → nf_tables netlink batches, byte for byte
 * what nft 1.0.6 sends for the same commands (checked against `nft --debug=netlink,mnl`
 * and strace captures in encode.test.ts), so `nft list` prints our objects as if nft had
 * made them: rule and set comments as nft's user data, set byte orders for readable keys.
 *
 * Each op becomes one message (add-elements / delete-elements: one per ~64 KiB of
 * elements, the most one netlink attribute can carry). Messages are framed by
 * NFNL_MSG_BATCH_BEGIN / BATCH_END into batches of at most `maxBatchBytes` (the socket's
 * send buffer bounds one sendmsg, and one sendmsg is one kernel transaction); a batch is
 * cut only between messages. The last message of each batch carries NLM_F_ACK, so a
 * batch that went through says so; errors are always reported, per message, by seq.
 *
 * Registers follow nft: a single value is loaded into NFT_REG_1; a concatenation's parts
 * go to consecutive 4-byte registers (NFT_REG_1 = NFT_REG32_00, then NFT_REG32_00 + word
 * offset), each part padded to 4 bytes; a set's key length is the sum of padded parts.
 */
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import type { ErrorCode, ErrorContext } from '../../util/errors.js';
import type { NftChain, NftElement, NftExpr, NftFamily, NftRule, NftSet, NftStmt, NftType, NftVerdict } from './ast.js';
import type { NftOp, NftTransaction } from './ops.js';
import { formatOpHead } from './format.js';
import {
  BYTEORDER_HOST,
  BYTEORDER_INVALID,
  ICMPV6_PORT_UNREACH,
  ICMP_PORT_UNREACH,
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_IPV4,
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
  NFTA_FIB_F_DADDR,
  NFTA_FIB_F_SADDR,
  NFTA_HOOK,
  NFTA_IMMEDIATE,
  NFTA_LIST_ELEM,
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
  NFTA_SET_ELEM,
  NFTA_SET_ELEM_LIST,
  NFTA_TABLE,
  NFTA_VERDICT,
  NFT_BITWISE_MASK_XOR,
  NFT_BYTEORDER_HTON,
  NFT_CMP_EQ,
  NFT_CMP_NEQ,
  NFT_CONTINUE,
  NFT_CT_STATE,
  NFT_DATA_VERDICT,
  NFT_DYNSET_OP_UPDATE,
  NFT_FIB_RESULT_ADDRTYPE,
  NFT_GOTO,
  NFT_JUMP,
  NFT_LOOKUP_F_INV,
  NFT_META_L4PROTO,
  NFT_META_MARK,
  NFT_MSG,
  NFT_NAT_DNAT,
  NFT_NG_RANDOM,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_REG32_00,
  NFT_REG_1,
  NFT_REG_2,
  NFT_REG_SPACE,
  NFT_REG_VERDICT,
  NFT_REJECT_ICMP_UNREACH,
  NFT_REJECT_TCP_RST,
  NFT_RETURN,
  NFT_SET,
  NFT_SET_ELEM_INTERVAL_END,
  NF_ACCEPT,
  NF_DROP,
  NF_INET_HOOKS,
  NF_NAT_RANGE_PROTO_RANDOM_FULLY,
  NF_NAT_RANGE_PROTO_SPECIFIED,
  NLA_MAX_LEN,
  NLA_TYPE_MASK,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REQUEST,
  NlWriter,
  UDATA_CHAIN_COMMENT,
  UDATA_RULE_COMMENT,
  UDATA_SET_COMMENT,
  UDATA_SET_DATABYTEORDER,
  UDATA_SET_DATA_INTERVAL,
  UDATA_SET_ELEM_COMMENT,
  UDATA_SET_KEYBYTEORDER,
  UDATA_SET_KEY_TYPEOF,
  UDATA_SET_DATA_TYPEOF,
  EXPR_NUMGEN,
  EXPR_PAYLOAD,
  PROTO_DESC,
  IPHDR_DADDR,
  IP6HDR_DADDR,
  L4HDR_DPORT,
  UDATA_SET_TYPEOF_DATA,
  UDATA_SET_TYPEOF_EXPR,
  EXPR_CONCAT,
  nftType,
} from './nfnl.js';
import {
  CT_STATE_TEXT,
  FIB_ADDRTYPES,
  TYPES,
  TYPE_TEXT,
  badValue,
  keyLen,
  pad4,
  parseCtStates,
  parseIntervalInto,
  parseUint,
  prefixInto,
  prefixMask,
  typeId,
  writeHostU32,
  writeValue,
} from './values.js';

/** What the encoder needs to know of a set that exists already (the executor's cache). */
export type SetInfo = Pick<NftSet, 'name' | 'key' | 'data' | 'interval' | 'dynamic' | 'timeoutSeconds'>;

/** A set's data types as a list (empty for sets and verdict maps). */
const dataTypes = (d: NftSet['data']): NftType[] => (d === undefined || d === 'verdict' ? [] : Array.isArray(d) ? d : [d]);

export interface EncodeOptions {
  /** Sets that exist in the kernel table before the transaction (by name). */
  sets?: ReadonlyMap<string, SetInfo>;
  /** Sequence number of the first message (default 1); later ones count up (mod 2^32). */
  firstSeq?: number;
  /** Largest batch in bytes (default: unlimited, one batch). */
  maxBatchBytes?: number;
  /**
   * Receive buffer space the answers to one batch may take if every message fails (see
   * replyCost): a batch is cut before it could make the kernel overflow the socket's receive
   * buffer. Default: unlimited.
   */
  replyBudget?: number;
  /** The socket has NETLINK_CAP_ACK: an error answer does not echo its message (see replyCost). */
  capAck?: boolean;
}

/**
 * What the kernel's answer to a failed message of `len` bytes costs in the receive buffer:
 * an skb holding nlmsgerr and the echoed message (netlink_ack without NETLINK_CAP_ACK; with
 * it, only the message's header: the cost of an empty one), allocated in a power-of-two slab
 * or page run, plus the sk_buff. Measured on 6.18: ~768 bytes per error for 104-byte
 * messages, ~1280 for 504-byte ones; this errs on the high side.
 */
export function replyCost(len: number, capAck = false): number {
  const n = (capAck ? 0 : len) + 400;
  let p = 512;
  while (p < n) p *= 2;
  return p + 512;
}

export interface EncodedBatch {
  /** BATCH_BEGIN, the messages, BATCH_END: one sendmsg. */
  buf: Buffer;
  beginSeq: number;
  /** The last op message (sent with NLM_F_ACK). */
  lastSeq: number;
  endSeq: number;
  /** Index of the first and last op with a message in this batch. */
  firstOp: number;
  lastOp: number;
  /** Op messages in this batch. */
  messages: number;
}

export interface EncodedTransaction {
  batches: EncodedBatch[];
  firstSeq: number;
  /** Messages written, batch framing included: seqs firstSeq … firstSeq + count - 1. */
  count: number;
  /** Per message (index seq - firstSeq): the op it belongs to, -1 for BATCH_BEGIN / END. */
  msgOp: Int32Array;
  /** Per element message: the index of its first element in the op, and how many (else -1 / 0). */
  msgElem: Int32Array;
  msgElemCount: Int32Array;
  /** The table's sets after the transaction, if it applies (for the executor's cache). */
  sets: Map<string, SetInfo>;
  /** Total bytes of all batches. */
  bytes: number;
}

/** Where in the transaction an encoding error is (its message and context name it). */
class Site {
  constructor(
    readonly tx: NftTransaction,
    /** The op being encoded (one Site is reused for every op). */
    public index: number,
  ) {}

  get op(): NftOp {
    return this.tx.ops[this.index]!;
  }

  field(path: string): string {
    return `ops[${this.index}] (${formatOpHead(this.tx, this.op)}): ${path}`;
  }

  context(): ErrorContext {
    return { family: this.tx.family, table: this.tx.table, op: this.index };
  }

  error(path: string, what: string, code: ErrorCode = ErrorCodes.INVALID_ARGUMENT, extra: ErrorContext = {}): PodnetError {
    return new PodnetError(code, `${this.field(path)}: ${what}`, { ...this.context(), field: path, ...extra });
  }

  /** `path: "text" is not <what>`. */
  bad(path: string, text: unknown, what: string): PodnetError {
    return badValue(() => this.field(path), text, what, { ...this.context(), field: path });
  }
}

/** Path of statement k of a rule (built only for errors). */
const sp = (k: number, sub = '', part = -1): string => `rule.stmts[${k}]${sub}${part >= 0 ? `.parts[${part}]` : ''}`;

// Expression names, NUL-terminated as NFTA_EXPR_NAME wants them.
const ENAME = Object.fromEntries(
  ['payload', 'meta', 'ct', 'fib', 'numgen', 'immediate', 'cmp', 'bitwise', 'lookup', 'dynset', 'nat', 'masq', 'reject', 'counter', 'byteorder'].map((n) => [n, Buffer.from(`${n}\0`)]),
) as Record<string, Buffer>;

const NAT_TYPE = Buffer.from('nat\0');
const FILTER_TYPE = Buffer.from('filter\0');
const ZERO = new Uint8Array(NFT_REG_SPACE);

// Keys of the expression cache: one range of 1e12 per kind (values within stay below it).
const K_PAYLOAD = 1e12;
const K_META = 2e12;
const K_CMP = 3e12;
const K_IMM = 4e12;
const K_CT = 5e12;
const K_FIB = 6e12;
const K_NUMGEN = 7e12;
const K_COUNTER = 8e12;
const K_MARK_OR = 9e12;
const K_MARK_XOR = 10e12;
const K_VERDICT = 11e12;
const K_NAT = 12e12;
const K_MASQ = 13e12;
const K_REJECT = 14e12;
const K_NAT_MAP = 15e12;
const K_HTON = 16e12;

/** The kinds a key expression yields, per concatenation part (for matching a set's key). */
type PartKind = NftType | 'ct_state' | 'fib_addrtype' | 'numgen';

interface PayloadSpec {
  base: number;
  offset: number;
  len: number;
  type: NftType;
}

const PAYLOADS: Record<string, PayloadSpec & { family?: NftFamily }> = {
  'ip saddr': { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 12, len: 4, type: 'ipv4_addr', family: 'ip' },
  'ip daddr': { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 16, len: 4, type: 'ipv4_addr', family: 'ip' },
  'ip6 saddr': { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 8, len: 16, type: 'ipv6_addr', family: 'ip6' },
  'ip6 daddr': { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 24, len: 16, type: 'ipv6_addr', family: 'ip6' },
  'th sport': { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 0, len: 2, type: 'inet_service' },
  'th dport': { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2, type: 'inet_service' },
};

/** Batches messages, cutting between messages when the next would overflow the batch. */
class Batcher {
  w!: NlWriter;
  readonly batches: EncodedBatch[] = [];
  private seq: number;
  readonly firstSeq: number;
  readonly msgOp: number[] = [];
  readonly msgElem: number[] = [];
  readonly msgElemCount: number[] = [];
  private beginSeq = 0;
  private lastMsgOff = -1;
  private lastMsgSeq = 0;
  private firstOp = -1;
  private lastOp = -1;
  private messages = 0;
  private replyUsed = 0;
  bytes = 0;
  /** Largest element message: one attribute's 65535 bytes, or less when the reply budget is small. */
  readonly maxMessage: number;

  constructor(
    firstSeq: number,
    readonly limit: number,
    readonly replyBudget: number,
    /** A guess of the whole transaction's bytes (small transactions need no big first buffer). */
    readonly sizeHint = Infinity,
    readonly capAck = false,
  ) {
    this.seq = firstSeq >>> 0;
    this.firstSeq = this.seq;
    this.maxMessage = Math.max(4096, Math.min(NLA_MAX_LEN - 1024, Math.floor(replyBudget / 4)));
    this.open();
  }

  private nextSeq(op: number, elem = -1): number {
    const s = this.seq;
    this.seq = (this.seq + 1) >>> 0;
    this.msgOp.push(op);
    this.msgElem.push(elem);
    this.msgElemCount.push(0);
    return s;
  }

  private open(): void {
    // A batch is written in place; it grows (by doubling) past this first guess when it must.
    // Without NETLINK_CAP_ACK, batches bounded by the reply budget hold at most about a third
    // of it in messages. A generous guess costs little: the pages of a large buffer that are
    // never written are never resident.
    this.w = new NlWriter(Math.min(this.limit, this.capAck ? Infinity : this.replyBudget / 2, this.sizeHint) + NLA_MAX_LEN + 4096);
    this.beginSeq = this.nextSeq(-1);
    const s = this.w.msgBegin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, this.beginSeq, 0, NFNL_SUBSYS_NFTABLES);
    this.w.msgEnd(s);
    this.lastMsgOff = -1;
    this.firstOp = -1;
    this.messages = 0;
    this.replyUsed = 0;
  }

  private close(): void {
    const w = this.w;
    // The last message asks for an ACK: its answer (ACK or error) says the batch was processed.
    w.buf[this.lastMsgOff + 6] = w.buf[this.lastMsgOff + 6]! | NLM_F_ACK;
    const endSeq = this.nextSeq(-1);
    const s = w.msgBegin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, endSeq, 0, NFNL_SUBSYS_NFTABLES);
    w.msgEnd(s);
    const buf = w.buf.subarray(0, w.off);
    this.bytes += buf.length;
    this.batches.push({ buf, beginSeq: this.beginSeq, lastSeq: this.lastMsgSeq, endSeq, firstOp: this.firstOp, lastOp: this.lastOp, messages: this.messages });
  }

  /** Starts an nf_tables message; returns its offset (its seq is `lastSeq`). */
  begin(msg: number, flags: number, family: number, op: number, elem = -1): number {
    this.curSeq = this.nextSeq(op, elem);
    return this.w.msgBegin(nftType(msg), flags, this.curSeq, family);
  }

  /** Seq of the message begun last. */
  curSeq = 0;

  setElemCount(seq: number, n: number): void {
    this.msgElemCount[(seq - this.firstSeq) >>> 0] = n;
  }

  /** Ends the current message; moves it to a new batch when this one would overflow. */
  end(start: number, op: number, site: Site): void {
    const seq = this.curSeq;
    const w = this.w;
    w.msgEnd(start);
    const cost = replyCost(w.off - start, this.capAck);
    if (w.off + 20 > this.limit || this.replyUsed + cost > this.replyBudget) {
      const size = w.off - start;
      if (this.lastMsgOff < 0) {
        throw site.error('message', cost > this.replyBudget ? `a message of ${size} bytes could get an answer too large for the receive buffer (${this.replyBudget} bytes)` : `one message of ${size} bytes does not fit in a batch of at most ${this.limit} bytes`, ErrorCodes.NFT);
      }
      const moved = Buffer.from(w.buf.subarray(start, w.off));
      w.off = start;
      this.close();
      this.open();
      if (this.w.off + size + 20 > this.limit) throw site.error('message', `one message of ${size} bytes does not fit in a batch of at most ${this.limit} bytes`, ErrorCodes.NFT);
      this.w.ensure(size);
      moved.copy(this.w.buf, this.w.off);
      start = this.w.off;
      this.w.off += size;
    }
    this.replyUsed += cost;
    this.lastMsgOff = start;
    this.lastMsgSeq = seq;
    if (this.firstOp < 0) this.firstOp = op;
    this.lastOp = op;
    this.messages++;
  }

  /** Bytes left in this batch before it must be cut (Infinity when unlimited). */
  room(): number {
    return this.limit - this.w.off - 20;
  }

  finish(): void {
    if (this.messages > 0) this.close();
  }

  get count(): number {
    return this.msgOp.length;
  }
}

/** Encodes a transaction. Throws PODNET_INVALID_ARGUMENT (naming the op and field) for bad input. */
export function encodeTransaction(tx: NftTransaction, opts: EncodeOptions = {}): EncodedTransaction {
  return new Encoder(tx, opts).run();
}

class Encoder {
  private readonly family: number;
  private readonly b: Batcher;
  /** The sets as given (never changed) until the transaction adds or deletes one: then a copy (see mutSets). */
  private sets: Map<string, SetInfo>;
  private setsOwned: boolean;
  /** NFTA_SET_ID of sets added by this transaction (nft sends them along; names suffice). */
  private readonly setIds = new Map<string, number>();
  private nextSetId = 1;
  private readonly tableName: Buffer;
  private readonly names = new Map<string, Buffer>();
  /** Scratch for values and masks (never kept). */
  private readonly v1 = new Uint8Array(NFT_REG_SPACE);
  private readonly v2 = new Uint8Array(NFT_REG_SPACE);
  /** An interval's end (v1 holds its start). */
  private readonly v3 = new Uint8Array(NFT_REG_SPACE);
  /**
   * Expressions (or expression prefixes) whose bytes do not depend on the rule, by a numeric
   * key: written once, then copied. Most of a rule is made of these.
   */
  /** Encoded expressions by a key (number for the common shapes, string for the rest). */
  private readonly blobs = new Map<number | string, Buffer>();

  constructor(
    private readonly tx: NftTransaction,
    opts: EncodeOptions,
  ) {
    if (!tx || (tx.family !== 'ip' && tx.family !== 'ip6')) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `nft transaction: family ${JSON.stringify(tx?.family)} is not ip or ip6`, { field: 'family' });
    if (!Array.isArray(tx.ops)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'nft transaction: ops is not a list', { field: 'ops' });
    this.family = tx.family === 'ip' ? NFPROTO_IPV4 : NFPROTO_IPV6;
    this.tableName = nameBuf(tx.table, 'table', { family: tx.family });
    // Copied only when the transaction adds or deletes a set: a table with 10,000 endpoint
    // maps would otherwise copy them all for every one-element transaction.
    this.sets = opts.sets instanceof Map ? opts.sets : new Map(opts.sets ?? []);
    this.setsOwned = !(opts.sets instanceof Map);
    const limit = opts.maxBatchBytes ?? Infinity;
    const budget = opts.replyBudget ?? Infinity;
    if (!(limit > 0) || !(budget > 0)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `maxBatchBytes and replyBudget must be positive`, { field: limit > 0 ? 'replyBudget' : 'maxBatchBytes' });
    // ~512 bytes per op and 64 per element is generous; growing past it is fine.
    let hint = 0;
    for (const op of tx.ops) hint += 512 + (op?.op === 'add-elements' && Array.isArray(op.elements) ? op.elements.length * 64 : op?.op === 'delete-elements' && Array.isArray(op.keys) ? op.keys.length * 64 : 0);
    this.b = new Batcher(opts.firstSeq ?? 1, limit, budget, hint, opts.capAck === true);
  }

  run(): EncodedTransaction {
    const { ops } = this.tx;
    const site = new Site(this.tx, 0);
    for (let i = 0; i < ops.length; i++) {
      site.index = i;
      this.op(site);
    }
    this.b.finish();
    return {
      batches: this.b.batches,
      firstSeq: this.b.firstSeq,
      count: this.b.count,
      msgOp: Int32Array.from(this.b.msgOp),
      msgElem: Int32Array.from(this.b.msgElem),
      msgElemCount: Int32Array.from(this.b.msgElemCount),
      sets: this.sets,
      bytes: this.b.bytes,
    };
  }

  private get w(): NlWriter {
    return this.b.w;
  }

  /** A validated, NUL-terminated name (cached: chain names repeat in every rule). */
  private name(s: string, site: Site, path: string): Buffer {
    let b = this.names.get(s);
    if (!b) {
      if (typeof s !== 'string' || !validName(s)) throw site.bad(path, s, NAME_TEXT);
      b = nameBuf(s, path, {});
      this.names.set(s, b);
    }
    return b;
  }

  private op(site: Site): void {
    const op = site.op;
    const i = site.index;
    const b = this.b;
    switch (op?.op) {
      case 'add-table': {
        const s = b.begin(NFT_MSG.NEWTABLE, NLM_F_REQUEST | NLM_F_CREATE, this.family, i);
        this.w.bytes(NFTA_TABLE.NAME, this.tableName);
        this.w.u32(NFTA_TABLE.FLAGS, 0);
        b.end(s, i, site);
        return;
      }
      case 'delete-table': {
        const s = b.begin(NFT_MSG.DELTABLE, NLM_F_REQUEST, this.family, i);
        this.w.bytes(NFTA_TABLE.NAME, this.tableName);
        b.end(s, i, site);
        this.sets = new Map();
        this.setsOwned = true;
        this.setIds.clear();
        return;
      }
      case 'add-chain':
        return this.addChain(site, op.chain);
      case 'flush-chain':
      case 'delete-chain': {
        const name = this.name(op.chain, site, 'chain');
        const flush = op.op === 'flush-chain';
        const s = b.begin(flush ? NFT_MSG.DELRULE : NFT_MSG.DELCHAIN, NLM_F_REQUEST, this.family, i);
        this.w.bytes(NFTA_CHAIN.TABLE, this.tableName);
        // flush = DELRULE with only table + chain (NFTA_RULE_CHAIN); delete = DELCHAIN (NFTA_CHAIN_NAME).
        this.w.bytes(flush ? NFTA_RULE.CHAIN : NFTA_CHAIN.NAME, name);
        b.end(s, i, site);
        return;
      }
      case 'add-rule':
        return this.addRule(site, op.chain, op.rule);
      case 'add-set':
        return this.addSet(site, op.set);
      case 'flush-set': {
        const name = this.name(op.set, site, 'set');
        const s = b.begin(NFT_MSG.DELSETELEM, NLM_F_REQUEST, this.family, i);
        // DELSETELEM without an element list flushes the set (nft's order: set, then table).
        this.w.bytes(NFTA_SET_ELEM_LIST.SET, name);
        this.w.bytes(NFTA_SET_ELEM_LIST.TABLE, this.tableName);
        b.end(s, i, site);
        return;
      }
      case 'delete-set': {
        const name = this.name(op.set, site, 'set');
        const s = b.begin(NFT_MSG.DELSET, NLM_F_REQUEST, this.family, i);
        this.w.bytes(NFTA_SET.TABLE, this.tableName);
        this.w.bytes(NFTA_SET.NAME, name);
        b.end(s, i, site);
        this.mutSets().delete(op.set);
        this.setIds.delete(op.set);
        return;
      }
      case 'add-elements':
        return this.elements(site, op.set, op.elements, false);
      case 'delete-elements': {
        if (!Array.isArray(op.keys)) throw site.error('keys', 'is not a list');
        return this.elements(
          site,
          op.set,
          op.keys.map((key) => ({ key })),
          true,
        );
      }
      default:
        throw site.error('op', `${JSON.stringify((op as { op?: unknown })?.op)} is not an op (${OP_NAMES})`);
    }
  }

  private addChain(site: Site, chain: Omit<NftChain, 'rules'>): void {
    if (!chain || typeof chain !== 'object') throw site.error('chain', 'is not a chain');
    const name = this.name(chain.name, site, 'chain.name');
    const s = this.b.begin(NFT_MSG.NEWCHAIN, NLM_F_REQUEST | NLM_F_CREATE, this.family, site.index);
    const w = this.w;
    w.bytes(NFTA_CHAIN.TABLE, this.tableName);
    w.bytes(NFTA_CHAIN.NAME, name);
    if (chain.base) {
      const base = chain.base;
      if (base.type !== 'nat' && base.type !== 'filter') throw site.bad('chain.base.type', base.type, 'nat or filter');
      const hook = NF_INET_HOOKS[base.hook];
      if (hook === undefined) throw site.bad('chain.base.hook', base.hook, 'a hook (prerouting, input, forward, output, postrouting)');
      if (!Number.isInteger(base.priority) || base.priority < -0x80000000 || base.priority > 0x7fffffff) throw site.bad('chain.base.priority', base.priority, 'a 32-bit integer');
      w.bytes(NFTA_CHAIN.TYPE, base.type === 'nat' ? NAT_TYPE : FILTER_TYPE);
      if (base.policy !== undefined) {
        if (base.policy !== 'accept' && base.policy !== 'drop') throw site.bad('chain.base.policy', base.policy, 'accept or drop');
        w.u32(NFTA_CHAIN.POLICY, base.policy === 'accept' ? NF_ACCEPT : NF_DROP);
      }
      const h = w.nestBegin(NFTA_CHAIN.HOOK);
      w.u32(NFTA_HOOK.HOOKNUM, hook);
      w.u32(NFTA_HOOK.PRIORITY, base.priority);
      w.nestEnd(h);
    }
    if (chain.comment !== undefined) this.comment(NFTA_CHAIN.USERDATA, UDATA_CHAIN_COMMENT, chain.comment, site, 'chain.comment');
    this.b.end(s, site.index, site);
  }

  /** A comment as nft's user data; at most 128 bytes. */
  private comment(attr: number, udType: number, text: string, site: Site, path: string): void {
    if (typeof text !== 'string') throw site.bad(path, text, 'a string');
    if (text.length > 128 || text.includes('\0')) throw site.error(path, text.includes('\0') ? 'contains a NUL character' : `${Buffer.byteLength(text)} bytes; nft allows at most 128`);
    const n = this.w.udataString(attr, udType, text);
    if (n > 128) throw site.error(path, `${n} bytes; nft allows at most 128`);
  }

  private addSet(site: Site, set: NftSet): void {
    if (!set || typeof set !== 'object') throw site.error('set', 'is not a set');
    const name = this.name(set.name, site, 'set.name');
    if (!Array.isArray(set.key) || set.key.length === 0) throw site.error('set.key', 'a set needs at least one key type');
    set.key.forEach((t, k) => {
      if (!(t in TYPES)) throw site.bad(`set.key[${k}]`, t, `a set type (${Object.keys(TYPES).join(', ')})`);
    });
    const concat = set.key.length > 1;
    const klen = keyLen(set.key);
    if (klen > NFT_REG_SPACE) throw site.error('set.key', `a key of ${klen} bytes is longer than the ${NFT_REG_SPACE} bytes of registers`);
    if (set.interval && concat) throw site.error('set.interval', 'interval sets with concatenated keys are not supported');
    if (set.interval && set.key[0] === 'mark') throw site.error('set.interval', 'mark (host byte order) sets cannot be interval sets');
    if (set.data !== undefined && set.data !== 'verdict' && !(Array.isArray(set.data) ? set.data.length > 0 && set.data.every((t) => t in TYPES) : set.data in TYPES)) throw site.bad('set.data', set.data, 'verdict or a set type (or a list of them)');
    const dtypes = dataTypes(set.data);
    if (keyLen(dtypes) > NFT_REG_SPACE) throw site.error('set.data', `data of ${keyLen(dtypes)} bytes is longer than the ${NFT_REG_SPACE} bytes of registers`);
    const ngt = set.numgenTypeof;
    if (ngt !== undefined) {
      if (!Number.isInteger(ngt.mod) || ngt.mod < 1 || ngt.mod > 0xffffffff) throw site.bad('set.numgenTypeof.mod', ngt.mod, 'a modulus (a whole number ≥ 1)');
      if (ngt.proto !== 'tcp' && ngt.proto !== 'udp' && ngt.proto !== 'sctp') throw site.bad('set.numgenTypeof.proto', ngt.proto, 'tcp, udp or sctp');
      const addr = this.tx.family === 'ip6' ? 'ipv6_addr' : 'ipv4_addr';
      if (set.key.length !== 1 || set.key[0] !== 'integer' || dtypes.length !== 2 || dtypes[0] !== addr || dtypes[1] !== 'inet_service') throw site.error('set.numgenTypeof', `needs key integer and data ${addr} . inet_service`);
    }
    if (set.timeoutSeconds !== undefined && !(Number.isInteger(set.timeoutSeconds) && set.timeoutSeconds > 0)) throw site.bad('set.timeoutSeconds', set.timeoutSeconds, 'a positive whole number of seconds');
    if (set.size !== undefined && !(Number.isInteger(set.size) && set.size > 0 && set.size <= 0xffffffff)) throw site.bad('set.size', set.size, 'a positive 32-bit number of elements');
    let flags = 0;
    if (set.data !== undefined) flags |= NFT_SET.MAP;
    if (set.interval) flags |= NFT_SET.INTERVAL;
    if (set.timeoutSeconds !== undefined) flags |= NFT_SET.TIMEOUT;
    if (set.dynamic) flags |= NFT_SET.EVAL;
    const id = this.nextSetId++;
    const s = this.b.begin(NFT_MSG.NEWSET, NLM_F_REQUEST | NLM_F_CREATE, this.family, site.index);
    const w = this.w;
    w.bytes(NFTA_SET.TABLE, this.tableName);
    w.bytes(NFTA_SET.NAME, name);
    w.u32(NFTA_SET.FLAGS, flags);
    w.u32(NFTA_SET.KEY_TYPE, typeId(set.key));
    w.u32(NFTA_SET.KEY_LEN, klen);
    if (set.data !== undefined) {
      w.u32(NFTA_SET.DATA_TYPE, set.data === 'verdict' ? NFT_DATA_VERDICT : typeId(dtypes));
      w.u32(NFTA_SET.DATA_LEN, set.data === 'verdict' ? 0 : keyLen(dtypes));
    }
    w.u32(NFTA_SET.ID, id);
    if (set.size !== undefined) {
      const d = w.nestBegin(NFTA_SET.DESC);
      w.u32(NFTA_SET_DESC.SIZE, set.size);
      w.nestEnd(d);
    }
    if (set.timeoutSeconds !== undefined) w.u64(NFTA_SET.TIMEOUT, set.timeoutSeconds * 1000);
    // User data as nft writes it: key (and data) byte order, so `nft list` prints values readably.
    const ud: number[] = [];
    const putU32 = (type: number, v: number) => {
      const b = new Uint8Array(4);
      writeHostU32(b, 0, v);
      ud.push(type, 4, ...b);
    };
    // (a numgen typeof key is host order to nft, which converts interval elements itself)
    putU32(UDATA_SET_KEYBYTEORDER, ngt ? BYTEORDER_HOST : concat ? BYTEORDER_INVALID : TYPES[set.key[0]!].byteorder);
    if (set.data !== undefined) putU32(UDATA_SET_DATABYTEORDER, set.data === 'verdict' || dtypes.length > 1 ? BYTEORDER_INVALID : TYPES[dtypes[0]!].byteorder);
    // nft marks a concatenated key's expression as a concatenation (EXPR_CONCAT, no typeof parts).
    if (concat) {
      const b = new Uint8Array(4);
      writeHostU32(b, 0, EXPR_CONCAT);
      ud.push(UDATA_SET_KEY_TYPEOF, 8, UDATA_SET_TYPEOF_EXPR, 4, ...b, UDATA_SET_TYPEOF_DATA, 0);
    }
    if (ngt) {
      // As nft 1.0.6 writes `typeof numgen random mod M : ip daddr . tcp dport` (checked with --debug=mnl).
      const u32 = (v: number): number[] => {
        const b = new Uint8Array(4);
        writeHostU32(b, 0, v);
        return [...b];
      };
      const tlv = (type: number, body: number[]): number[] => [type, body.length, ...body];
      const expr = (type: number, body: number[]): number[] => [...tlv(UDATA_SET_TYPEOF_EXPR, u32(type)), ...tlv(UDATA_SET_TYPEOF_DATA, body)];
      // numgen: TYPE (random), MOD, OFFSET; payload: DESC, TYPE (the header field).
      ud.push(...tlv(UDATA_SET_KEY_TYPEOF, expr(EXPR_NUMGEN, [...tlv(0, u32(1)), ...tlv(1, u32(ngt.mod)), ...tlv(2, u32(0))])));
      const v6 = this.tx.family === 'ip6';
      const payload = (desc: number, field: number): number[] => expr(EXPR_PAYLOAD, [...tlv(0, u32(desc)), ...tlv(1, u32(field))]);
      const l4 = PROTO_DESC[ngt.proto];
      ud.push(...tlv(UDATA_SET_DATA_TYPEOF, expr(EXPR_CONCAT, [...tlv(0, payload(v6 ? PROTO_DESC.ip6 : PROTO_DESC.ip, v6 ? IP6HDR_DADDR : IPHDR_DADDR)), ...tlv(1, payload(l4, L4HDR_DPORT))])));
    }
    if (!ngt && dtypes.length > 1) {
      // …and concatenated data the same way (`type ipv4_addr : ipv4_addr . inet_service`).
      const b = new Uint8Array(4);
      writeHostU32(b, 0, EXPR_CONCAT);
      ud.push(UDATA_SET_DATA_TYPEOF, 8, UDATA_SET_TYPEOF_EXPR, 4, ...b, UDATA_SET_TYPEOF_DATA, 0);
    }
    if (set.data !== undefined) putU32(UDATA_SET_DATA_INTERVAL, 0);
    if (set.comment !== undefined) {
      if (typeof set.comment !== 'string') throw site.bad('set.comment', set.comment, 'a string');
      const c = Buffer.from(set.comment, 'utf8');
      if (c.length > 128 || c.includes(0)) throw site.error('set.comment', c.includes(0) ? 'contains a NUL character' : `${c.length} bytes; nft allows at most 128`);
      ud.push(UDATA_SET_COMMENT, c.length + 1, ...c, 0);
    }
    w.bytes(NFTA_SET.USERDATA, Uint8Array.from(ud));
    this.b.end(s, site.index, site);
    this.mutSets().set(set.name, { name: set.name, key: [...set.key], data: Array.isArray(set.data) ? [...set.data] : set.data, interval: set.interval, dynamic: set.dynamic, timeoutSeconds: set.timeoutSeconds });
    this.setIds.set(set.name, id);
  }

  private mutSets(): Map<string, SetInfo> {
    if (!this.setsOwned) {
      this.sets = new Map(this.sets);
      this.setsOwned = true;
    }
    return this.sets;
  }

  private knownSet(site: Site, name: string, path: string): SetInfo {
    const set = this.sets.get(name);
    if (!set) throw site.error(path, `set ${JSON.stringify(name)} does not exist in table ${this.tx.family} ${this.tx.table} (neither added earlier in this transaction nor known to the executor)`, ErrorCodes.NFT, { set: name });
    return set;
  }

  private elements(site: Site, setName: string, elements: NftElement[], del: boolean): void {
    const name = this.name(setName, site, 'set');
    const set = this.knownSet(site, setName, 'set');
    if (!Array.isArray(elements)) throw site.error(del ? 'keys' : 'elements', 'is not a list');
    if (elements.length === 0) return;
    const b = this.b;
    const id = this.setIds.get(setName);
    const isMap = set.data !== undefined;
    const klen = keyLen(set.key);
    const key = this.v1;
    const flags = del ? NLM_F_REQUEST : NLM_F_REQUEST | NLM_F_CREATE;
    const at = (j: number, sub = '') => (del ? `keys[${j}]${sub.replace(/^\.key/, '')}` : `elements[${j}]${sub}`);
    // Built only when an interval is bad (per element, they were a third of a full sync's encoding).
    let cur = 0;
    const intervalField = () => site.field(at(cur, '.key[0]'));
    const intervalContext = () => ({ ...site.context(), field: at(cur, '.key[0]'), set: setName });
    let j = 0;
    while (j < elements.length) {
      const s = b.begin(del ? NFT_MSG.DELSETELEM : NFT_MSG.NEWSETELEM, flags, this.family, site.index, j);
      const seq = b.curSeq;
      const w = this.w;
      w.bytes(NFTA_SET_ELEM_LIST.TABLE, this.tableName);
      w.bytes(NFTA_SET_ELEM_LIST.SET, name);
      if (id !== undefined) w.u32(NFTA_SET_ELEM_LIST.SET_ID, id);
      const list = w.nestBegin(NFTA_SET_ELEM_LIST.ELEMENTS);
      const first = j;
      let nth = 0;
      // One attribute holds at most 64 KiB; an element is well under 1 KiB; keep to the batch's room too.
      const budget = Math.min(b.maxMessage, b.room() - (w.off - s) - 1024);
      for (; j < elements.length; j++) {
        if (j > first && w.off - list > budget) break;
        const el = elements[j]!;
        if (!el || !Array.isArray(el.key)) throw site.error(at(j), del ? 'a key is a list of values, one per key part' : 'an element needs key: a list of values, one per key part');
        if (el.key.length !== set.key.length) throw site.error(at(j, '.key'), `${el.key.length} value(s) for a key of type ${set.key.join(' . ')}`);
        if (!del) {
          if (isMap && set.data === 'verdict' && !el.verdict) throw site.error(at(j, '.verdict'), `map ${setName} maps to verdicts: the element needs one`);
          if (isMap && set.data !== 'verdict' && el.data === undefined) throw site.error(at(j, '.data'), `map ${setName} maps to ${set.data}: the element needs data`);
          if (!isMap && (el.verdict || el.data !== undefined)) throw site.error(at(j), `${setName} is a set, not a map: an element has a key only`);
        }
        if (set.interval) {
          cur = j;
          const hasEnd = parseIntervalInto(set.key[0]!, el.key[0]!, key, this.v3, intervalField, intervalContext);
          this.element(++nth, key, klen, 0, del ? undefined : el, set, site, j, at);
          if (hasEnd) this.element(++nth, this.v3, klen, NFT_SET_ELEM_INTERVAL_END, undefined, set, site, j, at);
        } else {
          this.key(set.key, el.key, key, site, j, at);
          this.element(++nth, key, klen, 0, del ? undefined : el, set, site, j, at);
        }
      }
      w.nestEnd(list);
      b.setElemCount(seq, j - first);
      b.end(s, site.index, site);
    }
  }

  /** Writes a key of `types` from `values` into out (each part padded to 4 bytes when concatenated). */
  private key(types: readonly NftType[], values: string[], out: Uint8Array, site: Site, j: number, at: (j: number, sub?: string) => string): void {
    let off = 0;
    const concat = types.length > 1;
    for (let k = 0; k < types.length; k++) {
      const t = types[k]!;
      const len = TYPES[t].len;
      if (!writeValue(t, values[k]!, out, off)) throw site.bad(at(j, `.key[${k}]`), values[k], TYPE_TEXT[t]);
      if (!concat) return;
      for (let z = off + len; z < off + pad4(len); z++) out[z] = 0;
      off += pad4(len);
    }
  }

  private element(nth: number, key: Uint8Array, klen: number, flags: number, el: NftElement | undefined, set: SetInfo, site: Site, j: number, at: (j: number, sub?: string) => string): void {
    const w = this.w;
    // libnftnl numbers the element nests 1, 2, 3… (the kernel reads any type here); so do we.
    const e = w.nestBegin(nth & NLA_TYPE_MASK);
    if (flags) w.u32(NFTA_SET_ELEM.FLAGS, flags);
    const k = w.nestBegin(NFTA_SET_ELEM.KEY);
    w.bytes(NFTA_DATA.VALUE, key, klen);
    w.nestEnd(k);
    if (el && set.data !== undefined) {
      const d = w.nestBegin(NFTA_SET_ELEM.DATA);
      if (set.data === 'verdict') this.verdictData(el.verdict!, site, () => at(j, '.verdict'));
      else if (!Array.isArray(set.data)) {
        if (typeof el.data !== 'string' || !writeValue(set.data, el.data, this.v2, 0)) throw site.bad(at(j, '.data'), el.data, TYPE_TEXT[set.data]);
        w.bytes(NFTA_DATA.VALUE, this.v2, TYPES[set.data].len);
      } else {
        // Concatenated data: one value per part, each padded to 4 bytes (like a concatenated key).
        const parts = Array.isArray(el.data) ? el.data : typeof el.data === 'string' ? el.data.split(' . ') : [];
        if (parts.length !== set.data.length) throw site.bad(at(j, '.data'), el.data, `${set.data.length} values (${set.data.join(' . ')})`);
        this.key(set.data, parts, this.v2, site, j, (jj, sub = '') => at(jj, sub.replace(/^\.key/, '.data')));
        w.bytes(NFTA_DATA.VALUE, this.v2, keyLen(set.data));
      }
      w.nestEnd(d);
    }
    if (el?.comment !== undefined) this.comment(NFTA_SET_ELEM.USERDATA, UDATA_SET_ELEM_COMMENT, el.comment, site, at(j, '.comment'));
    w.nestEnd(e);
  }

  /** NFTA_DATA_VERDICT { CODE, CHAIN } inside an open NFTA_*_DATA nest. */
  private verdictData(v: NftVerdict, site: Site, path: () => string): void {
    const w = this.w;
    const n = w.nestBegin(NFTA_DATA.VERDICT);
    switch (v?.kind) {
      case 'accept':
        w.u32(NFTA_VERDICT.CODE, NF_ACCEPT);
        break;
      case 'drop':
        w.u32(NFTA_VERDICT.CODE, NF_DROP);
        break;
      case 'return':
        w.u32(NFTA_VERDICT.CODE, NFT_RETURN);
        break;
      case 'continue':
        w.u32(NFTA_VERDICT.CODE, NFT_CONTINUE);
        break;
      case 'jump':
      case 'goto': {
        const chain = this.names.get(v.chain) ?? this.name(v.chain, site, `${path()}.chain`);
        w.u32(NFTA_VERDICT.CODE, v.kind === 'jump' ? NFT_JUMP : NFT_GOTO);
        w.bytes(NFTA_VERDICT.CHAIN, chain);
        break;
      }
      default:
        throw site.bad(path(), v, 'a verdict (accept, drop, return, continue, jump, goto)');
    }
    w.nestEnd(n);
  }

  private addRule(site: Site, chain: string, rule: NftRule): void {
    const chainName = this.name(chain, site, 'chain');
    if (!rule || !Array.isArray(rule.stmts)) throw site.error('rule.stmts', 'is not a list of statements');
    const s = this.b.begin(NFT_MSG.NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND, this.family, site.index);
    const w = this.w;
    w.bytes(NFTA_RULE.TABLE, this.tableName);
    w.bytes(NFTA_RULE.CHAIN, chainName);
    const exprs = w.nestBegin(NFTA_RULE.EXPRESSIONS);
    const stmts = rule.stmts;
    for (let k = 0; k < stmts.length; k++) this.stmt(stmts[k]!, site, k);
    if (!w.nestEnd(exprs)) throw site.error('rule.stmts', `the rule's expressions take ${w.off - exprs} bytes, more than one netlink attribute can hold (65535)`);
    if (rule.comment !== undefined) this.comment(NFTA_RULE.USERDATA, UDATA_RULE_COMMENT, rule.comment, site, 'rule.comment');
    this.b.end(s, site.index, site);
  }

  // ---- expressions -------------------------------------------------------------------

  /** Writes the cached bytes for `key`, or builds them with `build` (which must write them) and caches them. */
  private cached(key: number | string, build: () => void): void {
    const blob = this.blobs.get(key);
    if (blob) {
      this.w.raw(blob);
      return;
    }
    const start = this.w.off;
    build();
    this.blobs.set(key, Buffer.from(this.w.buf.subarray(start, this.w.off)));
  }

  /**
   * An expression that ends with one value (cmp, immediate): everything before the value's
   * bytes is the same for a given (kind, register, op, length), so it is cached; the value
   * and its padding are written after it.
   */
  private withValue(key: number, build: () => void, data: Uint8Array, len: number): void {
    const w = this.w;
    const prefix = this.blobs.get(key);
    if (prefix) {
      w.raw(prefix);
      const b = w.buf;
      let o = w.off;
      for (let i = 0; i < len; i++) b[o++] = data[i]!;
      while (o & 3) b[o++] = 0;
      w.off = o;
      return;
    }
    const start = w.off;
    build();
    this.blobs.set(key, Buffer.from(w.buf.subarray(start, w.off - pad4(len))));
  }

  private exprBegin(name: Buffer): number {
    const w = this.w;
    const e = w.nestBegin(NFTA_LIST_ELEM);
    w.bytes(NFTA_EXPR.NAME, name);
    w.nestBegin(NFTA_EXPR.DATA);
    return e;
  }

  /** Closes an expression: its DATA nest starts right after the name (always 4-byte aligned). */
  private exprEnd(e: number, name: Buffer): void {
    const d = e + 4 + pad4(4 + name.length);
    this.w.nestEnd(d);
    this.w.nestEnd(e);
  }

  private payload(dreg: number, base: number, offset: number, len: number): void {
    this.cached(K_PAYLOAD + dreg * 1e6 + base * 1e5 + offset * 100 + len, () => this.payloadBuild(dreg, base, offset, len));
  }

  private payloadBuild(dreg: number, base: number, offset: number, len: number): void {
    const n = ENAME.payload!;
    const e = this.exprBegin(n);
    const w = this.w;
    w.u32(NFTA_PAYLOAD.DREG, dreg);
    w.u32(NFTA_PAYLOAD.BASE, base);
    w.u32(NFTA_PAYLOAD.OFFSET, offset);
    w.u32(NFTA_PAYLOAD.LEN, len);
    this.exprEnd(e, n);
  }

  private meta(key: number, dreg: number): void {
    this.cached(K_META + key * 100 + dreg, () => this.metaBuild(key, dreg));
  }

  private metaBuild(key: number, dreg: number): void {
    const n = ENAME.meta!;
    const e = this.exprBegin(n);
    this.w.u32(NFTA_META.KEY, key);
    this.w.u32(NFTA_META.DREG, dreg);
    this.exprEnd(e, n);
  }

  private cmp(sreg: number, op: number, data: Uint8Array, len: number): void {
    this.withValue(K_CMP + sreg * 1e4 + op * 100 + len, () => this.cmpBuild(sreg, op, data, len), data, len);
  }

  private cmpBuild(sreg: number, op: number, data: Uint8Array, len: number): void {
    const n = ENAME.cmp!;
    const e = this.exprBegin(n);
    const w = this.w;
    w.u32(NFTA_CMP.SREG, sreg);
    w.u32(NFTA_CMP.OP, op);
    const d = w.nestBegin(NFTA_CMP.DATA);
    w.bytes(NFTA_DATA.VALUE, data, len);
    w.nestEnd(d);
    this.exprEnd(e, n);
  }

  private bitwise(reg: number, len: number, mask: Uint8Array, xor: Uint8Array, withOp: boolean): void {
    const n = ENAME.bitwise!;
    const e = this.exprBegin(n);
    const w = this.w;
    w.u32(NFTA_BITWISE.SREG, reg);
    w.u32(NFTA_BITWISE.DREG, reg);
    if (withOp) w.u32(NFTA_BITWISE.OP, NFT_BITWISE_MASK_XOR);
    w.u32(NFTA_BITWISE.LEN, len);
    let d = w.nestBegin(NFTA_BITWISE.MASK);
    w.bytes(NFTA_DATA.VALUE, mask, len);
    w.nestEnd(d);
    d = w.nestBegin(NFTA_BITWISE.XOR);
    w.bytes(NFTA_DATA.VALUE, xor, len);
    w.nestEnd(d);
    this.exprEnd(e, n);
  }

  private immediate(dreg: number, data: Uint8Array, len: number): void {
    this.withValue(K_IMM + dreg * 100 + len, () => this.immediateBuild(dreg, data, len), data, len);
  }

  private immediateBuild(dreg: number, data: Uint8Array, len: number): void {
    const n = ENAME.immediate!;
    const e = this.exprBegin(n);
    const w = this.w;
    w.u32(NFTA_IMMEDIATE.DREG, dreg);
    const d = w.nestBegin(NFTA_IMMEDIATE.DATA);
    w.bytes(NFTA_DATA.VALUE, data, len);
    w.nestEnd(d);
    this.exprEnd(e, n);
  }

  private payloadSpec(field: string, site: Site, k: number, sub: string, part: number): PayloadSpec {
    const p = PAYLOADS[field];
    if (!p) throw site.bad(`${sp(k, sub, part)}.field`, field, `a payload field (${Object.keys(PAYLOADS).join(', ')})`);
    if (p.family && p.family !== this.tx.family) throw site.error(`${sp(k, sub, part)}.field`, `${field} in an ${this.tx.family} table (use ${this.tx.family === 'ip' ? 'ip' : 'ip6'} saddr / daddr)`);
    return p;
  }

  /** What an expression yields, part by part (a concatenation has several). */
  private kinds(expr: NftExpr, site: Site, k: number, sub: string, part = -1): PartKind[] {
    switch (expr?.kind) {
      case 'payload':
        return [this.payloadSpec(expr.field, site, k, sub, part).type];
      case 'meta':
        if (expr.key === 'l4proto') return ['inet_proto'];
        if (expr.key === 'mark') return ['mark'];
        throw site.bad(`${sp(k, sub, part)}.key`, (expr as { key: unknown }).key, 'a meta key (l4proto, mark)');
      case 'ct':
        if (expr.key !== 'state') throw site.bad(`${sp(k, sub, part)}.key`, (expr as { key: unknown }).key, 'a ct key (state)');
        return ['ct_state'];
      case 'fib':
        if (expr.what !== 'daddr type' && expr.what !== 'saddr type') throw site.bad(`${sp(k, sub, part)}.what`, (expr as { what: unknown }).what, '"daddr type" or "saddr type"');
        return ['fib_addrtype'];
      case 'numgen':
        if (!Number.isInteger(expr.mod) || expr.mod < 1 || expr.mod > 0xffffffff) throw site.bad(`${sp(k, sub, part)}.mod`, expr.mod, 'a modulus (a whole number ≥ 1)');
        return ['numgen'];
      case 'const':
        if (!(expr.type in TYPES)) throw site.bad(`${sp(k, sub, part)}.type`, expr.type, 'a type');
        return [expr.type];
      case 'concat': {
        if (part >= 0) throw site.error(sp(k, sub, part), 'a concatenation cannot contain a concatenation');
        if (!Array.isArray(expr.parts) || expr.parts.length < 2) throw site.error(`${sp(k, sub)}.parts`, 'a concatenation needs two or more parts');
        const out: PartKind[] = [];
        for (let p = 0; p < expr.parts.length; p++) out.push(...this.kinds(expr.parts[p]!, site, k, sub, p));
        return out;
      }
      default:
        throw site.bad(sp(k, sub, part), expr, 'an expression');
    }
  }

  /** Loads one (non-concatenated, already checked) expression into `reg`; returns its length. */
  private loadOne(expr: NftExpr, reg: number, site: Site, k: number, sub: string, part: number): number {
    switch (expr.kind) {
      case 'payload': {
        const p = this.payloadSpec(expr.field, site, k, sub, part);
        this.payload(reg, p.base, p.offset, p.len);
        return p.len;
      }
      case 'meta':
        this.meta(expr.key === 'l4proto' ? NFT_META_L4PROTO : NFT_META_MARK, reg);
        return expr.key === 'l4proto' ? 1 : 4;
      case 'ct':
        this.cached(K_CT + reg, () => {
          const n = ENAME.ct!;
          const e = this.exprBegin(n);
          this.w.u32(NFTA_CT.KEY, NFT_CT_STATE);
          this.w.u32(NFTA_CT.DREG, reg);
          this.exprEnd(e, n);
        });
        return 4;
      case 'fib': {
        const flags = expr.what === 'saddr type' ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR;
        this.cached(K_FIB + flags * 100 + reg, () => {
          const n = ENAME.fib!;
          const e = this.exprBegin(n);
          this.w.u32(NFTA_FIB.FLAGS, flags);
          this.w.u32(NFTA_FIB.RESULT, NFT_FIB_RESULT_ADDRTYPE);
          this.w.u32(NFTA_FIB.DREG, reg);
          this.exprEnd(e, n);
        });
        return 4;
      }
      case 'numgen': {
        const offset = expr.offset ?? 0;
        if (!Number.isInteger(offset) || offset < 0 || offset + expr.mod - 1 > 0xffffffff) throw site.bad(`${sp(k, sub, part)}.offset`, offset, 'an offset (a whole number ≥ 0; offset + mod - 1 within 32 bits)');
        this.cached(offset ? `ng:${reg}:${expr.mod}:${offset}` : K_NUMGEN + reg * 1e10 + expr.mod, () => {
          const n = ENAME.numgen!;
          const e = this.exprBegin(n);
          this.w.u32(NFTA_NG.DREG, reg);
          this.w.u32(NFTA_NG.MODULUS, expr.mod);
          this.w.u32(NFTA_NG.TYPE, NFT_NG_RANDOM);
          this.w.u32(NFTA_NG.OFFSET, offset);
          this.exprEnd(e, n);
        });
        return 4;
      }
      case 'const': {
        const len = TYPES[expr.type].len;
        if (!writeValue(expr.type, expr.value, this.v2, 0)) throw site.bad(`${sp(k, sub, part)}.value`, expr.value, TYPE_TEXT[expr.type]);
        this.immediate(reg, this.v2, len);
        return len;
      }
      default:
        throw site.error(sp(k, sub, part), `${expr.kind} cannot be loaded here`);
    }
  }

  /** Loads a key (one expression or a concatenation) starting at NFT_REG_1; returns its register length. */
  private loadKey(expr: NftExpr, site: Site, k: number, sub: string): number {
    if (expr.kind !== 'concat') return this.loadOne(expr, NFT_REG_1, site, k, sub, -1);
    let words = 0;
    for (let p = 0; p < expr.parts.length; p++) {
      const reg = words === 0 ? NFT_REG_1 : NFT_REG32_00 + words;
      words += pad4(this.loadOne(expr.parts[p]!, reg, site, k, sub, p)) / 4;
      if (words * 4 > NFT_REG_SPACE) throw site.error(sp(k, sub), `the concatenation is longer than the ${NFT_REG_SPACE} bytes of registers`);
    }
    return words * 4;
  }

  /** Checks a key expression against a set's key type. */
  private checkKey(expr: NftExpr, set: SetInfo, site: Site, k: number, sub: string): void {
    const kinds = this.kinds(expr, site, k, sub);
    let ok = kinds.length === set.key.length;
    // numgen results are 32-bit host-order integers, like marks.
    for (let i = 0; ok && i < kinds.length; i++) ok = kinds[i] === set.key[i] || (kinds[i] === 'numgen' && (set.key[i] === 'mark' || (set.key[i] === 'integer' && kinds.length === 1)));
    if (!ok) throw site.error(sp(k, sub), `a key of ${kinds.join(' . ')} does not match set ${set.name}'s type ${set.key.join(' . ')}`);
  }

  /** A numgen result (host order) looked up in an integer (network order) set: `byteorder reg 1 = hton(reg 1, 4, 4)`, as nft. */
  private htonNumgen(expr: NftExpr, set: SetInfo): void {
    if (expr.kind !== 'numgen' || set.key[0] !== 'integer') return;
    this.cached(K_HTON, () => {
      const n = ENAME.byteorder!;
      const e = this.exprBegin(n);
      this.w.u32(NFTA_BYTEORDER.SREG, NFT_REG_1);
      this.w.u32(NFTA_BYTEORDER.DREG, NFT_REG_1);
      this.w.u32(NFTA_BYTEORDER.OP, NFT_BYTEORDER_HTON);
      this.w.u32(NFTA_BYTEORDER.LEN, 4);
      this.w.u32(NFTA_BYTEORDER.SIZE, 4);
      this.exprEnd(e, n);
    });
  }

  private setRef(attrName: number, attrId: number, set: string, site: Site, k: number, sub: string): void {
    this.w.bytes(attrName, this.name(set, site, sp(k, sub)));
    const id = this.setIds.get(set);
    if (id !== undefined) this.w.u32(attrId, id);
  }

  private stmt(st: NftStmt, site: Site, k: number): void {
    switch (st?.kind) {
      case 'match':
        return this.match(st, site, k);
      case 'lookup': {
        const set = this.knownSet(site, st.set, sp(k, '.set'));
        this.checkKey(st.left, set, site, k, '.left');
        if (st.op !== undefined && st.op !== '==' && st.op !== '!=') throw site.bad(sp(k, '.op'), st.op, '== or !=');
        this.loadKey(st.left, site, k, '.left');
        this.htonNumgen(st.left, set);
        const n = ENAME.lookup!;
        const e = this.exprBegin(n);
        this.w.u32(NFTA_LOOKUP.SREG, NFT_REG_1);
        this.setRef(NFTA_LOOKUP.SET, NFTA_LOOKUP.SET_ID, st.set, site, k, '.set');
        if (st.op === '!=') this.w.u32(NFTA_LOOKUP.FLAGS, NFT_LOOKUP_F_INV);
        this.exprEnd(e, n);
        return;
      }
      case 'vmap': {
        const set = this.knownSet(site, st.map, sp(k, '.map'));
        if (set.data !== 'verdict') throw site.error(sp(k, '.map'), `${st.map} is not a verdict map`);
        this.checkKey(st.key, set, site, k, '.key');
        this.loadKey(st.key, site, k, '.key');
        this.htonNumgen(st.key, set);
        const n = ENAME.lookup!;
        const e = this.exprBegin(n);
        this.w.u32(NFTA_LOOKUP.SREG, NFT_REG_1);
        this.w.u32(NFTA_LOOKUP.DREG, NFT_REG_VERDICT);
        this.setRef(NFTA_LOOKUP.SET, NFTA_LOOKUP.SET_ID, st.map, site, k, '.map');
        this.exprEnd(e, n);
        return;
      }
      case 'counter':
        this.cached(K_COUNTER, () => {
          const n = ENAME.counter!;
          this.exprEnd(this.exprBegin(n), n);
        });
        return;
      case 'mark-or':
      case 'mark-xor': {
        if (!Number.isInteger(st.value) || st.value < 0 || st.value > 0xffffffff) throw site.bad(sp(k, '.value'), st.value, 'a 32-bit mark');
        const value = st.value;
        const or = st.kind === 'mark-or';
        this.cached((or ? K_MARK_OR : K_MARK_XOR) + value, () => {
          this.meta(NFT_META_MARK, NFT_REG_1);
          // or: (mark & ~v) ^ v; xor: (mark & ~0) ^ v — nft's encoding of both.
          writeHostU32(this.v1, 0, or ? ~value : 0xffffffff);
          writeHostU32(this.v2, 0, value);
          this.bitwise(NFT_REG_1, 4, this.v1, this.v2, true);
          const n = ENAME.meta!;
          const e = this.exprBegin(n);
          this.w.u32(NFTA_META.KEY, NFT_META_MARK);
          this.w.u32(NFTA_META.SREG, NFT_REG_1);
          this.exprEnd(e, n);
        });
        return;
      }
      case 'mark-test': {
        const { mask, value } = st;
        if (!Number.isInteger(mask) || mask < 0 || mask > 0xffffffff) throw site.bad(sp(k, '.mask'), mask, 'a 32-bit mask');
        if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw site.bad(sp(k, '.value'), value, 'a 32-bit mark');
        if (st.op !== '==' && st.op !== '!=') throw site.bad(sp(k, '.op'), st.op, '== or !=');
        const op = st.op === '==' ? NFT_CMP_EQ : NFT_CMP_NEQ;
        // meta load mark; bitwise (mark & mask) ^ 0; cmp — as nft encodes `meta mark & M == V`.
        this.cached(`mark-test ${mask} ${op} ${value}`, () => {
          this.meta(NFT_META_MARK, NFT_REG_1);
          writeHostU32(this.v1, 0, mask);
          this.bitwise(NFT_REG_1, 4, this.v1, ZERO, true);
          writeHostU32(this.v2, 0, value);
          this.cmp(NFT_REG_1, op, this.v2, 4);
        });
        return;
      }
      case 'set-update': {
        const set = this.knownSet(site, st.set, sp(k, '.set'));
        if (!set.dynamic) throw site.error(sp(k, '.set'), `${st.set} is not a dynamic set (update @set needs flags dynamic)`);
        this.checkKey(st.key, set, site, k, '.key');
        this.loadKey(st.key, site, k, '.key');
        const n = ENAME.dynset!;
        const e = this.exprBegin(n);
        this.w.u32(NFTA_DYNSET.SREG_KEY, NFT_REG_1);
        this.w.u32(NFTA_DYNSET.OP, NFT_DYNSET_OP_UPDATE);
        this.setRef(NFTA_DYNSET.SET_NAME, NFTA_DYNSET.SET_ID, st.set, site, k, '.set');
        this.exprEnd(e, n);
        return;
      }
      case 'dnat': {
        const type: NftType = this.tx.family === 'ip6' ? 'ipv6_addr' : 'ipv4_addr';
        const len = TYPES[type].len;
        if (!writeValue(type, st.addr, this.v1, 0)) throw site.bad(sp(k, '.addr'), st.addr, TYPE_TEXT[type]);
        if (!Number.isInteger(st.port) || st.port < 1 || st.port > 65535) throw site.bad(sp(k, '.port'), st.port, 'a port (1-65535)');
        this.immediate(NFT_REG_1, this.v1, len);
        this.v2[0] = st.port >> 8;
        this.v2[1] = st.port & 0xff;
        this.immediate(NFT_REG_2, this.v2, 2);
        this.cached(K_NAT, () => {
          const n = ENAME.nat!;
          const e = this.exprBegin(n);
          const w = this.w;
          w.u32(NFTA_NAT.TYPE, NFT_NAT_DNAT);
          w.u32(NFTA_NAT.FAMILY, this.family);
          w.u32(NFTA_NAT.REG_ADDR_MIN, NFT_REG_1);
          w.u32(NFTA_NAT.REG_PROTO_MIN, NFT_REG_2);
          w.u32(NFTA_NAT.FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
          this.exprEnd(e, n);
        });
        return;
      }
      case 'dnat-map': {
        // nft: [ numgen reg 1 = random mod M ] [ byteorder reg 1 = hton(reg 1, 4, 4) ]
        //      [ lookup reg 1 set S dreg 1 ] [ nat dnat ip addr_min reg 1 proto_min reg 9 ]
        const set = this.knownSet(site, st.map, sp(k, '.map'));
        const addr: NftType = this.tx.family === 'ip6' ? 'ipv6_addr' : 'ipv4_addr';
        const d = dataTypes(set.data);
        if (d.length !== 2 || d[0] !== addr || d[1] !== 'inet_service') throw site.error(sp(k, '.map'), `${st.map} does not map to ${addr} . inet_service`);
        this.checkKey(st.key, set, site, k, '.key');
        this.loadKey(st.key, site, k, '.key');
        this.htonNumgen(st.key, set);
        const n = ENAME.lookup!;
        const e = this.exprBegin(n);
        this.w.u32(NFTA_LOOKUP.SREG, NFT_REG_1);
        this.w.u32(NFTA_LOOKUP.DREG, NFT_REG_1);
        this.setRef(NFTA_LOOKUP.SET, NFTA_LOOKUP.SET_ID, st.map, site, k, '.map');
        this.exprEnd(e, n);
        const v6 = this.tx.family === 'ip6';
        this.cached(K_NAT_MAP + (v6 ? 1 : 0), () => {
          const nn = ENAME.nat!;
          const ne = this.exprBegin(nn);
          const w = this.w;
          w.u32(NFTA_NAT.TYPE, NFT_NAT_DNAT);
          w.u32(NFTA_NAT.FAMILY, this.family);
          w.u32(NFTA_NAT.REG_ADDR_MIN, NFT_REG_1);
          // The port follows the address in the registers: NFT_REG32_01 after 4 bytes, NFT_REG_2 after 16.
          w.u32(NFTA_NAT.REG_PROTO_MIN, v6 ? NFT_REG_2 : NFT_REG32_00 + 1);
          this.exprEnd(ne, nn);
        });
        return;
      }
      case 'masquerade': {
        const random = !!st.fullyRandom;
        this.cached(K_MASQ + (random ? 1 : 0), () => {
          const n = ENAME.masq!;
          const e = this.exprBegin(n);
          if (random) this.w.u32(NFTA_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
          this.exprEnd(e, n);
        });
        return;
      }
      case 'reject': {
        if (st.with !== 'icmp-port-unreachable' && st.with !== 'tcp-reset') throw site.bad(sp(k, '.with'), st.with, 'icmp-port-unreachable or tcp-reset');
        const rst = st.with === 'tcp-reset';
        this.cached(K_REJECT + (rst ? 1 : 0), () => {
          const n = ENAME.reject!;
          const e = this.exprBegin(n);
          if (rst) {
            this.w.u32(NFTA_REJECT.TYPE, NFT_REJECT_TCP_RST);
            this.w.u8(NFTA_REJECT.ICMP_CODE, 0);
          } else {
            this.w.u32(NFTA_REJECT.TYPE, NFT_REJECT_ICMP_UNREACH);
            this.w.u8(NFTA_REJECT.ICMP_CODE, this.tx.family === 'ip6' ? ICMPV6_PORT_UNREACH : ICMP_PORT_UNREACH);
          }
          this.exprEnd(e, n);
        });
        return;
      }
      case 'verdict': {
        const v = st.verdict;
        const build = () => {
          const n = ENAME.immediate!;
          const e = this.exprBegin(n);
          this.w.u32(NFTA_IMMEDIATE.DREG, NFT_REG_VERDICT);
          const d = this.w.nestBegin(NFTA_IMMEDIATE.DATA);
          this.verdictData(v, site, () => sp(k, '.verdict'));
          this.w.nestEnd(d);
          this.exprEnd(e, n);
        };
        const code = v?.kind === 'accept' ? 1 : v?.kind === 'drop' ? 2 : v?.kind === 'return' ? 3 : v?.kind === 'continue' ? 4 : 0;
        if (code) this.cached(K_VERDICT + code, build);
        else build();
        return;
      }
      default:
        throw site.bad(sp(k), st, 'a statement');
    }
  }

  private match(st: NftStmt & { kind: 'match' }, site: Site, k: number): void {
    const { left, value } = st;
    if (st.op !== '==' && st.op !== '!=') throw site.bad(sp(k, '.op'), st.op, '== or !=');
    const cmpOp = st.op === '==' ? NFT_CMP_EQ : NFT_CMP_NEQ;
    const [kind] = this.kinds(left, site, k, '.left');
    if (left.kind === 'concat') throw site.error(sp(k, '.left'), 'a concatenation can only be looked up in a set or map (like nft: "use concatenations with sets and maps")');
    if (left.kind === 'const') throw site.error(sp(k, '.left'), 'a constant cannot be matched');
    const v = this.v1;
    switch (kind) {
      case 'ct_state': {
        const states = parseCtStates(value);
        if (!states) throw site.bad(sp(k, '.value'), value, CT_STATE_TEXT);
        this.loadOne(left, NFT_REG_1, site, k, '.left', -1);
        writeHostU32(v, 0, states.mask);
        if (st.op === '!=' && states.count === 1) {
          // nft: `ct state != new` compares the state (states are single bits).
          this.cmp(NFT_REG_1, NFT_CMP_NEQ, v, 4);
          return;
        }
        // `ct state a,b` = (state & (a|b)) != 0; `!= a,b` = (state & (a|b)) == 0.
        this.bitwise(NFT_REG_1, 4, v, ZERO, false);
        this.cmp(NFT_REG_1, st.op === '==' ? NFT_CMP_NEQ : NFT_CMP_EQ, ZERO, 4);
        return;
      }
      case 'ipv4_addr':
      case 'ipv6_addr': {
        const plen = prefixInto(kind, value, v);
        if (plen < 0) throw site.bad(sp(k, '.value'), value, `${TYPE_TEXT[kind]} or prefix`);
        const p = this.payloadSpec((left as { field: string }).field, site, k, '.left', -1);
        const bits = p.len * 8;
        if (plen === bits) {
          this.payload(NFT_REG_1, p.base, p.offset, p.len);
          this.cmp(NFT_REG_1, cmpOp, v, p.len);
        } else if (plen > 0 && plen % 8 === 0) {
          // nft loads only the prefix's bytes when it ends on a byte boundary.
          this.payload(NFT_REG_1, p.base, p.offset, plen / 8);
          this.cmp(NFT_REG_1, cmpOp, v, plen / 8);
        } else {
          this.payload(NFT_REG_1, p.base, p.offset, p.len);
          this.bitwise(NFT_REG_1, p.len, prefixMask(p.len, plen), ZERO, false);
          this.cmp(NFT_REG_1, cmpOp, v, p.len);
        }
        return;
      }
      case 'fib_addrtype': {
        const t = FIB_ADDRTYPES[value] ?? parseUint(value, 0xffffffff);
        if (t === undefined) throw site.bad(sp(k, '.value'), value, `a route type (${Object.keys(FIB_ADDRTYPES).join(', ')})`);
        writeHostU32(v, 0, t);
        this.loadOne(left, NFT_REG_1, site, k, '.left', -1);
        this.cmp(NFT_REG_1, cmpOp, v, 4);
        return;
      }
      case 'numgen': {
        const mod = (left as { mod: number }).mod;
        const n = parseUint(value, 0xffffffff);
        if (n === undefined || n >= mod) throw site.bad(sp(k, '.value'), value, `a numgen result (0-${mod - 1})`);
        writeHostU32(v, 0, n);
        this.loadOne(left, NFT_REG_1, site, k, '.left', -1);
        this.cmp(NFT_REG_1, cmpOp, v, 4);
        return;
      }
      default: {
        const t = kind as NftType;
        if (!writeValue(t, value, v, 0)) throw site.bad(sp(k, '.value'), value, TYPE_TEXT[t]);
        const len = this.loadOne(left, NFT_REG_1, site, k, '.left', -1);
        this.cmp(NFT_REG_1, cmpOp, v, len);
      }
    }
  }
}

const OP_NAMES = 'add-table, delete-table, add-chain, flush-chain, delete-chain, add-rule, add-set, flush-set, delete-set, add-elements, delete-elements';
const NAME_TEXT = 'a name (1-255 printable ASCII characters, no spaces or quotes)';

function validName(s: string): boolean {
  if (s.length === 0 || s.length > 255) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22) return false;
  }
  return true;
}

/** A name as NFTA_*_NAME carries it (NUL-terminated). Names are printable ASCII, 1-255 bytes. */
export function nameBuf(name: unknown, field: string, context: ErrorContext): Buffer {
  if (typeof name !== 'string' || !validName(name)) throw badValue(field, name, NAME_TEXT, context);
  return Buffer.from(`${name}\0`, 'latin1');
}

/** Batch framing helpers the executor uses for requests outside transactions. */
export function encodeRequest(msg: number, flags: number, family: NftFamily | 'unspec', seq: number, attrs: (w: NlWriter) => void): Buffer {
  const w = new NlWriter(256);
  const s = w.msgBegin(nftType(msg), flags, seq, family === 'ip' ? NFPROTO_IPV4 : family === 'ip6' ? NFPROTO_IPV6 : 0);
  attrs(w);
  w.msgEnd(s);
  return w.buf.subarray(0, w.off);
}

