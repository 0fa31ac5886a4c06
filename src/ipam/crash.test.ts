/**
 * Crash safety of the FileStore: a child process allocates and releases in a loop,
 * printing each acknowledged op, and is killed with SIGKILL at a random point. On reopen,
 * every acknowledged allocation is there with its addresses, every acknowledged release
 * is gone, no address is held twice, and a torn last line is tolerated.
 */
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { IpamAllocator } from './allocator.js';
import { FileStore, JOURNAL_FILE } from './filestore.js';
import { encodeLine } from './journal.js';
import { TempDirs } from './testdata/helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const temp = new TempDirs();
afterEach(() => temp.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ChildRun {
  pid: number;
  allocated: Map<string, string[]>;
  /** Releases started: the allocation may or may not be gone. */
  releasing: Set<string>;
  released: Set<string>;
}

/** Runs the writer for a random while after it is ready, then SIGKILLs it. */
async function runAndKill(dir: string, round: number): Promise<ChildRun> {
  const child = spawn(process.execPath, ['--import', join(here, '../testing/register-ts.mjs'), join(here, 'testdata/crash-allocator.mjs'), dir, String(round)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<NodeJS.Signals | number | null>((r) => child.on('exit', (code, signal) => r(signal ?? code)));
  const ready = new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.startsWith('ready\n')) resolve();
    });
  });
  const started = await Promise.race([ready.then(() => true), exited.then(() => false), sleep(20_000).then(() => false)]);
  expect(started, `the allocator child did not start: ${err}`).toBe(true);
  await sleep(100 + Math.floor(Math.random() * 500));
  process.kill(child.pid!, 'SIGKILL');
  expect(await exited).toBe('SIGKILL');

  const allocated = new Map<string, string[]>();
  const releasing = new Set<string>();
  const released = new Set<string>();
  for (const line of out.split('\n').slice(1, -1)) {
    // the last piece may be a partial line
    const [kind, id, ...ips] = line.split(' ');
    if (kind === 'a') allocated.set(id!, ips);
    else if (kind === 'R') releasing.add(id!);
    else if (kind === 'r') released.add(id!);
    else throw new Error(`unexpected child output ${JSON.stringify(line)}`);
  }
  return { pid: child.pid!, allocated, releasing, released };
}

describe('FileStore crash safety', () => {
  it('every acknowledged op survives SIGKILL at a random point (3 rounds, with compactions)', async () => {
    const dir = temp.make('podnet-ipam-crash-');
    const expected = new Map<string, string[]>(); // acknowledged and not released, over all rounds
    const gone = new Set<string>();
    let total = 0;
    for (let round = 0; round < 3; round++) {
      const run = await runAndKill(dir, round);
      total += run.allocated.size;
      for (const [id, ips] of run.allocated) expected.set(id, ips);
      const maybe = new Set<string>(); // release started, not acknowledged
      for (const id of run.releasing) {
        expected.delete(id);
        if (!run.released.has(id)) maybe.add(id);
      }
      for (const id of run.released) gone.add(id);
      if (round === 2) {
        // A torn last write (the crash cut a line short).
        appendFileSync(join(dir, JOURNAL_FILE), encodeLine(1_000_000, { op: 'alloc', owner: { id: 'torn' }, ips: ['10.244.255.254'] }).slice(0, 40));
      }

      const store = await FileStore.open(dir);
      try {
        expect(store.recovery.tookOverLock?.pid).toBe(run.pid); // the dead child's lock
        if (round === 2) expect(store.recovery.tornBytes).toBeGreaterThanOrEqual(40);
        const ipam = await IpamAllocator.open(store, { subnets: ['10.244.0.0/16', 'fd00:10:244:1::/64'] });
        const live = new Map(ipam.list().map((a) => [a.owner.id, a.addresses.map((x) => x.ip)]));
        for (const [id, ips] of expected) expect(live.get(id), `acknowledged allocation ${id}`).toEqual(ips);
        for (const id of gone) expect(live.has(id), `acknowledged release ${id}`).toBe(false);
        expect(live.has('torn')).toBe(false);
        // Owners that were allocated but not yet acknowledged may be there; each only once.
        const all = [...live.values()].flat();
        expect(new Set(all).size, 'no address is held twice').toBe(all.length);
        for (const id of live.keys()) expect(id).toMatch(/^r[0-2]-p\d+$/);
        // Usable after recovery; keep what the reopen found as the truth for the next round.
        const after = await ipam.allocate({ id: `after-${round}` });
        expect(all).not.toContain(after.addresses[0]!.ip);
        await ipam.release(`after-${round}`);
        for (const id of maybe) if (live.get(id)) expect(live.get(id)).toEqual(run.allocated.get(id));
        for (const [id, ips] of live) if (!expected.has(id)) expected.set(id, ips);
      } finally {
        await store.close();
      }
    }
    expect(total, 'the child acknowledged enough allocations to mean something').toBeGreaterThan(100);
  }, 90_000);
});
