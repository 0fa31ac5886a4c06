/**
 * The configuration of `podnet api`: command-line flags, optionally on top of a YAML/JSON
 * config file (`--config`) whose keys are the flag names in camelCase (`dataDir`) or in
 * flag spelling (`data-dir`, `--data-dir`). Flags given on the command line win over the
 * file; the file wins over the built-in defaults (and, for the log level, over
 * $PODNET_LOG_LEVEL). An unknown key, a value of the wrong type or a value that does not
 * parse is an error naming the key or flag and the reason, raised before anything is
 * started (the same contract as the agent's src/agent/config.ts).
 */
import { z } from 'zod';
import { readConfigMapping } from '../util/config-file.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { parseDuration } from '../util/duration.js';
import { CONTROLLERS, isLoopbackListen, parseListen, parseServiceCIDRs } from './options.js';
import type { ControllerName } from './options.js';
import { parsePortRange } from './registry/allocators.js';
import type { ApiServerOptions } from './apiserver.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The defaults of the flags (the command line shows the same ones in --help). */
export const API_DEFAULTS = {
  listen: '127.0.0.1:6443',
  dataDir: '/var/lib/podnet/api',
  etcdPrefix: '',
  serviceCidr: '10.96.0.0/12',
  serviceNodePortRange: '30000-32767',
  allowAnonymousAdmin: false,
  disableControllers: '',
  nodeMonitorGracePeriod: '40s',
  nodeMonitorPeriod: '5s',
  eventTtl: '1h',
  watchCacheSize: '20000',
} as const;

/** Raw option values as flags or file keys give them. */
export type RawApiOptions = Record<string, unknown>;

const str = (what = 'a string') => z.string({ error: `must be ${what}` });
const strOrList = (what: string) => z.union([z.string(), z.array(z.string())], { error: `must be ${what} or a list of them` });
const bool = z.union([z.boolean(), z.enum(['true', 'false'])], { error: 'must be true or false' });
const durationText = str('a duration string like 40s, 5m or 1h30m');

/** Every option, by its camelCase key, with the type a file (or a flag) may give it. */
const SCHEMAS = {
  listen: str('a string like 127.0.0.1:6443 or unix:/run/podnet/api.sock'),
  alsoListen: strOrList('a HOST:PORT or unix:/path string'),
  dataDir: str('a directory path'),
  etcdServers: strOrList('a URL string (comma-separated allowed)'),
  etcdPrefix: str(),
  serviceCidr: strOrList('a CIDR string'),
  serviceNodePortRange: str('a range string like 30000-32767'),
  tokenAuthFile: str('a file path'),
  allowAnonymousAdmin: bool,
  tlsCertFile: str('a file path'),
  tlsPrivateKeyFile: str('a file path'),
  disableControllers: strOrList('a controller name'),
  nodeMonitorGracePeriod: durationText,
  nodeMonitorPeriod: durationText,
  eventTtl: durationText,
  watchCacheSize: z.union([z.number(), z.string()], { error: 'must be an integer' }),
  logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }),
} satisfies Record<string, z.ZodType>;

export type ApiConfigKey = keyof typeof SCHEMAS;
/** The keys of the config file (camelCase), in the order of `podnet api --help`. */
export const API_CONFIG_KEYS = Object.keys(SCHEMAS) as ApiConfigKey[];

