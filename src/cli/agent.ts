/**
 * `podnet agent`, `podnet cleanup` and `podnet pod netns`: the per-host side of podnet.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { readAgentSettings } from '../agent/settings.js';
import { AGENT_PORT, BACKENDS, PROXY_MODES, readConfigFile, resolveConfig } from '../agent/config.js';
import type { RawOptions } from '../agent/config.js';
import { NETNS_RUN_DIR } from '../kernel/index.js';
import { DEFAULT_NETNS_PREFIX, podNetnsName, validateNetnsPrefix } from '../pods/names.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { createLogger } from '../util/log.js';

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the per-node agent: node registration, pod subnet, pod sandboxes, IPAM, CNI endpoint')
    .option('--config <file>', 'YAML or JSON file with these options (camelCase or flag names; flannel net-conf.json keys Network, SubnetLen, Backend.Type accepted); flags win')
    .option('--kubeconfig <file>', 'kubeconfig to reach the podnet api (or a kube-apiserver)')
    .option('--server <url>', 'API server URL (instead of --kubeconfig)')
    .option('--token <token>', 'bearer token for --server')
    .option('--token-file <file>', 'file holding the bearer token for --server')
    .option('--ca-file <file>', 'CA certificate that signed the API server certificate')
    .option('--insecure-skip-tls-verify', 'do not verify the API server certificate (tests only)')
    .option('--node-name <name>', 'this node (its Node object and Lease)')
    .option('--node-ip <ip>', 'the node address on the underlay (InternalIP)')
    .option('--node-ipv6 <ip>', 'a second, IPv6 node address for a dual-stack underlay')
    .option('--iface <name>', 'underlay interface (default: the one holding --node-ip)')
    .option('--cluster-cidr <cidr>', 'the IPv4 pod network, e.g. 10.244.0.0/16')
    .option('--cluster-cidr-v6 <cidr>', 'the IPv6 pod network (dual-stack), e.g. fd00:10:244::/56')
    .option('--node-subnet-size <n>', 'prefix length of each node\'s IPv4 pod subnet (default 24)')
    .option('--node-subnet-size-v6 <n>', 'prefix length of each node\'s IPv6 pod subnet (default 64)')
    .option('--state-dir <dir>', 'node state: IPAM journal, subnet claim, sandbox records (e.g. /var/lib/podnet/agent)')
    .addOption(new Option('--backend <name>', 'transport between nodes (default vxlan)').choices([...BACKENDS]))
    .option('--direct-routing', 'vxlan: reach nodes on the same layer-2 network by plain routes (flannel DirectRouting)')
    .addOption(new Option('--proxy-mode <mode>', 'service VIP mode (default nftables)').choices([...PROXY_MODES]))
    .option('--proxy-min-sync-period <duration>', 'least time between proxy syncs: changes coalesce (default 1s; 0s = at once)')
    .option('--proxy-sync-period <duration>', 'longest time between proxy syncs (default 30s)')
    .option('--proxy-full-sync-period <duration>', 'full proxy resync: rewrite every rule, repair drift (default 1h, as kube-proxy)')
    .option('--listen <ip:port>', `HTTP endpoint for /healthz, /readyz, /metrics (default <node-ip>:${AGENT_PORT})`)
    .option('--no-masquerade', 'do not SNAT pod traffic leaving the cluster CIDR')
    .option('--netns-prefix <prefix>', `prefix of pod namespace names under /run/netns (default ${DEFAULT_NETNS_PREFIX})`)
    .option('--cni-socket <path>', 'unix socket the podnet-cni plugin talks to (default /run/podnet/cni.sock)')
    .option('--mtu <n>', 'pod MTU (default: the underlay MTU minus the transport overhead)')
    .option('--pod-concurrency <n>', 'sandboxes set up in parallel (default 16)')
    .option('--resync-period <duration>', 'full resync: drift repair and garbage collection (default 30s)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default(process.env.PODNET_LOG_LEVEL ?? 'info'))
    .action(async (o: Record<string, unknown>) => {
      const { config, logLevel, masquerade, ...flags } = o;
      const file: RawOptions = typeof config === 'string' ? readConfigFile(config) : {};
      // commander sets masquerade=true by default for --no-masquerade: only an explicit flag overrides the file.
      const explicit: RawOptions = { ...flags, ...(masquerade === false ? { masquerade: false } : {}) };
      const cfg = resolveConfig({ ...file, ...Object.fromEntries(Object.entries(explicit).filter(([, v]) => v !== undefined)) });
      const log = createLogger({ level: String(logLevel), component: 'agent' });
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      const { Agent } = await import('../agent/agent.js');
      await new Agent(cfg, log).run(ac.signal);
    });
}

export function cleanupCommand(): Command {
  return new Command('cleanup')
    .description('remove everything podnet made on this host: sandboxes and pause processes, links, rules, state (safe to repeat; refuses while an agent runs)')
    .requiredOption('--node-name <name>', 'the node whose state dir this is')
    .requiredOption('--state-dir <dir>', 'the agent\'s --state-dir')
    .option('--netns-prefix <prefix>', 'the agent\'s --netns-prefix (default: what the state dir recorded, else pn-)')
    .action(async (o: { nodeName: string; stateDir: string; netnsPrefix?: string }) => {
      const log = createLogger({ component: 'cleanup' });
      const { cleanup } = await import('../agent/cleanup.js');
      const r = await cleanup({ nodeName: o.nodeName, stateDir: o.stateDir, ...(o.netnsPrefix ? { netnsPrefix: o.netnsPrefix } : {}), log });
      process.stdout.write(`removed ${r.sandboxes} sandboxes, ${r.namespaces} pod namespaces, ${r.links} links, the nft tables and ${o.stateDir}\n`);
    });
}

export function podCommand(): Command {
  const pod = new Command('pod').description('inspect pods on this node');
  pod
    .command('netns')
    .description('print the network namespace of pod NAMESPACE/NAME on this node: ip netns exec $(podnet pod netns default/web) sh')
    .argument('<pod>', 'NAMESPACE/NAME (or NAME in default)')
    .option('--state-dir <dir>', 'the agent\'s --state-dir (to read its --netns-prefix)')
    .option('--netns-prefix <prefix>', 'the agent\'s --netns-prefix', undefined)
    .action((ref: string, o: { stateDir?: string; netnsPrefix?: string }) => {
      const m = /^(?:([a-z0-9][-a-z0-9]*)\/)?([a-z0-9][-a-z0-9.]*)$/.exec(ref);
      if (!m) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `pod ${JSON.stringify(ref)} is not NAMESPACE/NAME`, { field: 'pod' });
      const prefix = validateNetnsPrefix(o.netnsPrefix ?? (o.stateDir ? readAgentSettings(o.stateDir)?.netnsPrefix : undefined) ?? DEFAULT_NETNS_PREFIX, '--netns-prefix');
      const name = podNetnsName(prefix, m[1] ?? 'default', m[2]!);
      if (!existsSync(join(NETNS_RUN_DIR, name))) {
        throw new PodnetError(ErrorCodes.NETNS_NOT_FOUND, `pod ${m[1] ?? 'default'}/${m[2]} has no sandbox on this node (no ${join(NETNS_RUN_DIR, name)})`, { netns: name });
      }
      process.stdout.write(`${name}\n`);
    });
  return pod;
}
