/**
 * Protocol Buffers encoding of exactly the etcd v3 messages the etcd store uses, written by
 * hand: a varint / length-delimited writer and reader, and one encoder or decoder per
 * message. Field numbers are those of etcd's `api/etcdserverpb/rpc.proto` and
 * `api/mvccpb/kv.proto` (named in each message's comment); decoders skip fields they do
 * not know, as protobuf requires, so newer etcd versions can add fields.
 *
 * Numbers: int64 fields (revisions, counts) decode to JS numbers, exact up to 2^53
 * (a revision at a million writes per second takes 285 years to get there); uint64 member
 * and cluster IDs decode to bigints. Bytes fields decode to subarrays of the message
 * (no copy): convert what must outlive the message.
 *
 * Wire format (https://protobuf.dev/programming-guides/encoding/): a field is a varint tag
 * `(number << 3) | wireType` followed by a varint (type 0), 8 bytes (1), a varint length
 * and that many bytes (2: bytes, strings, messages), or 4 bytes (5). proto3 fields at
 * their default (0, false, empty) are left out, except a `oneof` member, which is written
 * even when 0 (its presence is the information: `Compare.create_revision = 0`).
 */

/** Raw bytes, or a string written as UTF-8. */
export type Bytes = Uint8Array | string;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

/** Reserved bytes for a nested message's length, backfilled by `ldelim` (5 = any length < 2^35). */
const LEN_RESERVE = 5;

export class ProtoError extends Error {
  constructor(message: string) {
    super(`protobuf: ${message}`);
    this.name = 'ProtoError';
  }
}

/** Bytes a varint takes. */
export function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  for (let v = Math.floor(n / 0x10000000); v > 0; v = Math.floor(v / 0x80)) size++;
  return size;
}

