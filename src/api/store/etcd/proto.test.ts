import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CompareResult,
  CompareTarget,
  EventType,
  ProtoError,
  Reader,
  Writer,
  decodeCompactionResponse,
  decodeDeleteRangeResponse,
  decodePutResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
  encodeCompactionRequest,
  encodeDeleteRangeRequest,
  encodePutRequest,
  encodeRangeRequest,
  encodeTxnRequest,
  encodeWatchRequest,
  varintSize,
} from './proto.js';
import type { KeyValue } from './proto.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A generic protobuf field list (test oracle): [field, wire, value] with nested bytes left raw. */
function fields(buf: Buffer): [number, number, number | bigint | Buffer][] {
  const r = new Reader(buf);
  const out: [number, number, number | bigint | Buffer][] = [];
  while (!r.done) {
    const t = r.varint();
    const f = t >>> 3;
    const w = t & 7;
    if (w === 0) out.push([f, w, r.uint64()]);
    else if (w === 2) out.push([f, w, Buffer.from(r.bytes())]);
    else throw new Error(`wire ${w}`);
  }
  return out;
}

// Golden bytes: produced by protobuf.js from etcd's rpc.proto (etcd3's copy of
// api/etcdserverpb/rpc.proto, kv.proto), proto3 defaults left out — an encoder
// independent of ours.
describe('request encoding: golden bytes', () => {
  it('PutRequest', () => {
    // 0a 0b "/registry/a"   field 1 (key), length 11
    // 12 07 '{"n":1}'       field 2 (value), length 7
    // 20 01                 field 4 (prev_kv) = true
    expect(hex(encodePutRequest({ key: '/registry/a', value: '{"n":1}', prevKv: true }))).toBe('0a0b2f72656769737472792f6112077b226e223a317d2001');
    expect(hex(encodePutRequest({ key: Buffer.from('/registry/a'), value: Buffer.from('{"n":1}'), prevKv: true }))).toBe('0a0b2f72656769737472792f6112077b226e223a317d2001');
  });

  it('TxnRequest: compares (oneof 0 written), success put / range / delete, failure range', () => {
    const bytes = encodeTxnRequest({
      compare: [
        { key: '/p/k', result: CompareResult.Equal, target: CompareTarget.Create, createRevision: 0 },
        { key: '/p/n', result: CompareResult.Equal, target: CompareTarget.Mod, modRevision: 300 },
        { key: '/p/n', result: CompareResult.Greater, target: CompareTarget.Create, createRevision: 0 },
      ],
      success: [{ put: { key: '/p/k', value: 'v' } }, { range: { key: '/p/n' } }, { deleteRange: { key: '/p/d', prevKv: true } }],
      failure: [{ range: { key: '/p/k' } }],
    });
    expect(hex(bytes)).toBe(
      [
        '0a0a' + '1001' + '1a042f702f6b' + '2800', // compare: target CREATE, key, create_revision = 0
        '0a0b' + '1002' + '1a042f702f6e' + '30ac02', // compare: target MOD, key, mod_revision = 300
        '0a0c' + '0801' + '1001' + '1a042f702f6e' + '2800', // compare: result GREATER, target CREATE
        '120b' + '1209' + '0a042f702f6b' + '120176', // success: request_put {key, value}
        '1208' + '0a06' + '0a042f702f6e', // success: request_range {key}
        '120a' + '1a08' + '0a042f702f64' + '1801', // success: request_delete_range {key, prev_kv}
        '1a08' + '0a06' + '0a042f702f6b', // failure: request_range {key}
      ].join(''),
    );
  });

  it('RangeRequest, WatchRequest (create), CompactionRequest', () => {
    expect(hex(encodeRangeRequest({ key: '/a', rangeEnd: '/b', limit: 500, revision: 1234567, countOnly: true }))).toBe('0a022f6112022f6218f4032087ad4b4801');
    expect(hex(encodeWatchRequest({ create: { key: '/a/', rangeEnd: '/a0', startRevision: 42, progressNotify: true, prevKv: true } }))).toBe('0a100a032f612f12032f6130182a20013001');
    expect(hex(encodeCompactionRequest({ revision: 99999, physical: true }))).toBe('089f8d061001');
  });

  it('a negative int64 takes ten bytes (two\'s complement)', () => {
    expect(hex(encodeRangeRequest({ key: 'k', revision: -1 }))).toBe('0a016b20ffffffffffffffffff01');
  });

  it('leaves proto3 defaults out, but always writes the key', () => {
    expect(hex(encodeRangeRequest({ key: '', limit: 0, revision: 0, countOnly: false }))).toBe('0a00');
    expect(hex(encodeDeleteRangeRequest({ key: 'k' }))).toBe('0a016b');
    expect(hex(encodeWatchRequest({ cancel: { watchId: 7 } }))).toBe('12020807');
    expect(hex(encodeWatchRequest({ progress: true }))).toBe('1a00');
    expect(hex(encodeCompactionRequest({ revision: 0 }))).toBe('');
  });

  it('writes headroom before the message (the gRPC frame header goes there)', () => {
    const b = encodePutRequest({ key: 'k', value: 'v' }, 5);
    expect(b.length).toBe(5 + 6);
    expect(hex(b.subarray(5))).toBe('0a016b120176');
  });

  it('UTF-8 strings and raw bytes encode the same', () => {
    const s = '/registry/u/ünï-cødé 😀';
    expect(hex(encodePutRequest({ key: s, value: s }))).toBe(hex(encodePutRequest({ key: Buffer.from(s), value: Buffer.from(s) })));
  });
});

