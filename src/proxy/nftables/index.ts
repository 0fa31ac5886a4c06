/**
 * The nftables ProxyMode: plans with plan.ts (pure) and applies through the nf_tables
 * netlink executor (src/kernel/nftables/executor.ts), one transaction per family per sync.
 *
 * - Keeps the last applied PlannedState per family; a partial sync plans and writes only
 *   the changed service ports.
 * - The first sync of a family is full and reads the kernel's table first: objects of ours
 *   the model does not know (an earlier run) are stale and deleted; the egress
 *   masquerade's chain and anything else not ours by name is left alone.
 * - A failed transaction changed nothing (nf_tables batches are atomic): the state stays,
 *   the failing op is logged with the script lines around it, and the next sync is full —
 *   from the model after a failed partial sync, after reading the table again when a full
 *   one failed (then the model itself may be wrong, e.g. someone deleted our objects).
 */
import type { NftFamily } from '../../kernel/nftables/ast.js';
import { NftExecutor } from '../../kernel/nftables/executor.js';
import type { NftTransaction } from '../../kernel/nftables/ops.js';
import type { NetNS } from '../../kernel/netns.js';
import type { Logger } from '../../util/log.js';
import type { Family, ProxyMode, ProxySnapshot, SyncResult } from '../types.js';
import { TABLE_NAME, isOwnedMap, isPartial, planCleanup, planTable, planTransaction, type ExistingObjects, type PlannedState } from './plan.js';
import { renderOp } from './render.js';

/** What the mode needs from the executor (src/kernel/nftables/executor.ts NftExecutor). */
export interface NftExecutorLike {
  /** Applies one transaction atomically (one netlink batch). */
  apply(tx: NftTransaction): Promise<unknown>;
  /** The table's chains and sets (no rules needed) as the kernel has them; undefined when there is no such table. */
  listTable(family: NftFamily, name: string): Promise<ExistingObjects | undefined>;
  /** Deletes the table (no error when it is gone). */
  deleteTable(family: NftFamily, name: string): Promise<unknown>;
  close?(): unknown;
  /** How the last apply went (NftExecutor: encoding and kernel time), for the debug log. */
  readonly lastApply?: { encodeMs: number; kernelMs: number; batches?: number; bytes?: number } | undefined;
}

export interface NftablesModeOptions {
  /** Where to program (default: the agent's own namespace). */
  netns?: NetNS;
  log: Logger;
  /** How to get the executor (tests); default NftExecutor.open(netns). */
  openExecutor?: (netns: NetNS | undefined) => NftExecutorLike | Promise<NftExecutorLike>;
}

const nftFamily = (f: Family): NftFamily => (f === 4 ? 'ip' : 'ip6');

const defaultOpen = (netns: NetNS | undefined): NftExecutorLike => NftExecutor.open(netns);

/** The lines of a transaction around op `at` (or its first lines), numbered, for error context. */
export function opsAround(tx: NftTransaction, at: number | undefined, radius = 3): string {
  const ctx = { family: tx.family, table: tx.table, isMap: isOwnedMap };
  const from = at === undefined ? 0 : Math.max(0, at - radius);
  const to = at === undefined ? Math.min(tx.ops.length, 2 * radius + 1) : Math.min(tx.ops.length, at + radius + 1);
  const out: string[] = [];
  for (let i = from; i < to; i++) out.push(`${i === at ? '>' : ' '}${i}: ${renderOp(tx.ops[i]!, ctx)}`);
  return out.join('\n');
}

function failedOp(e: unknown): number | undefined {
  const c = (e as { context?: Record<string, unknown> } | undefined)?.context;
  return typeof c?.op === 'number' ? c.op : undefined;
}

