/**
 * HPACK (RFC 7541), as much as a gRPC client needs: a decoder for the server's header blocks
 * (static and dynamic table, Huffman strings, table size updates) and an encoder of request
 * headers that uses the static table's names and literal values without indexing (the server's
 * dynamic table is never touched, so requests need no encoder state).
 */

/** A malformed header block: the connection must be torn down (COMPRESSION_ERROR). */
export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

/** RFC 7541 Appendix A, index 1..61. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

// ---- Huffman (RFC 7541 Appendix B) ----------------------------------------------------------

/**
 * Code lengths of symbols 0..255 and EOS (256). The code is canonical — codes are handed out in
 * order of (length, symbol) — so the lengths define it; `huffmanCode` rebuilds the codes.
 */
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32-47  ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48-63  '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64-79  '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80-95  'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96-111 '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112-127 'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

const EOS = 256;
const MAX_CODE_LENGTH = 30;

/** Canonical decoding tables: per length, the first code, and where its symbols start in SYMBOLS. */
const FIRST_CODE = new Int32Array(MAX_CODE_LENGTH + 2);
const COUNT = new Int32Array(MAX_CODE_LENGTH + 2);
const OFFSET = new Int32Array(MAX_CODE_LENGTH + 2);
const SYMBOLS = new Uint16Array(HUFFMAN_LENGTHS.length);
/** The code of each symbol, right-aligned (tests and the encoder below). */
const CODES = new Uint32Array(HUFFMAN_LENGTHS.length);

{
  for (const l of HUFFMAN_LENGTHS) COUNT[l]!++;
  let code = 0;
  let offset = 0;
  for (let l = 1; l <= MAX_CODE_LENGTH; l++) {
    FIRST_CODE[l] = code;
    OFFSET[l] = offset;
    offset += COUNT[l]!;
    code = (code + COUNT[l]!) * 2;
  }
  const next = Int32Array.from(FIRST_CODE);
  const fill = Int32Array.from(OFFSET);
  for (let sym = 0; sym < HUFFMAN_LENGTHS.length; sym++) {
    const l = HUFFMAN_LENGTHS[sym]!;
    CODES[sym] = next[l]!++;
    SYMBOLS[fill[l]!++] = sym;
  }
}

/** The code and length of a symbol (0..256), e.g. for tests against the RFC's table. */
export function huffmanCode(sym: number): { code: number; bits: number } {
  return { code: CODES[sym]!, bits: HUFFMAN_LENGTHS[sym]! };
}

/** Huffman-encodes bytes (the padding is the EOS prefix: all ones). */
export function huffmanEncode(bytes: Uint8Array): Buffer {
  let bits = 0;
  for (const b of bytes) bits += HUFFMAN_LENGTHS[b]!;
  const out = Buffer.alloc((bits + 7) >> 3);
  let acc = 0;
  let n = 0;
  let p = 0;
  for (const b of bytes) {
    const l = HUFFMAN_LENGTHS[b]!;
    const code = CODES[b]!;
    // At most 30 bits per code: shift in two halves so the accumulator stays below 2^32.
    for (let k = l; k > 0; ) {
      const take = Math.min(k, 8);
      k -= take;
      acc = (acc << take) | ((code >>> k) & ((1 << take) - 1));
      n += take;
      while (n >= 8) {
        n -= 8;
        out[p++] = (acc >>> n) & 0xff;
      }
      acc &= (1 << n) - 1;
    }
  }
  if (n > 0) out[p++] = ((acc << (8 - n)) | ((1 << (8 - n)) - 1)) & 0xff;
  return out;
}

/** Decodes a Huffman string (RFC 7541 §5.2: padding of at most 7 one-bits, no EOS). */
export function huffmanDecode(buf: Uint8Array, start = 0, end = buf.length): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let o = 0;
  let code = 0;
  let len = 0;
  let ones = true;
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = code * 2 + b;
      len++;
      ones &&= b === 1;
      const idx = code - FIRST_CODE[len]!;
      if (idx >= 0 && idx < COUNT[len]!) {
        const sym = SYMBOLS[OFFSET[len]! + idx]!;
        if (sym === EOS) throw new HpackError('EOS symbol inside a Huffman string');
        out[o++] = sym;
        code = 0;
        len = 0;
        ones = true;
      } else if (len >= MAX_CODE_LENGTH) throw new HpackError('bad Huffman code');
    }
  }
  if (len > 7 || !ones) throw new HpackError('bad Huffman padding');
  return out.subarray(0, o);
}

// ---- decoder --------------------------------------------------------------------------------

