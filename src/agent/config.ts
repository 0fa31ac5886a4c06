/**
 * The agent's configuration: command-line flags, optionally on top of a YAML/JSON config
 * file with the same keys (camelCase or the flag spelling) — and flannel's net-conf.json
 * keys (`Network`, `IPv6Network`, `SubnetLen`, `IPv6SubnetLen`, `EnableIPv4`, `EnableIPv6`,
 * `Backend.Type`), so an existing flannel config can be pointed at; as in flannel, a
 * family's network is used only when that family is enabled. Flags win over the
 * file. Everything is validated here; an error names the field and the reason, and
 * nothing has been done yet.
 */
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { readConfigMapping } from '../util/config-file.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { Cidr, parseIP } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { validateIfName } from '../util/validate.js';
import { parseDuration } from '../util/duration.js';
import { DEFAULT_NETNS_PREFIX, validateNetnsPrefix } from '../pods/names.js';

export const BACKENDS = ['vxlan', 'host-gw', 'udp'] as const;
export type Backend = (typeof BACKENDS)[number];
/** Service proxy modes; `none` leaves service VIPs to something else (another kube-proxy). */
export const PROXY_MODES = ['nftables', 'iptables', 'ipvs', 'none'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

export const AGENT_PORT = 10260;

export interface ClusterNetwork {
  cidr: Cidr;
  /** Prefix length of each node's subnet. */
  subnetSize: number;
}

export interface AgentConfig {
  nodeName: string;
  /** The node's address on the underlay (its InternalIP); the first family of the node. */
  nodeIP: string;
  /** A second node address of the other family (dual-stack underlay), if any. */
  nodeIPv6: string | undefined;
  /** Underlay interface; default: the one holding nodeIP. */
  iface: string | undefined;
  /** One per family, IPv4 first when both. */
  networks: ClusterNetwork[];
  stateDir: string;
  backend: Backend;
  proxyMode: ProxyMode;
  /** The proxy's minimum time between syncs (kube-proxy's --iptables-min-sync-period / --nftables-min-sync-period). */
  proxyMinSyncMs: number;
  /** The proxy's periodic sync (kube-proxy's --*-sync-period): writes only what changed. */
  proxySyncMs: number;
  /** The proxy's full resync (everything rewritten, drift repaired; kube-proxy: 1 h). */
  proxyFullSyncMs: number;
  /** Where /healthz, /readyz and /metrics are served (default nodeIP:10260). */
  listen: { host: string; port: number };
  masquerade: boolean;
  netnsPrefix: string;
  /** The CNI plugin's socket (the agent serves CNI requests there). */
  cniSocket: string;
  /** vxlan: reach peers on the same layer-2 network by plain routes (flannel's DirectRouting). */
  directRouting: boolean;
  /** Pod MTU override; default from the transport and the underlay MTU. */
  mtu: number | undefined;
  /** Sandboxes created or removed at once. */
  podConcurrency: number;
  /** Full resync period (drift repair, garbage collection). */
  resyncMs: number;
  /** How to reach the API. */
  connection: { kubeconfig: string } | { server: string; token?: string; tokenFile?: string; caFile?: string; insecure?: boolean };
}

/** Raw option values, as flags or file keys give them (all strings / booleans / numbers). */
export type RawOptions = Record<string, unknown>;

/** Keys of the config file and flags (camelCase). */
const KEYS = [
  'kubeconfig', 'server', 'token', 'tokenFile', 'caFile', 'insecureSkipTlsVerify',
  'nodeName', 'nodeIp', 'nodeIpv6', 'iface', 'clusterCidr', 'clusterCidrV6', 'nodeSubnetSize', 'nodeSubnetSizeV6',
  'stateDir', 'backend', 'directRouting', 'proxyMode', 'listen', 'masquerade', 'netnsPrefix', 'cniSocket', 'mtu', 'podConcurrency', 'resyncPeriod',
  'proxyMinSyncPeriod', 'proxySyncPeriod', 'proxyFullSyncPeriod',
] as const;

const invalid = (field: string, reason: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} ${reason}`, { field });

/** Reads a config file (YAML or JSON; flannel's net-conf.json accepted) into raw options. */
export function readConfigFile(path: string): RawOptions {
  const doc = readConfigMapping(path);
  const out: RawOptions = {};
  // flannel net-conf.json: a family's network counts only when the family is enabled
  // (EnableIPv4 defaults to true, EnableIPv6 to false), as flannel reads it.
  const flannel: { v4: RawOptions; v6: RawOptions; enable: { 4: boolean; 6: boolean } } = { v4: {}, v6: {}, enable: { 4: true, 6: false } };
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'Network') flannel.v4.clusterCidr = v;
    else if (k === 'IPv6Network') flannel.v6.clusterCidrV6 = v;
    else if (k === 'SubnetLen') flannel.v4.nodeSubnetSize = v;
    else if (k === 'IPv6SubnetLen') flannel.v6.nodeSubnetSizeV6 = v;
    else if (k === 'EnableIPv4' || k === 'EnableIPv6') {
      if (typeof v !== 'boolean') throw invalid(`config key ${JSON.stringify(k)}`, `must be true or false, got ${JSON.stringify(v)}`);
      flannel.enable[k === 'EnableIPv4' ? 4 : 6] = v;
    } else if (k === 'SubnetMin' || k === 'SubnetMax') continue;
    else if (k === 'Backend') {
      const t = (v as { Type?: unknown } | null)?.Type;
      if (t !== undefined) out.backend = typeof t === 'string' ? t.toLowerCase() : t;
      const dr = (v as { DirectRouting?: unknown } | null)?.DirectRouting;
      if (dr !== undefined) out.directRouting = dr;
    } else {
      const key = camel(k);
      if (!(KEYS as readonly string[]).includes(key)) throw invalid(`config key ${JSON.stringify(k)}`, `is not an agent option (known: ${KEYS.join(', ')}, and flannel's Network, IPv6Network, SubnetLen, IPv6SubnetLen, Backend.Type)`);
      out[key] = v;
    }
  }
  return { ...out, ...(flannel.enable[4] ? flannel.v4 : {}), ...(flannel.enable[6] ? flannel.v6 : {}) };
}

