/**
 * Where the client connects and how it proves who it is: a `ClientConfig`, built from a
 * kubeconfig file (`loadKubeconfig`), from command-line flags (`configFromFlags`), or from
 * a pod's service-account mount (`inClusterConfig`).
 *
 * Everything that can fail is read here, once, with an error naming the field that was
 * wrong (`users[0].user.tokenFile: cannot read /x: ENOENT`), so that the first request
 * never fails because of a typo in a file. The one exception is a token file, which the
 * transport re-reads (service-account tokens rotate).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ClientError, ClientErrorCodes } from './errors.js';

/** A resolved connection: no file names left except `tokenFile`. */
export interface ClientConfig {
  /** Base URL, e.g. `https://10.0.0.1:6443` or `http://localhost`; a path prefix is kept. */
  server: string;
  /** Connect through this unix socket instead of the URL's host and port (the URL still gives scheme and Host). */
  socketPath?: string;
  /** PEM roots to verify the server with (instead of the system roots). */
  ca?: Buffer;
  /** PEM client certificate and key (mutual TLS). */
  cert?: Buffer;
  key?: Buffer;
  /** Do not verify the server's certificate. */
  insecureSkipTLSVerify?: boolean;
  /** SNI and name to verify, when it differs from the URL's host. */
  tlsServerName?: string;
  /** Bearer token. */
  token?: string;
  /** Bearer token re-read from this file (rotating service-account tokens); `token` holds the first read. */
  tokenFile?: string;
  /** HTTP basic auth (rare; kept for old clusters and tests). */
  username?: string;
  password?: string;
  /** The context's default namespace, when it names one (kubectl uses "default" otherwise). */
  namespace?: string;
  /** Where this came from, for messages: "kubeconfig /root/.kube/config context kind-a". */
  source?: string;
}

// ---------------------------------------------------------------- kubeconfig

export interface LoadKubeconfigOptions {
  /** The kubeconfig file (YAML or JSON). */
  path: string;
  /** Context to use; default: the file's current-context. */
  context?: string;
}

/**
 * Reads a kubeconfig and resolves one context into a ClientConfig. Relative file names
 * in it resolve against the kubeconfig's directory, as kubectl does. Equivalent to what
 * `kubectl --kubeconfig PATH [--context NAME]` connects with.
 */
export async function loadKubeconfig(opts: LoadKubeconfigOptions): Promise<ClientConfig> {
  let text: string;
  try {
    text = await readFile(opts.path, 'utf8');
  } catch (e) {
    throw configError('', `cannot read kubeconfig ${opts.path}: ${errText(e)}`, opts.path, e);
  }
  return parseKubeconfig(text, { path: resolve(opts.path), ...(opts.context !== undefined ? { context: opts.context } : {}) });
}

export interface ParseKubeconfigOptions {
  /** The file the text came from: relative names resolve against its directory; also named in errors. */
  path?: string;
  /** Directory for relative names when there is no path (default: the current directory). */
  dir?: string;
  context?: string;
}

