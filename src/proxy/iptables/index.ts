/**
 * The iptables proxy mode: plans with plan.ts (pure) and applies with the kernel executors
 * (iptables-restore --noflush, ipset, iptables -S/-I for the jumps), per IP family.
 *
 * - The first sync is full and also removes what an earlier run left: it reads
 *   `iptables-save -t nat` / `-t filter` once, creates our top chains if missing and hooks
 *   them (while the table may still be small), and stale PODNET-* chains and stray jumps to
 *   them go in the same restore. After a failed sync the next one is full and re-reads.
 * - Later syncs are partial when the proxier passes `changed`: only those ports' chains
 *   whose content differs are rewritten; dispatch chains only when their content changed.
 * - Periodic full syncs re-check the one jump from each built-in chain (`-S`, then `-I`).
 * - Per sync and family the order is: ipset additions (or both sets swapped in on a full
 *   sync), one restore of nat + filter, jumps, ipset deletions — so a VIP is in the set
 *   before its rules exist and leaves it only after they are gone.
 * - A family that stops being proxied is cleaned up once; cleanup() removes exactly our
 *   chains, the jumps to them and our ipsets, in both families (idempotent).
 */
import { ensureJumps, iptablesRestore, iptablesSave, type IptablesExecOptions } from '../../kernel/iptables.js';
import { ipsetDestroy, ipsetReplace, ipsetUpdate, tmpSetName } from '../../kernel/ipset.js';
import { formatError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import type { Family, ProxyMode, ProxySnapshot, SyncResult } from '../types.js';
import { JUMPS, cleanupInput, ipsetNames, parseSaved, planIptables, type IpsetPlan, type IptablesPlan, type IptablesPlanState, type SavedTable } from './plan.js';

export interface IptablesModeOptions {
  /** Program this network namespace (a path such as /run/netns/x) instead of the current one. */
  netnsPath?: string;
  log: Logger;
}

/** What the last sync did in one family (logs, tests). */
export interface IptablesSyncReport {
  family: Family;
  full: boolean;
  stats: IptablesPlan['stats'];
  natLines: number;
  filterLines: number;
  ipsetAdded: number;
  ipsetDeleted: number;
  ms: { plan: number; read: number; ipset: number; restore: number; jumps: number; total: number };
}

export interface IptablesMode extends ProxyMode {
  readonly name: 'iptables';
  /** Per family, what the last successful sync did. */
  lastSync(): readonly IptablesSyncReport[];
}

const FAMILIES: readonly Family[] = [4, 6];

function lineCount(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

export function createIptablesMode(o: IptablesModeOptions): IptablesMode {
  const exec: IptablesExecOptions = o.netnsPath ? { netns: o.netnsPath } : {};
  const log = o.log;
  const states = new Map<Family, IptablesPlanState>();
  /** Families whose kernel state must be re-read before the next (full) sync. */
  const unknown = new Set<Family>(FAMILIES);
  let needFull = true;
  let reports: IptablesSyncReport[] = [];

  async function readExisting(family: Family): Promise<{ nat: SavedTable; filter: SavedTable }> {
    const [nat, filter] = await Promise.all([iptablesSave(family, 'nat', exec), iptablesSave(family, 'filter', exec)]);
    return { nat: parseSaved(nat), filter: parseSaved(filter) };
  }

  async function syncFamily(snapshot: ProxySnapshot, changed: ReadonlySet<string> | undefined): Promise<IptablesSyncReport> {
    const family = snapshot.family;
    const ms = { read: 0, plan: 0, ipset: 0, restore: 0, jumps: 0, total: 0 };
    const t0 = performance.now();
    const timed = async <T>(k: keyof typeof ms, fn: () => Promise<T> | T): Promise<T> => {
      const t = performance.now();
      try {
        return await fn();
      } finally {
        ms[k] += Math.round((performance.now() - t) * 10) / 10;
      }
    };
    const existing = unknown.has(family) ? await timed('read', () => readExisting(family)) : undefined;
    const plan = await timed('plan', () => planIptables({ snapshot, previous: states.get(family), changed, existing }));
    const spec = (i: IpsetPlan) => ({ name: i.name, type: 'hash:ip,port', family, hashsize: i.hashsize, maxelem: i.maxelem });
    await timed('ipset', async () => {
      await ipsetReplace(plan.ipsets.filter((i) => i.replace).map((i) => ({ spec: spec(i), members: i.replace! })), `replacing the proxy ipsets (IPv${family})`, exec);
      await ipsetUpdate(plan.ipsets.filter((i) => !i.replace).map((i) => ({ name: i.name, add: i.add })), `adding to the proxy ipsets (IPv${family})`, exec);
    });
    if (existing) {
      // Startup (or after a failure): hook our chains first, creating the missing ones empty,
      // while the table may still be small (inserting a jump costs ~200 ms on a table of
      // 400,000 rules). Existing chains are not declared here: that would flush them until
      // the restore below refills them.
      await timed('jumps', async () => {
        const create = (['nat', 'filter'] as const)
          .map((table) => {
            const want = [...new Set(JUMPS.filter((j) => j.table === table).map((j) => j.args[j.args.length - 1]!))];
            const missing = want.filter((c) => !existing[table].chains.includes(c));
            return missing.length ? `*${table}\n${missing.map((c) => `:${c} - [0:0]\n`).join('')}COMMIT\n` : '';
          })
          .join('');
        if (create) await iptablesRestore(family, create, `creating the iptables proxy chains (IPv${family})`, exec);
        await ensureJumps(family, JUMPS, exec);
      });
    }
    const input = plan.nat + plan.filter;
    if (input) await timed('restore', () => iptablesRestore(family, input, `installing iptables proxy rules (IPv${family})`, exec));
    // A periodic full sync repairs jumps someone removed (listing 4 chains, ~20 ms each).
    if (plan.full && !existing) await timed('jumps', () => ensureJumps(family, JUMPS, exec));
    await timed('ipset', () => ipsetUpdate(plan.ipsets.map((i) => ({ name: i.name, del: i.del })), `removing from the proxy ipsets (IPv${family})`, exec));
    states.set(family, plan.state);
    unknown.delete(family);
    ms.total = Math.round((performance.now() - t0) * 10) / 10;
    return {
      family,
      full: plan.full,
      stats: plan.stats,
      natLines: lineCount(plan.nat),
      filterLines: lineCount(plan.filter),
      ipsetAdded: plan.ipsets.reduce((n, i) => n + (i.replace ? i.replace.length : i.add.length), 0),
      ipsetDeleted: plan.ipsets.reduce((n, i) => n + i.del.length, 0),
      ms,
    };
  }

  /** Removes our chains, the jumps into them and our sets in one family (idempotent). */
  async function cleanupFamily(family: Family): Promise<void> {
    const [nat, filter] = await Promise.all([iptablesSave(family, 'nat', exec), iptablesSave(family, 'filter', exec)]);
    const input = cleanupInput({ nat: parseSaved(nat), filter: parseSaved(filter) });
    if (input) await iptablesRestore(family, input, `removing iptables proxy rules (IPv${family})`, exec);
    const sets = ipsetNames(family);
    await ipsetDestroy([...sets, ...sets.map(tmpSetName)], `removing the proxy ipsets (IPv${family})`, exec);
  }

  return {
    name: 'iptables',

    lastSync: () => reports,

    async sync(snapshots: readonly ProxySnapshot[], changed: ReadonlySet<string> | undefined): Promise<SyncResult> {
      const full = needFull || changed === undefined;
      needFull = true; // until this sync succeeded
      const out: IptablesSyncReport[] = [];
      const result: SyncResult = { servicesWritten: 0, servicesRemoved: 0, full };
      try {
        for (const snap of snapshots) {
          const r = await syncFamily(snap, full ? undefined : changed);
          out.push(r);
          result.servicesWritten += r.stats.portsWritten;
          result.servicesRemoved += r.stats.portsRemoved;
          log.debug({ mode: 'iptables', family: r.family, full: r.full, ...r.stats, natLines: r.natLines, filterLines: r.filterLines, ms: r.ms }, 'iptables rules applied');
        }
      } catch (e) {
        // The kernel may hold part of it: re-read before the next (full) sync.
        for (const s of snapshots) unknown.add(s.family);
        throw e;
      }
      // A family no longer proxied (dual-stack turned off): remove what we had there, once.
      for (const family of FAMILIES) {
        if (snapshots.some((s) => s.family === family) || (!unknown.has(family) && !states.has(family))) continue;
        try {
          await cleanupFamily(family);
          states.delete(family);
          unknown.delete(family);
        } catch (e) {
          log.warn({ mode: 'iptables', family, err: formatError(e) }, 'cannot remove iptables proxy rules of a family not proxied');
          unknown.delete(family);
        }
      }
      reports = out;
      needFull = false;
      return result;
    },

    async cleanup(): Promise<void> {
      let first: unknown;
      for (const family of FAMILIES) {
        try {
          await cleanupFamily(family);
        } catch (e) {
          first ??= e;
          log.warn({ mode: 'iptables', family, err: formatError(e) }, 'iptables proxy cleanup failed');
        }
        states.delete(family);
        unknown.add(family);
      }
      needFull = true;
      if (first) throw first;
    },
  };
}

export { planIptables, parseSaved, JUMPS } from './plan.js';
export type { IptablesPlan, IptablesPlanState } from './plan.js';
