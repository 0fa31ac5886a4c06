/**
 * The files under packaging/ agree with the code: the systemd units start the commands
 * with the config files shipped next to them, the agent's unit never kills pods' pause
 * processes, and every option in the sample configs (set or commented out) is accepted
 * by the parser of its command. Runs without root and starts nothing.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { API_CONFIG_KEYS, readApiConfigFile, resolveApiConfig } from './api/config.js';
import { readConfigFile, resolveConfig } from './agent/config.js';
import { TokenAuthenticator, nodeNameOf, isAdmin } from './api/server/auth.js';
import { parseKubeconfig } from './client/kubeconfig.js';
import { agentCommand } from './cli/agent.js';
import { apiCommand } from './cli/api.js';
import { AGENT_NODE_OPTIONS } from './agent/node-options.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = (...p: string[]) => join(root, 'packaging', ...p);
const tmp = mkdtempSync(join(tmpdir(), 'podnet-packaging-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Unit = Record<string, Record<string, string[]>>;

/** systemd's unit syntax, as much as the units use: [Section], Key=Value (repeatable), # and ; comments, \ continuations. */
function parseUnit(text: string): Unit {
  const out: Unit = {};
  let section: Record<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[([A-Za-z]+)\]$/.exec(line);
    if (s) {
      section = out[s[1]!] ??= {};
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`line ${i + 1}: not a [Section] or Key=Value: ${raw}`);
    (section[kv[1]!] ??= []).push(kv[2]!.trim());
  }
  return out;
}

const unit = (name: string) => parseUnit(readFileSync(pkg('systemd', name), 'utf8'));
/** The last value of a key (a later assignment wins in systemd), undefined when unset. */
const last = (u: Unit, section: string, key: string) => u[section]?.[key]?.at(-1);
/** Space-separated list values of a key over all its assignments (After=, Wants=...). */
const words = (u: Unit, section: string, key: string) => (u[section]?.[key] ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);