/** Like loadKubeconfig, for text already in memory. */
export async function parseKubeconfig(text: string, opts: ParseKubeconfigOptions = {}): Promise<ClientConfig> {
  const file = opts.path ?? '<kubeconfig>';
  const r = new FieldReader(file, opts.dir ?? (opts.path ? dirname(opts.path) : process.cwd()));
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw configError('', `not valid YAML or JSON: ${errText(e)}`, file, e);
  }
  if (!isRecord(doc)) throw configError('', 'is not a kubeconfig (expected a mapping with clusters, contexts and users)', file);

  const contextName = opts.context ?? r.optString(doc, 'current-context', 'current-context');
  if (!contextName) throw configError('current-context', 'is not set and no context was asked for', file);
  const ctxEntry = r.findNamed(doc, 'contexts', contextName, 'context');
  const ctx = r.mapping(ctxEntry.value, 'context', `${ctxEntry.field}.context`);
  const ctxField = `${ctxEntry.field}.context`;

  const clusterName = r.optString(ctx, 'cluster', `${ctxField}.cluster`);
  if (!clusterName) throw configError(`${ctxField}.cluster`, 'is required', file);
  const clusterEntry = r.findNamed(doc, 'clusters', clusterName, 'cluster', `${ctxField}.cluster`);
  const clusterField = `${clusterEntry.field}.cluster`;
  const cluster = r.mapping(clusterEntry.value, 'cluster', clusterField);

  const out: ClientConfig = { server: '', source: `kubeconfig ${file} context ${contextName}` };
  const server = r.optString(cluster, 'server', `${clusterField}.server`);
  if (!server) throw configError(`${clusterField}.server`, 'is required', file);
  out.server = checkServerUrl(server, `${clusterField}.server`, file);
  const insecure = r.optBool(cluster, 'insecure-skip-tls-verify', `${clusterField}.insecure-skip-tls-verify`);
  const ca = await r.dataOrFile(cluster, 'certificate-authority', clusterField);
  if (insecure && ca) {
    throw configError(`${clusterField}.insecure-skip-tls-verify`, 'cannot be combined with certificate-authority(-data): pick one', file);
  }
  if (insecure) out.insecureSkipTLSVerify = true;
  if (ca) out.ca = ca;
  const sni = r.optString(cluster, 'tls-server-name', `${clusterField}.tls-server-name`);
  if (sni) out.tlsServerName = sni;
  if (r.optString(cluster, 'proxy-url', `${clusterField}.proxy-url`)) {
    throw configError(`${clusterField}.proxy-url`, 'is not supported by podnet', file);
  }

  const namespace = r.optString(ctx, 'namespace', `${ctxField}.namespace`);
  if (namespace) out.namespace = namespace;

  const userName = r.optString(ctx, 'user', `${ctxField}.user`);
  if (userName) {
    const userEntry = r.findNamed(doc, 'users', userName, 'user', `${ctxField}.user`);
    const userField = `${userEntry.field}.user`;
    const user = r.mapping(userEntry.value ?? {}, 'user', userField, true);
    for (const unsupported of ['exec', 'auth-provider']) {
      if (user[unsupported] !== undefined && user[unsupported] !== null) {
        throw configError(`${userField}.${unsupported}`, 'is not supported by podnet (use a token, token file or client certificate)', file);
      }
    }
    const token = r.optString(user, 'token', `${userField}.token`);
    const tokenFileKey = user['tokenFile'] !== undefined ? 'tokenFile' : 'token-file';
    const tokenFile = r.optString(user, tokenFileKey, `${userField}.${tokenFileKey}`);
    if (token) out.token = token;
    else if (tokenFile) {
      out.tokenFile = r.path(tokenFile);
      out.token = (await r.readText(out.tokenFile, `${userField}.${tokenFileKey}`)).trim();
    }
    const cert = await r.dataOrFile(user, 'client-certificate', userField);
    const key = await r.dataOrFile(user, 'client-key', userField);
    if (cert && !key) throw configError(`${userField}.client-key`, 'is required with client-certificate (or use client-key-data)', file);
    if (key && !cert) throw configError(`${userField}.client-certificate`, 'is required with client-key (or use client-certificate-data)', file);
    if (cert && key) {
      out.cert = cert;
      out.key = key;
    }
    const username = r.optString(user, 'username', `${userField}.username`);
    if (username) {
      out.username = username;
      out.password = r.optString(user, 'password', `${userField}.password`) ?? '';
    }
  }
  return out;
}

/**
 * The kubeconfig kubectl would use: the first existing entry of $KUBECONFIG (a
 * colon-separated list; podnet does not merge several files), else ~/.kube/config.
 */
export function defaultKubeconfigPath(opts: { env?: NodeJS.ProcessEnv; home?: string } = {}): string {
  const env = opts.env ?? process.env;
  const list = (env['KUBECONFIG'] ?? '').split(':').filter(Boolean);
  if (list[0]) return list[0];
  return join(opts.home ?? homedir(), '.kube', 'config');
}

// ---------------------------------------------------------------- flags

export interface FlagOptions {
  /** `https://host:port`, `http://host:port`, or `unix:///path/to.sock` (plain HTTP over a unix socket). */
  server: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  insecure?: boolean;
  /** Explicit unix socket (the server URL then gives only scheme and Host). */
  socketPath?: string;
  namespace?: string;
}

/**
 * A ClientConfig from command-line style options (`--server --token --certificate-authority
 * --insecure-skip-tls-verify`). Files are read now; errors name the option.
 */
export async function configFromFlags(flags: FlagOptions): Promise<ClientConfig> {
  const file = 'flags';
  const r = new FieldReader(file, process.cwd());
  if (!flags.server) throw configError('server', 'is required', file);
  const out: ClientConfig = { server: '', source: 'flags' };
  const unix = /^unix:(?:\/\/)?(\/.*)$/.exec(flags.server);
  if (unix?.[1]) {
    out.server = 'http://localhost';
    out.socketPath = unix[1];
  } else {
    out.server = checkServerUrl(flags.server, 'server', file);
  }
  if (flags.socketPath) out.socketPath = flags.socketPath;
  if (flags.insecure && flags.caFile) throw configError('insecure', 'cannot be combined with caFile: pick one', file);
  if (flags.insecure) out.insecureSkipTLSVerify = true;
  if (flags.caFile) out.ca = await r.readBytes(r.path(flags.caFile), 'caFile');
  if (Boolean(flags.certFile) !== Boolean(flags.keyFile)) {
    throw configError(flags.certFile ? 'keyFile' : 'certFile', 'is required with ' + (flags.certFile ? 'certFile' : 'keyFile'), file);
  }
  if (flags.certFile && flags.keyFile) {
    out.cert = await r.readBytes(r.path(flags.certFile), 'certFile');
    out.key = await r.readBytes(r.path(flags.keyFile), 'keyFile');
  }
  if (flags.token) out.token = flags.token;
  else if (flags.tokenFile) {
    out.tokenFile = r.path(flags.tokenFile);
    out.token = (await r.readText(out.tokenFile, 'tokenFile')).trim();
  }
  if (flags.namespace) out.namespace = flags.namespace;
  return out;
}

