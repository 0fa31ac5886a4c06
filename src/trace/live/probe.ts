/**
 * The live trace's probe: one real packet carrying the trace's marker (DSCP, and the source
 * port / echo id the nftrace rule selects), sent from a network namespace by the
 * native/src/probe.c program (`podnet-probe`), which reports what came back.
 *
 * Results: tcp connected | refused | timeout | unreachable; udp replied | refused |
 * unreachable | sent (no answer: UDP cannot tell more); icmp replied | unreachable |
 * timeout; "error" for anything else (the packet was too big for the path MTU with DF
 * set, a local rule refused it, the source port was taken...), with `errno` and `message`.
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../kernel/native.js';
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import { validateInt } from '../../util/validate.js';
import type { Family, Proto } from '../types.js';

export type ProbeOutcome = 'connected' | 'refused' | 'timeout' | 'unreachable' | 'replied' | 'sent' | 'error';

export interface ProbeResult {
  result: ProbeOutcome;
  /** Time from sending to the answer (connect completed, reply, ICMP error), ms. */
  rttMs?: number;
  /** The source port actually used (TCP / UDP), or the ICMP echo id. */
  sport: number;
  /** The errno that ended the probe (ECONNREFUSED, EHOSTUNREACH, EMSGSIZE...). */
  errno?: string;
  /** A sentence for people. */
  message?: string;
  /** The address that sent the ICMP error, when one came. */
  from?: string;
  icmpType?: number;
  icmpCode?: number;
  /** EMSGSIZE: the path MTU the packet did not fit. */
  mtu?: number;
  /** replied: bytes of the answer (UDP payload / ICMP message). */
  bytes?: number;
  /** False when the probe could not even be sent (podnet-probe exit status 1). */
  sent: boolean;
}

export interface ProbeOptions {
  /** The network namespace to send from (a /run/netns/NAME or /proc/PID/ns/net path); the current one when absent. */
  netnsPath?: string;
  family: Family;
  proto: Proto;
  dst: string;
  /** tcp / udp: the destination port (1..65535). icmp: ignored. */
  dport: number;
  src?: string;
  /** tcp / udp: the source port (0 = any); icmp: the echo id (0 = any). */
  sport: number;
  /** The marker: 0..63. */
  dscp: number;
  /** udp / icmp: bytes of IP packet (headers included), payload padded to it. Ignored for tcp. */
  size?: number;
  timeoutMs: number;
  /** The trace id, written into the payload ("podnet-trace <id>"). */
  id?: string;
}

const OUTCOMES: readonly string[] = ['connected', 'refused', 'timeout', 'unreachable', 'replied', 'sent', 'error'];

/** Absolute path of the podnet-probe program (native/build/Release/podnet-probe). */
export function probeBinary(): string {
  const file = join(packageRoot, 'native', 'build', 'Release', 'podnet-probe');
  if (!existsSync(file)) {
    throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'the podnet-probe program is not built: run scripts/setup.sh (or npm run build:native)', { file });
  }
  return file;
}

function invalid(message: string, field: string): PodnetError {
  return new PodnetError(ErrorCodes.INVALID_ARGUMENT, message, { field });
}

/**
 * Validates the options and returns podnet-probe's argument list (exported for tests).
 * Throws PODNET_INVALID_ARGUMENT / PODNET_INVALID_IP naming the field.
 */
