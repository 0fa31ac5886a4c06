/**
 * What a node accepts as a trace request (validated: a request names the field and the
 * reason when it is wrong, and nothing runs), and the CLI's `--to` target syntax.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import type { Directory } from './node.js';
import type { NodeRequest, Packet, Proto } from './types.js';

const ip = z.string().refine((s) => isIP(s) !== 0, 'not an IP address');
const port = z.number().int().min(0).max(65535);
const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'not a DNS-1123 name');

const packet = z.object({
  family: z.union([z.literal(4), z.literal(6)]),
  proto: z.enum(['tcp', 'udp', 'sctp', 'icmp']),
  src: ip,
  sport: port,
  dst: ip,
  dport: port,
  size: z.number().int().min(20).max(65535),
});

const ingress = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('pod'), namespace: name, name }),
  z.object({ kind: z.literal('node') }),
  z.object({ kind: z.literal('transport'), fromNode: name }),
  z.object({ kind: z.literal('external') }),
]);

const schema = z.object({
  packet,
  ingress,
  live: z.object({ id: z.string().regex(/^[a-z0-9]{1,16}$/), dscp: z.number().int().min(1).max(63), timeoutMs: z.number().int().min(1).max(30_000) }).optional(),
  directory: z.object({
    nodes: z.array(z.object({ name, addresses: z.array(ip), podCIDRs: z.array(z.string()), transportProblem: z.object({ reason: z.string().max(256), message: z.string().max(4096) }).optional() })),
    pods: z.array(z.object({ namespace: name, name, ips: z.array(ip), node: name.optional() })),
  }),
});

export type TraceNodeRequest = NodeRequest & { directory: Directory };

/** Validates a node request (the agent's /trace/* body). */
export function parseNodeRequest(body: unknown): TraceNodeRequest {
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `trace request: ${i.path.join('.') || '(body)'}: ${i.message}`, { field: i.path.join('.') });
  }
  const v = r.data;
  if (isIP(v.packet.src) !== v.packet.family || isIP(v.packet.dst) !== v.packet.family) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `trace request: packet: src and dst must be IPv${v.packet.family} addresses`, { field: 'packet' });
  return v as TraceNodeRequest;
}

/** `--to` parsed: an address or svc/NAMESPACE/NAME, a port, a protocol. */
export interface Target {
  kind: 'ip' | 'service';
  ip?: string;
  namespace?: string;
  name?: string;
  port: number;
  proto: Proto;
}

const bad = (field: string, msg: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field}: ${msg}`, { field });

/** `10.96.0.10:80`, `10.96.0.10:80/udp`, `[fd00::1]:80/tcp`, `svc/default/web:http`, `10.244.1.5/icmp`. */
export function parseTarget(text: string, field = '--to'): Target & { portName?: string } {
  const m = /^(.*?)(?:\/(tcp|udp|sctp|icmp))?$/i.exec(text.trim());
  const body = m?.[1] ?? '';
  const proto = (m?.[2]?.toLowerCase() ?? 'tcp') as Proto;
  if (body.startsWith('svc/')) {
    const s = /^svc\/([^/:]+)\/([^/:]+)(?::([^:/]+))?$/.exec(body);
    if (!s) throw bad(field, `${JSON.stringify(text)} is not svc/NAMESPACE/NAME:PORT`);
    const portText = s[3];
    if (proto !== 'icmp' && portText === undefined) throw bad(field, `${JSON.stringify(text)} has no port (svc/NAMESPACE/NAME:PORT, PORT a number or a port name)`);
    const num = portText !== undefined && /^\d+$/.test(portText) ? Number(portText) : 0;
    if (portText !== undefined && /^\d+$/.test(portText) && (num < 1 || num > 65535)) throw bad(field, `port ${num} is out of range 1-65535`);
    return { kind: 'service', namespace: s[1]!, name: s[2]!, port: num, proto, ...(portText !== undefined && !/^\d+$/.test(portText) ? { portName: portText } : {}) };
  }
  let host = body;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(body);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if (isIP(body) === 6) host = body;
  else {
    const i = body.lastIndexOf(':');
    if (i > 0) {
      host = body.slice(0, i);
      portText = body.slice(i + 1);
    }
  }
  if (isIP(host) === 0) throw bad(field, `${JSON.stringify(host)} is not an IP address or svc/NAMESPACE/NAME`);
  if (proto === 'icmp') return { kind: 'ip', ip: host, port: 0, proto };
  if (portText === undefined || !/^\d+$/.test(portText)) throw bad(field, `${JSON.stringify(text)} has no port (ADDRESS:PORT[/tcp|udp|sctp|icmp])`);
  const p = Number(portText);
  if (p < 1 || p > 65535) throw bad(field, `port ${p} is out of range 1-65535`);
  return { kind: 'ip', ip: host, port: p, proto };
}

/** A packet from its parts, with the size an IP header + transport header + payload would have. */
export function makePacket(o: { src: string; dst: string; proto: Proto; sport: number; dport: number; size?: number }): Packet {
  const family = isIP(o.dst) === 6 ? 6 : 4;
  const hdr = (family === 6 ? 40 : 20) + (o.proto === 'tcp' ? 20 : 8);
  return { family, proto: o.proto, src: o.src, sport: o.sport, dst: o.dst, dport: o.dport, size: o.size ?? hdr };
}
