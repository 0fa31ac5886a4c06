/**
 * The nftables executor for small rulesets: one `nft -f -` transaction per call (all of
 * the script or none of it applies), in the caller's network namespace. A failure is a
 * PODNET_EXEC error carrying nft's message and the lines of the script around the one it
 * names. (The proxy's large rulesets go through nf_tables netlink instead.)
 */
import { execa } from 'execa';
import { ErrorCodes, PodnetError } from '../util/errors.js';

/** Applies an nft script atomically. Equivalent to `nft -f FILE`. */
export async function nftApply(script: string, what: string): Promise<void> {
  const r = await execa('nft', ['-f', '-'], { input: script, reject: false, timeout: 30_000 });
  if (r.exitCode === 0) return;
  const stderr = String(r.stderr).trim();
  const m = /(?:^|\s)(?:-|\/dev\/stdin):(\d+):/m.exec(stderr); // nft names stdin `-` or `/dev/stdin`
  const lines = script.split('\n');
  const at = m ? Number(m[1]) : undefined;
  const around = at ? lines.slice(Math.max(0, at - 3), at + 2).map((l, i) => `${Math.max(1, at - 2) + i}: ${l}`).join('\n') : undefined;
  throw new PodnetError(ErrorCodes.EXEC, `${what}: nft -f failed: ${stderr.split('\n')[0] ?? `exit ${r.exitCode}`}`, { tool: 'nft', ...(at ? { line: at } : {}), ...(around ? { input: around } : {}) });
}

/**
 * The tables nf_tables holds, as `FAMILY NAME` ("ip podnet", "inet foreign"), from `nft list
 * tables`. A kernel without nf_tables (or whose nf_tables lacks a family: the UML guest of the
 * vm tests has only `bridge`) simply has none of them; nft failing otherwise is an error.
 */
export async function nftListTables(): Promise<Set<string>> {
  const r = await execa('nft', ['list', 'tables'], { reject: false, timeout: 30_000 });
  if (r.exitCode === 0) return new Set(String(r.stdout).split('\n').map((l) => /^table (\S+ \S+)/.exec(l.trim())?.[1]).filter((t): t is string => !!t));
  const stderr = String(r.stderr).trim();
  if (/not supported/i.test(stderr)) return new Set();
  throw new PodnetError(ErrorCodes.EXEC, `listing nft tables: nft list tables failed: ${stderr.split('\n')[0] || (r.exitCode === undefined ? r.message : `exit ${r.exitCode}`)}`, { tool: 'nft' });
}

/**
 * Deletes a table if it exists. Equivalent to `nft delete table FAMILY NAME`, but idempotent:
 * nothing to do (and nothing run but the listing) when it is not there, so this also works on
 * a kernel without nf_tables for the family.
 */
export async function nftDeleteTable(family: 'ip' | 'ip6' | 'inet', name: string): Promise<void> {
  if (!(await nftListTables()).has(`${family} ${name}`)) return;
  // "add" first so that "delete" always finds it (should it go meanwhile): one transaction.
  await nftApply(`add table ${family} ${name}\ndelete table ${family} ${name}\n`, `deleting nft table ${family} ${name}`);
}