function camel(k: string): string {
  return k.replace(/^--/, '').replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function str(o: RawOptions, key: string, flag: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw invalid(flag, `must be a string, got ${JSON.stringify(v)}`);
  return String(v);
}

function int(o: RawOptions, key: string, flag: string, min: number, max: number): number | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(flag, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function bool(o: RawOptions, key: string, flag: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalid(flag, `must be true or false, got ${JSON.stringify(v)}`);
}

function network(cidrText: string | undefined, flag: string, sizeFlag: string, size: number | undefined, family: Family): ClusterNetwork | undefined {
  if (!cidrText) return undefined;
  let cidr: Cidr;
  try {
    cidr = Cidr.parse(cidrText, flag);
  } catch {
    let loose: Cidr | undefined;
    try {
      loose = Cidr.parse(cidrText, flag, { strict: false });
    } catch {
      // not a prefix at all
    }
    if (loose) throw invalid(flag, `${JSON.stringify(cidrText)} has host bits set (did you mean ${loose}?)`);
    throw invalid(flag, `${JSON.stringify(cidrText)} is not a CIDR with zero host bits, like ${family === 4 ? '10.244.0.0/16' : 'fd00:10:244::/56'}`);
  }
  if (cidr.family !== family) throw invalid(flag, `${cidrText} is not an IPv${family} CIDR`);
  const subnetSize = size ?? (family === 4 ? 24 : 64);
  const max = family === 4 ? 30 : 126;
  if (subnetSize < cidr.prefix) throw invalid(sizeFlag, `/${subnetSize} is larger than the cluster CIDR ${cidr} itself: a node subnet must fit inside it`);
  if (subnetSize > max) throw invalid(sizeFlag, `/${subnetSize} leaves no room for pods (at most /${max} for IPv${family})`);
  return { cidr, subnetSize };
}

/** Validates raw options (flags over file) into an AgentConfig. */
export function resolveConfig(raw: RawOptions): AgentConfig {
  const o: RawOptions = {};
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) o[camel(k)] = v;
  const nodeName = str(o, 'nodeName', '--node-name');
  if (!nodeName) throw invalid('--node-name', 'is required');
  if (nodeName.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(nodeName)) throw invalid('--node-name', `${JSON.stringify(nodeName)} is not a DNS-1123 subdomain (lowercase letters, digits, "-" and ".")`);
  const nodeIPText = str(o, 'nodeIp', '--node-ip');
  if (!nodeIPText) throw invalid('--node-ip', 'is required (the node\'s address on the underlay)');
  if (isIP(nodeIPText) === 0) throw invalid('--node-ip', `${JSON.stringify(nodeIPText)} is not an IP address`);
  const nodeIP = parseIP(nodeIPText);
  const v6Text = str(o, 'nodeIpv6', '--node-ipv6');
  if (v6Text && isIP(v6Text) !== 6) throw invalid('--node-ipv6', `${JSON.stringify(v6Text)} is not an IPv6 address`);
  if (v6Text && isIP(nodeIP) === 6) throw invalid('--node-ipv6', `is a second address of the other family, but --node-ip ${nodeIP} is already IPv6`);
  const ifaceText = str(o, 'iface', '--iface');
  const iface = ifaceText ? validateIfName(ifaceText, '--iface') : undefined;
  const v4 = network(str(o, 'clusterCidr', '--cluster-cidr'), '--cluster-cidr', '--node-subnet-size', int(o, 'nodeSubnetSize', '--node-subnet-size', 0, 128), 4);
  const v6 = network(str(o, 'clusterCidrV6', '--cluster-cidr-v6'), '--cluster-cidr-v6', '--node-subnet-size-v6', int(o, 'nodeSubnetSizeV6', '--node-subnet-size-v6', 0, 128), 6);
  const networks = [v4, v6].filter((n): n is ClusterNetwork => n !== undefined);
  if (!networks.length) throw invalid('--cluster-cidr', 'is required (the pod network, e.g. 10.244.0.0/16)');
  const stateDir = str(o, 'stateDir', '--state-dir');
  if (!stateDir) throw invalid('--state-dir', 'is required (where IPAM allocations, the subnet claim and sandbox records are kept)');
  if (!isAbsolute(stateDir) || stateDir.split('/').includes('..')) throw invalid('--state-dir', `${JSON.stringify(stateDir)} must be an absolute path without ".."`);
  const backend = (str(o, 'backend', '--backend') ?? 'vxlan').toLowerCase();
  if (!(BACKENDS as readonly string[]).includes(backend)) throw invalid('--backend', `${JSON.stringify(backend)} is not a backend (known: ${BACKENDS.join(', ')})`);
  const proxyMode = str(o, 'proxyMode', '--proxy-mode') ?? 'nftables';
  if (!(PROXY_MODES as readonly string[]).includes(proxyMode)) throw invalid('--proxy-mode', `${JSON.stringify(proxyMode)} is not a proxy mode (known: ${PROXY_MODES.join(', ')})`);
  const listenText = str(o, 'listen', '--listen') ?? (isIP(nodeIP) === 6 ? `[${nodeIP}]:${AGENT_PORT}` : `${nodeIP}:${AGENT_PORT}`);
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listenText);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || isIP(host) === 0 || port < 1 || port > 65535) throw invalid('--listen', `${JSON.stringify(listenText)} is not IP:PORT (e.g. 198.18.0.1:${AGENT_PORT})`);
  const netnsPrefix = validateNetnsPrefix(str(o, 'netnsPrefix', '--netns-prefix') ?? DEFAULT_NETNS_PREFIX, '--netns-prefix');
  const cniSocket = str(o, 'cniSocket', '--cni-socket') ?? '/run/podnet/cni.sock';
  if (!isAbsolute(cniSocket) || cniSocket.split('/').includes('..') || cniSocket.length > 100) throw invalid('--cni-socket', `${JSON.stringify(cniSocket)} must be an absolute path without "..", at most 100 characters`);
  const resync = str(o, 'resyncPeriod', '--resync-period') ?? '30s';
  let resyncMs: number;
  try {
    resyncMs = parseDuration(resync, '--resync-period');
  } catch (e) {
    throw invalid('--resync-period', `${JSON.stringify(resync)} is not a duration like 30s or 5m`);
  }
  if (resyncMs < 1000) throw invalid('--resync-period', 'must be at least 1s');
  const durationOf = (key: string, flag: string, dflt: string, min: number, minText: string): number => {
    const text = str(o, key, flag) ?? dflt;
    let ms: number;
    try {
      ms = parseDuration(text, flag);
    } catch {
      throw invalid(flag, `${JSON.stringify(text)} is not a duration like 1s, 500ms or 5m`);
    }
    if (ms < min) throw invalid(flag, `must be at least ${minText}`);
    return ms;
  };
  const proxyMinSyncMs = durationOf('proxyMinSyncPeriod', '--proxy-min-sync-period', '1s', 0, '0s');
  const proxySyncMs = durationOf('proxySyncPeriod', '--proxy-sync-period', '30s', 1000, '1s');
  const proxyFullSyncMs = durationOf('proxyFullSyncPeriod', '--proxy-full-sync-period', '1h', 1000, '1s');
  if (proxyMinSyncMs > proxySyncMs) throw invalid('--proxy-min-sync-period', `(${proxyMinSyncMs} ms) must not be longer than --proxy-sync-period (${proxySyncMs} ms)`);
  const kubeconfig = str(o, 'kubeconfig', '--kubeconfig');
  const server = str(o, 'server', '--server');
  if (!kubeconfig && !server) throw invalid('--kubeconfig', 'or --server is required (how to reach the podnet api)');
  if (kubeconfig && server) throw invalid('--server', 'cannot be combined with --kubeconfig: pick one');
  const token = str(o, 'token', '--token');
  const tokenFile = str(o, 'tokenFile', '--token-file');
  const caFile = str(o, 'caFile', '--ca-file');
  const insecure = bool(o, 'insecureSkipTlsVerify', '--insecure-skip-tls-verify');
  const connection: AgentConfig['connection'] = kubeconfig
    ? { kubeconfig }
    : { server: server!, ...(token ? { token } : {}), ...(tokenFile ? { tokenFile } : {}), ...(caFile ? { caFile } : {}), ...(insecure ? { insecure } : {}) };
  return {
    nodeName,
    nodeIP,
    nodeIPv6: v6Text ? parseIP(v6Text) : undefined,
    iface,
    networks,
    stateDir,
    backend: backend as Backend,
    proxyMode: proxyMode as ProxyMode,
    proxyMinSyncMs,
    proxySyncMs,
    proxyFullSyncMs,
    listen: { host: parseIP(host), port },
    masquerade: bool(o, 'masquerade', '--masquerade') ?? true,
    directRouting: bool(o, 'directRouting', '--direct-routing') ?? false,
    netnsPrefix,
    cniSocket,
    mtu: int(o, 'mtu', '--mtu', 576, 65535),
    podConcurrency: int(o, 'podConcurrency', '--pod-concurrency', 1, 256) ?? 16,
    resyncMs,
    connection,
  };
}
