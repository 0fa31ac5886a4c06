/**
 * Pieces of `npm run bench -- proxy` that are not about running things: the synthetic
 * Services and EndpointSlices (svc-bench.sh's address plan), Prometheus text parsing and
 * histogram quantiles, the agent's JSON log lines, and the svc-bench.sh output files.
 */
import { readFileSync } from 'node:fs';
import type { EndpointSlice, Service } from '../../src/client/types.js';
import { TRIGGER_TIME_ANNOTATION } from '../../src/proxy/proxier.js';
import { SERVICE_NAME_LABEL } from '../../src/proxy/snapshot.js';
import { stats } from './lib.js';

// ---------------------------------------------------------------- synthetic cluster

/**
 * Address plan of svc-bench.sh: ClusterIP of service i = 10.96.0.0 + 1 + i, endpoints unique
 * in 10.244.0.0/14 skipping 10.244.255.0/24, which holds the benchmark server. Service port
 * tcp/80 (named http) -> endpoint port 8080. The first and the last declared service are the
 * "probe" services: their endpoints are 10.244.255.1..E, all addresses of the server namespace
 * (distinct addresses, so a snapshot keeps E endpoints; svc-bench repeats one address, which
 * its generator keeps apart by chain name but our snapshot would collapse).
 */
export const NAMESPACE = 'default';
export const SERVER_NET = '10.244.255';
export const SERVER_IP = `${SERVER_NET}.1`;
export const SERVER_PORT = 8080;

const ip4 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const VIP_BASE = (10 << 24) | (96 << 16);
const EP_BASE = (10 << 24) | (244 << 16);

export const vip = (i: number): string => ip4((VIP_BASE + 1 + i) >>> 0);
export function epIP(j: number): string {
  let n = j + 1;
  if (n >= 0xff00) n += 0x100;
  return ip4((EP_BASE + n) >>> 0);
}
/** Zero-padded so that key order (the order modes declare in) is index order. */
export const svcName = (i: number): string => `svc-${String(i).padStart(5, '0')}`;
export const portKey = (i: number): string => `${NAMESPACE}/${svcName(i)}:http`;
export const isProbe = (i: number, s: number): boolean => i === 0 || i === s - 1;

export function endpointIPs(i: number, s: number, e: number): string[] {
  return Array.from({ length: e }, (_, k) => (isProbe(i, s) ? `${SERVER_NET}.${k + 1}` : epIP(i * e + k)));
}

export function service(i: number): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: svcName(i), namespace: NAMESPACE, labels: { bench: 'proxy' } },
    spec: { type: 'ClusterIP', clusterIP: vip(i), clusterIPs: [vip(i)], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: SERVER_PORT }] },
  };
}