describe('nested lengths across varint sizes', () => {
  // A nested message whose length needs 1, 2, 3 or 4 varint bytes: the writer reserves 5
  // and moves the content back; the oracle parser must find every byte in place.
  for (const n of [0, 1, 120, 127, 128, 129, 16_370, 16_383, 16_384, 2_097_151, 2_097_152]) {
    it(`a put of ${n} bytes inside a txn`, () => {
      const value = Buffer.alloc(n, 0x61);
      const txn = encodeTxnRequest({ compare: [], success: [{ put: { key: 'k', value } }, { range: { key: 'r' } }], failure: [] });
      const top = fields(txn);
      expect(top.map(([f, w]) => [f, w])).toEqual([
        [2, 2],
        [2, 2],
      ]);
      const op = fields(top[0]![2] as Buffer);
      expect(op.map(([f]) => f)).toEqual([2]);
      const put = fields(op[0]![2] as Buffer);
      expect(put[0]).toEqual([1, 2, Buffer.from('k')]);
      if (n === 0) expect(put.length).toBe(1);
      else expect((put[1]![2] as Buffer).equals(value)).toBe(true);
      expect(fields(fields(top[1]![2] as Buffer)[0]![2] as Buffer)).toEqual([[1, 2, Buffer.from('r')]]);
    });
  }
});