export function probeArgs(o: ProbeOptions): string[] {
  if (o.family !== 4 && o.family !== 6) throw invalid(`family must be 4 or 6, got ${JSON.stringify(o.family)}`, 'family');
  if (o.proto === 'sctp') {
    throw new PodnetError(ErrorCodes.UNSUPPORTED, 'the live probe cannot send SCTP (podnet-probe sends tcp, udp or icmp); use explain mode for SCTP', { field: 'proto' });
  }
  if (o.proto !== 'tcp' && o.proto !== 'udp' && o.proto !== 'icmp') throw invalid(`proto must be tcp, udp or icmp, got ${JSON.stringify(o.proto)}`, 'proto');
  for (const [field, value] of [
    ['dst', o.dst],
    ['src', o.src],
  ] as const) {
    if (field === 'src' && value === undefined) continue;
    if (typeof value !== 'string' || isIP(value) !== o.family) {
      throw new PodnetError(ErrorCodes.INVALID_IP, `${field} ${JSON.stringify(value)} is not an IPv${o.family} address`, { field });
    }
  }
  validateInt(o.sport, 'sport', 0, 65535);
  validateInt(o.dscp, 'dscp', 0, 63);
  validateInt(o.timeoutMs, 'timeoutMs', 1, 600_000);
  if (o.netnsPath !== undefined && (typeof o.netnsPath !== 'string' || !o.netnsPath.startsWith('/') || o.netnsPath.includes('\0'))) {
    throw invalid(`netnsPath must be an absolute path, got ${JSON.stringify(o.netnsPath)}`, 'netnsPath');
  }
  if (o.id !== undefined && (typeof o.id !== 'string' || !/^[a-z0-9]{1,16}$/.test(o.id))) {
    throw invalid(`id must be 1 to 16 characters of [a-z0-9], got ${JSON.stringify(o.id)}`, 'id');
  }
  const args: string[] = [];
  if (o.netnsPath) args.push('--netns', o.netnsPath);
  args.push('--family', String(o.family), '--proto', o.proto, '--dst', o.dst);
  if (o.proto !== 'icmp') args.push('--dport', String(validateInt(o.dport, 'dport', 1, 65535)));
  if (o.src) args.push('--src', o.src);
  args.push('--sport', String(o.sport), '--dscp', String(o.dscp), '--timeout-ms', String(o.timeoutMs));
  if (o.size !== undefined && o.proto !== 'tcp') {
    const min = (o.family === 4 ? 20 : 40) + 8;
    args.push('--size', String(validateInt(o.size, 'size', min, 65535)));
  }
  args.push('--payload', o.id ? `podnet-trace ${o.id}` : 'podnet-trace');
  return args;
}

/** Parses podnet-probe's JSON line (exported for tests). */
export function parseProbeOutput(stdout: string, exitCode: number | undefined): ProbeResult | undefined {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .pop();
  if (!line) return undefined;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof j.result !== 'string' || !OUTCOMES.includes(j.result)) return undefined;
  const r: ProbeResult = { result: j.result as ProbeOutcome, sport: typeof j.sport === 'number' ? j.sport : 0, sent: exitCode === 0 };
  if (typeof j.rttMs === 'number') r.rttMs = j.rttMs;
  for (const k of ['errno', 'message', 'from'] as const) if (typeof j[k] === 'string') r[k] = j[k] as string;
  for (const k of ['icmpType', 'icmpCode', 'mtu', 'bytes'] as const) if (typeof j[k] === 'number') r[k] = j[k] as number;
  return r;
}

/**
 * Sends the probe and resolves with what came back. A probe that could not be sent (no
 * route, namespace not enterable, source port taken...) is a result with `sent: false`;
 * this rejects only when podnet-probe could not be run at all (bad options, not built).
 */
export async function runProbe(o: ProbeOptions): Promise<ProbeResult> {
  const args = probeArgs(o);
  const file = probeBinary();
  const r = await execa(file, args, { reject: false, timeout: o.timeoutMs + 10_000, stdin: 'ignore' });
  const parsed = parseProbeOutput(String(r.stdout ?? ''), r.exitCode);
  if (parsed) return parsed;
  const stderr = String(r.stderr ?? '').trim();
  if (r.exitCode === 2) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, stderr || 'podnet-probe rejected its arguments', { args: args.join(' ') });
  throw new PodnetError(ErrorCodes.EXEC, `podnet-probe failed: ${stderr || (r.timedOut ? 'timed out' : `exit ${r.exitCode ?? r.signal}`)}`, {
    args: args.join(' '),
  });
}
