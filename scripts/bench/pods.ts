/**
 * `npm run bench -- pods [--pods N] [--cni N]`
 *
 * In one run, inside a private network namespace with a one-node virtual cluster
 * (podnet api on SQLite + podnet agent in the node namespace):
 *   1. agent path: N pods (default 1,000) created through the API; per-pod sandbox ADD
 *      time as the agent measures it (IPAM + pause + namespace + veth + addresses +
 *      routes + record), and end to end (first POST to every pod Running); then DEL
 *      (every pod deleted, until gone); the agent's RSS with N pods.
 *   2. podnet-cni: M containers (default 200): ADD and DEL by fork+exec of the plugin
 *      binary from a bash loop, relayed to the agent.
 *   3. the baseline, same run: Debian's reference `bridge` + `host-local` plugins, the
 *      same bash loop (../shared/bench/cni-reference-bench.sh), in their own host namespace.
 * Nothing touches the root namespace.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Pod } from '../../src/client/types.js';
import { NetNS } from '../../src/kernel/index.js';
import { Scope, insideOwnNetns, testTempDir } from '../../netns-tests/lib/harness.js';
import { buildCluster } from '../../netns-tests/lib/cluster.js';
import { startApi } from '../../netns-tests/lib/api.js';
import { startAgent } from '../../netns-tests/lib/agents.js';
import { packageRoot } from '../../src/kernel/native.js';
import { FileStore, IpamAllocator } from '../../src/ipam/index.js';
import { hostVethName } from '../../src/pods/names.js';
import { SandboxRecords } from '../../src/pods/records.js';
import type { SandboxRecord } from '../../src/pods/records.js';
import { BRIDGE, createSandbox, destroySandbox, ensureBridge } from '../../src/pods/sandbox.js';
import { fmt, nowMs, stats, table, writeResults } from './lib.js';
import type { Stats } from './lib.js';

function arg(argv: string[], name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
}

function rssMiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** The bash loop of cni-reference-bench.sh: ADD then DEL of N containers, µs per call. */
const LOOP = `set -u
N=$1; PLUGIN=$2; PREFIX=$3; WORK=$4; CNI_PATH_DIR=$5
CONF=$(cat "$WORK/conf.json")
for op in ADD DEL; do
  : > "$WORK/$op.us"
  for ((i = 0; i < N; i++)); do
    if [ $op = ADD ]; then cfg=$CONF; else cfg="\${CONF%\\}},\\"prevResult\\":$(cat "$WORK/res.$i")}"; fi
    t0=\${EPOCHREALTIME/./}
    out=$(CNI_COMMAND=$op CNI_CONTAINERID=bench-$i CNI_NETNS=/run/netns/$PREFIX$i CNI_IFNAME=eth0 CNI_PATH=$CNI_PATH_DIR CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=c$i" "$PLUGIN" <<<"$cfg"); rc=$?
    t1=\${EPOCHREALTIME/./}
    echo $((t1 - t0)) >> "$WORK/$op.us"
    if [ $rc -ne 0 ]; then echo "$op $i rc=$rc: $out" >&2; exit 1; fi
    if [ $op = ADD ]; then printf '%s' "$out" > "$WORK/res.$i"; fi
  done
done
exit 0
`;