/** Per-entry overhead counted against the table size (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

/** Header fields of one block, in order (names lowercase as sent). */
export type HeaderList = [string, string][];

/**
 * Decodes header blocks of one connection (the dynamic table is connection state: every
 * block must be decoded, in order, even those of streams that are gone).
 */
export class HpackDecoder {
  /** Newest first. */
  private readonly dynamic: [string, string][] = [];
  private size = 0;
  private maxSize: number;

  /** `maxTableSize`: what this endpoint announced as SETTINGS_HEADER_TABLE_SIZE (4096 by default). */
  constructor(private readonly maxTableSize = 4096) {
    this.maxSize = maxTableSize;
  }

  decode(block: Uint8Array): HeaderList {
    const out: HeaderList = [];
    let p = 0;
    const n = block.length;
    const int = (prefixBits: number): number => {
      if (p >= n) throw new HpackError('truncated integer');
      const mask = (1 << prefixBits) - 1;
      let v = block[p++]! & mask;
      if (v < mask) return v;
      let m = 0;
      for (;;) {
        if (p >= n) throw new HpackError('truncated integer');
        const b = block[p++]!;
        v += (b & 0x7f) * 2 ** m;
        m += 7;
        if (v > 0x7fffffff) throw new HpackError('integer too large');
        if ((b & 0x80) === 0) return v;
      }
    };
    const str = (): string => {
      if (p >= n) throw new HpackError('truncated string');
      const huff = (block[p]! & 0x80) !== 0;
      const len = int(7);
      if (p + len > n) throw new HpackError('truncated string');
      const s = huff ? huffmanDecode(block, p, p + len).toString('latin1') : Buffer.from(block.buffer, block.byteOffset + p, len).toString('latin1');
      p += len;
      return s;
    };
    let fieldsSeen = false;
    while (p < n) {
      const b = block[p]!;
      if (b & 0x80) {
        // Indexed field.
        const e = this.entry(int(7));
        out.push([e[0], e[1]]);
        fieldsSeen = true;
      } else if (b & 0x40) {
        // Literal with incremental indexing.
        const idx = int(6);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        const value = str();
        out.push([name, value]);
        this.add(name, value);
        fieldsSeen = true;
      } else if (b & 0x20) {
        // Dynamic table size update: only at the start of a block.
        if (fieldsSeen) throw new HpackError('table size update after a header field');
        const size = int(5);
        if (size > this.maxTableSize) throw new HpackError(`table size update to ${size}, over the announced ${this.maxTableSize}`);
        this.maxSize = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const idx = int(4);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        out.push([name, str()]);
        fieldsSeen = true;
      }
    }
    return out;
  }

  /** Entries in the dynamic table (tests). */
  get tableLength(): number {
    return this.dynamic.length;
  }

  private entry(idx: number): readonly [string, string] {
    if (idx === 0) throw new HpackError('index 0');
    if (idx <= STATIC_TABLE.length) return STATIC_TABLE[idx - 1]!;
    const e = this.dynamic[idx - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`index ${idx} beyond the tables`);
    return e;
  }

  private add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.maxSize) {
      // Larger than the whole table: it empties the table and is not added (§4.4).
      this.dynamic.length = 0;
      this.size = 0;
      return;
    }
    this.evict(size);
    this.dynamic.unshift([name, value]);
    this.size += size;
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.size + room > this.maxSize && this.dynamic.length) {
      const [name, value] = this.dynamic.pop()!;
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
    }
  }
}

// ---- encoder --------------------------------------------------------------------------------

const STATIC_NAME = new Map<string, number>();
const STATIC_FIELD = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
  if (value) STATIC_FIELD.set(`${name}\0${value}`, i + 1);
});

function pushInt(out: number[], v: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.push(first | v);
    return;
  }
  out.push(first | max);
  v -= max;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/**
 * Encodes header fields without touching the peer's dynamic table: a field of the static table
 * as its index, anything else as a literal without indexing (a static name by index), strings
 * raw. Names must be lowercase; values Latin-1.
 */
export function encodeHeaders(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = STATIC_FIELD.get(`${name}\0${value}`);
    if (full !== undefined) {
      pushInt(out, full, 7, 0x80);
      continue;
    }
    const idx = STATIC_NAME.get(name);
    if (idx !== undefined) pushInt(out, idx, 4, 0);
    else {
      out.push(0);
      pushInt(out, name.length, 7, 0);
      for (let i = 0; i < name.length; i++) out.push(name.charCodeAt(i) & 0xff);
    }
    pushInt(out, value.length, 7, 0);
    for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}
