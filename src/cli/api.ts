/**
 * `podnet api`: the Kubernetes-compatible API server (embedded SQLite store by default,
 * or etcd with --etcd-servers). Flags follow kube-apiserver's names where one exists;
 * `--config FILE` takes the same options from YAML or JSON (src/api/config.ts), and
 * flags given on the command line win over the file.
 */
import { Command, Option } from 'commander';
import { API_DEFAULTS, LOG_LEVELS, readApiConfigFile, resolveApiConfig } from '../api/config.js';
import type { ApiConfig, RawApiOptions } from '../api/config.js';
import { CONTROLLERS } from '../api/options.js';
import { createLogger } from '../util/log.js';

export function apiCommand(): Command {
  const d = API_DEFAULTS;
  return new Command('api')
    .description('run the podnet API server (Kubernetes wire format: Namespace, Node, Pod, Service, EndpointSlice, Lease)')
    .option('--config <file>', 'YAML or JSON file with these options (camelCase or flag names, e.g. dataDir or data-dir); flags win')
    .option('--listen <addr>', 'HOST:PORT or unix:/path to serve on', d.listen)
    .option('--also-listen <addr>', 'another HOST:PORT or unix:/path serving the same API (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--data-dir <dir>', 'embedded SQLite store directory', d.dataDir)
    .option('--etcd-servers <urls>', 'use etcd v3 instead of SQLite: comma-separated client URLs')
    .option('--etcd-prefix <prefix>', 'key prefix in etcd (several clusters can share one etcd)', d.etcdPrefix)
    .option('--service-cidr <cidrs>', 'ClusterIP range(s): one CIDR, or one per family', d.serviceCidr)
    .option('--service-node-port-range <range>', 'NodePort range', d.serviceNodePortRange)
    .option('--token-auth-file <file>', 'bearer tokens, CSV: token,user,uid,"group1,group2"')
    .option('--allow-anonymous-admin', 'treat requests without a token as cluster admin (loopback / unix socket only; for the demo)', d.allowAnonymousAdmin)
    .option('--tls-cert-file <file>', 'serve HTTPS with this certificate')
    .option('--tls-private-key-file <file>', 'private key of --tls-cert-file')
    .option('--disable-controllers <names>', `controllers to turn off, comma-separated (${CONTROLLERS.join(', ')})`, d.disableControllers)
    .option('--node-monitor-grace-period <duration>', 'how long a node may go without renewing its Lease before it is Ready=Unknown', d.nodeMonitorGracePeriod)
    .option('--node-monitor-period <duration>', 'how often node Leases are checked', d.nodeMonitorPeriod)
    .option('--event-ttl <duration>', 'how long Events are kept after they last happened', d.eventTtl)
    .option('--watch-cache-size <n>', 'events kept for watches to resume from', d.watchCacheSize)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default(process.env.PODNET_LOG_LEVEL ?? 'info'))
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const cfg = apiConfigFromCommand(o, cmd);
      const log = createLogger({ level: cfg.logLevel, component: 'api' });
      const { ApiServer } = await import('../api/apiserver.js');
      const server = new ApiServer({ ...cfg.server, log });
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      await server.run(ac.signal);
    });
}

/**
 * The parsed command line (and its --config file) as the server's options. Only options
 * typed on the command line override the file; commander's defaults do not
 * (resolveApiConfig applies the same defaults to whatever neither gave).
 */
export function apiConfigFromCommand(o: Record<string, unknown>, cmd: Command): ApiConfig {
  const { config, ...flags } = o;
  const file: RawApiOptions = typeof config === 'string' ? readApiConfigFile(config) : {};
  const explicit = Object.fromEntries(Object.entries(flags).filter(([k, v]) => v !== undefined && cmd.getOptionValueSource(k) === 'cli'));
  return resolveApiConfig({ ...file, ...explicit }, typeof config === 'string' ? { fromFile: { path: config, keys: Object.keys(file).filter((k) => !(k in explicit)) } } : {});
}