/** ADD and DEL of `n` sandboxes through the agent's own modules, in-process, sequentially. */
async function sandboxPath(scope: Scope, n: number): Promise<{ add: Stats; del: Stats }> {
  const hostNs = await scope.netns('quiet');
  const host = scope.netlink(hostNs);
  const dir = testTempDir('bench-quiet');
  scope.defer(() => execa('rm', ['-rf', dir]));
  const store = await FileStore.open(dir);
  scope.defer(() => store.close());
  const ipam = await IpamAllocator.open(store, { subnets: ['10.244.0.0/21'] });
  const records = SandboxRecords.open(dir);
  const net = { bridge: BRIDGE, mtu: 1500, gateways: [{ ip: '10.244.0.1', prefix: 21, family: 4 as const }] };
  await ensureBridge(host, net);
  console.error(`agent sandbox path, quiet node: ${n} ADD + DEL`);
  const adds: number[] = [];
  const dels: number[] = [];
  const recs: SandboxRecord[] = [];
  for (let i = 0; i < n; i++) {
    const owner = `bench-uid-${i}`;
    const t0 = nowMs();
    const rec = await createSandbox(host, net, {
      owner, kind: 'pod', namespace: 'bench', name: `q${i}`, uid: owner, netnsName: scope.name(`q${i}`), hostname: `q${i}`, hostVeth: hostVethName(owner), ifname: 'eth0', mtu: 1500,
      addressing: ipam.allocate({ id: owner }).then(({ addresses }) => ({ addresses: addresses.map((a) => `${a.ip}/${a.prefix}`), gateways: addresses.map((a) => a.gateway) })),
    });
    records.save(rec);
    adds.push(nowMs() - t0);
    recs.push(rec);
  }
  for (const rec of recs) {
    const t0 = nowMs();
    await destroySandbox(host, rec);
    await ipam.release(rec.owner);
    records.remove(rec.owner);
    dels.push(nowMs() - t0);
  }
  return { add: stats(adds), del: stats(dels) };
}

