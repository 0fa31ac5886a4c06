import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HpackDecoder, HpackError, STATIC_TABLE, encodeHeaders, huffmanCode, huffmanDecode, huffmanEncode } from './hpack.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('Huffman code (RFC 7541 Appendix B)', () => {
  it('codes rebuilt from the lengths match the RFC table', () => {
    // A sample of rows of Appendix B: symbol, code (hex, right-aligned), bits.
    const rows: [number, number, number][] = [
      [0, 0x1ff8, 13], [1, 0x7fffd8, 23], [10, 0x3ffffffc, 30], [32, 0x14, 6], [36, 0x1ff9, 13], [48, 0x0, 5],
      [58, 0x5c, 7], [65, 0x21, 6], [92, 0x7fff0, 19], [97, 0x3, 5], [123, 0x7ffe, 15], [126, 0x1ffd, 13],
      [127, 0xffffffc, 28], [128, 0xfffe6, 20], [195, 0x7fff1, 19], [203, 0x7ffffde, 27], [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [sym, code, bits] of rows) expect(huffmanCode(sym), `symbol ${sym}`).toEqual({ code, bits });
  });

  it('the code is complete: the Kraft sum is exactly 1', () => {
    let sum = 0;
    for (let s = 0; s <= 256; s++) sum += 2 ** -huffmanCode(s).bits;
    expect(sum).toBe(1);
  });

  it('RFC 7541 C.4.1: "www.example.com"', () => {
    expect(huffmanEncode(Buffer.from('www.example.com')).toString('hex')).toBe('f1e3c2e5f23a6ba0ab90f4ff');
    expect(huffmanDecode(hex('f1e3c2e5f23a6ba0ab90f4ff')).toString()).toBe('www.example.com');
  });

  it('any bytes round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(Buffer.from(huffmanDecode(huffmanEncode(bytes))).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it('bad padding, long padding and EOS are refused', () => {
    // "a" is 00011: padded with 111 → 0x1f. Padded with zeros → 0x18.
    expect(huffmanDecode(Buffer.from([0x1f])).toString()).toBe('a');
    expect(() => huffmanDecode(Buffer.from([0x18]))).toThrow(HpackError);
    // A whole byte of padding.
    expect(() => huffmanDecode(Buffer.from([0x1f, 0xff]))).toThrow(/padding/);
    // EOS (30 ones) spelled out.
    expect(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(/EOS/);
  });
});

describe('HpackDecoder', () => {
  it('RFC 7541 C.4: three requests with Huffman, the dynamic table carried between them', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
    expect(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual([
      [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
    ]);
    expect(d.tableLength).toBe(3);
  });

  it('eviction: a small table keeps only the newest entries; a size update empties it', () => {
    // Literal with indexing, new name: 0x40, name "k1" (len 2), value of 50 bytes → 84 bytes each: two do not fit in 160.
    const entry = (name: string, value: string) => Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
    const d = new HpackDecoder(200);
    d.decode(Buffer.concat([Buffer.from([0x3f, 0x81, 0x01]) /* size update to 160 */, entry('k1', 'x'.repeat(50)), entry('k2', 'y'.repeat(50))]));
    expect(d.tableLength).toBe(1);
    // Index 62 is the newest dynamic entry: k2.
    expect(d.decode(Buffer.from([0x80 | 62]))).toEqual([['k2', 'y'.repeat(50)]]);
    expect(() => d.decode(Buffer.from([0x80 | 63]))).toThrow(/beyond/);
    d.decode(Buffer.from([0x20])); // size update to 0
    expect(d.tableLength).toBe(0);
  });

  it('malformed blocks are HpackErrors, never anything else', () => {
    const d = () => new HpackDecoder();
    expect(() => d().decode(Buffer.from([0x80]))).toThrow(/index 0/);
    expect(() => d().decode(Buffer.from([0x3f, 0xe2, 0x1f]) /* 4097 */)).toThrow(/over the announced/);
    expect(() => d().decode(Buffer.from([0x82, 0x20]))).toThrow(/after a header field/);
    expect(() => d().decode(Buffer.from([0x00, 0x05, 0x61]))).toThrow(/truncated/);
    expect(() => d().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toThrow(/truncated|too large/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          d().decode(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(HpackError);
        }
      }),
    );
  });
});

describe('encodeHeaders', () => {
  it('static fields by index, static names by index, other names literal; decodes back', () => {
    const fields: [string, string][] = [[':method', 'POST'], [':scheme', 'http'], [':path', '/etcdserverpb.KV/Txn'], [':authority', '127.0.0.1:2379'], ['content-type', 'application/grpc'], ['te', 'trailers'], ['grpc-timeout', '4999m']];
    const block = encodeHeaders(fields);
    expect(block[0]).toBe(0x83); // :method POST = static 3
    expect(block[1]).toBe(0x86); // :scheme http = static 6
    expect(block[2]).toBe(0x04); // :path by static name 4, not indexed
    expect(new HpackDecoder().decode(block)).toEqual(fields);
    expect(STATIC_TABLE).toHaveLength(61);
  });

  it('long names and values (multi-byte integers) round-trip, and leave no dynamic entries', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,300}$/), fc.string({ maxLength: 400 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x'))), { maxLength: 8 }), (fields) => {
        const d = new HpackDecoder();
        expect(d.decode(encodeHeaders(fields))).toEqual(fields);
        expect(d.tableLength).toBe(0);
      }),
    );
  });
});
