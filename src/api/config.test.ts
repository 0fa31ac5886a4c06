import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiCommand, apiConfigFromCommand } from '../cli/api.js';
import { failure } from '../testing/errors.js';
import { tempFiles } from '../testing/files.js';
import { API_CONFIG_KEYS, API_DEFAULTS, camelKey, flagOf, readApiConfigFile, resolveApiConfig } from './config.js';
import type { ApiConfig, RawApiOptions } from './config.js';

const { dir: tmp, file } = tempFiles('podnet-api-config-');
const INVALID = 'PODNET_INVALID_ARGUMENT';
const NOENV = { env: {} };

/** Runs `podnet api ARGS` up to the point where the server would start, returning its options. */
async function parseCommand(args: string[]): Promise<ApiConfig> {
  let out: ApiConfig | undefined;
  const cmd = apiCommand().exitOverride();
  cmd.action((o: Record<string, unknown>, c) => {
    out = apiConfigFromCommand(o, c);
  });
  await cmd.parseAsync(args, { from: 'user' });
  return out!;
}

describe('the defaults', () => {
  it('are those of the flags: SQLite in /var/lib/podnet/api on 127.0.0.1:6443', () => {
    const cfg = resolveApiConfig({}, NOENV);
    expect(cfg.logLevel).toBe('info');
    expect(cfg.server).toMatchObject({
      store: { kind: 'sqlite', dataDir: '/var/lib/podnet/api' },
      listen: { host: '127.0.0.1', port: 6443 },
      nodePortRange: { min: 30000, max: 32767 },
      anonymousAdmin: false,
      disabledControllers: [],
      nodeMonitorGracePeriodMs: 40_000,
      nodeMonitorPeriodMs: 5000,
      eventTTLMs: 3_600_000,
      watchCacheSize: 20000,
    });
    expect(cfg.server.serviceCIDRs.map(String)).toEqual(['10.96.0.0/12']);
    expect(cfg.server.alsoListen).toBeUndefined();
    expect(cfg.server.tls).toBeUndefined();
    expect(cfg.server.tokenFile).toBeUndefined();
  });

  it('take the log level from $PODNET_LOG_LEVEL when neither flag nor file sets it', () => {
    expect(resolveApiConfig({}, { env: { PODNET_LOG_LEVEL: 'debug' } }).logLevel).toBe('debug');
    expect(resolveApiConfig({ logLevel: 'warn' }, { env: { PODNET_LOG_LEVEL: 'debug' } }).logLevel).toBe('warn');
    const e = failure(() => resolveApiConfig({}, { env: { PODNET_LOG_LEVEL: 'loud' } }));
    expect(e.message).toMatch(/^--log-level "loud" \(from \$PODNET_LOG_LEVEL\)/);
  });

  it('match the commander defaults shown by --help', () => {
    const byKey = new Map(apiCommand().options.map((o) => [o.attributeName(), o.defaultValue as unknown]));
    for (const [k, v] of Object.entries(API_DEFAULTS)) expect(byKey.get(k), k).toBe(v);
  });
});

