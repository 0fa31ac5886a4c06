/**
 * The journal's line format (pure): encoding, decoding and the rule that tells a torn
 * last write (a crash mid-append: ignore and truncate) from real damage (refuse).
 *
 *   LINE   = CRC32 " " JSON "\n"
 *   CRC32  = 8 lower-case hex digits, CRC-32 (IEEE) of the JSON's UTF-8 bytes
 *   JSON   = {"g":GROUP,"op":...}      GROUP: the commit group, non-decreasing
 *
 * The first line is a header {"g":0,"op":"header","format":"podnet-ipam-journal","version":1}.
 */
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { parseOp } from './state.js';
import type { IpamOp } from './state.js';

export const JOURNAL_FORMAT = 'podnet-ipam-journal';
export const JOURNAL_VERSION = 1;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib and `cksum -a crc32b`). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function frame(json: string): string {
  return `${crc32(Buffer.from(json, 'utf8')).toString(16).padStart(8, '0')} ${json}\n`;
}

/** The header line every journal starts with. */
export function encodeHeader(): string {
  return frame(JSON.stringify({ g: 0, op: 'header', format: JOURNAL_FORMAT, version: JOURNAL_VERSION }));
}

/** One journal line for `op` in commit group `g`. */
export function encodeLine(g: number, op: IpamOp): string {
  return frame(JSON.stringify({ g, ...op }));
}

export interface JournalEntry {
  g: number;
  op: IpamOp;
}

export interface DecodedJournal {
  /** False for an empty file or one whose header was never completely written. */
  hasHeader: boolean;
  entries: JournalEntry[];
  /** Length of the valid prefix; everything after it is a torn tail. */
  validBytes: number;
  /** Bytes after the valid prefix (0 when the file ended cleanly). */
  tornBytes: number;
  /** Highest commit group seen (0 when none). */
  lastGroup: number;
}

type Decoded = { ok: true; g: number; value: Record<string, unknown> } | { ok: false; why: string };

function decodeLine(line: Buffer): Decoded {
  if (line.length < 10 || line[8] !== 0x20) return { ok: false, why: 'no checksum' };
  const want = line.subarray(0, 8).toString('latin1');
  if (!/^[0-9a-f]{8}$/.test(want)) return { ok: false, why: 'no checksum' };
  const json = line.subarray(9);
  if (crc32(json).toString(16).padStart(8, '0') !== want) return { ok: false, why: 'checksum mismatch' };
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    return { ok: false, why: 'checksum matches but the JSON does not parse' };
  }
  if (typeof value !== 'object' || value === null || !Number.isSafeInteger((value as { g?: unknown }).g)) {
    return { ok: false, why: 'no commit group' };
  }
  return { ok: true, g: (value as { g: number }).g, value: value as Record<string, unknown> };
}

/**
 * Decodes a journal. Torn-write rule: appends happen one commit group at a time, and a
 * group is acknowledged only after it and everything before it was synced. So a crash
 * can damage only the last group. At the first undecodable line (or a final line without
 * "\n") at offset p, with the last good line in group G:
 *  - if no later line decodes with a group above G+1, the bytes from p on are a torn tail
 *    of unacknowledged writes: they are reported in `tornBytes` for the caller to truncate;
 *  - otherwise an acknowledged group follows the damage: PODNET_IPAM_CORRUPT.
 * A line whose checksum holds but whose content is not a valid op is PODNET_IPAM_CORRUPT
 * too (not something a crash produces). `file` names the journal in errors.
 */
export function decodeJournal(buf: Buffer, file: string): DecodedJournal {
  const entries: JournalEntry[] = [];
  let pos = 0;
  let line = 0;
  let lastGroup = 0;
  let hasHeader = false;
  const corrupt = (reason: string, at: number, n: number) =>
    new PodnetError(ErrorCodes.IPAM_CORRUPT, `IPAM journal ${file} is damaged at line ${n} (byte ${at}): ${reason}; a crash cannot explain this, so it is not repaired automatically`, {
      file,
      line: n,
      offset: at,
    });

  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl === -1 ? buf.length : nl;
    line++;
    const d: Decoded = nl === -1 ? { ok: false, why: 'no final newline' } : decodeLine(buf.subarray(pos, end));
    if (!d.ok) {
      checkTornTail(buf, nl === -1 ? buf.length : nl + 1, lastGroup, (g, n) =>
        corrupt(`${d.why}, yet commit group ${g} at line ${line + n} follows`, pos, line),
      );
      return { hasHeader, entries, validBytes: pos, tornBytes: buf.length - pos, lastGroup };
    }
    if (d.g < lastGroup) throw corrupt(`commit group ${d.g} follows group ${lastGroup}`, pos, line);
    if (!hasHeader) {
      if (d.value.op !== 'header' || d.value.format !== JOURNAL_FORMAT) throw corrupt('the first line is not a podnet IPAM journal header', pos, line);
      if (d.value.version !== JOURNAL_VERSION) throw corrupt(`journal version ${JSON.stringify(d.value.version)} is not ${JOURNAL_VERSION}`, pos, line);
      hasHeader = true;
    } else {
      const { g: _g, ...rest } = d.value;
      let op: IpamOp;
      try {
        op = parseOp(rest);
      } catch (e) {
        throw corrupt(`the checksum holds but the record is invalid: ${(e as Error).message}`, pos, line);
      }
      entries.push({ g: d.g, op });
    }
    lastGroup = d.g;
    pos = end + 1;
  }
  return { hasHeader, entries, validBytes: pos, tornBytes: 0, lastGroup };
}

/** Throws when a line after `from` decodes with a group above `lastGroup + 1`. */
function checkTornTail(buf: Buffer, from: number, lastGroup: number, fail: (g: number, n: number) => PodnetError): void {
  let pos = from;
  let n = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl === -1) return;
    n++;
    const d = decodeLine(buf.subarray(pos, nl));
    if (d.ok && d.g > lastGroup + 1) throw fail(d.g, n);
    pos = nl + 1;
  }
}