describe('varints', () => {
  const cases: [number, string][] = [
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8001'],
    [300, 'ac02'],
    [16_383, 'ff7f'],
    [16_384, '808001'],
    [2 ** 28 - 1, 'ffffff7f'],
    [2 ** 28, '8080808001'],
    [2 ** 31 - 1, 'ffffffff07'],
    [2 ** 31, '8080808008'],
    [2 ** 32, '808080801' + '0'],
    [2 ** 53 - 1, 'ffffffffffffff0f'],
    [-1, 'ffffffffffffffffff01'],
    [-2, 'feffffffffffffffff01'],
    [-(2 ** 31), '80808080f8ffffffff01'],
    [-(2 ** 53 - 1), '81808080808080f0ff01'],
  ];
  for (const [n, bytes] of cases) {
    it(`${n} <-> ${bytes}`, () => {
      const w = new Writer(1);
      w.int64Value(n);
      expect(hex(w.finish())).toBe(bytes);
      const r = new Reader(unhex(bytes));
      expect(r.varint()).toBe(n);
      expect(r.done).toBe(true);
      if (n >= 0) expect(varintSize(n)).toBe(bytes.length / 2);
    });
  }

  it('round-trips every safe integer', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.maxSafeNat(), fc.integer({ min: 0, max: 300 })), (n) => {
        const w = new Writer(1);
        w.int64Value(n).int64Value(n);
        const r = new Reader(w.finish());
        expect(r.varint()).toBe(n);
        expect(r.varint()).toBe(n);
        expect(r.done).toBe(true);
      }),
    );
  });

  it('reads uint64 IDs as bigints, beyond 2^53', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const bytes: number[] = [];
        let v = n;
        do {
          const b = Number(v & 0x7fn);
          v >>= 7n;
          bytes.push(v ? b | 0x80 : b);
        } while (v);
        expect(new Reader(Buffer.from(bytes)).uint64()).toBe(n);
      }),
    );
    expect(new Reader(unhex('ffffffffffffffffff01')).uint64()).toBe(2n ** 64n - 1n);
  });

  it('refuses truncated and over-long varints', () => {
    expect(() => new Reader(unhex('80')).varint()).toThrow(ProtoError);
    expect(() => new Reader(unhex('ffffffff')).varint()).toThrow(/truncated/);
    expect(() => new Reader(unhex('ffffffffffffffffff')).varint()).toThrow(/truncated/);
    expect(() => new Reader(unhex('ffffffffffffffffffff01')).varint()).toThrow(/longer than 10 bytes/);
    expect(() => new Reader(unhex('ffffffffffffffffffff01')).uint64()).toThrow(/longer than 10 bytes/);
    // A length past the end of the message.
    expect(() => decodeRangeResponse(unhex('1206 0a03616263'))).toThrow(/truncated/);
    // A nested length past the end of its parent.
    expect(() => decodeRangeResponse(unhex('1204 0a056162'))).toThrow(/truncated/);
  });

  it('refuses non-integers', () => {
    expect(() => new Writer().int64Value(1.5)).toThrow(ProtoError);
  });
});

// Responses encoded by protobuf.js (explicit zero values included, as a peer may send).
const TXN_RESPONSE =
  '0a1b08b298eaf1948386fccd0110cdd2918bd2b881cf8e0118e907200310011a1c121a0a0318e90712130a042f702f6b10840718b60720022a036f6c641a1c0a1a0a0318e90712110a042f702f6e100518ac0220072a026e7320011a1d1a1b0a0318e90710011a120a042f702f64100a181420012a04676f6e65';
const WATCH_RESPONSE = '0a02184d1000180028005a28080012110a042f612f781046184d20022a036e65771a110a042f612f781046184720012a036f6c645a0c080112080a042f612f79184d';
const WATCH_CANCELED = '0a0318f4031001200128c102322a6d7663633a207265717569726564207265766973696f6e20686173206265656e20636f6d706163746564';

const kv = (k: KeyValue) => ({ key: k.key.toString(), value: k.value.toString(), createRevision: k.createRevision, modRevision: k.modRevision, version: k.version, lease: k.lease });

