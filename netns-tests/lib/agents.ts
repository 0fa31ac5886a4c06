/**
 * Runs `podnet agent` as a real process inside a node namespace of a virtual cluster
 * (nsenter --net), against a `podnet api` on the underlay, with a node token. State dir
 * and CNI socket in a temp dir per node; pod namespaces named `pnt-<pid>-<node>-...` so
 * the harness sweeps them after a crash. Stopped by PID (kill -9 for crash tests).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { NetNS } from '../../src/kernel/index.js';
import type { ApiProcess, ApiProcessOptions } from './api.js';
import { nodeToken, startApi, stopSignal } from './api.js';
import { buildCluster } from './cluster.js';
import type { VNode, VirtualCluster } from './cluster.js';
import { runPrefix, testTempDir } from './harness.js';
import type { Scope } from './harness.js';
import { AGENT_NODE_OPTIONS } from '../../src/agent/node-options.js';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface AgentProcess {
  node: VNode;
  stateDir: string;
  netnsPrefix: string;
  cniSocket: string;
  proc: ChildProcess;
  /** Ends the agent (SIGTERM, or SIGKILL for a crash) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again with the same options (after kill), or another --backend. */
  restart(o?: { backend?: string }): Promise<void>;
  logs(): string;
  /** The pod namespace name of NAMESPACE/NAME on this node (what `podnet pod netns` prints). */
  netnsOf(namespace: string, name: string): Promise<string>;
}

export interface AgentOptions {
  clusterCidr?: string;
  clusterCidrV6?: string;
  backend?: string;
  extraArgs?: string[];
  /** Options for node itself (e.g. --cpu-prof when profiling). */
  nodeArgs?: string[];
}

export async function startAgent(scope: Scope, node: VNode, api: ApiProcess, opts: AgentOptions = {}): Promise<AgentProcess> {
  const dir = testTempDir(`agent-${node.name}`);
  const stateDir = join(dir, 'state');
  const netnsPrefix = `${runPrefix()}-${node.name}-`;
  const cniSocket = join(dir, 'cni.sock');
  const args = [
    ...AGENT_NODE_OPTIONS,
    ...(opts.nodeArgs ?? []),
    CLI, 'agent',
    '--server', api.url,
    '--token', nodeToken(node.name),
    ...(api.certs ? ['--ca-file', api.certs.caFile] : []),
    '--node-name', node.name,
    '--node-ip', node.ip,
    ...(node.ipv6 ? ['--node-ipv6', node.ipv6] : []),
    '--cluster-cidr', opts.clusterCidr ?? '10.244.0.0/16',
    ...(opts.clusterCidrV6 ? ['--cluster-cidr-v6', opts.clusterCidrV6] : []),
    '--state-dir', stateDir,
    '--netns-prefix', netnsPrefix,
    '--cni-socket', cniSocket,
    '--backend', opts.backend ?? 'host-gw',
    '--resync-period', '5s',
    ...(opts.extraArgs ?? []),
  ];
  let out = '';
  const agent: AgentProcess = {
    node,
    stateDir,
    netnsPrefix,
    cniSocket,
    proc: undefined as unknown as ChildProcess,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      const p = agent.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill(signal);
      await exited;
    },
    async restart(o: { backend?: string } = {}) {
      if (o.backend) args[args.indexOf('--backend') + 1] = o.backend;
      const p = spawn('nsenter', ['--net=' + node.netns.path, '--', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PODNET_LOG_LEVEL: process.env.PODNET_LOG_LEVEL ?? 'info' } });
      agent.proc = p;
      scope.own(p.pid!);
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    },
    logs: () => out,
    async netnsOf(namespace: string, name: string) {
      const r = await execa('nsenter', ['--net=' + node.netns.path, '--', process.execPath, CLI, 'pod', 'netns', `${namespace}/${name}`, '--state-dir', stateDir]);
      return String(r.stdout).trim();
    },
  };
  await agent.restart();
  scope.defer(async () => {
    await agent.kill(stopSignal(opts.nodeArgs));
    // What the agent made on its node: sandboxes (pause processes), links, rules, state.
    await execa('nsenter', ['--net=' + node.netns.path, '--', process.execPath, CLI, 'cleanup', '--node-name', node.name, '--state-dir', stateDir, '--netns-prefix', netnsPrefix], { reject: false, timeout: 20_000 });
    for (const n of NetNS.list()) if (n.startsWith(netnsPrefix)) removeNetnsHard(n);
    rmSync(dir, { recursive: true, force: true });
  });
  return agent;
}

function removeNetnsHard(name: string): void {
  for (const pid of NetNS.pids(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  NetNS.delete(name);
}

/** The address the test's own namespace takes on the underlay, where the api listens. */
export const TEST_UNDERLAY_IP = '198.18.0.100';

/**
 * A one-node virtual cluster (node n1) whose `podnet api` listens in the test's own
 * namespace on the underlay, and an agent in the node namespace. Everything is owned by
 * `scope`.
 */
export async function oneNodeCluster(scope: Scope, opts: { api?: Omit<ApiProcessOptions, 'host' | 'nodes'>; agent?: AgentOptions } = {}): Promise<{ cluster: VirtualCluster; node: VNode; api: ApiProcess; agent: AgentProcess }> {
  const cluster = await buildCluster(scope, { nodes: 1 });
  await cluster.attachSelf(TEST_UNDERLAY_IP);
  const api = await startApi({ ...(opts.api ?? {}), host: TEST_UNDERLAY_IP, nodes: ['n1'] });
  scope.defer(() => api.cleanup());
  const node = cluster.nodes[0]!;
  const agent = await startAgent(scope, node, api, opts.agent ?? {});
  return { cluster, node, api, agent };
}
