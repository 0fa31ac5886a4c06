/**
 * `npm run bench -- proxy [--sizes 1000,10000] [--modes nftables,iptables,ipvs] [options]`:
 * the service proxy at S Services x E endpoints (default E = 10), per mode, next to the
 * raw-tool baselines of scripts/bench/baselines/svc-bench.sh measured in the same run.
 *
 * 1. baselines: svc-bench.sh (kube-proxy-shaped rulesets through iptables-restore / nft -f)
 *    at each size: full load, one-endpoint update, connect latency first / last VIP.
 * 2. mode level: in a fresh router namespace of a client -> router -> server topology, the
 *    mode's `sync(snapshots, undefined)` (full, from nothing), a second full sync with the
 *    rules in place (the periodic resync), then one-endpoint partial syncs
 *    `sync(next, {key})` (median of --upd-reps), then TCP connect+close latency from the
 *    client namespace to the first and the last declared ClusterIP and straight to the pod.
 *    IPVS: this host kernel has no ip_vs, so this step runs for ipvs inside the
 *    user-mode-linux guest (scripts/uml/run-in-vm.sh, `--in-vm`).
 * 3. agents: `podnet api` + 3 agents (`--proxy-mode <mode>`, default min sync period 1 s),
 *    S Services without selectors and hand-made EndpointSlices (the endpointslice
 *    controller disabled; the bench sets endpoints.kubernetes.io/last-change-trigger-time on
 *    each write): time to the first full sync, one endpoint change -> the agents' 'proxy
 *    rules synced' log line, a burst of --burst endpoint changes across services with the
 *    network programming latency from podnet_network_programming_duration_seconds (bucket
 *    resolution) and from the agents' sync log lines, and each agent's VmHWM.
 *
 * Everything runs in namespaces named pnb-<pid>-... (swept after a crash), the API and the
 * agents inside them; the root namespace is never given an address, route, link or rule.
 */
import { execa } from 'execa';
import type { ResultPromise } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import type { EndpointSlice, Service } from '../../src/client/types.js';
import { Ipvs } from '../../src/kernel/ipvs.js';
import type { NetNS } from '../../src/kernel/netns.js';
import { packageRoot } from '../../src/kernel/native.js';
import { setSysctl } from '../../src/kernel/sysctl.js';
import { createIptablesMode } from '../../src/proxy/iptables/index.js';
import { createIpvsMode } from '../../src/proxy/ipvs/index.js';
import { createNftablesMode } from '../../src/proxy/nftables/index.js';
import { buildSnapshot, servicePorts } from '../../src/proxy/snapshot.js';
import type { ProxyMode, ProxyModeName, ProxyNodeConfig, ProxySnapshot, SyncResult } from '../../src/proxy/types.js';
import { createLogger } from '../../src/util/log.js';
import { parseDuration } from '../../src/util/duration.js';
import { formatError } from '../../src/util/errors.js';
import { GiveUp, Scope, insideOwnNetns, runPrefix, sh, waitFor } from '../../netns-tests/lib/harness.js';
import { buildCluster } from '../../netns-tests/lib/cluster.js';
import { ADMIN_TOKEN, startApi } from '../../netns-tests/lib/api.js';
import type { ApiProcess } from '../../netns-tests/lib/api.js';
import { startAgent } from '../../netns-tests/lib/agents.js';
import type { AgentProcess } from '../../netns-tests/lib/agents.js';
import { nowMs, runThenExit, stats, writeResults } from './lib.js';
import {
  NAMESPACE,
  SERVER_IP,
  SERVER_NET,
  SERVER_PORT,
  addHistograms,
  diffHistogram,
  endpointIPs,
  epIP,
  fifoLatencies,
  fractionAtMost,
  gauge,
  histogramQuantile,
  medianOf,
  parseHistogram,
  portKey,
  readSvcBench,
  service,
  slice,
  syncFailures,
  syncLines,
  targets,
  vip,
} from './proxy-lib.js';
import type { Histogram, SvcBenchResult, SyncLine } from './proxy-lib.js';

const ALL_MODES: ProxyModeName[] = ['nftables', 'iptables', 'ipvs'];
const PHASES = ['baselines', 'modes', 'vm', 'agents'] as const;
type Phase = (typeof PHASES)[number];
const BASELINES_DIR = join(packageRoot, 'scripts', 'bench', 'baselines');
const CONNECT_PY = join(BASELINES_DIR, 'connect.py');
const HIST = 'podnet_network_programming_duration_seconds';

interface Opts {
  sizes: number[];
  modes: ProxyModeName[];
  endpoints: number;
  fullReps: number;
  updReps: number;
  connects: number;
  warmup: number;
  baseReps: number;
  baseUpd: number;
  nft10k: boolean;
  skip: Set<Phase>;
  agents: number;
  burst: number;
  burstConcurrency: number;
  agentUpdReps: number;
  minSyncPeriod: string;
  proxySyncPeriod: string;
  syncTimeoutS: number;
  vmTimeoutS: number;
  inVm: string | undefined;
}