describe('response decoding', () => {
  it('TxnResponse: header (uint64 IDs), succeeded, put / range / delete_range responses', () => {
    const res = decodeTxnResponse(unhex(TXN_RESPONSE));
    expect(res.header).toEqual({ clusterId: 14841639068965178418n, memberId: 10276657743932975437n, revision: 1001, raftTerm: 3 });
    expect(res.succeeded).toBe(true);
    expect(res.responses.length).toBe(3);
    const [put, range, del] = res.responses;
    expect(put!.put!.header.revision).toBe(1001);
    expect(kv(put!.put!.prevKv!)).toEqual({ key: '/p/k', value: 'old', createRevision: 900, modRevision: 950, version: 2, lease: 0 });
    expect(range!.range!.kvs.map(kv)).toEqual([{ key: '/p/n', value: 'ns', createRevision: 5, modRevision: 300, version: 7, lease: 0 }]);
    expect(range!.range!.count).toBe(1);
    expect(range!.range!.more).toBe(false);
    expect(del!.deleteRange!.deleted).toBe(1);
    expect(del!.deleteRange!.prevKvs.map(kv)).toEqual([{ key: '/p/d', value: 'gone', createRevision: 10, modRevision: 20, version: 1, lease: 0 }]);
  });

  it('WatchResponse: events with previous values, a delete', () => {
    const res = decodeWatchResponse(unhex(WATCH_RESPONSE));
    expect(res.header.revision).toBe(77);
    expect([res.watchId, res.created, res.canceled, res.compactRevision]).toEqual([0, false, false, 0]);
    expect(res.events.map((e) => [e.type, kv(e.kv), e.prevKv && kv(e.prevKv)])).toEqual([
      [EventType.Put, { key: '/a/x', value: 'new', createRevision: 70, modRevision: 77, version: 2, lease: 0 }, { key: '/a/x', value: 'old', createRevision: 70, modRevision: 71, version: 1, lease: 0 }],
      [EventType.Delete, { key: '/a/y', value: '', createRevision: 0, modRevision: 77, version: 0, lease: 0 }, undefined],
    ]);
  });

  it('WatchResponse: canceled with the compact revision and reason', () => {
    const res = decodeWatchResponse(unhex(WATCH_CANCELED));
    expect([res.header.revision, res.watchId, res.canceled, res.compactRevision, res.cancelReason, res.events]).toEqual([500, 1, true, 321, 'mvcc: required revision has been compacted', []]);
  });

  it('empty messages decode to defaults', () => {
    expect(decodeRangeResponse(Buffer.alloc(0))).toEqual({ header: { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 }, kvs: [], more: false, count: 0 });
    expect(decodePutResponse(Buffer.alloc(0)).prevKv).toBeUndefined();
    expect(decodeDeleteRangeResponse(Buffer.alloc(0)).prevKvs).toEqual([]);
    expect(decodeCompactionResponse(Buffer.alloc(0)).header.revision).toBe(0);
    expect(decodeTxnResponse(Buffer.alloc(0))).toMatchObject({ succeeded: false, responses: [] });
  });

  it('bytes fields are views of the message (no copy)', () => {
    const buf = unhex(TXN_RESPONSE);
    const prev = decodeTxnResponse(buf).responses[0]!.put!.prevKv!;
    expect(prev.value.buffer).toBe(buf.buffer);
  });
});

function encodeTag(field: number, wire: number): Buffer {
  return new Writer(4).tag(field, wire).finish();
}

function varint(n: number): Buffer {
  return new Writer(10).varint(n).finish();
}

/** Unknown fields of every wire type (varint, fixed64, length-delimited, fixed32, group), as a newer etcd might send. */
function unknownFields(): Buffer {
  return Buffer.concat([
    encodeTag(90, 0), varint(2 ** 40),
    encodeTag(91, 1), Buffer.alloc(8, 0xee),
    encodeTag(92, 2), varint(3), Buffer.from([1, 2, 3]),
    encodeTag(93, 5), Buffer.alloc(4, 0xdd),
    encodeTag(94, 3), encodeTag(1, 0), varint(5), encodeTag(2, 2), varint(1), Buffer.from('x'), encodeTag(94, 4),
  ]);
}

