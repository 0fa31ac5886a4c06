import { describe, expect, it } from 'vitest';
import { isPodnetError } from '../util/errors.js';
import type { PodnetError } from '../util/errors.js';
import { crc32, decodeJournal, encodeHeader, encodeLine } from './journal.js';
import type { IpamOp } from './state.js';

const subnets: IpamOp = { op: 'subnets', subnets: ['10.244.1.0/24', 'fd00:10:244:1::/64'] };
const alloc = (id: string, n: number): IpamOp => ({ op: 'alloc', owner: { id, namespace: 'default', name: id }, ips: [`10.244.1.${n}`, `fd00:10:244:1::${n}`] });

function journal(...groups: IpamOp[][]): string {
  return encodeHeader() + groups.map((ops, i) => ops.map((op) => encodeLine(i + 1, op)).join('')).join('');
}

function corrupt(buf: string): PodnetError {
  try {
    decodeJournal(Buffer.from(buf), '/state/ipam.journal');
  } catch (e) {
    if (isPodnetError(e)) return e;
    throw e;
  }
  throw new Error('expected PODNET_IPAM_CORRUPT');
}

describe('journal codec', () => {
  it('crc32 is CRC-32/IEEE', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });

  it('round-trips ops, one line each, with checksum and commit group', () => {
    const text = journal([subnets], [alloc('a', 2), alloc('b', 3)], [{ op: 'release', id: 'a' }]);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l).toMatch(/^[0-9a-f]{8} \{"g":\d+,/);
    const d = decodeJournal(Buffer.from(text), 'j');
    expect(d).toMatchObject({ hasHeader: true, tornBytes: 0, validBytes: Buffer.byteLength(text), lastGroup: 3 });
    expect(d.entries.map((e) => [e.g, e.op.op])).toEqual([
      [1, 'subnets'],
      [2, 'alloc'],
      [2, 'alloc'],
      [3, 'release'],
    ]);
    expect(d.entries[1]!.op).toEqual(alloc('a', 2));
  });

  it('keeps non-ASCII metadata intact', () => {
    const op: IpamOp = { op: 'alloc', owner: { id: 'x', name: 'café-🚀' }, ips: ['10.244.1.9'] };
    const d = decodeJournal(Buffer.from(journal([op])), 'j');
    expect(d.entries[0]!.op).toEqual(op);
  });

  it('an empty file or a torn header is a new journal', () => {
    expect(decodeJournal(Buffer.alloc(0), 'j')).toMatchObject({ hasHeader: false, entries: [], tornBytes: 0 });
    const h = encodeHeader();
    expect(decodeJournal(Buffer.from(h.slice(0, 20)), 'j')).toMatchObject({ hasHeader: false, validBytes: 0, tornBytes: 20 });
  });

  it('a torn last line (cut anywhere) is ignored and reported for truncation', () => {
    const good = journal([subnets], [alloc('a', 2)]);
    const last = encodeLine(3, alloc('b', 3));
    for (let cut = 1; cut < last.length; cut++) {
      const d = decodeJournal(Buffer.from(good + last.slice(0, cut)), 'j');
      expect(d.entries).toHaveLength(2);
      expect(d.validBytes).toBe(Buffer.byteLength(good));
      expect(d.tornBytes).toBe(cut);
    }
  });

  it('a damaged last group is a torn tail, even with good lines of that group after the damage', () => {
    const good = journal([subnets], [alloc('a', 2)]);
    const group3 = [alloc('b', 3), alloc('c', 4), alloc('d', 5)].map((op) => encodeLine(3, op));
    const damaged = group3[0]!.replace('"b"', '"B"'); // checksum no longer matches
    const d = decodeJournal(Buffer.from(good + damaged + group3[1] + group3[2]), 'j');
    expect(d.entries).toHaveLength(2);
    expect(d.validBytes).toBe(Buffer.byteLength(good));
    // Zeros where a block never reached the disk:
    const z = decodeJournal(Buffer.concat([Buffer.from(good), Buffer.alloc(100), Buffer.from(group3[2]!)]), 'j');
    expect(z.entries).toHaveLength(2);
  });

  it('damage followed by a later acknowledged group is corruption', () => {
    const text = journal([subnets], [alloc('a', 2)], [alloc('b', 3)], [alloc('c', 4)]);
    const lines = text.split('\n');
    lines[2] = lines[2]!.replace('"a"', '"A"'); // group 2 damaged, groups 3 and 4 follow
    const e = corrupt(lines.join('\n'));
    expect(e.code).toBe('PODNET_IPAM_CORRUPT');
    expect(e.context).toMatchObject({ file: '/state/ipam.journal', line: 3 });
    expect(e.message).toMatch(/checksum mismatch, yet commit group 3/);
  });

  it('a record whose checksum holds but is invalid is corruption', () => {
    const bad = encodeLine(1, { op: 'alloc', owner: { id: 'a' }, ips: ['10.244.1.300'] } as IpamOp);
    expect(corrupt(encodeHeader() + bad).message).toMatch(/record is invalid/);
    const unknown = encodeLine(1, { op: 'frobnicate' } as unknown as IpamOp);
    expect(corrupt(encodeHeader() + unknown).message).toMatch(/unknown kind/);
  });

  it('groups going backwards, a missing header or another version are corruption', () => {
    expect(corrupt(encodeHeader() + encodeLine(2, subnets) + encodeLine(1, alloc('a', 2))).message).toMatch(/group 1 follows group 2/);
    expect(corrupt(encodeLine(1, subnets)).message).toMatch(/not a podnet IPAM journal header/);
    const v2 = encodeHeader().replace('"version":1', '"version":2');
    const fixed = `${crc32(Buffer.from(v2.slice(9, -1))).toString(16).padStart(8, '0')} ${v2.slice(9)}`;
    expect(corrupt(fixed).message).toMatch(/version 2/);
  });
});