export function slice(i: number, ips: string[], trigger?: string): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${svcName(i)}-1`,
      namespace: NAMESPACE,
      labels: { [SERVICE_NAME_LABEL]: svcName(i), 'endpointslice.kubernetes.io/managed-by': 'bench.podnet.io' },
      ...(trigger ? { annotations: { [TRIGGER_TIME_ANNOTATION]: trigger } } : {}),
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: SERVER_PORT }],
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false } })),
  };
}

/** `n` distinct non-probe services spread over the declaration order (as svc-bench's targets). */
export function targets(n: number, s: number, phase = 0): number[] {
  const out: number[] = [];
  for (let m = 0; m < n; m++) out.push(1 + (Math.floor(((2 * m + phase) * (s - 2)) / (2 * n)) % (s - 2)));
  return [...new Set(out)];
}

// ---------------------------------------------------------------- Prometheus text

export interface Histogram {
  /** Upper bound -> cumulative count (Infinity for +Inf). */
  buckets: Map<number, number>;
  count: number;
  sum: number;
}

export function parseHistogram(text: string, name: string): Histogram {
  const h: Histogram = { buckets: new Map(), count: 0, sum: 0 };
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (m[1] === `${name}_bucket`) {
      const le = /le="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (le === undefined) continue;
      const b = le === '+Inf' ? Infinity : Number(le);
      h.buckets.set(b, (h.buckets.get(b) ?? 0) + v);
    } else if (m[1] === `${name}_count`) h.count += v;
    else if (m[1] === `${name}_sum`) h.sum += v;
  }
  return h;
}

export function gauge(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (!labels || (m[2] ?? '').includes(labels))) return Number(m[3]);
  }
  return undefined;
}

export function diffHistogram(after: Histogram, before: Histogram): Histogram {
  const buckets = new Map<number, number>();
  for (const [b, c] of after.buckets) buckets.set(b, c - (before.buckets.get(b) ?? 0));
  return { buckets, count: after.count - before.count, sum: after.sum - before.sum };
}

export function addHistograms(hs: Histogram[]): Histogram {
  const buckets = new Map<number, number>();
  for (const h of hs) for (const [b, c] of h.buckets) buckets.set(b, (buckets.get(b) ?? 0) + c);
  return { buckets, count: hs.reduce((s, h) => s + h.count, 0), sum: hs.reduce((s, h) => s + h.sum, 0) };
}

/**
 * Quantile from cumulative buckets, interpolated linearly inside the bucket (as Prometheus'
 * histogram_quantile): only as exact as the bucket bounds. `bucket` gives the bounds it is in.
 */
export function histogramQuantile(h: Histogram, q: number): { value: number; bucket: [number, number] } | undefined {
  if (h.count <= 0) return undefined;
  const bounds = [...h.buckets.keys()].sort((a, b) => a - b);
  const rank = q * h.count;
  let lower = 0;
  let prev = 0;
  for (const b of bounds) {
    const c = h.buckets.get(b)!;
    if (c >= rank) {
      if (b === Infinity) return { value: lower, bucket: [lower, Infinity] };
      const v = c === prev ? b : lower + ((b - lower) * (rank - prev)) / (c - prev);
      return { value: v, bucket: [lower, b] };
    }
    lower = b;
    prev = c;
  }
  return undefined;
}

/** Share of observations <= `bound` (exact when `bound` is a bucket bound). */
export function fractionAtMost(h: Histogram, bound: number): number | undefined {
  const c = h.buckets.get(bound);
  return c === undefined || h.count <= 0 ? undefined : c / h.count;
}

// ---------------------------------------------------------------- agent logs

export interface SyncLine {
  /** When the line was written (end of the sync), ms since the epoch. */
  at: number;
  kind: 'full' | 'partial';
  servicePorts: number;
  changed: number;
  ms: number;
}

/** The agent's 'proxy rules synced' lines (pino JSON) in `text`. */
export function syncLines(text: string): SyncLine[] {
  const out: SyncLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"proxy rules synced"')) continue;
    try {
      const j = JSON.parse(line) as { time?: string | number; kind?: 'full' | 'partial'; servicePorts?: number; changed?: number; ms?: number };
      const at = typeof j.time === 'number' ? j.time : Date.parse(String(j.time));
      out.push({ at, kind: j.kind ?? 'partial', servicePorts: j.servicePorts ?? 0, changed: j.changed ?? 0, ms: j.ms ?? NaN });
    } catch {
      /* not JSON */
    }
  }
  return out;
}

/** Lines of the agent log that say a proxy sync failed (with their text). */
export function syncFailures(text: string): string[] {
  return text.split('\n').filter((l) => l.includes('proxy sync failed') || l.includes('proxy transaction failed'));
}

/**
 * Per-change latencies of a burst from the sync lines: the k-th change (by trigger time) is
 * taken to be programmed by the sync in which the cumulative `changed` count reaches k (each
 * change is to a different service port, and watch events arrive in write order; concurrent
 * writers can swap neighbours by a few ms). Returns the latencies (ms) and how many changes
 * no sync accounted for.
 */
export function fifoLatencies(triggers: number[], syncs: SyncLine[]): { ms: number[]; missing: number } {
  const t = [...triggers].sort((a, b) => a - b);
  const ms: number[] = [];
  let k = 0;
  for (const s of [...syncs].sort((a, b) => a.at - b.at)) {
    for (let c = 0; c < s.changed && k < t.length; c++, k++) ms.push(s.at - t[k]!);
  }
  return { ms, missing: t.length - k };
}

// ---------------------------------------------------------------- svc-bench.sh output

export interface SvcBenchResult {
  /** `mode/metric` -> wall times in ms, one per rep. */
  times: Record<string, number[]>;
  /** Data-path probes by label. */
  datapath: { label: string; target: string; n: number; median_us: number; p99_us: number; p90_us: number; mean_us: number }[];
}

export function readSvcBench(dir: string): SvcBenchResult {
  const times: Record<string, number[]> = {};
  for (const line of readFileSync(`${dir}/results.tsv`, 'utf8').split('\n')) {
    const [mode, metric, , us] = line.split('\t');
    if (!mode || !metric || us === undefined) continue;
    (times[`${mode}/${metric}`] ??= []).push(Number(us) / 1000);
  }
  const datapath = readFileSync(`${dir}/datapath.jsonl`, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SvcBenchResult['datapath'][number]);
  return { times, datapath };
}

export const medianOf = (xs: number[] | undefined): number | undefined => (xs && xs.length ? stats(xs).median : undefined);