describe('config files', () => {
  it('reads YAML with camelCase keys', () => {
    const p = file(`
# podnet api
listen: 0.0.0.0:6443
alsoListen:
  - unix:/run/podnet/api.sock
  - "[::1]:6444"
dataDir: /srv/podnet
serviceCidr: [10.96.0.0/16, "fd00:10:96::/112"]
serviceNodePortRange: 31000-31999
tokenAuthFile: /etc/podnet/tokens.csv
tlsCertFile: /etc/podnet/api.crt
tlsPrivateKeyFile: /etc/podnet/api.key
disableControllers: [podgc, eventttl]
nodeMonitorGracePeriod: 1m
nodeMonitorPeriod: 2s
eventTtl: 30m
watchCacheSize: 5000
logLevel: warn
etcdPrefix:            # empty: not set
`);
    const raw = readApiConfigFile(p);
    expect(Object.keys(raw)).not.toContain('etcdPrefix');
    const cfg = resolveApiConfig(raw, NOENV);
    expect(cfg.logLevel).toBe('warn');
    expect(cfg.server).toMatchObject({
      store: { kind: 'sqlite', dataDir: '/srv/podnet' },
      listen: { host: '0.0.0.0', port: 6443 },
      alsoListen: [{ socketPath: '/run/podnet/api.sock' }, { host: '::1', port: 6444 }],
      tls: { certFile: '/etc/podnet/api.crt', keyFile: '/etc/podnet/api.key' },
      nodePortRange: { min: 31000, max: 31999 },
      tokenFile: '/etc/podnet/tokens.csv',
      disabledControllers: ['podgc', 'eventttl'],
      nodeMonitorGracePeriodMs: 60_000,
      nodeMonitorPeriodMs: 2000,
      eventTTLMs: 1_800_000,
      watchCacheSize: 5000,
    });
    expect(cfg.server.serviceCIDRs.map(String)).toEqual(['10.96.0.0/16', 'fd00:10:96::/112']);
  });

  it('reads JSON with flag-spelled keys (with or without the dashes)', () => {
    const p = file(
      JSON.stringify({
        '--listen': 'unix:/run/podnet/api.sock',
        'etcd-servers': 'http://10.0.0.1:2379, http://10.0.0.2:2379',
        'etcd-prefix': '/cluster-a',
        'allow-anonymous-admin': true,
        'disable-controllers': 'repair',
        'watch-cache-size': '300',
        'log-level': 'error',
      }),
      'json',
    );
    const raw = readApiConfigFile(p);
    expect(Object.keys(raw).sort()).toEqual(['allowAnonymousAdmin', 'disableControllers', 'etcdPrefix', 'etcdServers', 'listen', 'logLevel', 'watchCacheSize']);
    const cfg = resolveApiConfig(raw, NOENV);
    expect(cfg.server).toMatchObject({
      store: { kind: 'etcd', endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: '/cluster-a' },
      listen: { socketPath: '/run/podnet/api.sock' },
      anonymousAdmin: true,
      disabledControllers: ['repair'],
      watchCacheSize: 300,
    });
    expect(cfg.logLevel).toBe('error');
  });

  it('takes etcd servers as a list too', () => {
    const cfg = resolveApiConfig(readApiConfigFile(file('etcdServers:\n  - https://e1:2379\n  - https://e2:2379\n')), NOENV);
    expect(cfg.server.store).toEqual({ kind: 'etcd', endpoints: ['https://e1:2379', 'https://e2:2379'] });
  });

  it('treats an empty file as no options', () => {
    expect(readApiConfigFile(file(''))).toEqual({});
    expect(readApiConfigFile(file('# nothing but comments\n'))).toEqual({});
  });

  it('refuses an unknown key, naming it, the file, and the nearest option', () => {
    const p = file('listen: 127.0.0.1:6443\ndatadir: /srv\n');
    const e = failure(() => readApiConfigFile(p));
    expect(e.code).toBe(INVALID);
    expect(e.message).toMatch(/^config key "datadir" is not an api option \(did you mean "dataDir"\?\); known: listen, alsoListen, dataDir/);
    expect(e.context).toMatchObject({ field: 'datadir', config: p });
    const far = failure(() => readApiConfigFile(file('clusterCidr: 10.244.0.0/16\n')));
    expect(far.message).toMatch(/^config key "clusterCidr" is not an api option; known:/);
  });

  it('refuses a key given twice in two spellings', () => {
    const e = failure(() => readApiConfigFile(file('data-dir: /a\ndataDir: /b\n')));
    expect(e.message).toBe('config key "dataDir" sets the same option as "data-dir"');
  });

  // [what, file text, key named, reason]
  const wrongTypes: [string, string, string, RegExp][] = [
    ['a number for a string', 'listen: 6443', 'listen', /must be a string like 127\.0\.0\.1:6443.*got 6443/],
    ['a mapping for a string', 'dataDir: {path: /srv}', 'dataDir', /must be a directory path, got \{"path":"\/srv"\}/],
    ['a list of numbers for a list of strings', 'alsoListen: [1, 2]', 'alsoListen', /must be a HOST:PORT or unix:\/path string or a list of them/],
    ['a string for a boolean', 'allowAnonymousAdmin: yes please', 'allowAnonymousAdmin', /must be true or false, got "yes please"/],
    ['a number for a boolean', 'allow-anonymous-admin: 1', 'allow-anonymous-admin', /must be true or false, got 1/],
    ['a boolean for an integer', 'watchCacheSize: true', 'watchCacheSize', /must be an integer, got true/],
    ['a number for a duration', 'eventTtl: 3600', 'eventTtl', /must be a duration string like 40s/],
    ['an unknown log level', 'logLevel: loud', 'logLevel', /must be one of trace, debug, info, warn, error, silent, got "loud"/],
    ['a list for a port range', 'serviceNodePortRange: [30000, 32767]', 'serviceNodePortRange', /must be a range string like 30000-32767/],
  ];
  it.each(wrongTypes)('refuses %s, naming the key and the file', (_what, text, key, reason) => {
    const p = file(`${text}\n`);
    const e = failure(() => readApiConfigFile(p));
    expect(e.code).toBe(INVALID);
    expect(e.message.startsWith(`config key ${JSON.stringify(key)} `)).toBe(true);
    expect(e.message).toMatch(reason);
    expect(e.context).toMatchObject({ field: key, config: p });
  });

  it('refuses files that are not a mapping of options', () => {
    expect(failure(() => readApiConfigFile(file('- listen\n'))).message).toMatch(/must hold a mapping of options/);
    expect(failure(() => readApiConfigFile(file('listen: [unclosed\n'))).message).toMatch(/is not YAML or JSON/);
    expect(failure(() => readApiConfigFile(join(tmp, 'missing.yaml'))).message).toMatch(/^--config ".*missing\.yaml" cannot be read: ENOENT/);
  });
});

