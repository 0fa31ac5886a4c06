/**
 * The node side of a live trace, in three calls from the CLI (POST /trace/live):
 *   start  installs the nftrace table (podnet-trace-<id>: `ip dscp <marker> th sport <port>
 *          meta nftrace set 1` at prerouting/output, priority raw) and `nft monitor trace`;
 *   probe  (the source node) sends the marked probe from the pod's / node's namespace;
 *   stop   ends the monitor, removes the table and returns the kernel's trace events with
 *          the conntrack entries of the probe (and, in IPVS mode, its IPVS connection).
 * A trace the CLI never stops (it crashed, the network broke) is stopped by a watchdog, so
 * no trace rule outlives its trace; tables of a crashed agent are swept when it starts.
 */
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { z } from 'zod';
import { ErrorCodes, PodnetError, formatError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { NftTrace, sweepTraceTables } from './nftrace.js';
import type { TraceEvent } from './nftrace.js';
import { runProbe } from './probe.js';
import { TraceListener } from './nftrace-netlink.js';
import type { ProbeResult } from './probe.js';

const id = z.string().regex(/^[a-z0-9]{1,16}$/, 'not a trace id ([a-z0-9]{1,16})');
const ip = z.string().min(2).max(64).regex(/^[0-9a-fA-F:.]+$/, 'not an IP address');
const proto = z.enum(['tcp', 'udp', 'sctp', 'icmp']);
const body = z.discriminatedUnion('phase', [
  z.object({ phase: z.literal('start'), id, family: z.union([z.literal(4), z.literal(6)]), dscp: z.number().int().min(1).max(63), sport: z.number().int().min(0).max(65535), proto }),
  z.object({
    phase: z.literal('probe'),
    id,
    dscp: z.number().int().min(1).max(63),
    timeoutMs: z.number().int().min(1).max(30_000),
    packet: z.object({ family: z.union([z.literal(4), z.literal(6)]), proto, src: ip, sport: z.number().int().min(0).max(65535), dst: ip, dport: z.number().int().min(0).max(65535), size: z.number().int().min(20).max(65535) }),
    source: z.discriminatedUnion('kind', [z.object({ kind: z.literal('pod'), namespace: z.string().max(253), name: z.string().max(253) }), z.object({ kind: z.literal('node') })]),
  }),
  z.object({ phase: z.literal('stop'), id }),
]);
export type LiveRequest = z.infer<typeof body>;

export interface LiveStartAnswer {
  tracing: boolean;
  /** Why there are no kernel trace events on this node (no nf_tables), when not tracing. */
  reason?: string;
}
export interface LiveProbeAnswer {
  probe: ProbeResult;
}
export interface LiveStopAnswer {
  events: TraceEvent[];
  conntrack: string[];
  ipvs?: string[];
  reason?: string;
}

/** How long a trace may stay installed without its stop call. */
export const LIVE_WATCHDOG_MS = 30_000;

export interface LiveTracerOptions {
  log: Logger;
  /** The network namespace of a pod on this node (its sandbox record). */
  podNetns(namespace: string, name: string): string | undefined;
  /** The text of the rule an event names (by handle), as the kernel / its owner shows it. */
  describe?(family: string, table: string, chain: string, handle: number): Promise<string | undefined>;
  /** Interface names by index (for the events' iif / oif). */
  ifname?(index: number): string | undefined;
}

interface Entry {
  trace?: NftTrace;
  listener?: TraceListener;
  reason?: string;
  timer: NodeJS.Timeout;
  spec: { family: 4 | 6; proto: string; sport: number };
}

export class LiveTracer {
  private readonly traces = new Map<string, Entry>();

  constructor(private readonly o: LiveTracerOptions) {}

  /** Removes trace tables a crashed agent left behind. */
  async sweep(): Promise<void> {
    const gone = await sweepTraceTables().catch(() => []);
    if (gone.length) this.o.log.info({ tables: gone }, 'removed trace tables of an earlier run');
  }

  parse(input: unknown): LiveRequest {
    const r = body.safeParse(input);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `live trace request: ${i.path.join('.') || '(body)'}: ${i.message}`, { field: i.path.join('.') });
    }
    return r.data;
  }

  async handle(req: LiveRequest): Promise<LiveStartAnswer | LiveProbeAnswer | LiveStopAnswer> {
    switch (req.phase) {
      case 'start': {
        if (this.traces.has(req.id)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `live trace ${req.id} is already running on this node`);
        const timer = setTimeout(() => void this.stop(req.id, 'watchdog'), LIVE_WATCHDOG_MS);
        timer.unref();
        const entry: Entry = { timer, spec: { family: req.family, proto: req.proto, sport: req.sport } };
        this.traces.set(req.id, entry);
        try {
          // Our own subscription first (nft's monitor would load the whole ruleset: seconds at
          // 10,000 Services), then the trace table.
          entry.listener = TraceListener.open(this.o.ifname);
          entry.trace = await NftTrace.start({ id: req.id, family: req.family, dscp: req.dscp, sport: req.sport, proto: req.proto, monitor: false });
          this.o.log.info({ id: req.id, table: entry.trace.table }, 'live trace started');
          return { tracing: true };
        } catch (e) {
          entry.listener?.close();
          delete entry.listener;
          entry.reason = `no kernel trace events on this node: ${formatError(e)}`;
          this.o.log.warn({ id: req.id, err: formatError(e) }, 'live trace: nftrace unavailable');
          return { tracing: false, reason: entry.reason };
        }
      }
      case 'probe': {
        const netnsPath = req.source.kind === 'pod' ? this.o.podNetns(req.source.namespace, req.source.name) : undefined;
        if (req.source.kind === 'pod' && !netnsPath) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `pod ${req.source.namespace}/${req.source.name} has no sandbox on this node`);
        const p = req.packet;
        const probe = await runProbe({ ...(netnsPath ? { netnsPath } : {}), family: p.family, proto: p.proto, dst: p.dst, dport: p.dport, src: p.src, sport: p.sport, dscp: req.dscp, size: p.size, timeoutMs: req.timeoutMs, id: req.id });
        this.o.log.info({ id: req.id, result: probe.result, rttMs: probe.rttMs }, 'live trace probe sent');
        return { probe };
      }
      case 'stop':
        return this.stop(req.id, 'stop');
    }
  }

  private async stop(traceId: string, why: string): Promise<LiveStopAnswer> {
    const entry = this.traces.get(traceId);
    if (!entry) return { events: [], conntrack: [], reason: `no live trace ${traceId} on this node (stopped already)` };
    this.traces.delete(traceId);
    clearTimeout(entry.timer);
    if (entry.trace) await entry.trace.stop({ settleMs: 0 }).catch((e: unknown) => this.o.log.warn({ id: traceId, err: formatError(e) }, 'removing the trace table failed'));
    const events = entry.listener ? entry.listener.eventsOf(`podnet-trace-${traceId}`, entry.spec.family === 4 ? 'ip' : 'ip6') : [];
    entry.listener?.close();
    await this.name(events);
    if (why === 'watchdog') this.o.log.warn({ id: traceId }, 'live trace stopped by the watchdog (the CLI never asked)');
    const conntrack = await conntrackOf(entry.spec).catch(() => []);
    const ipvs = ipvsConnections(entry.spec.sport);
    // The start answer said why there are no events; the stop answer does not repeat it.
    return { events, conntrack, ...(ipvs.length ? { ipvs } : {}) };
  }

  /** Fills in the rule text of rule events, one chain read per chain. */
  private async name(events: TraceEvent[]): Promise<void> {
    if (!this.o.describe) return;
    const cache = new Map<string, Promise<string | undefined>>();
    for (const e of events) {
      if (e.kind !== 'rule' || e.handle === undefined || e.rule) continue;
      const k = `${e.family} ${e.table} ${e.chain} ${e.handle}`;
      let p = cache.get(k);
      if (!p) cache.set(k, (p = this.o.describe(e.family, e.table, e.chain, e.handle).catch(() => undefined)));
      const text = await p;
      if (text) e.rule = text;
    }
  }

  /** Stops every trace (agent shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.traces.keys()].map((k) => this.stop(k, 'shutdown')));
  }
}

/** `conntrack -L -p PROTO --sport PORT`: the probe's entries on this node. */
async function conntrackOf(s: { family: 4 | 6; proto: string; sport: number }): Promise<string[]> {
  if (s.proto === 'icmp' || !s.sport) return [];
  const r = await execa('conntrack', ['-L', '-f', s.family === 4 ? 'ipv4' : 'ipv6', '-p', s.proto, '--sport', String(s.sport)], { reject: false, timeout: 5000 });
  return String(r.stdout).split('\n').filter((l) => l.trim());
}

/** /proc/net/ip_vs_conn lines whose client port is the probe's (IPVS mode). */
export function ipvsConnections(sport: number, text?: string): string[] {
  let t = text;
  if (t === undefined) {
    try {
      t = readFileSync('/proc/net/ip_vs_conn', 'utf8');
    } catch {
      return [];
    }
  }
  const hex = sport.toString(16).toUpperCase().padStart(4, '0');
  return t.split('\n').slice(1).filter((l) => l.split(/\s+/)[2] === hex);
}
