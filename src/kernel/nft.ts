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
  const m = /-:(\d+):/.exec(stderr);
  const lines = script.split('\n');
  const at = m ? Number(m[1]) : undefined;
  const around = at ? lines.slice(Math.max(0, at - 3), at + 2).map((l, i) => `${Math.max(1, at - 2) + i}: ${l}`).join('\n') : undefined;
  throw new PodnetError(ErrorCodes.EXEC, `${what}: nft -f failed: ${stderr.split('\n')[0] ?? `exit ${r.exitCode}`}`, { tool: 'nft', ...(at ? { line: at } : {}), ...(around ? { input: around } : {}) });
}

/** Deletes a table if it exists. Equivalent to `nft delete table FAMILY NAME`, but idempotent. */
export async function nftDeleteTable(family: 'ip' | 'ip6' | 'inet', name: string): Promise<void> {
  // "add" first so that "delete" always finds it: one transaction, never an error for a missing table.
  await nftApply(`add table ${family} ${name}\ndelete table ${family} ${name}\n`, `deleting nft table ${family} ${name}`);
}