// ---------------------------------------------------------------- in-cluster

/** Where a pod finds its service account. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The config of a pod running in the cluster (a DaemonSet agent): KUBERNETES_SERVICE_HOST
 * and _PORT, the mounted service-account token (re-read as it rotates), CA and namespace.
 */
export async function inClusterConfig(opts: { env?: NodeJS.ProcessEnv; dir?: string } = {}): Promise<ClientConfig> {
  const env = opts.env ?? process.env;
  const dir = opts.dir ?? SERVICE_ACCOUNT_DIR;
  const file = 'in-cluster';
  const r = new FieldReader(file, dir);
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!host) throw configError('KUBERNETES_SERVICE_HOST', 'is not set: not running in a pod?', file);
  if (!port) throw configError('KUBERNETES_SERVICE_PORT', 'is not set: not running in a pod?', file);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const tokenFile = join(dir, 'token');
  const out: ClientConfig = {
    server: `https://${hostPart}:${port}`,
    tokenFile,
    token: (await r.readText(tokenFile, 'token')).trim(),
    ca: await r.readBytes(join(dir, 'ca.crt'), 'ca.crt'),
    source: 'in-cluster service account',
  };
  try {
    const ns = (await readFile(join(dir, 'namespace'), 'utf8')).trim();
    if (ns) out.namespace = ns;
  } catch {
    /* optional */
  }
  return out;
}

// ---------------------------------------------------------------- helpers

type Rec = Record<string, unknown>;

function isRecord(v: unknown): v is Rec {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code && /^E[A-Z]+$/.test(code)) return code;
  return e instanceof Error ? e.message : String(e);
}

function configError(field: string, what: string, file: string, cause?: unknown): ClientError {
  return new ClientError(ClientErrorCodes.KUBECONFIG, field ? `${field}: ${what}` : what, { field: field || undefined, file }, cause === undefined ? undefined : { cause });
}

function checkServerUrl(server: string, field: string, file: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw configError(field, `"${server}" is not a URL (expected https://host:port)`, file);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError(field, `"${server}": scheme must be https or http`, file);
  return server.replace(/\/+$/, '');
}

/** Reads typed fields out of a parsed document, naming them in errors. */
class FieldReader {
  constructor(
    readonly file: string,
    readonly dir: string,
  ) {}

  path(p: string): string {
    return isAbsolute(p) ? p : resolve(this.dir, p);
  }

  optString(obj: Rec, key: string, field: string): string | undefined {
    const v = obj[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw configError(field, `must be a string, not ${typeof v}`, this.file);
    return v;
  }

  optBool(obj: Rec, key: string, field: string): boolean {
    const v = obj[key];
    if (v === undefined || v === null) return false;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw configError(field, `must be true or false, not ${JSON.stringify(v)}`, this.file);
  }

  mapping(v: unknown, what: string, field: string, allowEmpty = false): Rec {
    if ((v === undefined || v === null) && allowEmpty) return {};
    if (!isRecord(v)) throw configError(field, `must be a mapping (the ${what}'s settings)`, this.file);
    return v;
  }

  /** The entry of `doc[list]` whose name is `name`, with its field path (`clusters[1]`). */
  findNamed(doc: Rec, list: string, name: string, what: string, referrer?: string): { value: unknown; field: string } {
    const arr = doc[list] ?? [];
    if (!Array.isArray(arr)) throw configError(list, 'must be a list', this.file);
    const names: string[] = [];
    for (const [i, entry] of arr.entries()) {
      if (!isRecord(entry)) throw configError(`${list}[${i}]`, 'must be a mapping with name and ' + what, this.file);
      const n = this.optString(entry, 'name', `${list}[${i}].name`);
      if (n === name) return { value: entry[what], field: `${list}[${i}]` };
      if (n) names.push(n);
    }
    const have = names.length ? ` (have: ${names.join(', ')})` : ` (${list} is empty)`;
    throw configError(referrer ?? list, `no ${what} named "${name}" in ${list}${have}`, this.file);
  }

  /** `<key>-data` (base64) or `<key>` (a file), data first, as client-go does. */
  async dataOrFile(obj: Rec, key: string, parentField: string): Promise<Buffer | undefined> {
    const data = this.optString(obj, `${key}-data`, `${parentField}.${key}-data`);
    if (data) {
      const compact = data.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) {
        throw configError(`${parentField}.${key}-data`, 'is not valid base64', this.file);
      }
      const buf = Buffer.from(compact, 'base64');
      if (!buf.length) throw configError(`${parentField}.${key}-data`, 'is empty', this.file);
      return buf;
    }
    const p = this.optString(obj, key, `${parentField}.${key}`);
    if (!p) return undefined;
    return this.readBytes(this.path(p), `${parentField}.${key}`);
  }

  async readBytes(p: string, field: string): Promise<Buffer> {
    try {
      return await readFile(p);
    } catch (e) {
      throw configError(field, `cannot read ${p}: ${errText(e)}`, this.file, e);
    }
  }

  async readText(p: string, field: string): Promise<string> {
    return (await this.readBytes(p, field)).toString('utf8');
  }
}
