/**
 * `podnet api`: the Kubernetes-compatible API server (embedded SQLite store by default,
 * or etcd with --etcd-servers). Flags follow kube-apiserver's names where one exists.
 */
import { Command, Option } from 'commander';
import { CONTROLLERS, parseListen, parseServiceCIDRs } from '../api/options.js';
import type { ControllerName } from '../api/options.js';
import { parsePortRange } from '../api/registry/allocators.js';
import { parseDuration } from '../util/duration.js';
import { createLogger } from '../util/log.js';

export function apiCommand(): Command {
  return new Command('api')
    .description('run the podnet API server (Kubernetes wire format: Namespace, Node, Pod, Service, EndpointSlice, Lease)')
    .option('--listen <addr>', 'HOST:PORT or unix:/path to serve on', '127.0.0.1:6443')
    .option('--also-listen <addr>', 'another HOST:PORT or unix:/path serving the same API (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--data-dir <dir>', 'embedded SQLite store directory', '/var/lib/podnet/api')
    .option('--etcd-servers <urls>', 'use etcd v3 instead of SQLite: comma-separated client URLs')
    .option('--etcd-prefix <prefix>', 'key prefix in etcd (several clusters can share one etcd)', '')
    .option('--service-cidr <cidrs>', 'ClusterIP range(s): one CIDR, or one per family', '10.96.0.0/12')
    .option('--service-node-port-range <range>', 'NodePort range', '30000-32767')
    .option('--token-auth-file <file>', 'bearer tokens, CSV: token,user,uid,"group1,group2"')
    .option('--allow-anonymous-admin', 'treat requests without a token as cluster admin (loopback / unix socket only; for the demo)', false)
    .option('--tls-cert-file <file>', 'serve HTTPS with this certificate')
    .option('--tls-private-key-file <file>', 'private key of --tls-cert-file')
    .option('--disable-controllers <names>', `controllers to turn off, comma-separated (${CONTROLLERS.join(', ')})`, '')
    .option('--node-monitor-grace-period <duration>', 'how long a node may go without renewing its Lease before it is Ready=Unknown', '40s')
    .option('--node-monitor-period <duration>', 'how often node Leases are checked', '5s')
    .option('--event-ttl <duration>', 'how long Events are kept after they last happened', '1h')
    .option('--watch-cache-size <n>', 'events kept for watches to resume from', '20000')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default(process.env.PODNET_LOG_LEVEL ?? 'info'))
    .action(async (o: Record<string, string | boolean | string[] | undefined>) => {
      const log = createLogger({ level: String(o.logLevel), component: 'api' });
      const disabled = String(o.disableControllers ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const d of disabled) if (!(CONTROLLERS as readonly string[]).includes(d)) throw new Error(`--disable-controllers: unknown controller ${JSON.stringify(d)} (known: ${CONTROLLERS.join(', ')})`);
      if (!!o.tlsCertFile !== !!o.tlsPrivateKeyFile) throw new Error('--tls-cert-file and --tls-private-key-file go together');
      const cacheSize = Number(o.watchCacheSize);
      if (!Number.isInteger(cacheSize) || cacheSize < 100) throw new Error(`--watch-cache-size must be an integer >= 100, got ${JSON.stringify(o.watchCacheSize)}`);
      const etcd = o.etcdServers ? String(o.etcdServers).split(',').map((s) => s.trim()).filter(Boolean) : undefined;
      if (etcd) for (const u of etcd) if (!/^https?:\/\/[^/]+$/.test(u)) throw new Error(`--etcd-servers: ${JSON.stringify(u)} is not a URL like http://127.0.0.1:2379`);
      const { ApiServer } = await import('../api/apiserver.js');
      const server = new ApiServer({
        store: etcd ? { kind: 'etcd', endpoints: etcd, ...(o.etcdPrefix ? { prefix: String(o.etcdPrefix) } : {}) } : { kind: 'sqlite', dataDir: String(o.dataDir) },
        listen: parseListen(String(o.listen)),
        ...(Array.isArray(o.alsoListen) ? { alsoListen: o.alsoListen.map((l) => parseListen(l)) } : {}),
        ...(o.tlsCertFile ? { tls: { certFile: String(o.tlsCertFile), keyFile: String(o.tlsPrivateKeyFile) } } : {}),
        serviceCIDRs: parseServiceCIDRs(String(o.serviceCidr)),
        nodePortRange: parsePortRange(String(o.serviceNodePortRange)),
        ...(o.tokenAuthFile ? { tokenFile: String(o.tokenAuthFile) } : {}),
        anonymousAdmin: !!o.allowAnonymousAdmin,
        disabledControllers: disabled as ControllerName[],
        nodeMonitorGracePeriodMs: parseDuration(String(o.nodeMonitorGracePeriod), '--node-monitor-grace-period'),
        nodeMonitorPeriodMs: parseDuration(String(o.nodeMonitorPeriod), '--node-monitor-period'),
        eventTTLMs: parseDuration(String(o.eventTtl), '--event-ttl'),
        watchCacheSize: cacheSize,
        log,
      });
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      await server.run(ac.signal);
    });
}