export function createNftablesMode(o: NftablesModeOptions): ProxyMode {
  const open = o.openExecutor ?? defaultOpen;
  const log = o.log.child({ component: 'proxy-nftables' });
  let executor: Promise<NftExecutorLike> | undefined;
  const states = new Map<Family, PlannedState>();
  /**
   * Families whose next sync must be full: 'full' after a failed partial sync (the batch
   * changed nothing, so the model still holds), 'read' after a failed full sync or a
   * cleanup (read the kernel's table first: the model may be wrong — listing a big table
   * is slow, ~15 s at 110,000 chains, so it is not done when the model is still good).
   */
  const unsure = new Map<Family, 'full' | 'read'>();
  const ex = (): Promise<NftExecutorLike> => {
    executor ??= Promise.resolve(open(o.netns)).catch((e: unknown) => {
      executor = undefined;
      throw e;
    });
    return executor;
  };

  async function syncFamily(nft: NftExecutorLike, snap: ProxySnapshot, changed: ReadonlySet<string> | undefined): Promise<SyncResult> {
    const family = snap.family;
    const prev = states.get(family);
    const read = !prev || unsure.get(family) === 'read';
    const want = read || unsure.has(family) ? undefined : changed;
    let existing: ExistingObjects | undefined;
    if (read) existing = (await nft.listTable(nftFamily(family), TABLE_NAME)) ?? { chains: [], sets: [] };
    const t0 = performance.now();
    const next = planTable(snap, prev, want);
    const partial = isPartial(prev, next, want);
    const t1 = performance.now();
    const tx = planTransaction(prev, next, want, existing ? { existing } : {});
    const t2 = performance.now();
    if (tx.ops.length) {
      try {
        await nft.apply(tx);
      } catch (e) {
        unsure.set(family, partial ? 'full' : 'read');
        const at = failedOp(e);
        log.error({ err: e, family: tx.family, table: tx.table, full: !partial, ops: tx.ops.length, ...(at !== undefined ? { op: at } : {}), around: opsAround(tx, at) }, 'nftables proxy transaction failed; the next sync is full');
        throw e;
      }
    }
    const t3 = performance.now();
    states.set(family, next);
    unsure.delete(family);
    let written = 0;
    let removed = 0;
    if (partial) {
      for (const k of want!) {
        if (next.perService.has(k)) written += prev!.perService.get(k) !== next.perService.get(k) ? 1 : 0;
        else if (prev!.perService.has(k)) removed++;
      }
    } else {
      written = next.perService.size;
      if (prev) for (const k of prev.perService.keys()) if (!next.perService.has(k)) removed++;
    }
    // Where a sync's time went: applyMs is encodeMs (netlink messages) + kernelMs (nf_tables works inside sendmsg).
    const ms = (x: number) => Math.round(x * 100) / 100;
    const la = tx.ops.length ? nft.lastApply : undefined;
    const split = la ? { encodeMs: ms(la.encodeMs), kernelMs: ms(la.kernelMs), ...(la.batches !== undefined ? { batches: la.batches } : {}) } : {};
    if (la?.batches !== undefined && la.batches > 1) {
      // Each batch is its own kernel transaction: between them the table is half written (a
      // full sync's flushed chains before their rules come back). See executor.ts "Size".
      log.warn({ family: tx.family, full: !partial, ops: tx.ops.length, batches: la.batches, bytes: la.bytes }, 'nftables proxy transaction was applied in several batches, not atomically: the socket buffers could not be raised past net.core.wmem_max (CAP_NET_ADMIN needed)');
    }
    log.debug({ family: tx.family, full: !partial, ops: tx.ops.length, written, removed, planMs: ms(t1 - t0), transactionMs: ms(t2 - t1), applyMs: ms(t3 - t2), ...split }, 'nftables proxy rules applied');
    return { servicesWritten: written, servicesRemoved: removed, full: !partial };
  }

  return {
    name: 'nftables',

    async sync(snapshots, changed) {
      const nft = await ex();
      const total: SyncResult = { servicesWritten: 0, servicesRemoved: 0, full: false };
      for (const snap of snapshots) {
        const r = await syncFamily(nft, snap, changed);
        total.servicesWritten += r.servicesWritten;
        total.servicesRemoved += r.servicesRemoved;
        total.full ||= r.full;
      }
      return total;
    },

    async cleanup() {
      const nft = await ex();
      for (const family of [4, 6] as const) {
        const nf = nftFamily(family);
        const t = await nft.listTable(nf, TABLE_NAME);
        states.delete(family);
        unsure.set(family, 'read');
        if (!t) continue;
        const plan = planCleanup(nf, t);
        if (plan === 'delete-table') await nft.deleteTable(nf, TABLE_NAME);
        else if (plan) {
          try {
            await nft.apply(plan);
          } catch (e) {
            log.error({ err: e, family: nf, around: opsAround(plan, failedOp(e)) }, 'removing the nftables proxy rules failed');
            throw e;
          }
        }
      }
      log.info('nftables proxy rules removed');
    },

    async close() {
      // The rules stay; only the socket goes (an open netlink socket keeps the process alive).
      const e = executor;
      executor = undefined;
      if (e) (await e.catch(() => undefined))?.close?.();
    },
  };
}