/** The file a path on the target host comes from in packaging/ (/etc/podnet/x → packaging/etc/podnet/x). */
const shipped = (hostPath: string) => pkg(...hostPath.replace(/^\//, '').split('/'));

/** The sample's keys: those set, and those commented out as `#key: value`, with their values. */
function sampleKeys(text: string): { set: string[]; commented: Record<string, unknown> } {
  const doc = (parseYaml(text) ?? {}) as Record<string, unknown>;
  const commented: Record<string, unknown> = {};
  for (const m of text.matchAll(/^#([A-Za-z][A-Za-z0-9-]*):(.*)$/gm)) Object.assign(commented, parseYaml(`${m[1]}:${m[2]}`) as Record<string, unknown>);
  return { set: Object.keys(doc), commented };
}

/** A copy of the sample with every `#key: value` line uncommented. */
function uncommented(text: string, drop: string[] = []): string {
  const out = text.replace(/^#([A-Za-z][A-Za-z0-9-]*:)/gm, '$1');
  const doc = parseYaml(out) as Record<string, unknown>;
  for (const k of drop) delete doc[k];
  const p = join(tmp, `uncommented-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(p, JSON.stringify(doc));
  return p;
}

describe('packaging/systemd', () => {
  const cases = [
    { name: 'podnet-api.service', command: 'api', config: '/etc/podnet/api.yaml' },
    { name: 'podnet-agent.service', command: 'agent', config: '/etc/podnet/agent.yaml' },
  ];

  it.each(cases)('$name starts `podnet $command --config $config`, a file shipped in packaging/etc', ({ name, command, config }) => {
    const u = unit(name);
    expect(Object.keys(u).sort()).toEqual(['Install', 'Service', 'Unit']);
    const exec = u.Service?.ExecStart ?? [];
    expect(exec).toHaveLength(1);
    const argv = exec[0]!.split(/\s+/);
    expect(argv.slice(0, 2)).toEqual(['/usr/local/bin/podnet', command]);
    const i = argv.indexOf('--config');
    expect(i).toBeGreaterThan(1);
    expect(argv[i + 1]).toBe(config);
    expect(existsSync(shipped(config)), `${config} is shipped as ${shipped(config)}`).toBe(true);
  });

  it.each(cases)('$name: Type=simple (no sd_notify in podnet), restarts on failure, after the network is online', ({ name }) => {
    const u = unit(name);
    expect(last(u, 'Service', 'Type')).toBe('simple');
    expect(last(u, 'Service', 'Restart')).toBe('on-failure');
    expect(words(u, 'Unit', 'After')).toContain('network-online.target');
    expect(words(u, 'Unit', 'Wants')).toContain('network-online.target');
    expect(Number(last(u, 'Service', 'LimitNOFILE'))).toBeGreaterThanOrEqual(65536);
    expect(words(u, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
    // No RuntimeDirectory: systemd would delete /run/podnet (the agent's CNI socket) at every stop.
    expect(u.Service?.RuntimeDirectory).toBeUndefined();
  });

  it('the agent unit runs node with the options the demo, tests and benchmarks use (src/agent/node-options.ts)', () => {
    const env = unit('podnet-agent.service').Service?.Environment ?? [];
    const opts = env.filter((e) => e.startsWith('NODE_OPTIONS='));
    expect(opts).toEqual([`NODE_OPTIONS=${AGENT_NODE_OPTIONS.join(' ')}`]);
  });

  it('the agent unit leaves pause processes (every pod\'s sandbox) alone on stop, restart and upgrade', () => {
    const u = unit('podnet-agent.service');
    expect(last(u, 'Service', 'KillMode')).toBe('process');
    expect(last(u, 'Service', 'TasksMax')).toBe('infinity');
    expect(u.Service?.MemoryMax).toBeUndefined();
    expect(u.Service?.MemoryLimit).toBeUndefined();
    // The reason is written next to the setting.
    expect(readFileSync(pkg('systemd', 'podnet-agent.service'), 'utf8')).toMatch(/KillMode=control-group[\s\S]*pause/);
  });

  it('the agent unit runs as root in the host mount namespace (pause pins /run/netns/<pod> there)', () => {
    const u = unit('podnet-agent.service');
    expect(last(u, 'Service', 'User') ?? 'root').toBe('root');
    const mountNamespacing = [
      'PrivateTmp', 'PrivateDevices', 'PrivateMounts', 'ProtectSystem', 'ProtectHome', 'ProtectKernelTunables', 'ProtectKernelModules',
      'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectProc', 'ProtectClock', 'ReadWritePaths', 'ReadOnlyPaths', 'InaccessiblePaths',
      'TemporaryFileSystem', 'BindPaths', 'BindReadOnlyPaths', 'RootDirectory', 'RootImage', 'MountFlags', 'NetworkNamespacePath',
      'PrivateNetwork', 'CapabilityBoundingSet', 'DynamicUser',
    ];
    for (const k of mountNamespacing) expect(u.Service?.[k], `${k}= in podnet-agent.service`).toBeUndefined();
  });

  it('the agent does not depend on a local API (it may run elsewhere): no Requires/BindsTo/PartOf podnet-api', () => {
    const u = unit('podnet-agent.service');
    for (const k of ['Requires', 'Requisite', 'BindsTo', 'PartOf', 'Wants', 'After']) expect(words(u, 'Unit', k), k).not.toContain('podnet-api.service');
  });
});

describe('packaging/etc/podnet/api.yaml', () => {
  const path = shipped('/etc/podnet/api.yaml');
  const text = readFileSync(path, 'utf8');

  it('resolves as shipped', () => {
    const cfg = resolveApiConfig(readApiConfigFile(path), { env: {} });
    expect(cfg.server).toMatchObject({
      listen: { host: '0.0.0.0', port: 6443 },
      store: { kind: 'sqlite', dataDir: '/var/lib/podnet/api' },
      tokenFile: '/etc/podnet/tokens.csv',
      tls: { certFile: '/etc/podnet/api.crt', keyFile: '/etc/podnet/api.key' },
      anonymousAdmin: false,
    });
  });

  it('documents every option of podnet api, set or commented out', () => {
    const { set, commented } = sampleKeys(text);
    expect(new Set([...set, ...Object.keys(commented)])).toEqual(new Set(API_CONFIG_KEYS));
    expect(set.filter((k) => k in commented), 'a key both set and commented out').toEqual([]);
    const flags = apiCommand().options.map((o) => o.attributeName()).filter((k) => k !== 'config');
    expect(new Set(flags)).toEqual(new Set(API_CONFIG_KEYS));
  });

  it('resolves with every commented-out option switched on too', () => {
    const cfg = resolveApiConfig(readApiConfigFile(uncommented(text)), { env: {} });
    expect(cfg.server.store.kind).toBe('etcd');
    expect(cfg.logLevel).toBe('info');
  });

  it('each commented-out value is the default (uncommenting one alone changes nothing but etcd)', () => {
    const base = resolveApiConfig(readApiConfigFile(path), { env: {} });
    const { commented } = sampleKeys(text);
    for (const [k, v] of Object.entries(commented)) {
      if (k === 'etcdServers' || k === 'etcdPrefix' || k === 'alsoListen') continue; // examples of optional values
      const one = resolveApiConfig({ ...readApiConfigFile(path), [k]: v }, { env: {} });
      expect(one, k).toEqual(base);
    }
  });
});

describe('packaging/etc/podnet/agent.yaml', () => {
  const path = shipped('/etc/podnet/agent.yaml');
  const text = readFileSync(path, 'utf8');
  const agentKeys = agentCommand()
    .options.map((o) => o.attributeName())
    .filter((k) => k !== 'config' && k !== 'logLevel');

  it('resolves as shipped', () => {
    const cfg = resolveConfig(readConfigFile(path));
    expect(cfg).toMatchObject({ nodeName: 'n1', nodeIP: '198.18.0.1', stateDir: '/var/lib/podnet/agent', backend: 'vxlan', proxyMode: 'nftables', connection: { kubeconfig: '/etc/podnet/kubeconfig' } });
    expect(cfg.networks.map((n) => `${n.cidr}:${n.subnetSize}`)).toEqual(['10.244.0.0/16:24']);
  });

  it('documents every option of podnet agent (but the log level, which is no file key), set or commented out', () => {
    const { set, commented } = sampleKeys(text);
    expect(new Set([...set, ...Object.keys(commented)])).toEqual(new Set(agentKeys));
    expect(set.filter((k) => k in commented), 'a key both set and commented out').toEqual([]);
  });

  it('resolves with every commented-out option switched on too (server instead of kubeconfig)', () => {
    const cfg = resolveConfig(readConfigFile(uncommented(text, ['kubeconfig'])));
    expect(cfg.connection).toMatchObject({ server: 'https://198.18.0.10:6443', tokenFile: '/etc/podnet/node-token', caFile: '/etc/podnet/ca.crt' });
    expect(cfg.networks.map(String)).toHaveLength(2);
  });

  it('each commented-out value is the default or an optional example', () => {
    const base = resolveConfig(readConfigFile(path));
    const { commented } = sampleKeys(text);
    const examples = new Set(['nodeIpv6', 'iface', 'server', 'token', 'tokenFile', 'caFile', 'clusterCidrV6', 'mtu', 'listen']);
    for (const [k, v] of Object.entries(commented)) {
      if (examples.has(k)) continue;
      expect(resolveConfig({ ...readConfigFile(path), [k]: v }), k).toEqual(base);
    }
    // The listen example is the default for the sample's node address.
    expect(resolveConfig({ ...readConfigFile(path), listen: commented.listen }).listen).toEqual(base.listen);
  });

  it('uses the CNI socket of the example CNI network config', () => {
    const conflist = JSON.parse(readFileSync(join(root, 'examples', 'cni', 'podnet.conflist'), 'utf8')) as { plugins: { socket?: string }[] };
    expect(resolveConfig(readConfigFile(path)).cniSocket).toBe(conflist.plugins.find((p) => p.socket)?.socket);
  });
});

describe('packaging/etc/podnet: tokens and the node kubeconfig', () => {
  const tokens = TokenAuthenticator.parse(readFileSync(shipped('/etc/podnet/tokens.csv.example'), 'utf8'), 'tokens.csv.example');
  const agentNode = resolveConfig(readConfigFile(shipped('/etc/podnet/agent.yaml'))).nodeName;

  it('tokens.csv.example parses as the API reads it: an admin and one identity per node', () => {
    const lines = readFileSync(shipped('/etc/podnet/tokens.csv.example'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    const users = lines.map((l) => tokens.authenticate(l.split(',')[0]!)!);
    expect(users.every(Boolean)).toBe(true);
    expect(users.some(isAdmin)).toBe(true);
    expect(users.map(nodeNameOf).filter(Boolean)).toContain(agentNode);
  });

  it('kubeconfig.example is a node kubeconfig for the sample agent, with the token from tokens.csv.example', async () => {
    const text = readFileSync(shipped('/etc/podnet/kubeconfig.example'), 'utf8');
    const token = readFileSync(shipped('/etc/podnet/tokens.csv.example'), 'utf8')
      .split('\n')
      .find((l) => l.includes(`,system:node:${agentNode},`))!
      .split(',')[0]!;
    // Its files, under a scratch directory instead of /etc/podnet.
    writeFileSync(join(tmp, 'node-token'), `${token}\n`);
    writeFileSync(join(tmp, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n');
    const cfg = await parseKubeconfig(text.replaceAll('/etc/podnet/', `${tmp}/`), { path: join(tmp, 'kubeconfig') });
    expect(cfg.server).toBe('https://198.18.0.10:6443');
    expect(cfg.ca?.toString()).toMatch(/BEGIN CERTIFICATE/);
    expect(cfg.token).toBe(token);
    expect(nodeNameOf(tokens.authenticate(cfg.token!)!)).toBe(agentNode);
  });

  it('modules-load.d loads br_netfilter', () => {
    const mods = readFileSync(pkg('etc', 'modules-load.d', 'podnet.conf'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    expect(mods).toEqual(['br_netfilter']);
  });
});

describe('docs/operations.md', () => {
  const page = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');

  it('links only to files that exist', () => {
    const links = [...page.matchAll(/\]\((\.\.\/[^)#\s]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(5);
    for (const l of links) expect(existsSync(join(root, 'docs', l)), l).toBe(true);
  });

  it('names the settings the units actually have', () => {
    const agent = unit('podnet-agent.service');
    for (const k of ['KillMode', 'TasksMax', 'OOMScoreAdjust', 'TimeoutStopSec', 'RestartForceExitStatus']) expect(page, k).toContain(`${k}=${last(agent, 'Service', k)}`);
    for (const e of agent.Service?.Environment ?? []) expect(page).toContain(`Environment=${e}`);
  });
});