describe('resolveApiConfig refuses bad values, naming the flag and the reason', () => {
  // [what, options, flag, reason]
  const cases: [string, RawApiOptions, string, RegExp][] = [
    ['listen without a port', { listen: '127.0.0.1' }, '--listen', /"127\.0\.0\.1" is not HOST:PORT/],
    ['a relative unix socket', { listen: 'unix:api.sock' }, '--listen', /must be absolute/],
    ['also-listen garbage', { alsoListen: ['nope'] }, '--also-listen', /"nope" is not HOST:PORT/],
    ['anonymous admin on a public address', { listen: '0.0.0.0:6443', allowAnonymousAdmin: true }, '--allow-anonymous-admin', /only allowed when every --listen/],
    ['anonymous admin with one public extra address', { alsoListen: ['0.0.0.0:6444'], allowAnonymousAdmin: 'true' }, '--allow-anonymous-admin', /loopback/],
    ['an unknown controller', { disableControllers: 'endpointslice,scheduler' }, '--disable-controllers', /unknown controller "scheduler"/],
    ['a certificate without its key', { tlsCertFile: '/etc/podnet/api.crt' }, '--tls-private-key-file', /is required with --tls-cert-file/],
    ['a key without its certificate', { tlsPrivateKeyFile: '/etc/podnet/api.key' }, '--tls-cert-file', /is required with --tls-private-key-file/],
    ['a tiny watch cache', { watchCacheSize: 99 }, '--watch-cache-size', /must be an integer >= 100, got 99/],
    ['a fractional watch cache', { watchCacheSize: 150.5 }, '--watch-cache-size', /must be an integer >= 100/],
    ['a watch cache that is not a number', { watchCacheSize: 'lots' }, '--watch-cache-size', /got "lots"/],
    ['an etcd server that is not a URL', { etcdServers: '10.0.0.1:2379' }, '--etcd-servers', /"10\.0\.0\.1:2379" is not a URL/],
    ['an empty data dir without etcd', { dataDir: '' }, '--data-dir', /is required \(or --etcd-servers\)/],
    ['a service CIDR that is not one', { serviceCidr: '10.96.0.0' }, '--service-cidr', /./],
    ['two service CIDRs of one family', { serviceCidr: ['10.96.0.0/16', '10.97.0.0/16'] }, '--service-cidr', /two of different families/],
    ['a NodePort range backwards', { serviceNodePortRange: '32767-30000' }, '--service-node-port-range', /is not a range like 30000-32767/],
    ['a grace period that is not a duration', { nodeMonitorGracePeriod: 'forever' }, '--node-monitor-grace-period', /"forever" is not a duration/],
    ['a duration without a unit', { eventTtl: '60' }, '--event-ttl', /"60" is not a duration/],
    ['a zero monitor period', { nodeMonitorPeriod: '0s' }, '--node-monitor-period', /must be longer than 0/],
    ['an unknown key', { clusterCidr: '10.244.0.0/16' }, 'clusterCidr', /is not an api option/],
  ];
  it.each(cases)('%s', (_what, raw, field, reason) => {
    const e = failure(() => resolveApiConfig(raw, NOENV));
    expect(e.code).toBe(INVALID);
    expect(e.context.field).toBe(field);
    expect(e.message).toMatch(reason);
  });

  it('says which config file a bad value came from', () => {
    const p = file('watchCacheSize: 5\n');
    const e = failure(() => resolveApiConfig(readApiConfigFile(p), { env: {}, fromFile: { path: p, keys: ['watchCacheSize'] } }));
    expect(e.message).toBe('--watch-cache-size must be an integer >= 100, got 5');
    expect(e.context).toEqual({ field: '--watch-cache-size', config: p });
  });
});