describe('unknown fields', () => {
  it('are skipped at every level, whatever their wire type', () => {
    const junk = unknownFields();
    expect(junk.length).toBeGreaterThan(20);
    // Rebuild TXN_RESPONSE's first response op with junk before and after each field,
    // inside the KeyValue, the PutResponse, the ResponseOp and the TxnResponse.
    const keyValue = Buffer.concat([junk, unhex('0a042f702f6b'), junk, unhex('108407'), unhex('18b607'), unhex('2002'), unhex('2a036f6c64'), junk]);
    const ld = (field: number, body: Buffer) => Buffer.concat([encodeTag(field, 2), varint(body.length), body]);
    const putResponse = Buffer.concat([ld(1, unhex('18e907')), junk, ld(2, keyValue)]);
    const responseOp = Buffer.concat([junk, ld(2, putResponse), junk]);
    const txn = Buffer.concat([junk, ld(1, Buffer.concat([unhex('18e907'), junk])), unhex('1001'), junk, ld(3, responseOp), junk]);
    const res = decodeTxnResponse(txn);
    expect(res.header.revision).toBe(1001);
    expect(res.succeeded).toBe(true);
    expect(kv(res.responses[0]!.put!.prevKv!)).toEqual({ key: '/p/k', value: 'old', createRevision: 900, modRevision: 950, version: 2, lease: 0 });
    const watch = decodeWatchResponse(Buffer.concat([junk, unhex(WATCH_RESPONSE), junk]));
    expect(watch.events.length).toBe(2);
  });

  it('a known field with an unexpected wire type is skipped, not misread', () => {
    // Field 3 (revision) of a ResponseHeader sent length-delimited: skipped.
    const res = decodeCompactionResponse(unhex('0a05' + '1a03616263'));
    expect(res.header.revision).toBe(0);
  });

  it('a group closed by another field, or wire types 6 and 7, are errors', () => {
    expect(() => decodeCompactionResponse(Buffer.concat([encodeTag(50, 3), encodeTag(51, 4)]))).toThrow(/group 50 closed by 51/);
    expect(() => decodeCompactionResponse(encodeTag(50, 6))).toThrow(/wire type 6/);
    expect(() => decodeCompactionResponse(Buffer.concat([encodeTag(50, 1), Buffer.alloc(7)]))).toThrow(/truncated/);
  });
});

describe('round trips through the oracle parser', () => {
  it('any put inside a txn keeps its key and value', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.uint8Array({ maxLength: 3000 }), fc.boolean(), fc.nat(), (key, value, prevKv, rev) => {
        const txn = encodeTxnRequest({ compare: [{ key, result: CompareResult.Equal, target: CompareTarget.Mod, modRevision: rev }], success: [{ put: { key, value, prevKv } }], failure: [{ range: { key } }] });
        const [compare, success, failure] = fields(txn);
        const c = fields(compare![2] as Buffer);
        expect(c).toEqual([[2, 0, 2n], [3, 2, Buffer.from(key)], [6, 0, BigInt(rev)]]);
        const put = fields(fields(success![2] as Buffer)[0]![2] as Buffer);
        const expected: [number, number, number | bigint | Buffer][] = [[1, 2, Buffer.from(key)]];
        if (value.length) expected.push([2, 2, Buffer.from(value)]);
        if (prevKv) expected.push([4, 0, 1n]);
        expect(put).toEqual(expected);
        expect(fields(fields(failure![2] as Buffer)[0]![2] as Buffer)).toEqual([[1, 2, Buffer.from(key)]]);
      }),
      { numRuns: 200 },
    );
  });

  it('a RangeResponse written with the Writer decodes to what was written', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ key: fc.string({ minLength: 1, maxLength: 20 }), value: fc.string({ maxLength: 200 }), createRevision: fc.maxSafeNat(), modRevision: fc.maxSafeNat(), version: fc.nat(), lease: fc.maxSafeInteger() }), { maxLength: 8 }),
        fc.boolean(),
        fc.nat(),
        fc.maxSafeNat(),
        (kvs, more, count, revision) => {
          const w = new Writer(8);
          w.fork(1).int64(3, revision).ldelim();
          for (const k of kvs) w.fork(2).bytes(1, k.key).int64(2, k.createRevision).int64(3, k.modRevision).int64(4, k.version).bytes(5, k.value).int64(6, k.lease).ldelim();
          w.bool(3, more).int64(4, count);
          const res = decodeRangeResponse(w.finish());
          expect(res.header.revision).toBe(revision);
          expect(res.more).toBe(more);
          expect(res.count).toBe(count);
          expect(res.kvs.map(kv)).toEqual(kvs);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('the writer refuses to finish with an open nested message, and ldelim without fork', () => {
    expect(() => new Writer().fork(1).finish()).toThrow(ProtoError);
    expect(() => new Writer().ldelim()).toThrow(ProtoError);
  });
});
