import { describe, expect, it } from 'vitest';
import type { NftFamily, NftTable } from '../../kernel/nftables/ast.js';
import type { NftTransaction } from '../../kernel/nftables/ops.js';
import { PodnetError, ErrorCodes } from '../../util/errors.js';
import { PassThrough } from 'node:stream';
import { createLogger, silentLogger, type Logger } from '../../util/log.js';
import { buildSnapshot } from '../snapshot.js';
import { createNftablesMode, opsAround, type NftExecutorLike } from './index.js';
import { planTable } from './plan.js';
import { node4, node6, shapes4, shapes6, slice, snapshot4, snapshot6 } from './testdata/fixtures.js';
import { simApply, simCanon, simFrom, type SimTable } from './testdata/simulate.js';

/** An executor backed by the strict simulator, one table per family, with the egress chain in ip. */
class FakeExecutor implements NftExecutorLike {
  tables = new Map<NftFamily, SimTable>();
  applied: NftTransaction[] = [];
  lists = 0;
  failNext: Error | undefined;

  constructor() {
    this.tables.set('ip', simFrom(undefined, ['egress-masquerade']));
  }

  async apply(tx: NftTransaction): Promise<void> {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    const t = this.tables.get(tx.family) ?? simFrom(undefined);
    // all or nothing, like a batch
    const copy = simFrom(toTable(tx.family, t), [...t.foreign]);
    simApply(copy, tx);
    this.tables.set(tx.family, copy);
    this.applied.push(tx);
  }

  async listTable(family: NftFamily): Promise<NftTable | undefined> {
    this.lists++;
    const t = this.tables.get(family);
    return t ? toTable(family, t) : undefined;
  }

  async deleteTable(family: NftFamily): Promise<void> {
    this.tables.delete(family);
  }
}

function toTable(family: NftFamily, s: SimTable): NftTable {
  return {
    family,
    name: 'podnet',
    sets: [...s.sets.values()],
    elements: new Map([...s.elements].map(([k, v]) => [k, [...v.values()]])),
    chains: [...s.chains.values()],
  };
}

const canonOf = (fake: FakeExecutor, family: NftFamily): string => {
  const t = fake.tables.get(family)!;
  const copy = simFrom(toTable(family, t));
  for (const f of t.foreign) copy.chains.delete(f);
  return simCanon(copy);
};

function mode(fake: FakeExecutor) {
  return createNftablesMode({ log: silentLogger(), openExecutor: () => fake });
}

