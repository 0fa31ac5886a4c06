/**
 * `npm run bench -- api [--services N] [--events N] [--watchers N]`
 *
 * In one run, inside a private network namespace (nothing in the root namespace):
 *   1. raw etcd puts/s through the etcd v3 client (the baseline, as etcdctl would do)
 *   2. Service creates/s through podnet api on etcd, and on the embedded SQLite store
 *   3. watch fan-out: 100 watchers × 10,000 events, delivery latency p50 / p99
 *   4. RSS of the api holding 10,000 Services and 100,000 endpoints (EndpointSlices)
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { Agent, request } from 'undici';
import { insideOwnNetns } from '../../netns-tests/lib/harness.js';
import { ADMIN_TOKEN, startApi } from '../../netns-tests/lib/api.js';
import type { ApiProcess } from '../../netns-tests/lib/api.js';
import { EtcdCluster } from '../../netns-tests/lib/etcd.js';
import { fmt, nowMs, stats, table, writeResults } from './lib.js';

const CONCURRENCY = 50;

function arg(argv: string[], name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
}

function serviceBody(i: number): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, labels: { app: `app-${i % 100}`, bench: 'api' } }, spec: { selector: { app: `app-${i}` }, ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'https', port: 443, targetPort: 8443 }] } });
}

/** Runs `n` jobs with `c` workers; returns jobs/s. */
async function pool(n: number, c: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: c }, async () => {
      for (;;) {
        const i = next++;
        if (i >= n) return;
        await job(i);
      }
    }),
  );
  return n / ((nowMs() - t0) / 1000);
}

async function createServices(api: ApiProcess, n: number): Promise<number> {
  const agent = new Agent({ connections: CONCURRENCY });
  try {
    return await pool(n, CONCURRENCY, async (i) => {
      const r = await request(`${api.url}/api/v1/namespaces/default/services`, { dispatcher: agent, method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: serviceBody(i) });
      const text = await r.body.text();
      if (r.statusCode !== 201) throw new Error(`create svc-${i}: ${r.statusCode} ${text}`);
    });
  } finally {
    await agent.close();
  }
}

/** The k-th endpoint address: 10.128.0.1 onwards (10.128.0.0/9 holds the 100,000 of the benchmark). */
function endpointIP(k: number): string {
  const n = k + 1;
  return `10.${128 + (n >>> 16)}.${(n >>> 8) & 255}.${n & 255}`;
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Runs `job` and returns its result with the CPU µs per op each named process spent meanwhile. */
async function cpuPerOp<T>(ops: number, pids: Record<string, number>, job: () => Promise<T>): Promise<{ result: T; usPerOp: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const self0 = process.cpuUsage();
  const result = await job();
  const self = process.cpuUsage(self0);
  const usPerOp: Record<string, number> = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, ((cpuSeconds(pid) - before[k]!) * 1e6) / ops]));
  usPerOp['bench client'] = (self.user + self.system) / ops;
  return { result, usPerOp };
}

function rssMiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

