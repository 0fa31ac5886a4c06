/**
 * `podnet demo` / `podnet demo down`: a whole podnet cluster on one machine, every host a
 * network namespace (DESIGN.md's address plan; the machine's root namespace gets no address,
 * route, rule or link):
 *
 *   <prefix>-fabric   bridge br0: the underlay 198.18.0.0/24
 *   <prefix>-n1..n3   nodes 198.18.0.1-3, an agent each (vxlan + nftables by default)
 *   <prefix>-ctl      198.18.0.100: a host on the underlay, where `podnet trace` runs
 *                     (it talks to the agents on the node addresses)
 *
 * `podnet api` runs on the embedded SQLite store, serving 127.0.0.1:<port> (kubectl) and a
 * unix socket (the agents and podnet's own tools, from inside any namespace), with bearer
 * tokens. Pods run a tiny HTTP server; a Service fronts them. Everything it starts and makes
 * is recorded in <state dir>/demo.json, so `down` removes exactly that (processes by PID and
 * start time) and then anything named with the prefix.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { execa } from 'execa';
import { KubeClient, RESOURCES, configFromFlags } from '../client/index.js';
import type { Node, Pod, Service } from '../client/types.js';
import { NetNS, Netlink } from '../kernel/index.js';
import { setSysctl } from '../kernel/sysctl.js';
import { podNetnsName } from '../pods/names.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { AGENT_NODE_OPTIONS } from '../agent/node-options.js';

export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface DemoOptions {
  /** Prefix of every namespace and of the state dir (/run/<prefix>). */
  prefix: string;
  backend: 'vxlan' | 'host-gw' | 'udp';
  proxyMode: 'nftables' | 'iptables' | 'ipvs';
  apiPort: number;
  /** Progress lines go here (stderr by default). */
  out: (line: string) => void;
}

export const DEFAULTS: DemoOptions = { prefix: 'podnet-demo', backend: 'vxlan', proxyMode: 'nftables', apiPort: 16443, out: (l) => process.stdout.write(l + '\n') };

const NODES = [
  { name: 'n1', ip: '198.18.0.1' },
  { name: 'n2', ip: '198.18.0.2' },
  { name: 'n3', ip: '198.18.0.3' },
] as const;
const CTL_IP = '198.18.0.100';
const PODS = [
  { name: 'client', node: 'n1', labels: { app: 'client' }, server: false },
  { name: 'web-1', node: 'n2', labels: { app: 'web' }, server: true },
  { name: 'web-2', node: 'n3', labels: { app: 'web' }, server: true },
] as const;

interface Proc {
  what: string;
  pid: number;
  /** /proc/<pid>/stat start time: a reused PID is never taken for ours. */
  start: string;
}

interface DemoState {
  prefix: string;
  procs: Proc[];
  namespaces: string[];
  nodes: { name: string; ip: string; stateDir: string; netnsPrefix: string }[];
}

export interface DemoPaths {
  dir: string;
  state: string;
  socket: string;
  tokens: string;
  kubeconfig: string;
  adminToken: string;
  svg: string;
}

export function demoPaths(prefix: string): DemoPaths {
  const dir = `/run/${prefix}`;
  return { dir, state: join(dir, 'demo.json'), socket: join(dir, 'api.sock'), tokens: join(dir, 'tokens.csv'), kubeconfig: join(dir, 'kubeconfig'), adminToken: join(dir, 'admin.token'), svg: join(dir, 'trace.svg') };
}

export function validatePrefix(prefix: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,19}$/.test(prefix)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `--prefix: ${JSON.stringify(prefix)} must be 1-20 lowercase letters, digits or "-", starting with a letter or digit`, { field: '--prefix' });
  return prefix;
}

const procStart = (pid: number): string | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
};