/** The flag spelling of a camelCase key: dataDir → --data-dir. */
export function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The camelCase key of a flag-spelled one: --data-dir, data-dir → dataDir. */
export function camelKey(k: string): string {
  return k.replace(/^--/, '').replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const invalid = (field: string, reason: string, context: Record<string, string> = {}) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} ${reason}`, { field, ...context });

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** An error about a key of the config file (or of raw options): names the key, and the file when there is one. */
function keyError(k: string, reason: string, path: string | undefined): PodnetError {
  return new PodnetError(ErrorCodes.INVALID_ARGUMENT, `config key ${JSON.stringify(k)} ${reason}`, { field: k, ...(path ? { config: path } : {}) });
}

function unknownKey(k: string, path: string | undefined): PodnetError {
  const key = camelKey(k);
  const near = API_CONFIG_KEYS.map((c) => ({ c, d: distance(key.toLowerCase(), c.toLowerCase()) })).sort((x, y) => x.d - y.d)[0];
  const hint = near && near.d <= 3 ? ` (did you mean ${JSON.stringify(near.c)}?)` : '';
  return keyError(k, `is not an api option${hint}; known: ${API_CONFIG_KEYS.join(', ')}`, path);
}

/**
 * Normalises keys to camelCase and checks each one is an option and its value has the
 * right type. `null` (an empty YAML value) means "not set". `path` names the file in errors.
 */
export function checkApiOptions(raw: RawApiOptions, path?: string): RawApiOptions {
  const out: RawApiOptions = {};
  const seen = new Map<string, string>();
  for (const [k, v] of Object.entries(raw)) {
    const key = camelKey(k);
    if (!Object.hasOwn(SCHEMAS, key)) throw unknownKey(k, path);
    const before = seen.get(key);
    if (before !== undefined) throw keyError(k, `sets the same option as ${JSON.stringify(before)}`, path);
    seen.set(key, k);
    if (v === undefined || v === null) continue;
    const r = SCHEMAS[key as ApiConfigKey].safeParse(v);
    if (!r.success) throw keyError(k, `${r.error.issues[0]?.message ?? 'has the wrong type'}, got ${JSON.stringify(v)}`, path);
    out[key] = r.data;
  }
  return out;
}

/** Reads a `podnet api` config file (YAML or JSON) into checked raw options (camelCase keys). */
export function readApiConfigFile(path: string): RawApiOptions {
  const doc = readConfigMapping(path);
  return checkApiOptions(doc as RawApiOptions, path);
}

export interface ApiConfig {
  /** What ApiServer takes, but the logger. */
  server: Omit<ApiServerOptions, 'log'>;
  logLevel: LogLevel;
}

const list = (v: unknown): string[] =>
  (Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [])
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter(Boolean);

/**
 * Validates raw options (file keys overlaid by explicit flags) into the server's options.
 * Missing options take API_DEFAULTS; the log level falls back to `env.PODNET_LOG_LEVEL`,
 * then `info`. `fromFile` (the config file's path and the keys it set) is added to the
 * context of an error about one of those keys, so the message says where the bad value is.
 */
export function resolveApiConfig(raw: RawApiOptions, opts: { env?: NodeJS.ProcessEnv; fromFile?: { path: string; keys: Iterable<string> } } = {}): ApiConfig {
  const given = checkApiOptions(raw);
  const fileKeys = new Set([...(opts.fromFile?.keys ?? [])].map(camelKey));
  const bad = (key: ApiConfigKey, reason: string) => invalid(flagOf(key), reason, fileKeys.has(key) && opts.fromFile ? { config: opts.fromFile.path } : {});
  /** Runs a parser that throws plain Errors whose message starts with the flag; rethrows as INVALID_ARGUMENT. */
  const parse = <T>(key: ApiConfigKey, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const flag = flagOf(key);
      throw bad(key, msg.startsWith(`${flag} `) ? msg.slice(flag.length + 1) : msg);
    }
  };
  const o = { ...API_DEFAULTS, ...given } as Record<string, unknown>;
  const text = (key: ApiConfigKey): string => String(o[key] ?? '');

  const env = opts.env ?? process.env;
  const logLevel = (given.logLevel as string | undefined) ?? env.PODNET_LOG_LEVEL ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw invalid('--log-level', `${JSON.stringify(logLevel)} (from $PODNET_LOG_LEVEL) is not one of ${LOG_LEVELS.join(', ')}`);

  const listen = parse('listen', () => parseListen(text('listen')));
  const alsoListen = list(o.alsoListen).map((l) => parse('alsoListen', () => parseListenAs(l, '--also-listen')));
  const anonymousAdmin = o.allowAnonymousAdmin === true || o.allowAnonymousAdmin === 'true';
  if (anonymousAdmin && ![listen, ...alsoListen].every(isLoopbackListen)) {
    throw bad('allowAnonymousAdmin', 'is only allowed when every --listen / --also-listen address is a loopback address or a unix socket');
  }
  const disabled = list(o.disableControllers);
  for (const d of disabled) if (!(CONTROLLERS as readonly string[]).includes(d)) throw bad('disableControllers', `unknown controller ${JSON.stringify(d)} (known: ${CONTROLLERS.join(', ')})`);
  const cert = o.tlsCertFile ? text('tlsCertFile') : undefined;
  const key = o.tlsPrivateKeyFile ? text('tlsPrivateKeyFile') : undefined;
  if (!!cert !== !!key) throw bad(cert ? 'tlsPrivateKeyFile' : 'tlsCertFile', 'is required with ' + (cert ? '--tls-cert-file' : '--tls-private-key-file') + ': the two go together');
  const cacheText = String(o.watchCacheSize);
  const cacheSize = /^\d+$/.test(cacheText) ? Number(cacheText) : NaN;
  if (!Number.isInteger(cacheSize) || cacheSize < 100) throw bad('watchCacheSize', `must be an integer >= 100, got ${JSON.stringify(o.watchCacheSize)}`);
  const etcd = list(o.etcdServers);
  for (const u of etcd) if (!/^https?:\/\/[^/]+$/.test(u)) throw bad('etcdServers', `${JSON.stringify(u)} is not a URL like http://127.0.0.1:2379`);
  const dataDir = text('dataDir');
  if (!etcd.length && !dataDir) throw bad('dataDir', 'is required (or --etcd-servers)');
  const duration = (k: ApiConfigKey): number => {
    const ms = parse(k, () => parseDuration(text(k), flagOf(k)));
    if (ms <= 0) throw bad(k, `must be longer than 0, got ${JSON.stringify(o[k])}`);
    return ms;
  };
  const cidrs = list(o.serviceCidr).join(',');
  const server: ApiConfig['server'] = {
    store: etcd.length ? { kind: 'etcd', endpoints: etcd, ...(o.etcdPrefix ? { prefix: text('etcdPrefix') } : {}) } : { kind: 'sqlite', dataDir },
    listen,
    ...(alsoListen.length ? { alsoListen } : {}),
    ...(cert && key ? { tls: { certFile: cert, keyFile: key } } : {}),
    serviceCIDRs: parse('serviceCidr', () => parseServiceCIDRs(cidrs)),
    nodePortRange: parse('serviceNodePortRange', () => parsePortRange(text('serviceNodePortRange'))),
    ...(o.tokenAuthFile ? { tokenFile: text('tokenAuthFile') } : {}),
    anonymousAdmin,
    disabledControllers: disabled as ControllerName[],
    nodeMonitorGracePeriodMs: duration('nodeMonitorGracePeriod'),
    nodeMonitorPeriodMs: duration('nodeMonitorPeriod'),
    eventTTLMs: duration('eventTtl'),
    watchCacheSize: cacheSize,
  };
  return { server, logLevel: logLevel as LogLevel };
}

/** parseListen, with its messages naming `flag` instead of --listen. */
function parseListenAs(text: string, flag: string) {
  try {
    return parseListen(text);
  } catch (e) {
    throw new Error((e as Error).message.replace(/^--listen /, `${flag} `));
  }
}