export async function run(argv: string[]): Promise<void> {
  if (!(await insideOwnNetns(import.meta.url.replace(/api\.js$/, 'main.js'), 'bench-api'))) return;
  const services = arg(argv, 'services', 10_000);
  const events = arg(argv, 'events', 10_000);
  const watchers = arg(argv, 'watchers', 100);
  const endpointsPerSlice = 10;

  // ---- 1. raw etcd puts/s
  const etcd = await EtcdCluster.start({ members: 1 });
  let rawPuts = 0;
  let etcdApiRate = 0;
  let rawCpu: Record<string, number> = {};
  let etcdApiCpu: Record<string, number> = {};
  const cpuText = (u: Record<string, number>) => Object.entries(u).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ');
  try {
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      const raw = await cpuPerOp(services, { etcd: etcd.members[0]!.pid! }, () =>
        pool(services, CONCURRENCY, async (i) => {
          await client.put(`/bench/raw/services/default/svc-${i}`).value(serviceBody(i));
        }),
      );
      rawPuts = raw.result;
      rawCpu = raw.usPerOp;
    } finally {
      client.close();
    }
    console.error(`raw etcd puts: ${rawPuts.toFixed(0)}/s (CPU µs per put: ${cpuText(rawCpu)})`);
    // ---- 2a. api on etcd
    // Controllers off as on SQLite below: the EndpointSlice controller would write an (empty) slice per Service.
    const apiEtcd = await startApi({ port: 6450, insecure: true, etcdServers: etcd.endpoints.join(','), etcdPrefix: '/bench-api', extraArgs: ['--disable-controllers', 'endpointslice'] });
    try {
      const viaApi = await cpuPerOp(services, { etcd: etcd.members[0]!.pid!, api: apiEtcd.proc.pid! }, () => createServices(apiEtcd, services));
      etcdApiRate = viaApi.result;
      etcdApiCpu = viaApi.usPerOp;
    } finally {
      await apiEtcd.cleanup();
    }
    console.error(`api on etcd: ${etcdApiRate.toFixed(0)} Service creates/s (CPU µs per create: ${cpuText(etcdApiCpu)})`);
  } finally {
    await etcd.cleanup();
  }
  if (argv.includes('--only-etcd')) return;

  // ---- 2b. api on SQLite
  const api = await startApi({ port: 6451, insecure: true, extraArgs: ['--disable-controllers', 'endpointslice'] });
  try {
    const sqliteRate = await createServices(api, services);
    console.error(`api on SQLite: ${sqliteRate.toFixed(0)} Service creates/s`);

    // ---- 4. RSS with Services + 100,000 endpoints (slices written directly, 10 endpoints each)
    const agent = new Agent({ connections: CONCURRENCY });
    await pool(services, CONCURRENCY, async (i) => {
      const eps = Array.from({ length: endpointsPerSlice }, (_, j) => ({ addresses: [endpointIP(i * endpointsPerSlice + j)], conditions: { ready: true, serving: true, terminating: false }, nodeName: `node-${i % 50}`, targetRef: { kind: 'Pod', namespace: 'default', name: `pod-${i}-${j}` } }));
      const r = await request(`${api.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices`, { dispatcher: agent, method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `svc-${i}-abcde`, labels: { 'kubernetes.io/service-name': `svc-${i}` } }, addressType: 'IPv4', endpoints: eps, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }) });
      const text = await r.body.text();
      if (r.statusCode !== 201) throw new Error(`slice ${i}: ${r.statusCode} ${text}`);
    });
    // A full list of each kind, as a starting agent would do.
    for (const p of ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices']) await (await request(api.url + p, { dispatcher: agent, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).body.text();
    const mem = rssMiB(api.proc.pid!);
    console.error(`api RSS with ${services} Services + ${services * endpointsPerSlice} endpoints: ${mem.rss.toFixed(0)} MiB (peak ${mem.hwm.toFixed(0)})`);

    // ---- 3. watch fan-out
    await request(`${api.url}/api/v1/namespaces`, { dispatcher: agent, method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'fanout' } }) }).then((r) => r.body.text());
    const leases = '/apis/coordination.k8s.io/v1/namespaces/fanout/leases';
    const keys = 100;
    for (let k = 0; k < keys; k++) {
      await request(api.url + leases, { dispatcher: agent, method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `l${k}` }, spec: { holderIdentity: 'init' } }) }).then((r) => r.body.text());
    }
    const listRV = ((await (await request(api.url + leases, { dispatcher: agent, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).body.json()) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const workers = 4;
    const worker = fileURLToPath(new URL('./watch-worker.js', import.meta.url));
    const kids = Array.from({ length: workers }, (_, w) => {
      const n = Math.floor(watchers / workers) + (w < watchers % workers ? 1 : 0);
      const resultFile = join(tmpdir(), `pnb-${process.pid}-watch-${w}.json`);
      const child = spawn(process.execPath, [worker, api.url, leases, ADMIN_TOKEN, String(n), String(events), listRV, resultFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      const ready = new Promise<void>((r) => child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) r();
      }));
      const result = new Promise<{ latencies: number[] }>((r) =>
        child.on('close', () => {
          const data = JSON.parse(readFileSync(resultFile, 'utf8')) as { latencies: number[] };
          rmSync(resultFile, { force: true });
          r(data);
        }),
      );
      return { child, ready, result };
    });
    await Promise.all(kids.map((k) => k.ready));
    await new Promise((r) => setTimeout(r, 500));
    // Writers: `events` updates, paced at 1,000/s, each carrying its send time.
    const rate = 1000;
    const t0 = nowMs();
    let sent = 0;
    const rvs = new Map<number, string>();
    await pool(events, 20, async (i) => {
      const due = t0 + (i * 1000) / rate;
      const wait = due - nowMs();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const k = i % keys;
      const stamp = performance.timeOrigin + performance.now();
      const r = await request(`${api.url}${leases}/l${k}`, { dispatcher: agent, method: 'PATCH', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ spec: { holderIdentity: `t${stamp.toFixed(3)}` } }) });
      const text = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`patch: ${r.statusCode} ${text}`);
      rvs.set(i, text);
      sent++;
    });
    const deadline = setTimeout(() => kids.forEach((k) => k.child.kill('SIGTERM')), 60_000);
    const results = await Promise.all(kids.map((k) => k.result));
    clearTimeout(deadline);
    await agent.close();
    const lat = results.flatMap((r) => r.latencies);
    const ls = stats(lat);
    const expected = watchers * events;
    console.error(`watch fan-out: ${lat.length}/${expected} deliveries, p50 ${ls.median.toFixed(1)} ms, p99 ${ls.p99.toFixed(1)} ms`);
    const memAfter = rssMiB(api.proc.pid!);

    const rows: (string | number)[][] = [
      ['measure', 'value', 'baseline (same run)', 'ratio', 'goal'],
      ['raw etcd puts/s (etcd3 client, 50 concurrent)', rawPuts.toFixed(0), '-', '-', '-'],
      ['podnet api on etcd: Service creates/s', etcdApiRate.toFixed(0), `${rawPuts.toFixed(0)} raw puts/s`, `${((etcdApiRate / rawPuts) * 100).toFixed(0)}%`, '>= 50%'],
      ['podnet api on SQLite: Service creates/s', sqliteRate.toFixed(0), '-', '-', '>= 2000/s'],
      [`watch fan-out ${watchers} x ${events}: p50 ms`, fmt(ls.median, 1), '-', '-', '-'],
      [`watch fan-out ${watchers} x ${events}: p99 ms`, fmt(ls.p99, 1), '-', '-', '<= 50 ms'],
      ['watch deliveries received', `${lat.length}/${expected}`, '-', '-', 'all'],
      [`api RSS, ${services} Services + ${services * endpointsPerSlice} endpoints (MiB)`, mem.rss.toFixed(0), '-', '-', '<= 300'],
      ['api peak RSS over the whole run (MiB)', memAfter.hwm.toFixed(0), '-', '-', '-'],
    ];
    console.log(table(rows));
    const goals = {
      'SQLite >= 2000 Service creates/s': sqliteRate >= 2000,
      'etcd path >= 50% of raw etcd puts/s': etcdApiRate / rawPuts >= 0.5,
      'watch p99 <= 50 ms': ls.p99 <= 50,
      'every watch event delivered': lat.length === expected,
      'RSS <= 300 MB at 10k Services + 100k endpoints': mem.rss <= 300,
    };
    for (const [g, ok] of Object.entries(goals)) console.log(`${ok ? 'MET ' : 'MISS'}  ${g}`);
    console.log(`results: ${writeResults('api', { services, events, watchers, rawEtcdPutsPerSec: rawPuts, rawEtcdCpuUsPerPut: rawCpu, etcdApiCreatesPerSec: etcdApiRate, etcdApiCpuUsPerCreate: etcdApiCpu, sqliteApiCreatesPerSec: sqliteRate, watchLatencyMs: ls, deliveries: lat.length, expectedDeliveries: expected, rssMiB: mem.rss, peakRssMiB: memAfter.hwm, goals })}`);
  } finally {
    await api.cleanup();
  }
}