function detached(what: string, file: string, args: string[], log: string): Proc {
  const fd = openSync(log, 'a');
  const p = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, PODNET_LOG_LEVEL: process.env.PODNET_LOG_LEVEL ?? 'info' } });
  p.unref();
  const pid = p.pid!;
  return { what, pid, start: procStart(pid) ?? '' };
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new PodnetError(ErrorCodes.TIMEOUT, `demo: timed out after ${ms / 1000} s waiting for ${what}${last ? ` (${last instanceof Error ? last.message : String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A step with its time, shown as it happens. */
async function step<T>(o: DemoOptions, label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const v = await fn();
  o.out(`✓ ${label} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return v;
}

/**
 * kubectl sends no bearer token over plain HTTP, so its kubeconfig has none: the demo api
 * serves only loopback and a unix socket and treats requests without a token as the admin
 * (--allow-anonymous-admin); tokens are still checked when sent (the agents, the trace).
 */
function kubeconfig(server: string): string {
  return ['apiVersion: v1', 'kind: Config', `clusters: [{name: podnet-demo, cluster: {server: "${server}"}}]`, 'users: [{name: admin, user: {}}]', 'contexts: [{name: podnet-demo, context: {cluster: podnet-demo, user: admin, namespace: default}}]', 'current-context: podnet-demo', ''].join('\n');
}

const SERVER_JS = `const http = require('http'); const name = process.argv[1];
http.createServer((q, s) => { s.end('hello from ' + name + ' (' + q.socket.localAddress + '), you are ' + q.socket.remoteAddress + '\\n'); }).listen(8080, '0.0.0.0', () => console.log('ready'));`;

/** Brings the demo cluster up (after removing an earlier one) and shows it working. */
export async function demoUp(o: DemoOptions): Promise<{ tookMs: number; traceExit: number }> {
  const t0 = Date.now();
  validatePrefix(o.prefix);
  if (process.getuid?.() !== 0) throw new PodnetError(ErrorCodes.PERMISSION, 'podnet demo must run as root (it creates network namespaces)');
  const paths = demoPaths(o.prefix);
  if (existsSync(paths.state) || NetNS.list().some((n) => n.startsWith(`${o.prefix}-`))) await step(o, 'removed the earlier demo', () => demoDown({ ...o, out: () => undefined }));
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const state: DemoState = { prefix: o.prefix, procs: [], namespaces: [], nodes: [] };
  const save = () => writeFileSync(paths.state, JSON.stringify(state, null, 2) + '\n');
  save();

  // ---- the underlay: a bridge in the fabric namespace, a veth into each host
  await step(o, `underlay 198.18.0.0/24: namespaces ${o.prefix}-fabric, -n1, -n2, -n3, -ctl`, async () => {
    const mk = (name: string) => {
      const ns = NetNS.create(name);
      state.namespaces.push(name);
      save();
      return ns;
    };
    const fabric = mk(`${o.prefix}-fabric`);
    const fnl = Netlink.open(fabric);
    try {
      await fnl.links.ensure({ kind: 'bridge', name: 'br0', up: true });
      const hosts = [...NODES.map((n) => ({ name: n.name, ip: n.ip })), { name: 'ctl', ip: CTL_IP }];
      let i = 0;
      for (const h of hosts) {
        i++;
        const ns = mk(`${o.prefix}-${h.name}`);
        const nl = Netlink.open(ns);
        try {
          await nl.links.setUp('lo');
          await fnl.links.ensure({ kind: 'veth', name: `u${i}`, master: 'br0', up: true, peer: { name: 'eth0', netns: ns } });
          await nl.links.setUp('eth0');
          await nl.addrs.ensure('eth0', `${h.ip}/24`);
          setSysctl(ns, 'net.ipv4.ip_forward', '1');
        } finally {
          nl.close();
          ns.close();
        }
      }
    } finally {
      fnl.close();
      fabric.close();
    }
  });

  // ---- the api
  const admin = randomBytes(16).toString('hex');
  const nodeTokens = Object.fromEntries(NODES.map((n) => [n.name, randomBytes(16).toString('hex')]));
  writeFileSync(paths.tokens, [`${admin},admin,uid-admin,"system:masters"`, ...NODES.map((n) => `${nodeTokens[n.name]},system:node:${n.name},uid-${n.name},"system:nodes"`)].join('\n') + '\n', { mode: 0o600 });
  writeFileSync(paths.kubeconfig, kubeconfig(`http://127.0.0.1:${o.apiPort}`), { mode: 0o600 });
  writeFileSync(paths.adminToken, admin + '\n', { mode: 0o600 });
  const client = new KubeClient(await configFromFlags({ server: `unix://${paths.socket}`, token: admin }));
  try {
    await step(o, `podnet api on the embedded SQLite store: 127.0.0.1:${o.apiPort} and ${paths.socket}`, async () => {
      state.procs.push(detached('podnet api', process.execPath, [CLI, 'api', '--listen', `127.0.0.1:${o.apiPort}`, '--also-listen', `unix:${paths.socket}`, '--token-auth-file', paths.tokens, '--allow-anonymous-admin', '--data-dir', join(paths.dir, 'api-data')], join(paths.dir, 'api.log')));
      save();
      await until('the api to answer', 15_000, async () => (await client.resource<Node>(RESOURCES.nodes).list()) !== undefined);
    });

    // ---- agents
    await step(o, `3 agents (--backend ${o.backend} --proxy-mode ${o.proxyMode}); nodes Ready`, async () => {
      for (const n of NODES) {
        const stateDir = join(paths.dir, n.name);
        mkdirSync(stateDir, { recursive: true });
        const netnsPrefix = `${o.prefix}-${n.name}-`;
        state.nodes.push({ name: n.name, ip: n.ip, stateDir, netnsPrefix });
        state.procs.push(
          detached(
            `agent ${n.name}`,
            'nsenter',
            [`--net=/run/netns/${o.prefix}-${n.name}`, '--', process.execPath, ...AGENT_NODE_OPTIONS, CLI, 'agent', '--server', `unix://${paths.socket}`, '--token', nodeTokens[n.name]!, '--node-name', n.name, '--node-ip', n.ip, '--cluster-cidr', '10.244.0.0/16', '--state-dir', stateDir, '--netns-prefix', netnsPrefix, '--cni-socket', join(stateDir, 'cni.sock'), '--backend', o.backend, '--proxy-mode', o.proxyMode, '--proxy-min-sync-period', '0s'],
            join(paths.dir, `agent-${n.name}.log`),
          ),
        );
        save();
      }
      await until('3 nodes Ready', 30_000, async () => {
        const nodes = (await client.resource<Node>(RESOURCES.nodes).list()).items;
        return nodes.length === 3 && nodes.every((x) => x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      });
    });

    // ---- pods, servers, the Service
    let vip = '';
    await step(o, 'pods client (n1), web-1 (n2), web-2 (n3) Running with a tiny HTTP server; Service web', async () => {
      for (const p of PODS) {
        await client.resource<Pod>(RESOURCES.pods).create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: 'default', labels: { ...p.labels } }, spec: { nodeName: p.node, containers: [{ name: 'c', image: 'podnet-demo', ...(p.server ? { ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] } : {}) }] } });
      }
      const svc = await client.resource<Service>(RESOURCES.services).create({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] } });
      vip = svc.spec?.clusterIP ?? '';
      await until('the pods Running with addresses', 30_000, async () => {
        const pods = (await client.resource<Pod>(RESOURCES.pods).list({ namespace: 'default' })).items;
        return pods.length === PODS.length && pods.every((x) => x.status?.phase === 'Running' && x.status.podIP);
      });
      for (const p of PODS.filter((x) => x.server)) {
        const n = state.nodes.find((x) => x.name === p.node)!;
        const ns = `/run/netns/${podNetnsName(n.netnsPrefix, 'default', p.name)}`;
        state.procs.push(detached(`http server in ${p.name}`, 'nsenter', [`--net=${ns}`, '--', process.execPath, '-e', SERVER_JS, p.name], join(paths.dir, `server-${p.name}.log`)));
        save();
      }
    });

    const clientNs = `/run/netns/${podNetnsName(state.nodes[0]!.netnsPrefix, 'default', 'client')}`;
    const get = async () => (await execa('nsenter', [`--net=${clientNs}`, '--', 'curl', '-s', '-m', '2', `http://${vip}/`], { reject: false })).stdout.trim();
    await step(o, `the ClusterIP ${vip} answers from the client pod`, () => until('the ClusterIP to answer', 20_000, async () => (await get()).startsWith('hello')));

    // ---- show it
    o.out('');
    o.out(`$ kubectl --kubeconfig ${paths.kubeconfig} get nodes,pods,svc,endpointslices -o wide`);
    const k = await execa('kubectl', ['--kubeconfig', paths.kubeconfig, 'get', 'nodes,pods,svc,endpointslices', '-o', 'wide'], { reject: false }).catch(() => undefined);
    if (k && k.exitCode === 0) o.out(String(k.stdout));
    else o.out(await tableFallback(client));
    o.out('');
    o.out(`$ ip netns exec ${podNetnsName(state.nodes[0]!.netnsPrefix, 'default', 'client')} curl -s http://${vip}/   # from pod client on n1, 6 times`);
    for (let i = 0; i < 6; i++) o.out(`  ${await get()}`);
    o.out('');
    const conn = ['--server', `unix://${paths.socket}`, '--token-file', paths.adminToken];
    const traceArgs = [...conn, '--from', 'default/client', '--to', 'svc/default/web:80'];
    o.out(`$ ip netns exec ${o.prefix}-ctl podnet trace ${traceArgs.join(' ')} --svg ${paths.svg}`);
    const tr = await execa('nsenter', [`--net=/run/netns/${o.prefix}-ctl`, '--', process.execPath, CLI, 'trace', ...traceArgs, '--svg', paths.svg, '--color', process.stdout.isTTY ? 'always' : 'never'], { reject: false });
    o.out(String(tr.stdout));
    if (tr.stderr) o.out(String(tr.stderr));
    const tookMs = Date.now() - t0;
    o.out('');
    o.out(`podnet demo is up (${(tookMs / 1000).toFixed(1)} s). Explore:`);
    o.out(`  kubectl --kubeconfig ${paths.kubeconfig} get pods -o wide`);
    o.out(`  ip netns exec ${podNetnsName(state.nodes[0]!.netnsPrefix, 'default', 'client')} curl -s http://${vip}/`);
    o.out(`  ip netns exec ${o.prefix}-n1 nft list table ip podnet          # the proxy's rules on n1`);
    o.out(`  ip netns exec ${o.prefix}-n1 ip route                          # routes to the other nodes' pod subnets`);
    o.out(`  ip netns exec ${o.prefix}-ctl podnet trace ${conn.join(' ')} --from default/client --to ${vip}:80 --live`);
    o.out(`  the picture of the trace: ${paths.svg}; logs: ${paths.dir}/*.log`);
    o.out('  podnet demo down                                                # removes all of it');
    return { tookMs, traceExit: tr.exitCode ?? 1 };
  } finally {
    client.close();
  }
}