/** Writes `n` (a non-negative integer up to 2^53) as a varint at `p`; returns the next position. */
function putVarint(b: Buffer, p: number, n: number): number {
  while (n > 0x7fffffff) {
    b[p++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  while (n > 0x7f) {
    b[p++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  b[p++] = n;
  return p;
}

/**
 * A growable output buffer. Nested messages are written in place: `fork(field)` writes the
 * tag and reserves room for the length, `ldelim()` writes the length and closes the gap.
 * `headroom` bytes are left free at the start (the gRPC frame header goes there).
 */
export class Writer {
  private buf: Buffer;
  private pos: number;
  private readonly start: number;
  private readonly forks: number[] = [];

  constructor(sizeHint = 256, headroom = 0) {
    this.buf = Buffer.allocUnsafe(Math.max(sizeHint + headroom, 16));
    this.pos = headroom;
    this.start = headroom;
  }

  /** Bytes written so far (headroom excluded). */
  get length(): number {
    return this.pos - this.start;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer up to 2^53 as a varint (no tag). */
  varint(n: number): this {
    this.ensure(10);
    this.pos = putVarint(this.buf, this.pos, n);
    return this;
  }

  /** An int64 value as a varint (no tag); negative values take 10 bytes (two's complement). */
  int64Value(n: number): this {
    if (!Number.isInteger(n)) throw new ProtoError(`int64 field: ${n} is not an integer`);
    if (n >= 0) return this.varint(n);
    let v = BigInt.asUintN(64, BigInt(n));
    this.ensure(10);
    for (let i = 0; i < 9; i++) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  /** An int64 / uint64 / enum field; left out when 0 unless `always` (a oneof member). */
  int64(field: number, n: number | undefined, always = false): this {
    if (n === undefined || (n === 0 && !always)) return this;
    return this.tag(field, WIRE_VARINT).int64Value(n);
  }

  /** A bool field; left out when false. */
  bool(field: number, b: boolean | undefined): this {
    if (!b) return this;
    this.ensure(11);
    this.tag(field, WIRE_VARINT);
    this.buf[this.pos++] = 1;
    return this;
  }

  /** A bytes or string field; left out when empty unless `always`. */
  bytes(field: number, v: Bytes | undefined, always = false): this {
    if (v === undefined || (v.length === 0 && !always)) return this;
    this.tag(field, WIRE_LEN);
    if (typeof v === 'string') {
      const n = Buffer.byteLength(v, 'utf8');
      this.varint(n);
      this.ensure(n);
      this.pos += this.buf.write(v, this.pos, n, 'utf8');
    } else {
      this.varint(v.length);
      this.ensure(v.length);
      this.buf.set(v, this.pos);
      this.pos += v.length;
    }
    return this;
  }

  /** Starts a nested message in field `field`; close it with `ldelim()`. */
  fork(field: number): this {
    this.tag(field, WIRE_LEN);
    this.ensure(LEN_RESERVE);
    this.forks.push(this.pos);
    this.pos += LEN_RESERVE;
    return this;
  }

  /** Ends the innermost `fork`: writes its length and moves its content next to it. */
  ldelim(): this {
    const at = this.forks.pop();
    if (at === undefined) throw new ProtoError('ldelim without fork');
    const bodyStart = at + LEN_RESERVE;
    const len = this.pos - bodyStart;
    const n = varintSize(len);
    // The reserved bytes hold any length: no growth here (it would copy only up to `at`).
    putVarint(this.buf, at, len);
    if (n !== LEN_RESERVE) this.buf.copyWithin(at + n, bodyStart, this.pos);
    this.pos = at + n + len;
    return this;
  }

  /** The encoded bytes, headroom included (a view of the internal buffer). */
  finish(): Buffer {
    if (this.forks.length) throw new ProtoError('finish with an open fork');
    return this.buf.subarray(0, this.pos);
  }
}

/** Reads one message; `end` bounds a nested message inside a larger buffer. */
export class Reader {
  pos: number;
  readonly end: number;
  readonly buf: Buffer;

  constructor(buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private truncated(): never {
    throw new ProtoError(`message truncated at byte ${this.pos} of ${this.end}`);
  }

  /**
   * A varint as a number: exact up to 2^53; int64 negatives (10 bytes) come back negative.
   * Larger magnitudes lose precision (use `uint64()` for IDs).
   */
  varint(): number {
    const b = this.buf;
    let p = this.pos;
    if (p >= this.end) this.truncated();
    let byte = b[p++]!;
    if (byte < 0x80) {
      this.pos = p;
      return byte;
    }
    // Low 28 bits, then the rest in 7-bit steps into lo/hi 32-bit halves.
    let lo = byte & 0x7f;
    let shift = 7;
    for (;;) {
      if (p >= this.end) this.truncated();
      byte = b[p++]!;
      if (shift < 28) {
        lo |= (byte & 0x7f) << shift;
        shift += 7;
        if (byte < 0x80) {
          this.pos = p;
          return lo >>> 0;
        }
        continue;
      }
      break;
    }
    // shift === 28: bits 28..31 of lo and 0..2 of hi in this byte.
    lo = (lo | ((byte & 0x0f) << 28)) >>> 0;
    let hi = (byte & 0x7f) >> 4;
    shift = 3;
    while (byte >= 0x80) {
      if (shift > 31) throw new ProtoError(`varint longer than 10 bytes at byte ${this.pos}`);
      if (p >= this.end) this.truncated();
      byte = b[p++]!;
      hi |= (byte & 0x7f) << shift;
      shift += 7;
    }
    this.pos = p;
    hi >>>= 0;
    if (hi & 0x80000000) return -((~hi >>> 0) * 0x100000000 + (~lo >>> 0) + 1);
    return hi * 0x100000000 + lo;
  }

  /** A varint as an unsigned 64-bit bigint (member and cluster IDs). */
  uint64(): bigint {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (i >= 10) throw new ProtoError(`varint longer than 10 bytes at byte ${this.pos}`);
      if (this.pos >= this.end) this.truncated();
      const byte = b[this.pos++]!;
      const bits = byte & 0x7f;
      // Bits 7i .. 7i+6: into lo (below 32), across, or into hi.
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >> 4;
      } else hi |= bits << (7 * i - 32);
      if (byte < 0x80) return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    }
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  /** A length-delimited field's bounds: [start, end). */
  lenDelim(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    const end = start + len;
    if (len < 0 || end > this.end) this.truncated();
    this.pos = end;
    return [start, end];
  }

  /** A bytes field: a view of the message (no copy). */
  bytes(): Buffer {
    const [s, e] = this.lenDelim();
    return this.buf.subarray(s, e);
  }

  string(): string {
    const [s, e] = this.lenDelim();
    return this.buf.toString('utf8', s, e);
  }

  /** A reader over a nested message. */
  message(): Reader {
    const [s, e] = this.lenDelim();
    return new Reader(this.buf, s, e);
  }

  /** Skips a field of `wire` type (for unknown fields). */
  skip(wire: number, field = 0): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lenDelim();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      case WIRE_START_GROUP:
        for (;;) {
          const t = this.varint();
          if ((t & 7) === WIRE_END_GROUP) {
            if (t >>> 3 !== field) throw new ProtoError(`group ${field} closed by ${t >>> 3}`);
            return;
          }
          this.skip(t & 7, t >>> 3);
        }
      default:
        throw new ProtoError(`wire type ${wire} (field ${field}) at byte ${this.pos}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) this.truncated();
    this.pos += n;
  }
}

// ---- etcd messages: requests (encoders) ---------------------------------------------------

/** etcdserverpb.RangeRequest. */
export interface RangeRequest {
  key: Bytes; // 1
  rangeEnd?: Bytes; // 2
  limit?: number; // 3
  revision?: number; // 4
  serializable?: boolean; // 7
  keysOnly?: boolean; // 8
  countOnly?: boolean; // 9
}

/** etcdserverpb.PutRequest. */
export interface PutRequest {
  key: Bytes; // 1
  value: Bytes; // 2
  lease?: number; // 3
  prevKv?: boolean; // 4
}

/** etcdserverpb.DeleteRangeRequest. */
export interface DeleteRangeRequest {
  key: Bytes; // 1
  rangeEnd?: Bytes; // 2
  prevKv?: boolean; // 3
}

/** etcdserverpb.Compare.CompareResult. */
export const CompareResult = { Equal: 0, Greater: 1, Less: 2, NotEqual: 3 } as const;
/** etcdserverpb.Compare.CompareTarget. */
export const CompareTarget = { Version: 0, Create: 1, Mod: 2, Value: 3, Lease: 4 } as const;

/** etcdserverpb.Compare: `target` selects which oneof member (4..8) carries the operand. */
export type Compare =
  | { key: Bytes; result: number; target: typeof CompareTarget.Version; version: number }
  | { key: Bytes; result: number; target: typeof CompareTarget.Create; createRevision: number }
  | { key: Bytes; result: number; target: typeof CompareTarget.Mod; modRevision: number }
  | { key: Bytes; result: number; target: typeof CompareTarget.Value; value: Bytes }
  | { key: Bytes; result: number; target: typeof CompareTarget.Lease; lease: number };

/** etcdserverpb.RequestOp (oneof request: 1 range, 2 put, 3 delete_range; nested txn unused). */
export type RequestOp = { range: RangeRequest } | { put: PutRequest } | { deleteRange: DeleteRangeRequest };

/** etcdserverpb.TxnRequest. */
export interface TxnRequest {
  compare: Compare[]; // 1
  success: RequestOp[]; // 2
  failure: RequestOp[]; // 3
}

/** etcdserverpb.CompactionRequest. */
export interface CompactionRequest {
  revision: number; // 1
  physical?: boolean; // 2
}

/** etcdserverpb.WatchCreateRequest. */
export interface WatchCreateRequest {
  key: Bytes; // 1
  rangeEnd?: Bytes; // 2
  startRevision?: number; // 3
  progressNotify?: boolean; // 4
  filters?: number[]; // 5 (packed enum: 0 NOPUT, 1 NODELETE)
  prevKv?: boolean; // 6
  watchId?: number; // 7
  fragment?: boolean; // 8
}

/** etcdserverpb.WatchRequest (oneof request_union: 1 create, 2 cancel, 3 progress). */
export type WatchRequest = { create: WatchCreateRequest } | { cancel: { watchId: number } } | { progress: true };

function writeRange(w: Writer, r: RangeRequest): void {
  w.bytes(1, r.key, true).bytes(2, r.rangeEnd).int64(3, r.limit).int64(4, r.revision).bool(7, r.serializable).bool(8, r.keysOnly).bool(9, r.countOnly);
}

function writePut(w: Writer, r: PutRequest): void {
  w.bytes(1, r.key, true).bytes(2, r.value).int64(3, r.lease).bool(4, r.prevKv);
}

function writeDeleteRange(w: Writer, r: DeleteRangeRequest): void {
  w.bytes(1, r.key, true).bytes(2, r.rangeEnd).bool(3, r.prevKv);
}

function writeCompare(w: Writer, c: Compare): void {
  w.int64(1, c.result).int64(2, c.target).bytes(3, c.key, true);
  switch (c.target) {
    case CompareTarget.Version:
      w.int64(4, c.version, true);
      break;
    case CompareTarget.Create:
      w.int64(5, c.createRevision, true);
      break;
    case CompareTarget.Mod:
      w.int64(6, c.modRevision, true);
      break;
    case CompareTarget.Value:
      w.bytes(7, c.value, true);
      break;
    case CompareTarget.Lease:
      w.int64(8, c.lease, true);
      break;
  }
}

function writeRequestOp(w: Writer, op: RequestOp): void {
  if ('put' in op) {
    w.fork(2);
    writePut(w, op.put);
  } else if ('range' in op) {
    w.fork(1);
    writeRange(w, op.range);
  } else {
    w.fork(3);
    writeDeleteRange(w, op.deleteRange);
  }
  w.ldelim();
}

/** Rough size of a request (for the first buffer): the lengths of its big fields. */
function bytesLen(b: Bytes | undefined): number {
  return b === undefined ? 0 : b.length;
}

function opSize(op: RequestOp): number {
  if ('put' in op) return bytesLen(op.put.key) + bytesLen(op.put.value) + 16;
  if ('range' in op) return bytesLen(op.range.key) + bytesLen(op.range.rangeEnd) + 24;
  return bytesLen(op.deleteRange.key) + bytesLen(op.deleteRange.rangeEnd) + 16;
}

/**
 * Encoders: each returns the message bytes after `headroom` free bytes (the gRPC framing
 * fills them; 0 for a bare message).
 */
export function encodeRangeRequest(r: RangeRequest, headroom = 0): Buffer {
  const w = new Writer(bytesLen(r.key) + bytesLen(r.rangeEnd) + 32, headroom);
  writeRange(w, r);
  return w.finish();
}

export function encodePutRequest(r: PutRequest, headroom = 0): Buffer {
  const w = new Writer(bytesLen(r.key) + bytesLen(r.value) + 16, headroom);
  writePut(w, r);
  return w.finish();
}

export function encodeDeleteRangeRequest(r: DeleteRangeRequest, headroom = 0): Buffer {
  const w = new Writer(bytesLen(r.key) + bytesLen(r.rangeEnd) + 16, headroom);
  writeDeleteRange(w, r);
  return w.finish();
}

export function encodeTxnRequest(t: TxnRequest, headroom = 0): Buffer {
  let hint = 16;
  for (const c of t.compare) hint += bytesLen(c.key) + 24;
  for (const op of t.success) hint += opSize(op) + 12;
  for (const op of t.failure) hint += opSize(op) + 12;
  const w = new Writer(hint, headroom);
  for (const c of t.compare) {
    w.fork(1);
    writeCompare(w, c);
    w.ldelim();
  }
  for (const op of t.success) {
    w.fork(2);
    writeRequestOp(w, op);
    w.ldelim();
  }
  for (const op of t.failure) {
    w.fork(3);
    writeRequestOp(w, op);
    w.ldelim();
  }
  return w.finish();
}

export function encodeCompactionRequest(r: CompactionRequest, headroom = 0): Buffer {
  const w = new Writer(24, headroom);
  w.int64(1, r.revision).bool(2, r.physical);
  return w.finish();
}

export function encodeWatchRequest(r: WatchRequest, headroom = 0): Buffer {
  const w = new Writer('create' in r ? bytesLen(r.create.key) + bytesLen(r.create.rangeEnd) + 48 : 16, headroom);
  if ('create' in r) {
    const c = r.create;
    w.fork(1);
    w.bytes(1, c.key, true).bytes(2, c.rangeEnd).int64(3, c.startRevision).bool(4, c.progressNotify);
    if (c.filters?.length) {
      w.fork(5);
      for (const f of c.filters) w.varint(f);
      w.ldelim();
    }
    w.bool(6, c.prevKv).int64(7, c.watchId).bool(8, c.fragment);
    w.ldelim();
  } else if ('cancel' in r) {
    w.fork(2).int64(1, r.cancel.watchId).ldelim();
  } else {
    w.fork(3).ldelim();
  }
  return w.finish();
}

// ---- etcd messages: responses (decoders) -------------------------------------------------

/** etcdserverpb.ResponseHeader. */
export interface ResponseHeader {
  clusterId: bigint; // 1
  memberId: bigint; // 2
  revision: number; // 3
  raftTerm: number; // 4
}

/** mvccpb.KeyValue. `key` and `value` are views of the response. */
export interface KeyValue {
  key: Buffer; // 1
  createRevision: number; // 2
  modRevision: number; // 3
  version: number; // 4
  value: Buffer; // 5
  lease: number; // 6
}

export interface RangeResponse {
  header: ResponseHeader; // 1
  kvs: KeyValue[]; // 2
  more: boolean; // 3
  count: number; // 4
}

export interface PutResponse {
  header: ResponseHeader; // 1
  prevKv: KeyValue | undefined; // 2
}

export interface DeleteRangeResponse {
  header: ResponseHeader; // 1
  deleted: number; // 2
  prevKvs: KeyValue[]; // 3
}

/** etcdserverpb.ResponseOp: the member of the oneof that is set (a nested txn is skipped). */
export interface ResponseOp {
  range?: RangeResponse; // 1
  put?: PutResponse; // 2
  deleteRange?: DeleteRangeResponse; // 3
}

export interface TxnResponse {
  header: ResponseHeader; // 1
  succeeded: boolean; // 2
  responses: ResponseOp[]; // 3
}

export interface CompactionResponse {
  header: ResponseHeader; // 1
}

/** mvccpb.Event.EventType. */
export const EventType = { Put: 0, Delete: 1 } as const;

/** mvccpb.Event. */
export interface Event {
  type: number; // 1
  kv: KeyValue; // 2
  prevKv: KeyValue | undefined; // 3
}

/** etcdserverpb.WatchResponse. */
export interface WatchResponse {
  header: ResponseHeader; // 1
  watchId: number; // 2
  created: boolean; // 3
  canceled: boolean; // 4
  compactRevision: number; // 5
  cancelReason: string; // 6
  fragment: boolean; // 7
  events: Event[]; // 11
}

const EMPTY = Buffer.alloc(0);

function emptyHeader(): ResponseHeader {
  return { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 };
}

function readHeader(r: Reader): ResponseHeader {
  const h = emptyHeader();
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_VARINT:
        h.clusterId = r.uint64();
        break;
      case (2 << 3) | WIRE_VARINT:
        h.memberId = r.uint64();
        break;
      case (3 << 3) | WIRE_VARINT:
        h.revision = r.varint();
        break;
      case (4 << 3) | WIRE_VARINT:
        h.raftTerm = r.varint();
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return h;
}

function emptyKeyValue(): KeyValue {
  return { key: EMPTY, createRevision: 0, modRevision: 0, version: 0, value: EMPTY, lease: 0 };
}

function readKeyValue(r: Reader): KeyValue {
  const kv = emptyKeyValue();
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        kv.key = r.bytes();
        break;
      case (2 << 3) | WIRE_VARINT:
        kv.createRevision = r.varint();
        break;
      case (3 << 3) | WIRE_VARINT:
        kv.modRevision = r.varint();
        break;
      case (4 << 3) | WIRE_VARINT:
        kv.version = r.varint();
        break;
      case (5 << 3) | WIRE_LEN:
        kv.value = r.bytes();
        break;
      case (6 << 3) | WIRE_VARINT:
        kv.lease = r.varint();
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return kv;
}

function readRange(r: Reader): RangeResponse {
  const res: RangeResponse = { header: emptyHeader(), kvs: [], more: false, count: 0 };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        res.header = readHeader(r.message());
        break;
      case (2 << 3) | WIRE_LEN:
        res.kvs.push(readKeyValue(r.message()));
        break;
      case (3 << 3) | WIRE_VARINT:
        res.more = r.bool();
        break;
      case (4 << 3) | WIRE_VARINT:
        res.count = r.varint();
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return res;
}

function readPut(r: Reader): PutResponse {
  const res: PutResponse = { header: emptyHeader(), prevKv: undefined };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        res.header = readHeader(r.message());
        break;
      case (2 << 3) | WIRE_LEN:
        res.prevKv = readKeyValue(r.message());
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return res;
}

function readDeleteRange(r: Reader): DeleteRangeResponse {
  const res: DeleteRangeResponse = { header: emptyHeader(), deleted: 0, prevKvs: [] };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        res.header = readHeader(r.message());
        break;
      case (2 << 3) | WIRE_VARINT:
        res.deleted = r.varint();
        break;
      case (3 << 3) | WIRE_LEN:
        res.prevKvs.push(readKeyValue(r.message()));
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return res;
}

function readResponseOp(r: Reader): ResponseOp {
  const op: ResponseOp = {};
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        op.range = readRange(r.message());
        break;
      case (2 << 3) | WIRE_LEN:
        op.put = readPut(r.message());
        break;
      case (3 << 3) | WIRE_LEN:
        op.deleteRange = readDeleteRange(r.message());
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return op;
}

function readEvent(r: Reader): Event {
  const ev: Event = { type: EventType.Put, kv: emptyKeyValue(), prevKv: undefined };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_VARINT:
        ev.type = r.varint();
        break;
      case (2 << 3) | WIRE_LEN:
        ev.kv = readKeyValue(r.message());
        break;
      case (3 << 3) | WIRE_LEN:
        ev.prevKv = readKeyValue(r.message());
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return ev;
}

export function decodeRangeResponse(buf: Buffer): RangeResponse {
  return readRange(new Reader(buf));
}

export function decodePutResponse(buf: Buffer): PutResponse {
  return readPut(new Reader(buf));
}

export function decodeDeleteRangeResponse(buf: Buffer): DeleteRangeResponse {
  return readDeleteRange(new Reader(buf));
}

export function decodeTxnResponse(buf: Buffer): TxnResponse {
  const r = new Reader(buf);
  const res: TxnResponse = { header: emptyHeader(), succeeded: false, responses: [] };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        res.header = readHeader(r.message());
        break;
      case (2 << 3) | WIRE_VARINT:
        res.succeeded = r.bool();
        break;
      case (3 << 3) | WIRE_LEN:
        res.responses.push(readResponseOp(r.message()));
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return res;
}

export function decodeCompactionResponse(buf: Buffer): CompactionResponse {
  const r = new Reader(buf);
  const res: CompactionResponse = { header: emptyHeader() };
  while (!r.done) {
    const t = r.varint();
    if (t === ((1 << 3) | WIRE_LEN)) res.header = readHeader(r.message());
    else r.skip(t & 7, t >>> 3);
  }
  return res;
}

export function decodeWatchResponse(buf: Buffer): WatchResponse {
  const r = new Reader(buf);
  const res: WatchResponse = { header: emptyHeader(), watchId: 0, created: false, canceled: false, compactRevision: 0, cancelReason: '', fragment: false, events: [] };
  while (!r.done) {
    const t = r.varint();
    switch (t) {
      case (1 << 3) | WIRE_LEN:
        res.header = readHeader(r.message());
        break;
      case (2 << 3) | WIRE_VARINT:
        res.watchId = r.varint();
        break;
      case (3 << 3) | WIRE_VARINT:
        res.created = r.bool();
        break;
      case (4 << 3) | WIRE_VARINT:
        res.canceled = r.bool();
        break;
      case (5 << 3) | WIRE_VARINT:
        res.compactRevision = r.varint();
        break;
      case (6 << 3) | WIRE_LEN:
        res.cancelReason = r.string();
        break;
      case (7 << 3) | WIRE_VARINT:
        res.fragment = r.bool();
        break;
      case (11 << 3) | WIRE_LEN:
        res.events.push(readEvent(r.message()));
        break;
      default:
        r.skip(t & 7, t >>> 3);
    }
  }
  return res;
}
