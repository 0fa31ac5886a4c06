/**
 * One nf_tables transaction as a list of operations on one table (see ast.ts). The executor
 * (executor.ts) sends them as a single netlink batch, in order: all of them apply, or none
 * (the kernel's nf_tables transaction). The planner (src/proxy/nftables/) builds these from
 * the table it installed last time and the table it wants now, ordered so every step is
 * valid: objects are added before they are referenced and unreferenced before deletion.
 *
 *   add-table          `add table ip podnet` (idempotent: NLM_F_CREATE without EXCL)
 *   delete-table       `delete table ip podnet`
 *   add-chain          `add chain ip podnet X { type nat hook ... }` (idempotent, no rules)
 *   flush-chain        `flush chain ip podnet X`
 *   delete-chain       `delete chain ip podnet X`
 *   add-rule           `add rule ip podnet X ...` (appended)
 *   add-set            `add set|map ip podnet X { ... }` (idempotent)
 *   flush-set          `flush set ip podnet X`
 *   delete-set         `delete set ip podnet X`
 *   add-elements       `add element ip podnet X { ... }` (idempotent for equal elements)
 *   delete-elements    `delete element ip podnet X { ... }` (by key)
 */
import type { NftChain, NftElement, NftFamily, NftRule, NftSet } from './ast.js';

export type NftOp =
  | { op: 'add-table' }
  | { op: 'delete-table' }
  | { op: 'add-chain'; chain: Omit<NftChain, 'rules'> }
  | { op: 'flush-chain'; chain: string }
  | { op: 'delete-chain'; chain: string }
  | { op: 'add-rule'; chain: string; rule: NftRule }
  | { op: 'add-set'; set: NftSet }
  | { op: 'flush-set'; set: string }
  | { op: 'delete-set'; set: string }
  | { op: 'add-elements'; set: string; elements: NftElement[] }
  | { op: 'delete-elements'; set: string; keys: string[][] };

export interface NftTransaction {
  family: NftFamily;
  table: string;
  ops: NftOp[];
}