/** `kubectl get -o wide` without kubectl: the API's own Table rendering. */
async function tableFallback(client: KubeClient): Promise<string> {
  const out: string[] = ['(kubectl is not installed: the same tables from the API)'];
  for (const [path, kind] of [
    ['/api/v1/nodes', 'node'],
    ['/api/v1/namespaces/default/pods', 'pod'],
    ['/api/v1/namespaces/default/services', 'service'],
    ['/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', 'endpointslice'],
  ] as const) {
    const t = await client.http.requestJson<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }>({ method: 'GET', path, accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    const rows = [t.columnDefinitions.map((c) => c.name.toUpperCase()), ...t.rows.map((r) => r.cells.map((c) => (kind === 'node' && c === undefined ? '' : String(c ?? ''))))];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
    out.push(...rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('   ').trimEnd()), '');
  }
  return out.join('\n');
}

/** Removes every trace of the demo: its processes, pod sandboxes, namespaces and state dir. */
export async function demoDown(o: Pick<DemoOptions, 'prefix' | 'out'>): Promise<{ processes: number; namespaces: number }> {
  validatePrefix(o.prefix);
  const paths = demoPaths(o.prefix);
  let state: DemoState | undefined;
  try {
    state = JSON.parse(readFileSync(paths.state, 'utf8')) as DemoState;
  } catch {
    state = undefined;
  }
  let processes = 0;
  // Processes we started (PID + start time), agents and servers first, the api last.
  const procs = [...(state?.procs ?? [])].reverse();
  for (const p of procs) {
    if (procStart(p.pid) !== p.start) continue;
    try {
      process.kill(p.pid, 'SIGTERM');
      processes++;
    } catch {
      /* gone */
    }
  }
  for (const p of procs) {
    const deadline = Date.now() + 5000;
    while (procStart(p.pid) === p.start && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (procStart(p.pid) === p.start) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  // Each node's pods (pause processes, sandboxes) as the agent's own cleanup removes them.
  for (const n of state?.nodes ?? []) {
    if (!NetNS.exists(`${o.prefix}-${n.name}`)) continue;
    await execa('nsenter', [`--net=/run/netns/${o.prefix}-${n.name}`, '--', process.execPath, CLI, 'cleanup', '--node-name', n.name, '--state-dir', n.stateDir, '--netns-prefix', n.netnsPrefix], { reject: false, timeout: 30_000 });
  }
  // Then every namespace of the demo (hosts and pods), processes left inside them first.
  let namespaces = 0;
  for (const name of NetNS.list()) {
    if (!name.startsWith(`${o.prefix}-`)) continue;
    for (const pid of NetNS.pids(name)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (NetNS.delete(name)) namespaces++;
  }
  rmSync(paths.dir, { recursive: true, force: true });
  o.out(`podnet demo removed: ${processes} processes stopped, ${namespaces} namespaces deleted, ${paths.dir} removed`);
  return { processes, namespaces };
}
