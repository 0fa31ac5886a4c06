/**
 * Deleting conntrack entries (the `conntrack` tool, from conntrack-tools, in the caller's
 * network namespace). Used by the proxy for UDP and SCTP, where an entry outlives the
 * endpoint it points at: as kube-proxy does, entries to a removed endpoint are deleted,
 * and entries of a Service that had no endpoints (rejected flows) are deleted once it has
 * some, so clients do not wait for the entry to expire.
 *
 * "Nothing matched" is success (conntrack exits 1 with "0 flow entries have been deleted").
 */
import { isIP } from 'node:net';
import { execa } from 'execa';
import { ErrorCodes, PodnetError } from '../util/errors.js';

export type ConntrackProtocol = 'udp' | 'sctp' | 'tcp';

/** What to match; every field given must match (conntrack's -p, --orig-dst, --orig-port-dst, --reply-src). */
export interface ConntrackFilter {
  protocol: ConntrackProtocol;
  /** The original destination (the VIP the client sent to). */
  origDst?: string;
  /** The original destination port (the Service port, or the NodePort). */
  origPortDst?: number;
  /** The reply source after DNAT: the endpoint. */
  replySrc?: string;
  /** The reply source port after DNAT: the endpoint's port. */
  replyPortSrc?: number;
  /** 4 or 6; from the addresses when omitted. */
  family?: 4 | 6;
}

/** The conntrack arguments for a filter (exported for tests). */
export function conntrackDeleteArgs(f: ConntrackFilter): string[] {
  const fam = f.family ?? ((f.origDst ? isIP(f.origDst) : f.replySrc ? isIP(f.replySrc) : 4) as 4 | 6);
  if (f.origDst && isIP(f.origDst) !== fam) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `conntrack: origDst ${JSON.stringify(f.origDst)} is not an IPv${fam} address`, { field: 'origDst' });
  if (f.replySrc && isIP(f.replySrc) !== fam) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `conntrack: replySrc ${JSON.stringify(f.replySrc)} is not an IPv${fam} address`, { field: 'replySrc' });
  for (const [k, v] of [['origPortDst', f.origPortDst], ['replyPortSrc', f.replyPortSrc]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 65535)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `conntrack: ${k} ${v} is not a port`, { field: k });
  }
  const args = ['-D', '-f', fam === 4 ? 'ipv4' : 'ipv6', '-p', f.protocol];
  if (f.origDst) args.push('--orig-dst', f.origDst);
  if (f.origPortDst) args.push('--orig-port-dst', String(f.origPortDst));
  if (f.replySrc) args.push('--reply-src', f.replySrc);
  if (f.replyPortSrc) args.push('--reply-port-src', String(f.replyPortSrc));
  return args;
}

/**
 * Deletes the matching entries; resolves with how many were deleted. Equivalent to
 * `conntrack -D -p udp --orig-dst VIP --orig-port-dst PORT ...`.
 */
export async function conntrackDelete(f: ConntrackFilter): Promise<number> {
  const args = conntrackDeleteArgs(f);
  const r = await execa('conntrack', args, { reject: false, timeout: 10_000 });
  const text = `${String(r.stdout)}\n${String(r.stderr)}`;
  const m = /(\d+) flow entries have been deleted/.exec(text);
  if (m) return Number(m[1]);
  if (r.exitCode === 0) return 0;
  throw new PodnetError(ErrorCodes.EXEC, `conntrack ${args.join(' ')}: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: 'conntrack' });
}