describe('podnet api --config: flags win over the file, the file over the defaults', () => {
  const p = file(`
listen: 0.0.0.0:6443
alsoListen: [unix:/run/podnet/api.sock]
data-dir: /srv/from-file
watchCacheSize: 500
eventTtl: 2h
logLevel: debug
`);

  it('uses the file where no flag is typed', async () => {
    const cfg = await parseCommand(['--config', p]);
    expect(cfg.server).toMatchObject({
      listen: { host: '0.0.0.0', port: 6443 },
      alsoListen: [{ socketPath: '/run/podnet/api.sock' }],
      store: { kind: 'sqlite', dataDir: '/srv/from-file' },
      watchCacheSize: 500,
      eventTTLMs: 7_200_000,
      // Not in the file: the defaults.
      nodeMonitorGracePeriodMs: 40_000,
      nodePortRange: { min: 30000, max: 32767 },
    });
    expect(cfg.logLevel).toBe('debug');
  });

  it('lets typed flags override it (a list flag replaces the whole list)', async () => {
    const cfg = await parseCommand(['--config', p, '--listen', '127.0.0.1:7443', '--also-listen', '[::1]:7444', '--watch-cache-size', '200', '--log-level', 'warn', '--data-dir', '/srv/from-flag']);
    expect(cfg.server).toMatchObject({
      listen: { host: '127.0.0.1', port: 7443 },
      alsoListen: [{ host: '::1', port: 7444 }],
      store: { kind: 'sqlite', dataDir: '/srv/from-flag' },
      watchCacheSize: 200,
      eventTTLMs: 7_200_000,
    });
    expect(cfg.logLevel).toBe('warn');
  });

  it('lets a flag fix a bad value in the file, and blames the file otherwise', async () => {
    const bad = file('watchCacheSize: 5\n');
    expect((await parseCommand(['--config', bad, '--watch-cache-size', '1000'])).server.watchCacheSize).toBe(1000);
    const e = await parseCommand(['--config', bad]).then(
      () => undefined,
      (err: unknown) => err as { message: string; context: Record<string, unknown> },
    );
    expect(e?.message).toMatch(/^--watch-cache-size must be an integer >= 100/);
    expect(e?.context.config).toBe(bad);
  });

  it('behaves as before without --config', async () => {
    const cfg = await parseCommand(['--listen', '127.0.0.1:9443', '--allow-anonymous-admin', '--disable-controllers', 'podgc']);
    expect(cfg.server).toMatchObject({ listen: { host: '127.0.0.1', port: 9443 }, anonymousAdmin: true, disabledControllers: ['podgc'], store: { kind: 'sqlite', dataDir: '/var/lib/podnet/api' } });
  });
});

describe('the keys', () => {
  it('are exactly the flags of podnet api (but --config)', () => {
    const flags = apiCommand()
      .options.map((o) => o.attributeName())
      .filter((k) => k !== 'config');
    expect([...API_CONFIG_KEYS].sort()).toEqual(flags.sort());
    for (const o of apiCommand().options) if (o.long !== '--config') expect(flagOf(o.attributeName())).toBe(o.long);
  });

  it('convert between camelCase and flag spelling', () => {
    expect(camelKey('--node-monitor-grace-period')).toBe('nodeMonitorGracePeriod');
    expect(camelKey('tls-private-key-file')).toBe('tlsPrivateKeyFile');
    expect(flagOf('serviceNodePortRange')).toBe('--service-node-port-range');
  });
});
