/**
 * `npm run bench -- trace [--services N] [--endpoints E] [--runs R] [--live-runs L]`:
 * `podnet trace` at scale. A 3-node virtual cluster (api, an agent per node: vxlan +
 * nftables) holding N Services × E endpoints (N-1 synthetic ones written straight to the
 * API, as the proxy benchmark does, plus a real Service `web` whose two endpoint pods on
 * n2 and n3 run a TCP server); a client pod on n1 traces `svc/default/web:80`.
 *
 * Measured: explain wall time of the whole trace (API reads, both nodes' agents: n1's
 * interpretation of its 10,000-Service table and routes, n2 / n3 delivering) and the agents'
 * own share; the same through a `podnet trace` process; live trace wall time across the 3
 * nodes (nftrace installed on all, the probe, the events collected, the tables removed).
 * Baseline, same run, same node: what reading the rules by hand costs — `nft list ruleset`
 * (and `nft list table ip podnet`) in n1's namespace. Goals: explain ≤ 200 ms, live ≤ 2 s.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { packageRoot } from '../../src/kernel/native.js';
import { renderSvg } from '../../src/trace/render/svg.js';
import { renderText } from '../../src/trace/render/text.js';
import type { ResultPromise } from 'execa';
import { KubeClient, configFromFlags } from '../../src/client/index.js';
import type { Pod, Service } from '../../src/client/types.js';
import { clientDeps } from '../../src/cli/trace.js';
import { runTrace } from '../../src/trace/run.js';
import type { TraceDeps } from '../../src/trace/run.js';
import type { NodeStep, TraceResult } from '../../src/trace/types.js';
import { buildCluster } from '../../netns-tests/lib/cluster.js';
import { ADMIN_TOKEN, startApi } from '../../netns-tests/lib/api.js';
import { CLI, startAgent } from '../../netns-tests/lib/agents.js';
import type { AgentProcess } from '../../netns-tests/lib/agents.js';
import { Scope, insideOwnNetns, runPrefix, waitFor } from '../../netns-tests/lib/harness.js';
import { podNetnsName } from '../../src/pods/names.js';
import { fmt, nowMs, runThenExit, stats, table, writeResults } from './lib.js';
import { NAMESPACE, endpointIPs, service, slice } from './proxy-lib.js';
import { ApiWriter, pool } from './proxy.js';
import { syncLines } from './proxy-lib.js';

interface Opts {
  services: number;
  endpoints: number;
  runs: number;
  liveRuns: number;
}

function parseArgs(argv: string[]): Opts {
  const o: Opts = { services: 10_000, endpoints: 10, runs: 20, liveRuns: 5 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k}: ${argv[i]} is not a positive integer`);
    if (k === '--services') o.services = v;
    else if (k === '--endpoints') o.endpoints = v;
    else if (k === '--runs') o.runs = v;
    else if (k === '--live-runs') o.liveRuns = v;
    else throw new Error(`unknown option ${k} (--services N --endpoints E --runs R --live-runs L)`);
  }
  return o;
}

const T0 = Date.now();
const log = (msg: string) => process.stderr.write(`trace bench [${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s]: ${msg}\n`);

export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv);
  if (!(await insideOwnNetns(import.meta.url.replace(/trace\.js$/, 'main.js'), 'bench-trace'))) return;
  await runThenExit('trace', () => runAll(o));
}

async function runAll(o: Opts): Promise<void> {
  const scope = new Scope('trace', runPrefix('pnb'));
  try {
    const cluster = await buildCluster(scope, { nodes: 3 });
    await cluster.attachSelf('198.18.0.100');
    const api = await startApi({ host: '198.18.0.100', nodes: ['n1', 'n2', 'n3'] });
    scope.defer(() => api.cleanup());
    const w = new ApiWriter(api);
    scope.defer(() => w.close());

    // ---- N-1 synthetic Services with E endpoints each (no selector: their slices are ours)
    const t0 = nowMs();
    const n = o.services - 1;
    await pool(n, 50, async (i) => {
      const r = await w.call('POST', `/api/v1/namespaces/${NAMESPACE}/services`, service(i + 1));
      if (r.status !== 201) throw new Error(`creating service ${i + 1}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      const s = await w.call('POST', `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`, slice(i + 1, endpointIPs(i + 1, o.services + 2, o.endpoints)));
      if (s.status !== 201) throw new Error(`creating slice ${i + 1}: ${s.status} ${JSON.stringify(s.body).slice(0, 300)}`);
    });
    log(`${n} Services + slices (${n * o.endpoints} endpoints) written in ${((nowMs() - t0) / 1000).toFixed(1)} s`);

    // ---- agents
    const agents: AgentProcess[] = [];
    for (const node of cluster.nodes) agents.push(await startAgent(scope, node, api, { backend: 'vxlan', extraArgs: ['--proxy-mode', 'nftables', '--resync-period', '30s'] }));

    // ---- the real Service: client on n1, servers on n2 and n3
    const pods: [string, string, Record<string, string>][] = [
      ['client', 'n1', { role: 'client' }],
      ['web-a', 'n2', { app: 'web' }],
      ['web-b', 'n3', { app: 'web' }],
    ];
    for (const [name, node, labels] of pods) {
      const r = await w.call('POST', `/api/v1/namespaces/${NAMESPACE}/pods`, { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] } });
      if (r.status !== 201) throw new Error(`creating pod ${name}: ${r.status}`);
    }
    const web: Service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NAMESPACE }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
    const ws = await w.call('POST', `/api/v1/namespaces/${NAMESPACE}/services`, web);
    if (ws.status !== 201) throw new Error(`creating web: ${ws.status} ${JSON.stringify(ws.body).slice(0, 300)}`);
    await waitFor(async () => {
      const list = (await w.call<{ items: Pod[] }>('GET', `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app%3Dweb`)).body.items ?? [];
      return list.length === 2 && list.every((p) => p.status?.phase === 'Running' && p.status.podIP);
    }, 60_000, 'the web pods Running');
    for (const [name, node] of pods.slice(1)) {
      const a = agents.find((x) => x.node.name === node)!;
      const ns = `/run/netns/${podNetnsName(a.netnsPrefix, NAMESPACE, name)}`;
      const srv: ResultPromise = execa('nsenter', ['--net=' + ns, '--', 'socat', 'TCP-LISTEN:8080,reuseaddr,fork', 'SYSTEM:echo ok'], { reject: false, detached: true, stdio: 'ignore' });
      scope.defer(() => {
        try {
          process.kill(-srv.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      });
    }
    const total = o.services;
    await waitFor(() => agents.every((a) => syncLines(a.logs()).some((l) => l.servicePorts >= total)), 900_000, `every agent to program ${total} service ports`);
    log(`agents programmed ${total} service ports`);
    await new Promise((r) => setTimeout(r, 2000));

    // ---- explain, in process (the CLI's code path, without node's start-up)
    const client = new KubeClient(await configFromFlags({ server: api.url, token: ADMIN_TOKEN, ...(api.certs ? { caFile: api.certs.caFile } : {}) }));
    const base = clientDeps(client, ADMIN_TOKEN);
    let agentMs = 0;
    let nodeMs = 0;
    const deps: TraceDeps = {
      ...base,
      async ask(node, path, body) {
        const s = nowMs();
        const step = (await base.ask(node, path, body)) as NodeStep;
        agentMs += nowMs() - s;
        nodeMs += step.tookMs;
        return step;
      },
    };
    const explain: number[] = [];
    const agentShare: number[] = [];
    const nodeShare: number[] = [];
    let last: TraceResult | undefined;
    for (let i = 0; i < o.runs + 2; i++) {
      agentMs = 0;
      nodeMs = 0;
      const s = nowMs();
      last = await runTrace({ from: 'default/client', to: 'svc/default/web:80' }, deps);
      const ms = nowMs() - s;
      if (i >= 2) {
        explain.push(ms);
        agentShare.push(agentMs);
        nodeShare.push(nodeMs);
      }
    }
    if (last?.verdict.kind !== 'Delivered') throw new Error(`explain verdict ${last?.verdict.kind}: ${last?.verdict.reason}`);
    log(`explain: median ${fmt(stats(explain).median, 1)} ms (${last.paths.length} paths, ${last.verdict.reason})`);
    // A synthetic Service in the middle of the table, by ClusterIP.
    const mid = service(Math.floor(o.services / 2));
    const midMs: number[] = [];
    for (let i = 0; i < Math.min(10, o.runs); i++) {
      const s = nowMs();
      await runTrace({ from: 'default/client', to: `${mid.spec!.clusterIP}:80` }, deps);
      midMs.push(nowMs() - s);
    }

    // ---- live across 3 nodes
    const live: number[] = [];
    let liveLast: TraceResult | undefined;
    for (let i = 0; i < o.liveRuns; i++) {
      const s = nowMs();
      liveLast = await runTrace({ from: 'default/client', to: 'svc/default/web:80', live: true, timeoutMs: 1000 }, deps);
      live.push(nowMs() - s);
    }
    log(`live: median ${fmt(stats(live).median, 0)} ms, verdict ${liveLast?.verdict.kind} (probe ${liveLast?.probe?.result})`);
    client.close();

    // ---- the CLI process
    const cli: number[] = [];
    for (let i = 0; i < 3; i++) {
      const s = nowMs();
      const r = await execa(process.execPath, [CLI, 'trace', '--server', api.url, '--token', ADMIN_TOKEN, ...(api.certs ? ['--ca-file', api.certs.caFile] : []), '--from', 'default/client', '--to', 'svc/default/web:80'], { reject: false });
      cli.push(nowMs() - s);
      if (r.exitCode !== 0) throw new Error(`podnet trace exited ${r.exitCode}: ${String(r.stderr).slice(0, 400)}`);
    }

    // ---- baseline: reading the rules by hand on n1
    const n1 = cluster.nodes[0]!;
    const timed = async (args: string[]) => {
      const s = nowMs();
      const r = await execa('nsenter', ['--net=' + n1.netns.path, '--', 'nft', ...args], { reject: false, timeout: 300_000, stdout: 'ignore' });
      return { ms: nowMs() - s, ok: r.exitCode === 0 };
    };
    const ruleset = await timed(['list', 'ruleset']);
    const tableOnly = await timed(['list', 'table', 'ip', 'podnet']);
    log(`nft list ruleset: ${fmt(ruleset.ms, 0)} ms; nft list table ip podnet: ${fmt(tableOnly.ms, 0)} ms`);

    const e = stats(explain);
    const rows: (string | number)[][] = [
      ['measure', 'podnet trace', 'baseline (same run)', 'ratio', 'goal'],
      [`explain, ${o.services} Services × ${o.endpoints} (median of ${e.n})`, `${fmt(e.median, 1)} ms`, `nft list ruleset ${fmt(ruleset.ms, 0)} ms`, `${fmt(ruleset.ms / e.median, 0)}× faster`, `≤ 200 ms: ${e.median <= 200 ? 'MET' : 'NOT met'}`],
      ['  of which agents (HTTP round trips)', `${fmt(stats(agentShare).median, 1)} ms`, `nft list table ip podnet ${fmt(tableOnly.ms, 0)} ms`, `${fmt(tableOnly.ms / stats(agentShare).median, 0)}×`, ''],
      ['  of which node work (NodeStep.tookMs)', `${fmt(stats(nodeShare).median, 1)} ms`, '', '', ''],
      [`explain, a Service mid-table by ClusterIP (median of ${midMs.length})`, `${fmt(stats(midMs).median, 1)} ms`, '', '', ''],
      [`explain p99`, `${fmt(e.p99, 1)} ms`, '', '', ''],
      [`live across 3 nodes (median of ${live.length})`, `${fmt(stats(live).median, 0)} ms`, '', '', `≤ 2000 ms: ${stats(live).median <= 2000 ? 'MET' : 'NOT met'}`],
      [`podnet trace process, explain (median of ${cli.length})`, `${fmt(stats(cli).median, 0)} ms`, '', '', ''],
    ];
    console.log(table(rows));
    const file = writeResults('trace', {
      services: o.services,
      endpoints: o.endpoints,
      explainMs: stats(explain),
      agentMs: stats(agentShare),
      nodeMs: stats(nodeShare),
      midTableMs: stats(midMs),
      liveMs: stats(live),
      liveVerdict: liveLast?.verdict.kind,
      liveProbe: liveLast?.probe?.result,
      cliMs: stats(cli),
      baseline: { nftListRulesetMs: ruleset.ms, nftListRulesetOk: ruleset.ok, nftListTableMs: tableOnly.ms },
      paths: last.paths.map((p) => ({ probability: p.probability, verdict: p.verdict.kind, pod: p.verdict.pod })),
      goals: { explainMs: 200, liveMs: 2000, explainMet: e.median <= 200, liveMet: stats(live).median <= 2000 },
    });
    log(`wrote ${file}`);
    // What an operator sees, from this run (README quotes it).
    writeFileSync(join(packageRoot, 'bench', 'results', 'trace-example.txt'), renderText(last, { color: false }) + '\n--- live ---\n' + (liveLast ? renderText(liveLast, { color: false }) : ''));
    writeFileSync(join(packageRoot, 'bench', 'results', 'trace-example.svg'), renderSvg(last));
  } finally {
    await scope.cleanup();
  }
}