describe('nftables ProxyMode', () => {
  it('first sync is full (after reading the table), later ones partial; both families', async () => {
    const fake = new FakeExecutor();
    const m = mode(fake);
    const s4 = snapshot4();
    const s6 = snapshot6();
    const r1 = await m.sync([s4, s6], new Set(['default/web:http']));
    expect(r1.full).toBe(true);
    expect(r1.servicesWritten).toBe(s4.services.size + s6.services.size);
    expect(fake.lists).toBe(2);
    expect(fake.applied.map((t) => t.family)).toEqual(['ip', 'ip6']);
    expect(canonOf(fake, 'ip')).toBe(simCanon(simFrom(planTable(s4).table)));
    expect(canonOf(fake, 'ip6')).toBe(simCanon(simFrom(planTable(s6).table)));
    expect(fake.tables.get('ip')!.chains.has('egress-masquerade')).toBe(true);

    const base = shapes4();
    const s4b = buildSnapshot(
      base.services,
      base.slices.map((sl) => (sl.metadata.labels!['kubernetes.io/service-name'] === 'web' ? slice('web', [{ ip: '10.244.1.5', node: 'n1' }]) : sl)),
      node4,
    );
    const r2 = await m.sync([s4b, s6], new Set(['default/web:http']));
    expect(r2).toEqual({ servicesWritten: 1, servicesRemoved: 0, full: false });
    expect(fake.lists).toBe(2);
    const last = fake.applied.at(-1)!;
    expect(last.ops.every((o) => !('chain' in o) || typeof o.chain !== 'string' || o.chain.includes('/web/'))).toBe(true);
    expect(canonOf(fake, 'ip')).toBe(simCanon(simFrom(planTable(s4b).table)));
    // nothing changed in v6: an empty transaction is not sent
    expect(fake.applied.filter((t) => t.family === 'ip6').length).toBe(1);
  });

  it('a failure is logged with the ops around it, rethrown, and makes the next sync full with a fresh listing', async () => {
    const fake = new FakeExecutor();
    const lines: string[] = [];
    const logger = {
      child: () => logger,
      error: (o: { around?: string }, msg: string) => lines.push(`${msg}\n${o.around ?? ''}`),
      debug: () => {},
      info: () => {},
    } as unknown as Logger;
    const m = createNftablesMode({ log: logger, openExecutor: () => fake });
    await m.sync([snapshot4()], undefined);
    fake.failNext = new PodnetError(ErrorCodes.NFT, 'the kernel said no', { op: 1 });
    const base = shapes4();
    const s2 = buildSnapshot(base.services.filter((s) => s.metadata.name !== 'np'), base.slices, node4);
    await expect(m.sync([s2], new Set(['default/np:http']))).rejects.toThrow('the kernel said no');
    expect(lines[0]).toContain('nftables proxy transaction failed');
    expect(lines[0]).toContain('>1: ');
    // a failed partial sync: the next one is full, from the model (no slow listing)
    const listsBefore = fake.lists;
    fake.failNext = new PodnetError(ErrorCodes.NFT, 'no again', {});
    await expect(m.sync([s2], new Set(['default/np:http']))).rejects.toThrow('no again');
    expect(fake.lists).toBe(listsBefore);
    expect(fake.applied.length).toBe(1);
    // a failed full sync: the next one reads the table again
    const r = await m.sync([s2], new Set(['default/np:http']));
    expect(r.full).toBe(true);
    expect(fake.lists).toBe(listsBefore + 1);
    // (a full sync keeps the endpoint slots of the state it started from: the first sync's)
    expect(canonOf(fake, 'ip')).toBe(simCanon(simFrom(planTable(s2, planTable(snapshot4())).table)));
  });

  it('a restart finds stale objects of an earlier run and deletes them', async () => {
    const fake = new FakeExecutor();
    await mode(fake).sync([snapshot4()], undefined);
    const base = shapes4();
    const fewer = buildSnapshot(base.services.filter((s) => !['np', 'aff', 'web'].includes(s.metadata.name!)), base.slices, node4);
    const r = await mode(fake).sync([fewer], undefined);
    expect(r.full).toBe(true);
    expect(canonOf(fake, 'ip')).toBe(simCanon(simFrom(planTable(fewer).table)));
    expect(fake.tables.get('ip')!.chains.has('egress-masquerade')).toBe(true);
  });

  it('cleanup removes exactly ours: the table itself only when nothing else is in it', async () => {
    const fake = new FakeExecutor();
    const m = mode(fake);
    await m.sync([snapshot4(), buildSnapshot(shapes6().services, shapes6().slices, node6)], undefined);
    await m.cleanup();
    expect([...fake.tables.get('ip')!.chains.keys()]).toEqual(['egress-masquerade']);
    expect(fake.tables.get('ip')!.sets.size).toBe(0);
    expect(fake.tables.has('ip6')).toBe(false);
    await m.cleanup(); // idempotent
    // and a sync after cleanup starts over (full)
    const r = await m.sync([snapshot4()], new Set());
    expect(r.full).toBe(true);
    expect(canonOf(fake, 'ip')).toBe(simCanon(simFrom(planTable(snapshot4()).table)));
  });

  it('warns when a transaction went in several batches (not atomic), not when it went in one', async () => {
    const fake = new FakeExecutor();
    let batches = 1;
    Object.defineProperty(fake, 'lastApply', { get: () => ({ encodeMs: 1, kernelMs: 2, batches, bytes: 1234 }) });
    const out = new PassThrough();
    const lines: Record<string, unknown>[] = [];
    out.on('data', (d: Buffer) => lines.push(...d.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)));
    const m = createNftablesMode({ log: createLogger({ level: 'warn', destination: out }), openExecutor: () => fake });
    await m.sync([snapshot4()], undefined);
    batches = 3;
    await m.sync([snapshot4()], undefined);
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', family: 'ip', full: true, batches: 3, bytes: 1234 });
    expect(String(lines[0]!.msg)).toMatch(/several batches, not atomically.*wmem_max/);
  });

  it('opsAround numbers the script lines and marks the failing one', () => {
    const tx: NftTransaction = { family: 'ip', table: 'podnet', ops: [{ op: 'add-table' }, { op: 'flush-set', set: 'service-ips' }, { op: 'delete-chain', chain: 'x' }] };
    expect(opsAround(tx, 1, 1)).toBe(' 0: add table ip podnet\n>1: flush map ip podnet service-ips\n 2: delete chain ip podnet x');
  });
});
