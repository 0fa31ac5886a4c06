/**
 * The ipset executor: scripts through `ipset restore -exist` (one call, in order), a whole
 * set replaced atomically (fill a temporary set, `swap`, destroy the temporary), members
 * added and deleted, sets destroyed (a missing set is not an error). ipset state is per
 * network namespace; tools run in the current one or in `netns` via nsenter, as the
 * iptables executor's.
 */
import { execa } from 'execa';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { command, linesAround, type IptablesExecOptions } from './iptables.js';

export type IpsetExecOptions = IptablesExecOptions;

export interface IpsetSpec {
  name: string;
  /** e.g. `hash:ip,port`. */
  type: string;
  family: 4 | 6;
  hashsize?: number;
  maxelem?: number;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,30}$/;

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new PodnetError(ErrorCodes.INVALID_NAME, `invalid ipset name ${JSON.stringify(name)} (1-31 characters, letters, digits, _ . : -)`, { name });
}

function createLine(spec: IpsetSpec, name = spec.name): string {
  return `create ${name} ${spec.type} family ${spec.family === 4 ? 'inet' : 'inet6'}${spec.hashsize ? ` hashsize ${spec.hashsize}` : ''}${spec.maxelem ? ` maxelem ${spec.maxelem}` : ''}`;
}

/** Runs an ipset script. Equivalent to `ipset restore -exist < script`. */
export async function ipsetRestore(script: string, what: string, opts: IpsetExecOptions = {}): Promise<void> {
  if (!script.trim()) return;
  const [file, args] = command('ipset', ['restore', '-exist'], opts.netns);
  const r = await execa(file, args, { input: script, reject: false, timeout: opts.timeoutMs ?? 60_000 });
  if (r.exitCode === 0) return;
  const stderr = String(r.stderr).trim();
  const m = /Error in line (\d+)/.exec(stderr);
  const at = m ? Number(m[1]) : undefined;
  const why = stderr.replace(/^ipset v[\d.]+:\s*/, '').replace(/^Error in line \d+:\s*/, '') || `exit ${r.exitCode}`;
  throw new PodnetError(ErrorCodes.EXEC, `${what}: ipset restore failed${at ? ` at line ${at}` : ''}: ${why}`, {
    tool: 'ipset',
    netns: typeof opts.netns === 'string' ? opts.netns : opts.netns?.path,
    ...(at ? { line: at, input: linesAround(script, at) } : {}),
  });
}

/** Names of the sets that exist. Equivalent to `ipset list -n`. */
export async function ipsetNames(opts: IpsetExecOptions = {}): Promise<string[]> {
  const [file, args] = command('ipset', ['list', '-n'], opts.netns);
  const r = await execa(file, args, { reject: false, timeout: opts.timeoutMs ?? 60_000 });
  if (r.exitCode !== 0) throw new PodnetError(ErrorCodes.EXEC, `ipset list -n failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: 'ipset' });
  return String(r.stdout)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Members of a set (`10.96.0.1,tcp:80`), undefined when it does not exist. Equivalent to `ipset save NAME`. */
export async function ipsetMembers(name: string, opts: IpsetExecOptions = {}): Promise<string[] | undefined> {
  checkName(name);
  const [file, args] = command('ipset', ['save', name], opts.netns);
  const r = await execa(file, args, { reject: false, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.exitCode !== 0) {
    if (/does not exist/.test(String(r.stderr))) return undefined;
    throw new PodnetError(ErrorCodes.EXEC, `ipset save ${name} failed: ${String(r.stderr).trim()}`, { tool: 'ipset', set: name });
  }
  const prefix = `add ${name} `;
  return String(r.stdout)
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length).trim());
}

/** The temporary set ipsetReplace fills before the swap. */
export function tmpSetName(name: string): string {
  return `${name.slice(0, 27)}-TMP`;
}

/**
 * Replaces each set's members with exactly `members`, atomically for packets, in one
 * `ipset restore`: a temporary set `<name>-TMP` is created and filled, then swapped with
 * the live one (or renamed to it when there is none yet), then destroyed. Also resizes
 * (hashsize / maxelem come from the spec).
 */
export async function ipsetReplace(sets: readonly { spec: IpsetSpec; members: readonly string[] }[], what: string, opts: IpsetExecOptions = {}): Promise<void> {
  if (!sets.length) return;
  for (const { spec } of sets) {
    checkName(spec.name);
    checkName(tmpSetName(spec.name));
  }
  const existing = new Set(await ipsetNames(opts));
  const lines: string[] = [];
  for (const { spec, members } of sets) {
    const tmp = tmpSetName(spec.name);
    const live = existing.has(spec.name);
    lines.push(`destroy ${tmp}`, createLine(spec, tmp));
    for (const m of members) lines.push(`add ${tmp} ${m}`);
    lines.push(live ? `swap ${tmp} ${spec.name}` : `rename ${tmp} ${spec.name}`);
    if (live) lines.push(`destroy ${tmp}`);
  }
  await ipsetRestore(lines.join('\n') + '\n', what, opts);
}

/**
 * Adds and deletes members of existing sets in one `ipset restore` (a missing set is an
 * error: create it with ipsetReplace). Deleting a missing member or adding a present one is fine.
 */
export async function ipsetUpdate(changes: readonly { name: string; add?: readonly string[]; del?: readonly string[] }[], what: string, opts: IpsetExecOptions = {}): Promise<void> {
  const lines: string[] = [];
  for (const c of changes) {
    checkName(c.name);
    for (const m of c.add ?? []) lines.push(`add ${c.name} ${m}`);
    for (const m of c.del ?? []) lines.push(`del ${c.name} ${m}`);
  }
  if (!lines.length) return;
  await ipsetRestore(lines.join('\n') + '\n', what, opts);
}

/** Destroys sets; missing ones are fine. Equivalent to `ipset destroy NAME` per name. */
export async function ipsetDestroy(names: readonly string[], what: string, opts: IpsetExecOptions = {}): Promise<void> {
  for (const n of names) checkName(n);
  if (!names.length) return;
  await ipsetRestore(names.map((n) => `destroy ${n}`).join('\n') + '\n', what, opts);
}
