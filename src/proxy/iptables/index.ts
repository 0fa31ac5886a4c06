/**
 * The iptables proxy mode: plans with plan.ts (pure) and applies with the kernel executors
 * (iptables-restore --noflush, ipset, iptables -C/-I for the jumps), per IP family.
 *
 * - The first sync is full and also removes what an earlier run left: it reads
 *   `iptables-save -t nat` / `-t filter` once, and stale PODNET-* chains and stray jumps to
 *   them go in the same restore. (After a failed sync the next one is full and re-reads.)
 * - Later syncs are partial when the proxier passes `changed`: only those ports' chains
 *   whose content differs are rewritten; dispatch chains only when their content changed.
 * - Every full sync ensures the one jump from each built-in chain (`-C`, then `-I`).
 * - Per sync and family the order is: ipset additions (or the whole set swapped in on a
 *   full sync), one restore of nat + filter, jumps, ipset deletions — so a VIP is in the
 *   set before its rules exist and leaves it only after they are gone.
 * - cleanup() removes exactly our chains, the jumps to them and our ipsets, in both families.
 */
import { ensureJumps, iptablesRestore, iptablesSave, type IptablesExecOptions } from '../../kernel/iptables.js';
import { ipsetDestroy, ipsetReplace, ipsetUpdate } from '../../kernel/ipset.js';
import { formatError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import type { Family, ProxyMode, ProxySnapshot, SyncResult } from '../types.js';
import { JUMPS, parseSaved, planIptables, serviceIPSetName, type IptablesPlan, type IptablesPlanState, type SavedTable } from './plan.js';

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

const lineCount = (s: string) => (s ? s.split('\n').length - 1 : 0);

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
    const t0 = performance.now();
    const fam = `IPv${family}`;
    const existing = unknown.has(family) ? await readExisting(family) : undefined;
    const t1 = performance.now();
    const plan = planIptables({ snapshot, previous: states.get(family), changed, existing });
    const t2 = performance.now();
    const spec = { name: plan.ipset.name, type: 'hash:ip,port', family, hashsize: plan.ipset.hashsize, maxelem: plan.ipset.maxelem };
    if (plan.ipset.replace) await ipsetReplace(spec, plan.ipset.replace, `replacing the service VIP set (${fam})`, exec);
    else await ipsetUpdate(spec.name, plan.ipset.add, [], `adding service VIPs to the set (${fam})`, exec);
    const t3 = performance.now();
    const input = plan.nat + plan.filter;
    if (input) await iptablesRestore(family, input, `installing iptables proxy rules (${fam})`, exec);
    const t4 = performance.now();
    if (plan.full) await ensureJumps(family, JUMPS, exec);
    const t5 = performance.now();
    await ipsetUpdate(spec.name, [], plan.ipset.del, `removing service VIPs from the set (${fam})`, exec);
    const t6 = performance.now();
    states.set(family, plan.state);
    unknown.delete(family);
    const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
    return {
      family,
      full: plan.full,
      stats: plan.stats,
      natLines: lineCount(plan.nat),
      filterLines: lineCount(plan.filter),
      ipsetAdded: plan.ipset.replace ? plan.ipset.replace.length : plan.ipset.add.length,
      ipsetDeleted: plan.ipset.del.length,
      ms: { read: ms(t0, t1), plan: ms(t1, t2), ipset: ms(t2, t3) + ms(t5, t6), restore: ms(t3, t4), jumps: ms(t4, t5), total: ms(t0, t6) },
    };
  }

  /** Removes our chains, the jumps into them and our sets in one family (idempotent). */
  async function cleanupFamily(family: Family): Promise<void> {
    const parts: string[] = [];
    for (const table of ['nat', 'filter'] as const) {
      const saved = parseSaved(await iptablesSave(family, table, exec));
      if (!saved.chains.length && !saved.jumps.length) continue;
      parts.push(
        `*${table}`,
        ...saved.chains.map((c) => `:${c} - [0:0]`),
        ...saved.jumps.map((j) => `-D${j.slice(2)}`),
        ...saved.chains.map((c) => `-X ${c}`),
        'COMMIT',
      );
    }
    if (parts.length) await iptablesRestore(family, parts.join('\n') + '\n', `removing iptables proxy rules (IPv${family})`, exec);
    const set = serviceIPSetName(family);
    await ipsetDestroy([set, `${set.slice(0, 27)}-TMP`], `removing the service VIP set (IPv${family})`, exec);
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