async function cniLoop(scope: Scope, hostNs: NetNS, label: string, n: number, plugin: string, conf: object, cniPath: string): Promise<{ add: Stats; del: Stats; verified: number }> {
  const work = testTempDir(`bench-${label}`);
  scope.defer(() => execa('rm', ['-rf', work]));
  writeFileSync(join(work, 'conf.json'), JSON.stringify(conf));
  writeFileSync(join(work, 'loop.sh'), LOOP);
  const prefix = scope.name(`${label}-`);
  for (let i = 0; i < n; i++) await scope.netns(`${label}-${i}`);
  console.error(`${label}: ${n} ADD + DEL`);
  const r = await execa('nsenter', ['--net=' + hostNs.path, '--', 'bash', join(work, 'loop.sh'), String(n), plugin, prefix, work, cniPath], { reject: false, timeout: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${label}: the CNI loop failed (exit ${r.exitCode}${r.signal ? `, ${r.signal}` : ''}): ${r.stderr} ${r.stdout}`);
  const read = (op: string) => readFileSync(join(work, `${op}.us`), 'utf8').trim().split('\n').map((x) => Number(x) / 1000);
  let verified = 0;
  for (let i = 0; i < n; i++) if (readFileSync(join(work, `res.${i}`), 'utf8').includes('"ips"')) verified++;
  return { add: stats(read('ADD')), del: stats(read('DEL')), verified };
}

export async function run(argv: string[]): Promise<void> {
  if (!(await insideOwnNetns(import.meta.url.replace(/pods\.js$/, 'main.js'), 'bench-pods'))) return;
  const N = arg(argv, 'pods', 1000);
  const M = arg(argv, 'cni', 200);
  const scope = new Scope('bpods');
  try {
    const cluster = await buildCluster(scope, { nodes: 1 });
    await cluster.attachSelf('198.18.0.100');
    const node = cluster.nodes[0]!;
    const api = await startApi({ host: '198.18.0.100', nodes: ['n1'], extraArgs: ['--disable-controllers', 'endpointslice'] });
    scope.defer(() => api.cleanup());
    // A /21 node subnet: room for the benchmark's pods (a /24 holds 253).
    const agent = await startAgent(scope, node, api, { extraArgs: ['--resync-period', '5m', '--node-subnet-size', '21', ...(process.env.PODNET_BENCH_CONCURRENCY ? ['--pod-concurrency', process.env.PODNET_BENCH_CONCURRENCY] : [])] });
    const t0 = nowMs();
    while (!agent.logs().includes('"msg":"pods synced"')) {
      if (nowMs() - t0 > 30_000) throw new Error(`the agent did not start:\n${agent.logs()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const agentPid = agent.proc.pid!;
    const rssIdle = rssMiB(agentPid);

    // ---- 1. agent path
    const pod = (name: string): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } });
    const logLines = (from: number) => agent.logs().slice(from).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; ms?: number });
    const listPods = async () => (await api.call<{ items: Pod[] }>('GET', '/api/v1/namespaces/default/pods')).body.items;
    const waitUntil = async (what: string, done: () => Promise<boolean>, ms = 300_000) => {
      const t = nowMs();
      while (!(await done())) {
        if (nowMs() - t > ms) throw new Error(`${what}: not done after ${ms / 1000} s; agent log:\n${agent.logs().split('\n').slice(-20).join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    // 1a. the agent's sandbox path on a quiet node: the same calls as the agent makes for a
    // pod (IPAM allocation while pause starts, namespace, veth, addresses, routes, record;
    // then teardown and release), in this process, in a namespace of its own, one at a
    // time like the reference plugins below, with nothing else running.
    const quiet = await sandboxPath(scope, M);

    // 1b. latency through the API: pods arriving one at a time, measured in the agent while
    // the api process works on the same pod (2 cores shared by api, agent and this client).
    console.error(`agent path, one at a time: ${M} pods`);
    let from = agent.logs().length;
    for (let i = 0; i < M; i++) {
      if ((await api.call('POST', '/api/v1/namespaces/default/pods', pod(`s${i}`))).status !== 201) throw new Error(`create s${i}`);
      await waitUntil(`pod s${i}`, async () => (await api.call<Pod>('GET', `/api/v1/namespaces/default/pods/s${i}`)).body.status?.phase === 'Running', 30_000);
    }
    const seqAdds = logLines(from).filter((l) => l.msg === 'pod sandbox ready').map((l) => l.ms!);
    from = agent.logs().length;
    for (let i = 0; i < M; i++) {
      await api.call('DELETE', `/api/v1/namespaces/default/pods/s${i}`);
      await waitUntil(`delete s${i}`, async () => (await api.call('GET', `/api/v1/namespaces/default/pods/s${i}`)).status === 404, 30_000);
    }
    const seqDels = logLines(from).filter((l) => l.msg === 'pod sandbox removed').map((l) => l.ms!);

    // 1b. throughput: a burst of N pods, until every one is Running; then deleted.
    console.error(`agent path, a burst: ${N} pods`);
    from = agent.logs().length;
    const start = nowMs();
    let next = 0;
    await Promise.all(Array.from({ length: 20 }, async () => {
      for (;;) {
        const i = next++;
        if (i >= N) return;
        const r = await api.call('POST', '/api/v1/namespaces/default/pods', pod(`p${i}`));
        if (r.status !== 201) throw new Error(`create p${i}: ${r.status}`);
      }
    }));
    await waitUntil(`${N} pods Running`, async () => (await listPods()).filter((p) => p.status?.phase === 'Running').length === N);
    const endToEnd = nowMs() - start;
    const rssFull = rssMiB(agentPid);
    const netnsCount = NetNS.list().filter((n) => n.startsWith(agent.netnsPrefix)).length;
    const burstAdds = logLines(from).filter((l) => l.msg === 'pod sandbox ready').map((l) => l.ms!);
    console.error(`agent path: ${N} pods Running in ${(endToEnd / 1000).toFixed(2)} s; deleting`);
    from = agent.logs().length;
    const delStart = nowMs();
    await Promise.all(Array.from({ length: N }, (_, i) => api.call('DELETE', `/api/v1/namespaces/default/pods/p${i}`)));
    await waitUntil('every pod deleted', async () => (await listPods()).length === 0);
    const delEndToEnd = nowMs() - delStart;
    // ...and until the kernel has destroyed every pod namespace with its veth.
    const nl = scope.netlink(node.netns);
    await waitUntil('every pod veth gone', async () => !(await nl.links.list()).some((l) => /^pn[0-9a-f]{11}$/.test(l.name)));
    const drained = nowMs() - delStart;
    const burstDels = logLines(from).filter((l) => l.msg === 'pod sandbox removed').map((l) => l.ms!);
    const addStats = stats(seqAdds);
    const delStats = stats(seqDels);
    const burstAddStats = stats(burstAdds);
    const burstDelStats = stats(burstDels);

    // ---- 2. podnet-cni and 3. the reference plugins, the same loop
    const plugin = join(packageRoot, 'native', 'build', 'Release', 'podnet-cni');
    const podnetCni = await cniLoop(scope, node.netns, 'cnipn', M, plugin, { cniVersion: '1.0.0', name: 'podnet', type: 'podnet-cni', socket: agent.cniSocket }, '/usr/lib/cni');
    const refHost = await scope.netns('refhost');
    const refWork = testTempDir('bench-refipam');
    scope.defer(() => execa('rm', ['-rf', refWork]));
    const reference = await cniLoop(scope, refHost, 'cniref', M, '/usr/lib/cni/bridge', { cniVersion: '1.0.0', name: 'cnibench', type: 'bridge', bridge: 'cnib0', isGateway: true, ipMasq: false, hairpinMode: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.250.0.0/16', gateway: '10.250.0.1' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: refWork } }, '/usr/lib/cni');

    const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
    const row = (label: string, s: Stats) => [label, fmt(s.median, 2), fmt(s.p99, 2), fmt(s.total / 1000, 2)];
    console.log(table([
      ['path', 'median ms', 'p99 ms', 'sum s'],
      row(`agent sandbox ADD, quiet node (${M}, in-process)`, quiet.add),
      row(`agent sandbox DEL, quiet node (${M}, in-process)`, quiet.del),
      row(`agent path ADD via the API, one pod at a time (${M})`, addStats),
      row(`agent path DEL via the API, one pod at a time (${M})`, delStats),
      row(`agent path ADD in a burst of ${N} (queued, ${16} at once)`, burstAddStats),
      row(`agent path DEL in a burst of ${N}`, burstDelStats),
      row(`podnet-cni ADD (${M}, fork+exec from bash)`, podnetCni.add),
      row(`podnet-cni DEL (${M})`, podnetCni.del),
      row(`reference bridge+host-local ADD (${M})`, reference.add),
      row(`reference bridge+host-local DEL (${M})`, reference.del),
    ]));
    console.log(`agent path burst: ${N} pods from the first POST to all Running: ${(endToEnd / 1000).toFixed(2)} s (${netnsCount} pod namespaces); deleted in ${(delEndToEnd / 1000).toFixed(2)} s, every veth gone after ${(drained / 1000).toFixed(2)} s`);
    console.log(`ratios (same run): reference ADD / agent sandbox ADD (quiet node, like the reference) ${ratio(reference.add.median, quiet.add.median)}; reference ADD / agent ADD via the API ${ratio(reference.add.median, addStats.median)}; reference ADD / podnet-cni ADD ${ratio(reference.add.median, podnetCni.add.median)}; reference DEL / podnet-cni DEL ${ratio(reference.del.median, podnetCni.del.median)}`);
    console.log(`agent RSS: idle ${rssIdle.rss.toFixed(0)} MiB, with ${N} pods ${rssFull.rss.toFixed(0)} MiB, peak ${rssMiB(agentPid).hwm.toFixed(0)} MiB`);
    const goals = {
      'agent ADD median <= 5 ms (via the API)': addStats.median <= 5,
      'agent ADD >= 3x faster than the reference ADD (both on a quiet node)': reference.add.median / quiet.add.median >= 3,
      'podnet-cni ADD no slower than the reference': podnetCni.add.median <= reference.add.median,
      'podnet-cni DEL no slower than the reference': podnetCni.del.median <= reference.del.median,
      [`${N} pods on one node in <= 10 s`]: endToEnd <= 10_000,
      'agent RSS <= 150 MB': rssMiB(agentPid).hwm <= 150,
    };
    for (const [g, ok] of Object.entries(goals)) console.log(`${ok ? 'MET ' : 'MISS'}  ${g}`);
    console.log(`results: ${writeResults('pods', { pods: N, cni: M, quietAdd: quiet.add, quietDel: quiet.del, agentAdd: addStats, agentDel: delStats, burstAdd: burstAddStats, burstDel: burstDelStats, endToEndMs: endToEnd, deleteEndToEndMs: delEndToEnd, drainMs: drained, podnetCni, reference, rssMiB: { idle: rssIdle.rss, full: rssFull.rss, peak: rssMiB(agentPid).hwm }, goals })}`);
  } finally {
    await scope.cleanup();
  }
}
