/**
 * The options of `podnet api` that the command line parses before anything starts
 * (kept apart from the server so that `podnet --help` and other commands load nothing
 * of it).
 */
import { isIP } from 'node:net';
import { Cidr } from '../util/ipnet.js';

export type Listen = { host: string; port: number } | { socketPath: string };

export const CONTROLLERS = ['endpointslice', 'nodelifecycle', 'podgc', 'repair', 'eventttl'] as const;
export type ControllerName = (typeof CONTROLLERS)[number];

/** How long an Event is kept after its last occurrence: kube-apiserver's --event-ttl default. */
export const DEFAULT_EVENT_TTL_MS = 60 * 60_000;

export function isLoopbackListen(l: Listen): boolean {
  if ('socketPath' in l) return true;
  const h = l.host;
  return h === 'localhost' || (isIP(h) === 4 && h.startsWith('127.')) || h === '::1';
}

/** "127.0.0.1:6443", "[::1]:6443", "0.0.0.0:6443" or "unix:/run/podnet/api.sock". */
export function parseListen(text: string): Listen {
  if (text.startsWith('unix:')) {
    const socketPath = text.slice(5);
    if (!socketPath.startsWith('/')) throw new Error(`--listen ${JSON.stringify(text)}: the unix socket path must be absolute`);
    return { socketPath };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || port > 65535 || (isIP(host) === 0 && host !== 'localhost')) throw new Error(`--listen ${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:6443, [::1]:6443) or unix:/path`);
  return { host, port };
}

/** "10.96.0.0/12" or "10.96.0.0/12,fd00:10:96::/112" (at most one per family). */
export function parseServiceCIDRs(text: string): Cidr[] {
  const out = text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => Cidr.parse(s, '--service-cidr'));
  if (!out.length || out.length > 2 || (out.length === 2 && out[0]!.family === out[1]!.family)) {
    throw new Error(`--service-cidr ${JSON.stringify(text)}: give one CIDR, or two of different families`);
  }
  for (const c of out) {
    const hostBits = (c.family === 4 ? 32 : 128) - c.prefix;
    if (hostBits < 2) throw new Error(`--service-cidr ${c}: the range is too small`);
    if (c.family === 6 && hostBits > 64) throw new Error(`--service-cidr ${c}: an IPv6 service range must be /64 or smaller`);
  }
  return out;
}