function parseArgs(argv: string[]): Opts {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? undefined : argv[i + 1];
  };
  const num = (name: string, def: number, min = 1) => {
    const v = get(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, not ${JSON.stringify(v)}`);
    return n;
  };
  // Checked here as the agents will (a bad value would make every agent exit at start).
  const duration = (name: string, def: string) => {
    const v = get(name) ?? def;
    parseDuration(v, `--${name}`);
    return v;
  };
  const list = (name: string, def: string) => (get(name) ?? def).split(',').map((s) => s.trim()).filter(Boolean);
  const known = new Set(['sizes', 'modes', 'endpoints', 'full-reps', 'upd-reps', 'connects', 'warmup', 'baseline-reps', 'baseline-upd-reps', 'nft-10k', 'skip', 'agents', 'burst', 'burst-concurrency', 'agent-upd-reps', 'proxy-min-sync-period', 'proxy-sync-period', 'sync-timeout', 'vm-timeout', 'in-vm']);
  for (const a of argv) if (a.startsWith('--') && !known.has(a.slice(2))) throw new Error(`unknown option ${a} (known: ${[...known].map((k) => `--${k}`).join(' ')})`);
  const sizes = list('sizes', '1000,10000').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 4 || n > 60_000) throw new Error(`--sizes: ${JSON.stringify(s)} is not an integer in 4..60000`);
    return n;
  });
  const modes = list('modes', ALL_MODES.join(',')).map((m) => {
    if (!(ALL_MODES as string[]).includes(m)) throw new Error(`--modes: unknown mode ${JSON.stringify(m)} (${ALL_MODES.join(', ')})`);
    return m as ProxyModeName;
  });
  const skip = new Set(
    list('skip', '').map((p) => {
      if (!(PHASES as readonly string[]).includes(p)) throw new Error(`--skip: unknown phase ${JSON.stringify(p)} (${PHASES.join(', ')})`);
      return p as Phase;
    }),
  );
  const endpoints = num('endpoints', 10);
  if (endpoints > 250) throw new Error('--endpoints: at most 250 (the probe services use 10.244.255.1..E)');
  return {
    sizes,
    modes,
    endpoints,
    fullReps: num('full-reps', 1),
    updReps: num('upd-reps', 5),
    connects: num('connects', 10000),
    warmup: num('warmup', 500, 0),
    baseReps: num('baseline-reps', 1),
    baseUpd: num('baseline-upd-reps', 3),
    nft10k: argv.includes('--nft-10k'),
    skip,
    agents: num('agents', 3),
    burst: num('burst', 1000),
    burstConcurrency: num('burst-concurrency', 20),
    agentUpdReps: num('agent-upd-reps', 5),
    minSyncPeriod: duration('proxy-min-sync-period', '1s'),
    proxySyncPeriod: duration('proxy-sync-period', '1h'),
    syncTimeoutS: num('sync-timeout', 900),
    vmTimeoutS: num('vm-timeout', 600),
    inVm: get('in-vm'),
  };
}

/**
 * More options for node in each agent (profiling: PODNET_BENCH_AGENT_NODE_ARGS="--prof"),
 * space-separated, after the shipped ones (src/agent/node-options.ts, which startAgent adds).
 */
const AGENT_NODE_ARGS = (process.env.PODNET_BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** The same for the API server (PODNET_BENCH_API_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p"). */
const API_NODE_ARGS = (process.env.PODNET_BENCH_API_NODE_ARGS ?? '').split(' ').filter(Boolean);

const T0 = Date.now();
const log = (msg: string) => process.stderr.write(`proxy bench [${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s]: ${msg}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------- results

/** One measured figure of one mode at one size. */
interface Row {
  mode: string;
  size: number;
  metric: string;
  /** The figure in `unit` (undefined: not measured; see `note`). */
  value: number | undefined;
  unit: 'ms' | 's' | 'µs' | 'MB' | '×';
  /** Printed instead of the bare value (e.g. "median / p99"). */
  text?: string;
  baseline?: { label: string; value: number };
  goal?: { text: string; met: boolean };
  note?: string;
}

interface DatapathProbe {
  label: string;
  median_us: number;
  p99_us: number;
  mean_us: number;
  n: number;
}

interface ModeLevel {
  mode: ProxyModeName;
  size: number;
  endpoints: number;
  fullMs: number[];
  resyncMs: number;
  partialMs: number[];
  results: { full: SyncResult; resync: SyncResult; partial: SyncResult[] };
  datapath: { directNoRules: DatapathProbe; first: DatapathProbe; last: DatapathProbe; directWithRules: DatapathProbe };
  /** Where it ran (host, or the UML guest). */
  where: string;
}

interface AgentLevel {
  mode: ProxyModeName;
  size: number;
  agents: number;
  /** Agent start -> its first full sync logged (s), per agent; and the sync's own duration (ms). */
  startToSyncedS: number[];
  firstFullSyncMs: number[];
  /** One-endpoint change: API write -> 'proxy rules synced' on each agent (ms), per rep and agent. */
  oneEndpointMs: number[][];
  /** Per rep: when the API answered the write (ms after it was sent). */
  oneEndpointAckMs: number[];
  /** Per rep and agent: the sync's own duration (its log line's ms). */
  oneEndpointSyncMs: number[][];
  burst: {
    changes: number;
    writeSeconds: number;
    /** First write -> last agent's sync with the last change (s). */
    makespanS: number;
    syncsPerAgent: number[];
    histogram: { count: number; p50: number | undefined; p99: number | undefined; p50Bucket?: [number, number]; p99Bucket?: [number, number]; fractionWithin1s: number | undefined };
    logDerived: { n: number; p50Ms: number; p99Ms: number; maxMs: number; missing: number };
    /** The agents' sync log lines of the burst: ms after the first write, changed ports, sync duration. */
    syncs: { agent: string; atMs: number; changed: number; ms: number }[];
  };
  rssMB: { vmHWM: number[]; vmRSS: number[]; heapUsed?: number[]; heapTotal?: number[]; external?: number[]; idleVmRSS?: number[]; idleHeapUsed?: number[] };
  syncFailures: string[];
}

// ---------------------------------------------------------------- baselines (svc-bench.sh)

async function baselines(o: Opts, size: number): Promise<SvcBenchResult & { phases: string; seconds: number }> {
  const nftLayout = size <= 1000 || o.nft10k ? 'nft' : 'nftr';
  const phases = ['ipt', nftLayout, ...(nftLayout === 'nft' && size > 1000 ? ['nftr'] : []), 'dp'].join(',');
  const out = mkdtempSync(join(tmpdir(), `${runPrefix('pnb')}-svb${size}-`));
  const t0 = nowMs();
  log(`baselines S=${size}: svc-bench.sh -p ${phases} (full reps ${o.baseReps}, update reps ${o.baseUpd})`);
  try {
    const args = ['-p', phases, '-r', String(o.baseReps), '-u', String(o.baseUpd), '-n', String(o.connects), '-w', String(o.warmup), '-o', out, '-t', `${runPrefix('pnb')}-svb${size}`, '-d', size <= 1000 ? 'nft' : 'nftr', '-q', String(size), String(o.endpoints)];
    const r = await execa('bash', [join(BASELINES_DIR, 'svc-bench.sh'), ...args], { reject: false, timeout: 60 * 60_000, stdout: 'pipe', stderr: ['pipe', 'inherit'] });
    if (r.exitCode !== 0) throw new Error(`svc-bench.sh S=${size} exited ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}:\n${String(r.stderr).slice(-3000)}\n${existsSync(join(out, 'stderr.log')) ? readFileSync(join(out, 'stderr.log'), 'utf8').slice(-2000) : ''}`);
    return { ...readSvcBench(out), phases, seconds: (nowMs() - t0) / 1000 };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- mode level + data path

const NODE: ProxyNodeConfig = { nodeName: 'bench', family: 4, nodeIPs: ['10.0.1.1'], clusterCIDR: '10.244.0.0/14' };

function syntheticSnapshot(size: number, e: number): ProxySnapshot {
  const services: Service[] = [];
  const slices: EndpointSlice[] = [];
  for (let i = 0; i < size; i++) {
    services.push(service(i));
    slices.push(slice(i, endpointIPs(i, size, e)));
  }
  return buildSnapshot(services, slices, NODE);
}

/** The snapshot with service port i's first endpoint replaced by `ip` (a copy; order kept). */
function withEndpoint(snap: ProxySnapshot, size: number, e: number, i: number, ip: string): ProxySnapshot {
  const key = portKey(i);
  const old = snap.services.get(key);
  if (!old) throw new Error(`no service port ${key} in the snapshot`);
  const ips = old.endpoints.map((x) => x.ip);
  ips[0] = ip;
  const [p] = servicePorts(service(i), [slice(i, ips)], NODE);
  if (!p || p.endpoints.length !== e) throw new Error(`rebuilding ${key} gave ${p?.endpoints.length ?? 0} endpoints`);
  const services = new Map(snap.services);
  services.set(key, p);
  void size;
  return { ...snap, services };
}

function createModeIn(name: ProxyModeName, ns: NetNS): ProxyMode {
  const l = createLogger({ level: process.env.PODNET_LOG_LEVEL ?? 'warn', component: 'bench' }).child({ component: 'proxy', mode: name });
  switch (name) {
    case 'nftables':
      return createNftablesMode({ netns: ns, log: l });
    case 'iptables':
      return createIptablesMode({ netnsPath: ns.path, log: l });
    case 'ipvs':
      return createIpvsMode({ netns: ns, log: l });
  }
}

const closeMode = (m: ProxyMode) => (m as { close?: () => void }).close?.();

/** client (10.0.1.2) -> router (the rules; 10.0.1.1 / 10.244.255.254) -> server (10.244.255.1..E:8080). */
async function topology(scope: Scope, e: number): Promise<{ cli: NetNS; rtr: NetNS; srv: NetNS }> {
  const cli = await scope.netns('cli');
  const rtr = await scope.netns('rtr');
  const srv = await scope.netns('srv');
  const rnl = scope.netlink(rtr);
  const cnl = scope.netlink(cli);
  const snl = scope.netlink(srv);
  await rnl.links.ensure({ kind: 'veth', name: 'rtr-cli', up: true, peer: { name: 'eth0', netns: cli } });
  await rnl.links.ensure({ kind: 'veth', name: 'rtr-srv', up: true, peer: { name: 'eth0', netns: srv } });
  await rnl.addrs.ensure('rtr-cli', '10.0.1.1/24');
  await rnl.addrs.ensure('rtr-srv', `${SERVER_NET}.254/24`);
  await cnl.links.setUp('eth0');
  await cnl.addrs.ensure('eth0', '10.0.1.2/24');
  await cnl.routes.ensure({ dst: 'default', via: '10.0.1.1' });
  await snl.links.setUp('eth0');
  for (let k = 1; k <= e; k++) await snl.addrs.ensure('eth0', `${SERVER_NET}.${k}/24`);
  await snl.routes.ensure({ dst: 'default', via: `${SERVER_NET}.254` });
  setSysctl(rtr, 'net.ipv4.ip_forward', '1');
  setSysctl(cli, 'net.ipv4.ip_local_port_range', '10000 65000');
  return { cli, rtr, srv };
}

/** Resolves once the server listens (not with the child: an execa child is a thenable). */
async function startServer(scope: Scope, srv: NetNS): Promise<{ child: ResultPromise }> {
  const child = execa('nsenter', ['--net=' + srv.path, '--', 'python3', CONNECT_PY, 'server', '0.0.0.0', String(SERVER_PORT)], { reject: false, buffer: false, stdin: 'ignore', stderr: 'inherit' });
  if (child.pid === undefined) throw new Error('the connect server did not start');
  scope.own(child.pid);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the connect server is not ready after 20 s')), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (String(d).includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void child.then((r) => reject(new Error(`the connect server exited: ${r.exitCode}`)));
  });
  return { child };
}

async function probe(o: Opts, cli: NetNS, rtr: NetNS, label: string, host: string, port: number): Promise<DatapathProbe> {
  return (await probeInterleaved(o, cli, rtr, [{ label, host, port }]))[0]!;
}

/** Connect+close latency to several targets, one connect to each in turn per round. */
async function probeInterleaved(o: Opts, cli: NetNS, rtr: NetNS, ts: { label: string; host: string; port: number }[]): Promise<DatapathProbe[]> {
  await sh(rtr, 'conntrack', ['-F'], { reject: false });
  const r = await sh(cli, 'python3', [CONNECT_PY, 'interleave', String(o.connects), String(o.warmup), ...ts.map((t) => `${t.label}=${t.host}:${t.port}`)], { timeout: 600_000, reject: false });
  if (r.exitCode !== 0) throw new Error(`connect probe ${ts.map((t) => `${t.label} (${t.host}:${t.port})`).join(', ')} failed: ${String(r.stderr).slice(-1500)}`);
  const out = String(r.stdout).trim().split('\n').map((l) => JSON.parse(l) as DatapathProbe);
  for (const j of out) log(`  ${j.label}: median ${j.median_us} µs, p99 ${j.p99_us} µs`);
  return out;
}

async function timedSync(mode: ProxyMode, snaps: ProxySnapshot[], changed: ReadonlySet<string> | undefined): Promise<{ ms: number; result: SyncResult }> {
  const t0 = nowMs();
  const result = await mode.sync(snaps, changed);
  return { ms: nowMs() - t0, result };
}

async function modeLevel(o: Opts, name: ProxyModeName, size: number, where: string): Promise<ModeLevel> {
  const e = o.endpoints;
  const scope = new Scope(`m${size}-${name.slice(0, 3)}`, runPrefix('pnb'));
  let mode: ProxyMode | undefined;
  try {
    log(`${name} S=${size}: mode-level syncs and data path (${where})`);
    const { cli, rtr, srv } = await topology(scope, e);
    await startServer(scope, srv);
    const directNoRules = await probe(o, cli, rtr, 'direct to the pod, no rules', SERVER_IP, SERVER_PORT);
    let snap = syntheticSnapshot(size, e);
    const fullMs: number[] = [];
    let full: { ms: number; result: SyncResult } | undefined;
    for (let r = 0; r < o.fullReps; r++) {
      if (mode) {
        await mode.cleanup();
        closeMode(mode);
      }
      mode = createModeIn(name, rtr);
      full = await timedSync(mode, [snap], undefined);
      fullMs.push(full.ms);
      log(`  full sync #${r + 1}: ${round(full.ms)} ms (${full.result.servicesWritten} service ports written)`);
      if (full.result.servicesWritten !== size) throw new Error(`${name}: the full sync wrote ${full.result.servicesWritten} service ports, expected ${size}`);
    }
    const resync = await timedSync(mode!, [snap], undefined);
    log(`  full resync with the rules in place: ${round(resync.ms)} ms`);
    const partialMs: number[] = [];
    const partial: SyncResult[] = [];
    let serial = 0;
    for (const i of targets(o.updReps, size)) {
      const next = withEndpoint(snap, size, e, i, epIP(size * e + 1000 + serial++));
      const p = await timedSync(mode!, [next], new Set([portKey(i)]));
      if (p.result.full || p.result.servicesWritten !== 1) throw new Error(`${name}: a one-endpoint partial sync reported ${JSON.stringify(p.result)}, expected one service port written, not full`);
      partialMs.push(p.ms);
      partial.push(p.result);
      snap = next;
    }
    log(`  one-endpoint partial syncs: ${partialMs.map((x) => round(x, 2)).join(', ')} ms`);
    const [first, last, directWithRules] = (await probeInterleaved(o, cli, rtr, [
      { label: `${name}: first VIP ${vip(0)}`, host: vip(0), port: 80 },
      { label: `${name}: last VIP ${vip(size - 1)}`, host: vip(size - 1), port: 80 },
      { label: `${name}: direct to the pod through the rules`, host: SERVER_IP, port: SERVER_PORT },
    ])) as [DatapathProbe, DatapathProbe, DatapathProbe];
    await mode!.cleanup();
    return { mode: name, size, endpoints: e, fullMs, resyncMs: resync.ms, partialMs, results: { full: full!.result, resync: resync.result, partial }, datapath: { directNoRules, first, last, directWithRules }, where };
  } finally {
    if (mode) closeMode(mode);
    await scope.cleanup();
  }
}

async function ipvsAvailable(): Promise<string | undefined> {
  try {
    (await Ipvs.open()).close();
    return undefined;
  } catch (e) {
    return formatError(e);
  }
}

/** Runs the ipvs mode level inside the UML guest; returns its results or why not. */
async function ipvsInVm(o: Opts): Promise<{ levels: ModeLevel[]; error?: string; seconds: number }> {
  const runner = join(packageRoot, 'scripts', 'uml', 'run-in-vm.sh');
  const t0 = nowMs();
  if (!existsSync(runner)) return { levels: [], error: `${runner} does not exist`, seconds: 0 };
  const dir = mkdtempSync(join(tmpdir(), `${runPrefix('pnb')}-vm-`));
  const file = join(dir, 'ipvs.json');
  try {
    const args = [join(packageRoot, 'dist', 'scripts', 'bench', 'main.js'), 'proxy', '--in-vm', file, '--sizes', o.sizes.join(','), '--modes', 'ipvs', '--endpoints', String(o.endpoints), '--full-reps', String(o.fullReps), '--upd-reps', String(o.updReps), '--connects', String(o.connects), '--warmup', String(o.warmup)];
    log(`ipvs: mode level inside the user-mode-linux guest (scripts/uml/run-in-vm.sh, sizes ${o.sizes.join(',')})`);
    const child = execa(runner, ['node', ...args], { reject: false, timeout: (o.vmTimeoutS + 60) * 1000, env: { PODNET_VM_RW_DIRS: dir, PODNET_VM_TIMEOUT: String(o.vmTimeoutS), PODNET_VM_MEM: process.env.PODNET_VM_MEM ?? '2048' }, all: true, stdin: 'ignore' });
    let partial = '';
    child.all?.on('data', (d: Buffer) => {
      const parts = (partial + String(d)).split('\n');
      partial = parts.pop()!;
      for (const l of parts) process.stderr.write(`  [vm] ${l}\n`);
    });
    const r = await child;
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const got = text ? (JSON.parse(text) as { levels: ModeLevel[]; errors: string[] }) : { levels: [], errors: [] };
    const errs = [...got.errors];
    if (r.exitCode !== 0) errs.push(`run-in-vm.sh exited ${r.exitCode}${r.exitCode === 124 ? ' (guest timed out)' : r.exitCode === 125 ? ' (VM or setup failure)' : ''}: ${String(r.all ?? '').split('\n').slice(-12).join('\n')}`);
    return { levels: got.levels, ...(errs.length ? { error: errs.join('\n') } : {}), seconds: (nowMs() - t0) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `--in-vm FILE`: inside the guest, the mode level of the given modes; results to FILE. */
async function runInVm(o: Opts): Promise<void> {
  const levels: ModeLevel[] = [];
  const errors: string[] = [];
  const save = () => writeFileSync(o.inVm!, JSON.stringify({ levels, errors }, null, 1));
  const why = await ipvsAvailable();
  if (why) errors.push(`no IPVS in the guest: ${why}`);
  else {
    for (const size of o.sizes) {
      for (const m of o.modes) {
        try {
          levels.push(await modeLevel(o, m, size, `user-mode-linux guest, kernel ${(await execa('uname', ['-r'])).stdout}`));
        } catch (e) {
          errors.push(`${m} S=${size}: ${formatError(e)}`);
          log(`${m} S=${size} FAILED: ${formatError(e)}`);
        }
        save();
      }
    }
  }
  save();
}

// ---------------------------------------------------------------- through the agents

export class ApiWriter {
  private readonly d: Agent;
  constructor(private readonly api: ApiProcess, connections = 50) {
    this.d = new Agent({ connections, ...(api.certs ? { connect: { ca: api.certs.caPem } } : {}) });
  }
  async call<T>(method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const r = await request(this.api.url + path, { dispatcher: this.d, method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await r.body.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: r.statusCode, body: parsed as T };
  }
  close(): Promise<void> {
    return this.d.close();
  }
}

export async function pool(n: number, c: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= n) return;
        await job(i);
      }
    }),
  );
}

const SLICES = `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`;

/** The cluster of one size: fabric, nodes, api, the Services and slices (agents come per mode). */
class AgentCluster {
  readonly scope: Scope;
  api!: ApiProcess;
  w!: ApiWriter;
  nodes: Awaited<ReturnType<typeof buildCluster>>['nodes'] = [];
  /** The current slice of each service (with its resourceVersion). */
  readonly slices = new Map<number, EndpointSlice>();
  serial = 0;

  constructor(private readonly o: Opts, readonly size: number) {
    this.scope = new Scope(`a${size}`, runPrefix('pnb'));
  }

  async start(): Promise<void> {
    const names = Array.from({ length: this.o.agents }, (_, i) => `n${i + 1}`);
    const cluster = await buildCluster(this.scope, { nodes: this.o.agents });
    await dropUplink();
    await cluster.attachSelf('198.18.0.100');
    this.nodes = cluster.nodes;
    this.api = await startApi({ host: '198.18.0.100', nodes: names, extraArgs: ['--disable-controllers', 'endpointslice'], nodeArgs: API_NODE_ARGS });
    this.scope.defer(() => this.api.cleanup());
    this.w = new ApiWriter(this.api);
    this.scope.defer(() => this.w.close());
    const t0 = nowMs();
    const e = this.o.endpoints;
    await pool(this.size, 50, async (i) => {
      const r = await this.w.call('POST', `/api/v1/namespaces/${NAMESPACE}/services`, service(i));
      if (r.status !== 201) throw new Error(`creating ${service(i).metadata.name}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    });
    const trig = new Date().toISOString();
    await pool(this.size, 50, async (i) => {
      const r = await this.w.call<EndpointSlice>('POST', SLICES, slice(i, endpointIPs(i, this.size, e), trig));
      if (r.status !== 201) throw new Error(`creating the slice of service ${i}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
      this.slices.set(i, r.body);
    });
    log(`agents S=${this.size}: ${this.size} Services + ${this.size} EndpointSlices (${this.size * e} endpoints) written in ${round((nowMs() - t0) / 1000)} s`);
  }

  /** Replaces the first endpoint of service i (trigger time = now); resolves after the API answered. */
  async changeEndpoint(i: number): Promise<number> {
    const cur = this.slices.get(i)!;
    const trig = Date.now();
    const next: EndpointSlice = {
      ...cur,
      metadata: { ...cur.metadata, annotations: { ...(cur.metadata.annotations ?? {}), 'endpoints.kubernetes.io/last-change-trigger-time': new Date(trig).toISOString() } },
      endpoints: cur.endpoints.map((ep, k) => (k === 0 ? { ...ep, addresses: [epIP(this.size * this.o.endpoints + 5000 + this.serial++)] } : ep)),
    };
    const r = await this.w.call<EndpointSlice>('PUT', `${SLICES}/${cur.metadata.name}`, next);
    if (r.status !== 200) throw new Error(`updating ${cur.metadata.name}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    this.slices.set(i, r.body);
    return trig;
  }

  async cleanup(): Promise<void> {
    await this.scope.cleanup();
    await dropUplink();
  }
}

/**
 * The veth end attachSelf put in this process's own namespace (never the root one: see
 * insideOwnNetns) goes with the fabric namespace, but asynchronously: the next cluster's
 * attachSelf must not find it.
 */
async function dropUplink(): Promise<void> {
  if (!process.env.PODNET_TEST_NETNS) return;
  await sh(undefined, 'ip', ['link', 'del', 'uplink'], { reject: false });
  await waitFor(async () => (await sh(undefined, 'ip', ['link', 'show', 'uplink'], { reject: false })).exitCode !== 0, 10_000, 'the old uplink to go').catch(() => undefined);
}

async function scrape(node: { ip: string }): Promise<string> {
  const r = await request(`http://${node.ip}:10260/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const t = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`/metrics of ${node.ip}: ${r.statusCode} ${t.slice(0, 200)}`);
  return t;
}

/** The agent's own account of its memory (prom-client's default process metrics), MB. */
function heapMB(metrics: string): { used: number; total: number; external: number } {
  const v = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) / 1e6;
  return { used: v('nodejs_heap_size_used_bytes'), total: v('nodejs_heap_size_total_bytes'), external: v('nodejs_external_memory_bytes') };
}

/** V8's committed heap by space (new, old, large objects...), MB, as `new 8.4 old 101 ...`. */
function heapSpacesMB(metrics: string): string {
  const out: string[] = [];
  for (const m of metrics.matchAll(/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)/gm)) {
    const mb = Number(m[2]) / 1e6;
    if (mb >= 1) out.push(`${m[1]!.replace(/_space$/, '')} ${round(mb)}`);
  }
  return out.join(' ');
}

function procStatusMB(pid: number): { hwm: number; rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  const mb = (k: string) => (kb(k) * 1024) / 1e6;
  return { hwm: mb('VmHWM'), rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

const tail = (a: AgentProcess, n = 2500) => a.logs().slice(-n);

async function agentLevel(o: Opts, c: AgentCluster, mode: ProxyModeName): Promise<AgentLevel> {
  const size = c.size;
  const scope = new Scope(`a${size}-${mode.slice(0, 3)}`, runPrefix('pnb'));
  const agents: AgentProcess[] = [];
  try {
    log(`agents S=${size} ${mode}: starting ${o.agents} agents (--proxy-min-sync-period ${o.minSyncPeriod}, --proxy-sync-period ${o.proxySyncPeriod})`);
    const started: number[] = [];
    for (const n of c.nodes) {
      started.push(Date.now());
      agents.push(await startAgent(scope, n, c.api, { backend: 'host-gw', nodeArgs: AGENT_NODE_ARGS, extraArgs: ['--proxy-mode', mode, '--proxy-min-sync-period', o.minSyncPeriod, '--proxy-sync-period', o.proxySyncPeriod, '--resync-period', '30s'] }));
    }
    const failures = () => agents.flatMap((a) => syncFailures(a.logs()).map((l) => `${a.node.name}: ${l.slice(0, 1500)}`));
    const fullOf = (a: AgentProcess) => syncLines(a.logs()).find((l) => l.kind === 'full' && l.servicePorts >= size);
    await waitFor(
      () => {
        for (const a of agents) if (a.proc.exitCode !== null || a.proc.signalCode !== null) throw new GiveUp(`agent ${a.node.name} exited (${a.proc.exitCode ?? a.proc.signalCode}):\n${tail(a)}`);
        return agents.every((a) => fullOf(a));
      },
      o.syncTimeoutS * 1000,
      `every agent's first full proxy sync of ${size} service ports`,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\nsync failures: ${failures().join('\n') || 'none logged'}\n${agents.map((a) => `--- ${a.node.name}\n${tail(a)}`).join('\n')}`);
    });
    const firsts = agents.map((a) => fullOf(a)!);
    const startToSyncedS = firsts.map((f, k) => (f.at - started[k]!) / 1000);
    log(`  first full sync: ${firsts.map((f) => `${round(f.ms)} ms`).join(', ')} (start -> synced ${startToSyncedS.map((s) => round(s)).join(', ')} s)`);
    // Let anything still pending (the runner's min interval) pass.
    await new Promise((r) => setTimeout(r, 3000));

    // One endpoint change at a time: API write -> 'proxy rules synced' on each agent.
    const oneEndpointMs: number[][] = [];
    // Where the time goes: the API's answer (the write is durable then), and each agent's sync.
    const ackMs: number[] = [];
    const syncMs: number[][] = [];
    for (const i of targets(o.agentUpdReps, size, 1)) {
      const before = agents.map((a) => syncLines(a.logs()).length);
      const t0 = Date.now();
      await c.changeEndpoint(i);
      ackMs.push(Date.now() - t0);
      const lines = await waitFor(
        () => {
          const got = agents.map((a, k) => syncLines(a.logs()).slice(before[k]).find((l) => l.at >= t0 && l.changed >= 1));
          return got.every(Boolean) ? (got as SyncLine[]) : undefined;
        },
        60_000,
        'every agent to sync one endpoint change',
      ).catch((e: unknown) => {
        throw new Error(`${String(e)}\n${agents.map((a) => `--- ${a.node.name}\n${tail(a)}`).join('\n')}`);
      });
      oneEndpointMs.push(lines!.map((l) => l.at - t0));
      syncMs.push(lines!.map((l) => l.ms));
      await new Promise((r) => setTimeout(r, 1500));
    }
    log(`  one-endpoint API -> kernel: ${oneEndpointMs.map((r) => r.join('/')).join(', ')} ms (per rep, each agent); API answered after ${ackMs.join(', ')} ms; the agents' syncs took ${syncMs.map((r) => r.join('/')).join(', ')} ms`);

    // A burst of endpoint changes across services.
    const before = await Promise.all(c.nodes.map(async (n) => parseHistogram(await scrape(n), HIST)));
    const linesBefore = agents.map((a) => syncLines(a.logs()).length);
    const burst = targets(o.burst, size, 0).slice(0, o.burst);
    const triggers: number[] = [];
    const tb = Date.now();
    await pool(burst.length, o.burstConcurrency, async (k) => {
      triggers.push(await c.changeEndpoint(burst[k]!));
    });
    const writeSeconds = (Date.now() - tb) / 1000;
    log(`  burst: ${burst.length} endpoint changes written in ${round(writeSeconds, 2)} s; waiting for ${o.agents} agents`);
    const counted = (a: AgentProcess, k: number) => syncLines(a.logs()).slice(linesBefore[k]).reduce((s, l) => s + l.changed, 0);
    await waitFor(() => agents.every((a, k) => counted(a, k) >= burst.length), 300_000, 'every agent to sync the burst').catch((e: unknown) => {
      throw new Error(`${String(e)} (synced: ${agents.map((a, k) => counted(a, k)).join(', ')} of ${burst.length})\n${agents.map((a) => `--- ${a.node.name}\n${tail(a)}`).join('\n')}`);
    });
    // The metric is observed right after the sync's log line.
    let after: Histogram[] = [];
    await waitFor(
      async () => {
        after = await Promise.all(c.nodes.map(async (n) => parseHistogram(await scrape(n), HIST)));
        return after.every((h, k) => h.count - before[k]!.count >= burst.length);
      },
      10_000,
      'the programming latency histograms to count the burst',
    ).catch(() => undefined);
    const h = addHistograms(after.map((x, k) => diffHistogram(x, before[k]!)));
    const q50 = histogramQuantile(h, 0.5);
    const q99 = histogramQuantile(h, 0.99);
    const burstLines = agents.map((a, k) => syncLines(a.logs()).slice(linesBefore[k]));
    const fifo = burstLines.map((ls) => fifoLatencies(triggers, ls));
    const all = fifo.flatMap((f) => f.ms);
    const st = stats(all);
    const lastAt = Math.max(...burstLines.map((ls) => Math.max(...ls.map((l) => l.at))));
    const burstRes: AgentLevel['burst'] = {
      changes: burst.length,
      writeSeconds,
      makespanS: (lastAt - Math.min(...triggers)) / 1000,
      syncsPerAgent: burstLines.map((ls) => ls.filter((l) => l.changed > 0).length),
      histogram: { count: h.count, p50: q50?.value, p99: q99?.value, ...(q50 ? { p50Bucket: q50.bucket } : {}), ...(q99 ? { p99Bucket: q99.bucket } : {}), fractionWithin1s: fractionAtMost(h, 1) },
      logDerived: { n: st.n, p50Ms: st.median, p99Ms: st.p99, maxMs: st.max, missing: fifo.reduce((s, f) => s + f.missing, 0) },
      syncs: burstLines.flatMap((ls, k) => ls.map((l) => ({ agent: agents[k]!.node.name, atMs: l.at - Math.min(...triggers), changed: l.changed, ms: l.ms }))),
    };
    log(`  burst programmed: histogram p50 ≈ ${q50 ? round(q50.value, 3) : '-'} s, p99 ≈ ${q99 ? round(q99.value, 3) : '-'} s (${h.count} observations, ${round(100 * (burstRes.histogram.fractionWithin1s ?? NaN), 2)}% ≤ 1 s); from logs p50 ${round(st.median)} ms, p99 ${round(st.p99)} ms; ${burstRes.syncsPerAgent.join('/')} syncs per agent`);
    const mem = agents.map((a) => procStatusMB(a.proc.pid!));
    // What of the RSS is the JS heap (live, and committed) and memory outside it (Buffers).
    const heap = await Promise.all(c.nodes.map(async (n) => heapMB(await scrape(n))));
    log(`  agent VmHWM ${mem.map((m) => round(m.hwm)).join(' / ')} MB, VmRSS ${mem.map((m) => round(m.rss)).join(' / ')} MB; JS heap used / committed / external ${heap.map((h) => `${round(h.used)}/${round(h.total)}/${round(h.external)}`).join(', ')} MB`);
    // And once idle: V8's memory reducer starts ~8 s after activity stops.
    await new Promise((r) => setTimeout(r, 15_000));
    const idleMem = agents.map((a) => procStatusMB(a.proc.pid!));
    const idleRss = idleMem.map((m) => m.rss);
    const idleMetrics = await Promise.all(c.nodes.map((n) => scrape(n)));
    const idleHeap = idleMetrics.map(heapMB);
    log(`  15 s later, idle: VmRSS ${idleRss.map((m) => round(m)).join(' / ')} MB (anonymous / file-backed ${idleMem.map((m) => `${round(m.anon)}/${round(m.file)}`).join(', ')}); JS heap used / committed ${idleHeap.map((h) => `${round(h.used)}/${round(h.total)}`).join(', ')} MB; committed by space ${idleMetrics.map(heapSpacesMB).join('; ')}`);
    return {
      mode,
      size,
      agents: agents.length,
      startToSyncedS,
      firstFullSyncMs: firsts.map((f) => f.ms),
      oneEndpointMs,
      oneEndpointAckMs: ackMs,
      oneEndpointSyncMs: syncMs,
      burst: burstRes,
      rssMB: { vmHWM: mem.map((m) => m.hwm), vmRSS: mem.map((m) => m.rss), heapUsed: heap.map((h) => h.used), heapTotal: heap.map((h) => h.total), external: heap.map((h) => h.external), idleVmRSS: idleRss, idleHeapUsed: idleHeap.map((h) => h.used) },
      syncFailures: failures(),
    };
  } finally {
    // Keep the agents' logs when asked (PODNET_BENCH_AGENT_LOG_DIR=dir: one file per agent).
    const logDir = process.env.PODNET_BENCH_AGENT_LOG_DIR;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      for (const a of agents) writeFileSync(join(logDir, `${size}-${mode}-${a.node.name}.log`), a.logs());
    }
    await scope.cleanup();
    // The next mode's agents start from nothing: forget these nodes.
    for (const n of c.nodes) await c.w.call('DELETE', `/api/v1/nodes/${n.name}`).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- the table

interface Collected {
  baselines: Map<number, SvcBenchResult & { phases: string; seconds: number }>;
  levels: ModeLevel[];
  agents: AgentLevel[];
  notMeasured: { mode: string; size?: number; what: string; why: string }[];
}

function dpBaseline(b: SvcBenchResult | undefined, tool: 'iptables' | 'nftables', which: 'first VIP' | 'last VIP'): { label: string; value: number; p99: number } | undefined {
  const d = b?.datapath.find((x) => x.label.startsWith(tool) && x.label.includes(which));
  return d ? { label: d.label.replace(/ S=\d+/, ''), value: d.median_us, p99: d.p99_us } : undefined;
}

function buildRows(o: Opts, c: Collected): Row[] {
  const rows: Row[] = [];
  const big = 10_000;
  const goalAt = (size: number) => size >= big;
  for (const size of o.sizes) {
    const b = c.baselines.get(size);
    const t = (k: string) => medianOf(b?.times[k]);
    const nftKind = b?.times['nft/full_load'] ? 'nft' : b?.times['nftr/full_load'] ? 'nftr' : undefined;
    const nftLabel = nftKind === 'nft' ? 'nft -f, kube-proxy layout' : 'nft -f, rules layout (nftr)';
    const direct = b?.datapath.find((d) => d.label.startsWith('baseline: no rules'));
    const emptyHook = b?.datapath.find((d) => d.label.startsWith('baseline: empty nat hook'));
    for (const mode of o.modes) {
      const lv = c.levels.find((l) => l.mode === mode && l.size === size);
      const ag = c.agents.find((a) => a.mode === mode && a.size === size);
      const fullBase = mode === 'iptables' ? (t('ipt/full_load') !== undefined ? { label: 'iptables-restore full load', value: t('ipt/full_load')! / 1000 } : undefined) : mode === 'nftables' && nftKind ? { label: `${nftLabel} full load`, value: t(`${nftKind}/full_load`)! / 1000 } : undefined;
      const updBase =
        mode === 'iptables'
          ? t('ipt/upd_kp_noflush+KUBE-SERVICES') !== undefined
            ? { label: 'iptables-restore --noflush, kube-proxy partial (+KUBE-SERVICES)', value: t('ipt/upd_kp_noflush+KUBE-SERVICES')! }
            : undefined
          : mode === 'nftables' && nftKind
            ? { label: `${nftLabel}, one-endpoint transaction`, value: t(`${nftKind}/upd_transaction`)! }
            : undefined;
      const push = (r: Omit<Row, 'mode' | 'size'>) => rows.push({ mode, size, ...r });
      const where = lv?.where && lv.where !== 'host' ? ` [${lv.where.replace(/, kernel.*/, '')}]` : '';
      if (lv) {
        const full = stats(lv.fullMs).median / 1000;
        const fullGoal =
          mode === 'nftables' ? { text: '≤ 2 s', met: full <= 2 } : mode === 'ipvs' ? { text: '≤ 5 s', met: full <= 5 } : fullBase ? { text: '≤ 1.2× raw', met: full <= 1.2 * fullBase.value } : undefined;
        push({ metric: `full sync, mode.sync() from nothing${where}`, value: full, unit: 's', ...(fullBase ? { baseline: fullBase } : {}), ...(fullGoal && goalAt(size) ? { goal: fullGoal } : {}) });
        push({ metric: `full resync, rules in place${where}`, value: lv.resyncMs / 1000, unit: 's' });
        const upd = stats(lv.partialMs).median;
        const updGoal = mode === 'iptables' ? { text: '≤ 300 ms', met: upd <= 300 } : mode === 'nftables' && updBase ? { text: '≤ 10 ms and ≥ 70× nft', met: upd <= 10 && updBase.value / upd >= 70 } : { text: '≤ 10 ms', met: upd <= 10 };
        push({ metric: `one-endpoint partial sync, mode.sync() (median of ${lv.partialMs.length})${where}`, value: upd, unit: 'ms', ...(updBase ? { baseline: updBase } : {}), ...(goalAt(size) ? { goal: updGoal } : {}) });
        const dp = lv.datapath;
        const tool = mode === 'iptables' ? 'iptables' : 'nftables';
        const bFirst = mode === 'ipvs' ? undefined : dpBaseline(b, tool, 'first VIP');
        const bLast = mode === 'ipvs' ? undefined : dpBaseline(b, tool, 'last VIP');
        push({ metric: `connect+close, direct to the pod, no rules${where}`, value: dp.directNoRules.median_us, unit: 'µs', text: `${dp.directNoRules.median_us} / ${dp.directNoRules.p99_us}`, ...(direct && !where ? { baseline: { label: 'svc-bench: no rules, direct', value: direct.median_us } } : {}) });
        push({ metric: `connect+close, first VIP${where}`, value: dp.first.median_us, unit: 'µs', text: `${dp.first.median_us} / ${dp.first.p99_us}`, ...(bFirst ? { baseline: bFirst } : {}) });
        push({ metric: `connect+close, last VIP${where}`, value: dp.last.median_us, unit: 'µs', text: `${dp.last.median_us} / ${dp.last.p99_us}`, ...(bLast ? { baseline: bLast } : {}) });
        push({ metric: `connect+close, direct to the pod through the rules${where}`, value: dp.directWithRules.median_us, unit: 'µs', text: `${dp.directWithRules.median_us} / ${dp.directWithRules.p99_us}`, ...(emptyHook && !where ? { baseline: { label: 'svc-bench: empty nat hook (conntrack + nat on)', value: emptyHook.median_us } } : {}) });
        const ratio = dp.last.median_us / dp.first.median_us;
        push({ metric: `last VIP / first VIP (medians)${where}`, value: ratio, unit: '×', ...(bLast && bFirst ? { baseline: { label: `${tool} raw ruleset`, value: bLast.value / bFirst.value } } : {}), ...((mode === 'nftables' || mode === 'ipvs') && goalAt(size) ? { goal: { text: '≤ 1.10', met: ratio <= 1.1 } } : {}) });
      }
      if (ag) {
        const one = ag.oneEndpointMs.flat();
        const med = stats(one).median;
        const oneGoal = mode === 'iptables' ? { text: '≤ 300 ms', met: med <= 300 } : mode === 'nftables' && updBase ? { text: '≤ 10 ms and ≥ 70× nft', met: med <= 10 && updBase.value / med >= 70 } : { text: '≤ 10 ms', met: med <= 10 };
        push({ metric: `one endpoint, API write -> 'proxy rules synced' (median of ${ag.oneEndpointMs.length} × ${ag.agents} agents; max ${stats(one).max} ms)`, value: med, unit: 'ms', ...(updBase ? { baseline: updBase } : {}), ...(goalAt(size) ? { goal: oneGoal } : {}) });
        push({ metric: `first full sync in the agent (log, max of ${ag.agents})`, value: Math.max(...ag.firstFullSyncMs) / 1000, unit: 's', ...(fullBase ? { baseline: fullBase } : {}) });
        const hb = ag.burst.histogram;
        const fmtQ = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(3));
        push({
          metric: `network programming, burst of ${ag.burst.changes}, ${ag.agents} agents: p50 / p99 s (histogram, bucket resolution)`,
          value: hb.p99,
          unit: 's',
          text: `${fmtQ(hb.p50)} / ${fmtQ(hb.p99)}`,
          ...(goalAt(size) && hb.fractionWithin1s !== undefined ? { goal: { text: 'p99 ≤ 1 s', met: hb.fractionWithin1s >= 0.99 } } : {}),
          note: `${hb.count} observations; ${hb.fractionWithin1s !== undefined ? `${(100 * hb.fractionWithin1s).toFixed(2)}% in le="1"` : 'no le="1" bucket'}`,
        });
        const ld = ag.burst.logDerived;
        push({ metric: `network programming, same burst: p50 / p99 ms (sync log lines, FIFO)`, value: ld.p99Ms, unit: 'ms', text: `${round(ld.p50Ms)} / ${round(ld.p99Ms)}`, note: `max ${ld.maxMs} ms, ${ag.burst.syncsPerAgent.join('/')} syncs per agent, all programmed ${round(ag.burst.makespanS, 2)} s after the first write${ld.missing ? `, ${ld.missing} unaccounted` : ''}` });
        const hwm = Math.max(...ag.rssMB.vmHWM);
        push({ metric: `agent VmHWM, the peak (max of ${ag.agents})`, value: hwm, unit: 'MB', ...(goalAt(size) ? { goal: { text: '≤ 250 MB', met: hwm <= 250 } } : {}) });
        if (ag.rssMB.idleVmRSS) {
          const idle = Math.max(...ag.rssMB.idleVmRSS);
          push({ metric: `agent VmRSS 15 s after the burst (max of ${ag.agents})`, value: idle, unit: 'MB', ...(goalAt(size) ? { goal: { text: '≤ 250 MB', met: idle <= 250 } } : {}) });
        }
      }
    }
  }
  for (const n of c.notMeasured) rows.push({ mode: n.mode, size: n.size ?? 0, metric: n.what, value: undefined, unit: 'ms', note: n.why });
  return rows;
}

function fmtValue(r: Row): string {
  if (r.value === undefined) return 'not measured';
  if (r.text) return r.text;
  const d = r.unit === 's' ? 3 : r.unit === 'ms' ? (r.value < 10 ? 2 : 1) : r.unit === '×' ? 2 : 0;
  return `${r.value.toFixed(d)}`;
}

function vsBaseline(r: Row): string {
  if (!r.baseline || r.value === undefined || !r.baseline.value) return '';
  if (r.unit === '×') return '';
  const q = r.baseline.value / r.value;
  return q >= 1 ? `${q.toFixed(q >= 10 ? 0 : 2)}× faster` : `${(1 / q).toFixed(2)}× slower`;
}

function baselineText(r: Row): string {
  if (!r.baseline) return '';
  const d = r.unit === 's' ? 3 : r.unit === 'ms' ? 1 : r.unit === '×' ? 2 : 0;
  return `${r.baseline.value.toFixed(d)} (${r.baseline.label})`;
}

/** A plain-text table: the first `left` columns left-aligned, the others right-aligned. */
function textTable(rows: string[][], left: number): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  const pad = (c: string, i: number) => (i < left ? c.padEnd(w[i]! + (c.length - [...c].length)) : c.padStart(w[i]! + (c.length - [...c].length)));
  const line = (r: string[]) => r.map(pad).join('  ').trimEnd();
  return [line(rows[0]!), w.map((x) => '-'.repeat(x)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

// ---------------------------------------------------------------- the run

export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv);
  if (!o.inVm && !(await insideOwnNetns(import.meta.url.replace(/proxy\.js$/, 'main.js'), 'bench-proxy'))) return;
  // Inside: netlink sockets and HTTP agents of the modes keep the loop alive, so end here
  // (the harness's exit hook removes whatever a failure left).
  await runThenExit('proxy', () => (o.inVm ? runInVm(o) : runAll(o)));
}

async function runAll(o: Opts): Promise<void> {
  const t0 = nowMs();
  const c: Collected = { baselines: new Map(), levels: [], agents: [], notMeasured: [] };
  const errors: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      const msg = `${what}: ${formatError(e)}`;
      errors.push(msg);
      log(`FAILED ${msg}`);
      return undefined;
    }
  };
  const hostIpvs = await ipvsAvailable();
  const wantIpvs = o.modes.includes('ipvs');
  const seconds: Record<string, number> = {};
  const timed = async (k: string, fn: () => Promise<unknown>) => {
    const s = nowMs();
    await fn();
    seconds[k] = round((nowMs() - s) / 1000);
  };

  for (const size of o.sizes) {
    if (!o.skip.has('baselines')) {
      await timed(`baselines S=${size}`, async () => {
        const b = await attempt(`baselines S=${size}`, () => baselines(o, size));
        if (b) c.baselines.set(size, b);
      });
    }
    if (!o.skip.has('modes')) {
      for (const m of o.modes) {
        if (m === 'ipvs' && hostIpvs) continue;
        await timed(`mode ${m} S=${size}`, async () => {
          const lv = await attempt(`${m} S=${size} mode level`, () => modeLevel(o, m, size, 'host'));
          if (lv) c.levels.push(lv);
        });
      }
    }
  }
  if (wantIpvs && hostIpvs && !o.skip.has('modes') && !o.skip.has('vm')) {
    await timed('ipvs in the UML guest', async () => {
      const r = await ipvsInVm(o);
      c.levels.push(...r.levels);
      if (r.error) {
        errors.push(`ipvs in the UML guest: ${r.error}`);
        for (const size of o.sizes) if (!r.levels.some((l) => l.size === size)) c.notMeasured.push({ mode: 'ipvs', size, what: 'mode-level syncs and data path (UML guest)', why: r.error.split('\n').filter(Boolean).slice(-2).join(' ').slice(0, 300) });
      }
    });
  } else if (wantIpvs && hostIpvs) {
    c.notMeasured.push({ mode: 'ipvs', what: 'mode-level syncs and data path', why: `the host kernel has no IPVS (${hostIpvs}) and the UML phase was skipped` });
  }

  if (!o.skip.has('agents')) {
    for (const size of o.sizes) {
      const modes = o.modes.filter((m) => m !== 'ipvs' || !hostIpvs);
      if (wantIpvs && hostIpvs) c.notMeasured.push({ mode: 'ipvs', size, what: 'through the agents (API -> kernel, programming latency, RSS)', why: 'the host kernel has no IPVS; the agents run only on the host (3 agents + api at this size are too heavy for the UML guest)' });
      if (!modes.length) continue;
      await timed(`agents S=${size}`, async () => {
        const cl = new AgentCluster(o, size);
        try {
          const ok = await attempt(`agents S=${size}: loading the API`, () => cl.start().then(() => true));
          if (!ok) return;
          for (const m of modes) {
            const ag = await attempt(`${m} S=${size} through the agents`, () => agentLevel(o, cl, m));
            if (ag) c.agents.push(ag);
          }
        } finally {
          await cl.cleanup();
        }
      });
    }
  }

  const rows = buildRows(o, c);
  const out: string[][] = [['mode', 'S', 'metric', 'podnet', 'unit', 'baseline (same run)', 'vs baseline', 'goal']];
  for (const r of rows) out.push([r.mode, r.size ? String(r.size) : '', r.metric, fmtValue(r), r.value === undefined ? '' : r.unit === 'µs' ? 'µs med / p99' : r.unit, baselineText(r), vsBaseline(r), r.goal ? `${r.goal.met ? '✓' : '✗'} ${r.goal.text}` : r.note && r.value === undefined ? r.note.slice(0, 120) : '']);
  console.log(textTable(out, 3));
  const notes = rows.filter((r) => r.note && r.value !== undefined);
  for (const r of notes) console.log(`  ${r.mode} S=${r.size} ${r.metric.split(':')[0]}: ${r.note}`);
  const goals: Record<string, boolean> = {};
  for (const r of rows) if (r.goal) goals[`${r.mode} S=${r.size}: ${r.metric.replace(/ \(.*$/, '')} ${r.goal.text}`] = r.goal.met;
  for (const [g, ok] of Object.entries(goals)) console.log(`${ok ? 'MET ' : 'MISS'}  ${g}`);
  if (errors.length) {
    console.log(`\n${errors.length} part(s) failed:`);
    for (const e of errors) console.log(`- ${e.slice(0, 4000)}`);
    process.exitCode = 1;
  }
  const totalS = round((nowMs() - t0) / 1000);
  console.log(`total ${totalS} s (${Object.entries(seconds).map(([k, v]) => `${k} ${v} s`).join(', ')})`);
  mkdirSync(join(packageRoot, 'bench', 'results'), { recursive: true });
  const baselinesJson = Object.fromEntries([...c.baselines].map(([s, b]) => [s, { phases: b.phases, seconds: b.seconds, medianMs: Object.fromEntries(Object.entries(b.times).map(([k, v]) => [k, medianOf(v)])), times: b.times, datapath: b.datapath }]));
  console.log(`results: ${writeResults('proxy', { options: { ...o, skip: [...o.skip] }, seconds: totalS, phaseSeconds: seconds, rows, goals, baselines: baselinesJson, modeLevel: c.levels, agents: c.agents, notMeasured: c.notMeasured, errors })}`);
}
