import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isPodnetError } from '../util/errors.js';
import type { PodnetError } from '../util/errors.js';
import { IpamAllocator } from './allocator.js';
import { FileStore, JOURNAL_FILE, LOCK_FILE } from './filestore.js';
import type { FileStoreOptions } from './filestore.js';
import { encodeLine } from './journal.js';
import { TempDirs } from './testdata/helpers.js';

const temp = new TempDirs();
const stores: FileStore[] = [];
const children: number[] = [];

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const pid of children.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  temp.cleanup();
});

async function open(dir: string, opts?: FileStoreOptions): Promise<FileStore> {
  const s = await FileStore.open(dir, opts);
  stores.push(s);
  return s;
}

async function rejection(p: Promise<unknown>): Promise<PodnetError> {
  try {
    await p;
  } catch (e) {
    if (isPodnetError(e)) return e;
    throw e;
  }
  throw new Error('expected a PodnetError, the call succeeded');
}

const SUBNETS = ['10.244.0.0/16', 'fd00:10:244:1::/64'];
const journalLines = (dir: string) => readFileSync(join(dir, JOURNAL_FILE), 'utf8').split('\n').filter(Boolean);

describe('FileStore', () => {
  it('persists allocations and releases across close and reopen', async () => {
    const dir = temp.make();
    const s1 = await open(dir);
    const a1 = await IpamAllocator.open(s1, { subnets: SUBNETS });
    const x = await a1.allocate({ id: 'x', namespace: 'ns', name: 'web', netns: '/run/netns/x', ifname: 'eth0' });
    await a1.allocate({ id: 'y' });
    await a1.allocate({ id: 'z' });
    await a1.release('y');
    await s1.close();
    expect(statSync(join(dir, JOURNAL_FILE)).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);

    const s2 = await open(dir);
    expect(s2.recovery).toEqual({ tornBytes: 0, tookOverLock: undefined, replayed: 5 });
    const a2 = await IpamAllocator.open(s2, { subnets: SUBNETS });
    expect(a2.list().map((a) => a.owner.id)).toEqual(['x', 'z']);
    expect(a2.get('x')).toEqual(x);
    // Round-robin continues after z (.4), not in y's freed .3.
    expect((await a2.allocate({ id: 'w' })).addresses[0]!.ip).toBe('10.244.0.5');
  });

  it('group commit: concurrent allocations share writes; reports µs per allocation', async () => {
    const seqStore = await open(temp.make());
    const seq = await IpamAllocator.open(seqStore, { subnets: SUBNETS });
    const c0 = seqStore.stats().commits;
    let t0 = performance.now();
    for (let i = 0; i < 1000; i++) await seq.allocate({ id: `s${i}` });
    const seqUs = ((performance.now() - t0) * 1000) / 1000;
    expect(seqStore.stats().commits - c0).toBe(1000); // one fsync each: nothing to share

    const conStore = await open(temp.make());
    const con = await IpamAllocator.open(conStore, { subnets: SUBNETS });
    const k0 = conStore.stats().commits;
    t0 = performance.now();
    const all = await Promise.all(Array.from({ length: 1000 }, (_, i) => con.allocate({ id: `c${i}` })));
    const conUs = ((performance.now() - t0) * 1000) / 1000;
    const commits = conStore.stats().commits - k0;
    expect(commits).toBeLessThanOrEqual(2);
    expect(new Set(all.map((a) => a.addresses[0]!.ip)).size).toBe(1000);
    expect(journalLines(conStore.dir)).toHaveLength(1002); // header, subnets, 1000 allocs

    // Concurrent releases group too.
    const r0 = conStore.stats().commits;
    await Promise.all(all.slice(0, 500).map((a) => con.release(a.owner.id)));
    expect(conStore.stats().commits - r0).toBeLessThanOrEqual(2);

    console.info(
      `[ipam] FileStore on ${conStore.dir}: 1000 sequential allocations ${seqUs.toFixed(1)} µs each (1000 fdatasyncs); ` +
        `1000 concurrent ${conUs.toFixed(1)} µs each (${commits} group commit${commits === 1 ? '' : 's'})`,
    );
  }, 60_000);

  it('a torn last line is truncated on open; later writes are readable', async () => {
    const dir = temp.make();
    const s1 = await open(dir);
    const a1 = await IpamAllocator.open(s1, { subnets: SUBNETS });
    await a1.allocate({ id: 'a' });
    await s1.close();
    const torn = encodeLine(99, { op: 'alloc', owner: { id: 'b' }, ips: ['10.244.0.3'] }).slice(0, 30);
    appendFileSync(join(dir, JOURNAL_FILE), torn);

    const s2 = await open(dir);
    expect(s2.recovery.tornBytes).toBe(30);
    const a2 = await IpamAllocator.open(s2, { subnets: SUBNETS });
    expect(a2.list().map((a) => a.owner.id)).toEqual(['a']);
    await a2.allocate({ id: 'c' });
    await s2.close();

    const s3 = await open(dir);
    expect(s3.recovery.tornBytes).toBe(0);
    expect([...s3.state().allocations.keys()]).toEqual(['a', 'c']);
  });

  it('refuses a journal damaged before acknowledged writes, and releases the lock', async () => {
    const dir = temp.make();
    const s1 = await open(dir);
    const a1 = await IpamAllocator.open(s1, { subnets: SUBNETS });
    for (const id of ['a', 'b', 'c']) await a1.allocate({ id });
    await s1.close();
    const path = join(dir, JOURNAL_FILE);
    const lines = readFileSync(path, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"a"', '"q"');
    writeFileSync(path, lines.join('\n'));
    const e = await rejection(FileStore.open(dir));
    expect(e.code).toBe('PODNET_IPAM_CORRUPT');
    expect(e.context).toMatchObject({ file: path, line: 3 });
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('compaction keeps exactly the live set and the round-robin position', async () => {
    const dir = temp.make();
    const s1 = await open(dir, { compactMinRecords: 50, compactRatio: 3 });
    const a1 = await IpamAllocator.open(s1, { subnets: SUBNETS });
    for (let i = 0; i < 100; i++) await a1.allocate({ id: `p${i}`, name: `pod-${i}` });
    for (let i = 0; i < 100; i++) if (i % 10 !== 0) await a1.release(`p${i}`);
    expect(s1.stats().compactions).toBeGreaterThanOrEqual(1);
    await s1.compact();
    const live = a1.list();
    expect(live.map((a) => a.owner.id)).toEqual(['p0', 'p10', 'p20', 'p30', 'p40', 'p50', 'p60', 'p70', 'p80', 'p90']);
    const lines = journalLines(dir);
    expect(lines).toHaveLength(1 + 1 + 10 + 1); // header, subnets, 10 allocs, cursor
    expect(lines.filter((l) => l.includes('"op":"release"'))).toEqual([]);
    expect(s1.stats()).toMatchObject({ journalRecords: 12, journalBytes: Buffer.byteLength(readFileSync(join(dir, JOURNAL_FILE))) });
    expect(existsSync(join(dir, `${JOURNAL_FILE}.tmp`))).toBe(false);
    const next = await a1.allocate({ id: 'after' });
    await s1.close();

    const s2 = await open(dir);
    const a2 = await IpamAllocator.open(s2, { subnets: SUBNETS });
    expect(a2.list()).toEqual([...live, next]);
    // The cursor survived compaction: after p99 (.101), then 'after' (.102), next is .103.
    expect(next.addresses[0]!.ip).toBe('10.244.0.102');
    expect((await a2.allocate({ id: 'again' })).addresses[0]!.ip).toBe('10.244.0.103');
  });

  it('automatic compaction under concurrent load loses nothing', async () => {
    const dir = temp.make();
    const s1 = await open(dir, { compactMinRecords: 20, compactRatio: 2, maxBatch: 16 });
    const a1 = await IpamAllocator.open(s1, { subnets: SUBNETS });
    const model = new Map<string, string>();
    for (let round = 0; round < 10; round++) {
      const ids = Array.from({ length: 40 }, (_, i) => `r${round}-${i}`);
      const got = await Promise.all(ids.map((id) => a1.allocate({ id })));
      for (const g of got) model.set(g.owner.id, g.addresses[0]!.ip);
      const gone = ids.filter((_, i) => i % 4 !== 0);
      await Promise.all(gone.map((id) => a1.release(id)));
      for (const id of gone) model.delete(id);
    }
    expect(s1.stats().compactions).toBeGreaterThan(0);
    await s1.close();
    const s2 = await open(dir);
    const st = s2.state();
    expect(new Map([...st.allocations].map(([id, a]) => [id, a.ips[0]]))).toEqual(model);
  });

  it('removes a leftover compaction file; rejects bad state dirs', async () => {
    const dir = temp.make();
    writeFileSync(join(dir, `${JOURNAL_FILE}.tmp`), 'half a snapshot');
    await open(dir);
    expect(existsSync(join(dir, `${JOURNAL_FILE}.tmp`))).toBe(false);
    expect((await rejection(FileStore.open(''))).context.field).toBe('stateDir');
    expect((await rejection(FileStore.open('/tmp/a\0b'))).context.field).toBe('stateDir');
  });

  it('after close, appends fail with PODNET_IPAM_CLOSED; close is idempotent and flushes', async () => {
    const s = await open(temp.make());
    const a = await IpamAllocator.open(s, { subnets: SUBNETS });
    const pending = a.allocate({ id: 'x' });
    await Promise.all([s.close(), s.close()]);
    await pending; // queued before close: written
    expect((await rejection(a.allocate({ id: 'y' }))).code).toBe('PODNET_IPAM_CLOSED');
    const again = await open(s.dir);
    expect([...again.state().allocations.keys()]).toEqual(['x']);
  });

  it('a failed write fails the store until it is reopened', async () => {
    const dir = temp.make();
    const s = await open(dir);
    const a = await IpamAllocator.open(s, { subnets: SUBNETS });
    await a.allocate({ id: 'x' });
    // Simulate an I/O error: the journal's descriptor goes away under the store.
    await (s as unknown as { fh: { close(): Promise<void> } }).fh.close();
    const e = await rejection(a.allocate({ id: 'y' }));
    expect(e.code).toBe('PODNET_IPAM_IO');
    expect(e.message).toMatch(/refuses further writes until it is reopened/);
    expect((await rejection(a.allocate({ id: 'z' }))).code).toBe('PODNET_IPAM_IO');
    expect(a.list().map((x) => x.owner.id)).toEqual(['x']);
    await s.close();
    const s2 = await open(dir);
    expect([...s2.state().allocations.keys()]).toEqual(['x']);
  });
});

describe('FileStore: the state dir lock', () => {
  const lockPath = (dir: string) => join(dir, LOCK_FILE);

  it('a second open fails while the first is open, naming the holder', async () => {
    const dir = temp.make();
    const s1 = await open(dir);
    const e = await rejection(FileStore.open(dir));
    expect(e.code).toBe('PODNET_IPAM_LOCKED');
    expect(e.context).toMatchObject({ pid: process.pid, path: lockPath(dir) });
    expect(e.message).toMatch(new RegExp(`process ${process.pid} \\(this process\\)`));
    const held = JSON.parse(readFileSync(lockPath(dir), 'utf8')) as { pid: number; start?: string; boot?: string };
    expect(held.pid).toBe(process.pid);
    await s1.close();
    await open(dir); // free again
  });

  it('a lock held by another live process is respected', async () => {
    const dir = temp.make();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    children.push(child.pid!);
    writeFileSync(lockPath(dir), JSON.stringify({ pid: child.pid, host: 'elsewhere' }));
    const e = await rejection(FileStore.open(dir));
    expect(e.code).toBe('PODNET_IPAM_LOCKED');
    expect(e.context.pid).toBe(child.pid);
    expect(e.message).toMatch(/on elsewhere/);
  });

  it('a stale lock of a dead pid is taken over', async () => {
    const dir = temp.make();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const pid = Number(dead.stdout);
    writeFileSync(lockPath(dir), JSON.stringify({ pid, start: '1', host: 'old' }));
    const s = await open(dir);
    expect(s.recovery.tookOverLock).toEqual({ pid, start: '1', host: 'old' });
    expect(JSON.parse(readFileSync(lockPath(dir), 'utf8')).pid).toBe(process.pid);
    expect(existsSync(`${lockPath(dir)}.takeover`)).toBe(false);
  });

  it('a lock whose pid was reused (other start time), from another boot, or unreadable is stale', async () => {
    for (const content of [
      JSON.stringify({ pid: process.pid, start: '1' }), // our pid, but not us
      JSON.stringify({ pid: process.pid, boot: '00000000-0000-0000-0000-000000000000' }),
      '',
      '{"pid":',
    ]) {
      const dir = temp.make();
      writeFileSync(lockPath(dir), content);
      const s = await open(dir);
      expect(s.recovery.tookOverLock, content).toBeDefined();
      await s.close();
    }
  });

  it('racing opens: exactly one wins', async () => {
    const dir = temp.make();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(lockPath(dir), JSON.stringify({ pid: Number(dead.stdout) }));
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => FileStore.open(dir)));
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    stores.push(...won);
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as PodnetError).code).toBe('PODNET_IPAM_LOCKED');
  });

  it('a take-over file left by a process that died mid-take-over is cleared when old', async () => {
    const dir = temp.make();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(lockPath(dir), JSON.stringify({ pid: Number(dead.stdout) }));
    const takeover = `${lockPath(dir)}.takeover`;
    writeFileSync(takeover, JSON.stringify({ pid: Number(dead.stdout) }));
    // Young: someone may be taking over right now, so wait, then give up.
    const e = await rejection(FileStore.open(dir));
    expect(e.code).toBe('PODNET_IPAM_LOCKED');
    expect(e.message).toMatch(/another process is taking over the lock/);
    // Old: its holder is gone.
    const old = new Date(Date.now() - 60_000);
    utimesSync(takeover, old, old);
    await open(dir);
    expect(existsSync(takeover)).toBe(false);
  });

  it('close removes only its own lock', async () => {
    const dir = temp.make();
    const s = await open(dir);
    writeFileSync(lockPath(dir), JSON.stringify({ pid: 1, host: 'someone-else' })); // taken over by someone who judged us dead
    await s.close();
    expect(existsSync(lockPath(dir))).toBe(true);
  });
});
