/**
 * The CNI protocol layer: turns one invocation — the CNI_* environment and the stdin
 * text, as injected values — into a typed, validated request. Nothing here touches the
 * process, the kernel or the network; the agent's handler receives only what passed.
 *
 * Every failure is a CniError whose message names the variable or field and the reason:
 *   1 cniVersion unsupported, or too old for the command (CHECK < 0.4.0; STATUS, GC < 1.1.0)
 *   2 a configuration field podnet-cni does not support (message: key and value)
 *   4 CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME or CNI_ARGS missing or invalid
 *   6 stdin is not JSON, or not a JSON object
 *   7 a configuration field is missing or has a bad value (including prevResult)
 */
import { isPodnetError } from '../util/errors.js';
import { validateIfName } from '../util/validate.js';
import { CniError, CniErrorCode } from './errors.js';
import { FieldReader, isObject, show, type JsonObject } from './fields.js';
import { parseDns, parseResult, type CniAddResult, type CniDns } from './result.js';
import {
  CNI_COMMANDS,
  COMMAND_SINCE,
  SUPPORTED_VERSIONS,
  compareVersions,
  isCniCommand,
  isSupportedVersion,
  isVersionString,
  type CniVersion,
} from './spec.js';

/** One invocation as the plugin binary received it. */
export interface CniRawRequest {
  /** The CNI_* environment variables (others may be present and are ignored). */
  env: Readonly<Record<string, string>>;
  /** stdin, exactly as read. */
  stdin: string;
}

/** Identifies an attachment: one interface of one container (spec section 3). */
export interface CniAttachment {
  /** CNI_CONTAINERID. */
  containerId: string;
  /** CNI_IFNAME: the interface name inside the container. */
  ifname: string;
  /** CNI_NETNS: the netns path. Always set for ADD and CHECK; may be "" for DEL. */
  netns: string;
}

/** The pod an attachment belongs to, from the Kubernetes keys of CNI_ARGS. */
export interface CniPodIdentity {
  /** K8S_POD_NAMESPACE */
  namespace?: string;
  /** K8S_POD_NAME */
  name?: string;
  /** K8S_POD_UID */
  uid?: string;
  /** K8S_POD_INFRA_CONTAINER_ID */
  infraContainerId?: string;
}

/** CNI_ARGS, parsed. */
export interface CniArgs {
  /** Every KEY=VALUE pair, as given. */
  values: Readonly<Record<string, string>>;
  /** IgnoreUnknown=1|true: keys podnet does not know are allowed. */
  ignoreUnknown: boolean;
  pod: CniPodIdentity;
}

/** The network configuration on stdin, validated. */
export interface CniNetConf {
  cniVersion: CniVersion;
  /** The network name. */
  name: string;
  /** The plugin type (the binary's name, normally "podnet-cni"). */
  type: string;
  /** The agent's socket path (the binary reads it; the agent only validates it). */
  socket?: string;
  /** Masquerade traffic from the pod leaving the node. */
  ipMasq?: boolean;
  /** MTU for the pod's interface (68–65535). */
  mtu?: number;
  dns?: CniDns;
  /** Runtime-provided `args` (conventions such as args.cni.ips). */
  args?: JsonObject;
  /** Capability arguments the runtime passed (portMappings, bandwidth, mac, ...). */
  runtimeConfig?: JsonObject;
  /** Capabilities the configuration declares. */
  capabilities?: Readonly<Record<string, boolean>>;
  /** The result of the previous ADD (DEL, CHECK) or of the previous plugin (chained ADD). */
  prevResult?: CniAddResult;
  /** The whole configuration object as received. */
  raw: Readonly<JsonObject>;
}

/** An attachment to keep, from GC's cni.dev/valid-attachments. */
export interface CniAttachmentKey {
  containerId: string;
  ifname: string;
}

interface AttachmentRequestBase {
  attachment: CniAttachment;
  pod: CniPodIdentity;
  args: CniArgs;
  /** CNI_PATH, split on ":". */
  path: string[];
  config: CniNetConf;
}

export interface CniAddRequest extends AttachmentRequestBase {
  command: 'ADD';
}

export interface CniDelRequest extends AttachmentRequestBase {
  command: 'DEL';
  /**
   * Why config.prevResult is absent although the runtime sent one: DEL must succeed
   * whatever the cached result looks like, so a malformed prevResult is dropped, not fatal.
   */
  prevResultError?: string;
}

export interface CniCheckRequest extends AttachmentRequestBase {
  command: 'CHECK';
  config: CniNetConf & { prevResult: CniAddResult };
}

export interface CniStatusRequest {
  command: 'STATUS';
  path: string[];
  config: CniNetConf;
}

export interface CniGcRequest {
  command: 'GC';
  path: string[];
  config: CniNetConf;
  /** Every attachment of this network the runtime still knows; all others are stale. */
  validAttachments: CniAttachmentKey[];
}

export interface CniVersionRequest {
  command: 'VERSION';
  /** The cniVersion on stdin, if any (the answer echoes it). */
  cniVersion?: string;
}

export type CniRequest = CniAddRequest | CniDelRequest | CniCheckRequest | CniStatusRequest | CniGcRequest | CniVersionRequest;

/** Container IDs and network names (spec: alphanumeric first, then [A-Za-z0-9_.-]). */
const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Longest unix socket path (sun_path is 108 bytes including the NUL). */
export const SOCKET_PATH_MAX = 107;

/** Top-level configuration keys podnet-cni understands (plus any "cni.dev/" key). */
const KNOWN_FIELDS = new Set([
  'cniVersion',
  'name',
  'type',
  'socket',
  'ipMasq',
  'mtu',
  'dns',
  'args',
  'runtimeConfig',
  'capabilities',
  'prevResult',
]);

const KNOWN_ARGS = new Set(['IgnoreUnknown', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_UID', 'K8S_POD_INFRA_CONTAINER_ID']);

const envError = (msg: string) => new CniError(CniErrorCode.INVALID_ENV, msg);

/** Parses and validates one invocation. Throws CniError (see the module comment). */
export function parseRequest(raw: CniRawRequest): CniRequest {
  const env = raw.env;
  const command = env.CNI_COMMAND;
  if (!command) throw envError(`CNI_COMMAND is not set (it must be one of ${CNI_COMMANDS.join(', ')})`);
  if (!isCniCommand(command)) throw envError(`CNI_COMMAND ${show(command)} is not one of ${CNI_COMMANDS.join(', ')}`);
  if (command === 'VERSION') {
    const cniVersion = peekCniVersion(raw.stdin);
    return cniVersion === undefined ? { command } : { command, cniVersion };
  }
  const path = (env.CNI_PATH ?? '').split(':').filter((p) => p !== '');

  if (command === 'STATUS' || command === 'GC') {
    const doc = decodeStdin(raw.stdin);
    const config = parseNetConf(doc, command);
    if (command === 'STATUS') return { command, path, config };
    return { command, path, config, validAttachments: parseValidAttachments(doc) };
  }

  const attachment = parseAttachment(env, command);
  const args = parseCniArgs(env.CNI_ARGS);
  const doc = decodeStdin(raw.stdin);
  if (command === 'DEL') {
    let prevResultError: string | undefined;
    const config = parseNetConf(doc, command, (e) => (prevResultError = e.message));
    const base = { command, attachment, pod: args.pod, args, path, config };
    return prevResultError === undefined ? base : { ...base, prevResultError };
  }
  const config = parseNetConf(doc, command);
  if (command === 'CHECK') {
    const prevResult = config.prevResult;
    if (!prevResult) throw new CniError(CniErrorCode.INVALID_CONFIG, 'prevResult is required for CHECK (the result of the ADD being checked)');
    return { command, attachment, pod: args.pod, args, path, config: { ...config, prevResult } };
  }
  return { command, attachment, pod: args.pod, args, path, config };
}

/**
 * CNI_ARGS: "KEY=VALUE" pairs separated by ";" (empty segments are skipped). Keys other
 * than the Kubernetes ones are refused unless IgnoreUnknown is 1 or true, as libcni does.
 */
export function parseCniArgs(text: string | undefined): CniArgs {
  const values: Record<string, string> = {};
  for (const pair of (text ?? '').split(';')) {
    if (pair === '') continue;
    const parts = pair.split('=');
    if (parts.length !== 2 || parts[0] === '') throw envError(`CNI_ARGS entry ${show(pair)} is not KEY=VALUE`);
    values[parts[0]!] = parts[1]!;
  }
  let ignoreUnknown = false;
  const iu = values.IgnoreUnknown;
  if (iu !== undefined) {
    const v = iu.toLowerCase();
    if (v === '1' || v === 'true') ignoreUnknown = true;
    else if (v !== '0' && v !== 'false') throw envError(`CNI_ARGS IgnoreUnknown must be 1, true, 0 or false, got ${show(iu)}`);
  }
  if (!ignoreUnknown) {
    const unknown = Object.keys(values).filter((k) => !KNOWN_ARGS.has(k));
    if (unknown.length) throw envError(`CNI_ARGS has unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (set IgnoreUnknown=1 to allow them)`);
  }
  const pod: CniPodIdentity = {};
  if (values.K8S_POD_NAMESPACE) pod.namespace = values.K8S_POD_NAMESPACE;
  if (values.K8S_POD_NAME) pod.name = values.K8S_POD_NAME;
  if (values.K8S_POD_UID) pod.uid = values.K8S_POD_UID;
  if (values.K8S_POD_INFRA_CONTAINER_ID) pod.infraContainerId = values.K8S_POD_INFRA_CONTAINER_ID;
  return { values, ignoreUnknown, pod };
}

/** The configuration's cniVersion when stdin is a JSON object that has a string one. */
export function peekCniVersion(stdin: string): string | undefined {
  try {
    const doc: unknown = JSON.parse(stdin);
    return isObject(doc) && typeof doc.cniVersion === 'string' && doc.cniVersion.length <= 64 ? doc.cniVersion : undefined;
  } catch {
    return undefined;
  }
}

function parseAttachment(env: Readonly<Record<string, string>>, command: 'ADD' | 'DEL' | 'CHECK'): CniAttachment {
  const required = command === 'DEL' ? ['CNI_CONTAINERID', 'CNI_IFNAME'] : ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'];
  const missing = required.filter((k) => !env[k]);
  if (missing.length) {
    throw envError(`${command} needs ${missing.join(' and ')}, but ${missing.length > 1 ? 'they are' : 'it is'} not set`);
  }
  const containerId = env.CNI_CONTAINERID!;
  if (!ID_RE.test(containerId)) {
    throw envError(`CNI_CONTAINERID ${show(containerId)} must start with a letter or digit and contain only letters, digits, "_", "." and "-"`);
  }
  let ifname: string;
  try {
    ifname = validateIfName(env.CNI_IFNAME, 'CNI_IFNAME');
  } catch (e) {
    if (isPodnetError(e)) throw envError(e.message);
    throw e;
  }
  const netns = env.CNI_NETNS ?? '';
  if (netns !== '' && (!netns.startsWith('/') || netns.includes('\0') || netns.length > 4095)) {
    throw envError(`CNI_NETNS ${show(netns)} must be an absolute path to a network namespace, like /run/netns/NAME or /proc/PID/ns/net`);
  }
  return { containerId, ifname, netns };
}

function decodeStdin(stdin: string): JsonObject {
  let doc: unknown;
  try {
    doc = JSON.parse(stdin);
  } catch (e) {
    const why = stdin.trim() === '' ? 'stdin is empty' : `stdin is not valid JSON: ${(e as Error).message}`;
    throw new CniError(CniErrorCode.DECODING_FAILURE, `cannot read the network configuration: ${why}`);
  }
  if (!isObject(doc)) {
    throw new CniError(CniErrorCode.DECODING_FAILURE, `the network configuration must be a JSON object, got ${Array.isArray(doc) ? 'an array' : show(doc)}`);
  }
  return doc;
}

/**
 * Validates the configuration for `command`. With `onBadPrevResult` a malformed
 * prevResult is reported to it and dropped instead of failing the request.
 */
function parseNetConf(doc: JsonObject, command: Exclude<CniRequest['command'], 'VERSION'>, onBadPrevResult?: (e: CniError) => void): CniNetConf {
  const r = new FieldReader(CniErrorCode.INVALID_CONFIG);
  const v = doc.cniVersion;
  if (v === undefined) throw r.fail('cniVersion', 'is required (the CNI spec version of the configuration, e.g. "1.0.0")');
  if (!isVersionString(v)) throw r.bad('cniVersion', 'must be a version string like "1.0.0"', v);
  if (!isSupportedVersion(v)) {
    throw new CniError(CniErrorCode.INCOMPATIBLE_VERSION, `cniVersion ${v} is not supported: podnet-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const since = COMMAND_SINCE[command];
  if (compareVersions(v, since) < 0) {
    throw new CniError(CniErrorCode.INCOMPATIBLE_VERSION, `cniVersion ${v} has no ${command} command: ${command} needs cniVersion ${since} or newer`);
  }

  const name = r.string(doc.name, 'name');
  if (!ID_RE.test(name)) throw r.bad('name', 'must start with a letter or digit and contain only letters, digits, "_", "." and "-"', name);
  const type = r.string(doc.type, 'type');
  if (/[/\\\0]/.test(type)) throw r.bad('type', 'must be a file name (no "/" or "\\")', type);

  const socket = r.optString(doc.socket, 'socket');
  if (socket !== undefined && (!socket.startsWith('/') || socket.includes('\0') || Buffer.byteLength(socket) > SOCKET_PATH_MAX)) {
    throw r.bad('socket', `must be an absolute path of at most ${SOCKET_PATH_MAX} bytes`, socket);
  }
  const capabilities = r.optObject(doc.capabilities, 'capabilities');
  for (const [k, c] of Object.entries(capabilities ?? {})) {
    if (typeof c !== 'boolean') throw r.bad(`capabilities.${k}`, 'must be true or false', c);
  }

  let prevResult: CniAddResult | undefined;
  if (doc.prevResult !== undefined) {
    try {
      prevResult = parseResult(doc.prevResult, 'prevResult');
    } catch (e) {
      if (!(onBadPrevResult && e instanceof CniError)) throw e;
      onBadPrevResult(e);
    }
  }

  const conf: CniNetConf = {
    cniVersion: v,
    name,
    type,
    socket,
    ipMasq: r.optBool(doc.ipMasq, 'ipMasq'),
    mtu: r.optInt(doc.mtu, 'mtu', 68, 65535),
    dns: parseDns(r, doc.dns, 'dns'),
    args: r.optObject(doc.args, 'args'),
    runtimeConfig: r.optObject(doc.runtimeConfig, 'runtimeConfig'),
    capabilities: capabilities as Record<string, boolean> | undefined,
    prevResult,
    raw: doc,
  };

  for (const key of Object.keys(doc)) {
    if (KNOWN_FIELDS.has(key) || key.startsWith('cni.dev/')) continue;
    const hint = key === 'ipam' ? ': podnet-cni allocates pod addresses itself, from the node\'s pod subnet' : '';
    throw new CniError(CniErrorCode.UNSUPPORTED_FIELD, `unsupported field ${key} = ${show(doc[key])} in the network configuration${hint}`);
  }
  return conf;
}

/**
 * GC's list of attachments to keep. libcni writes it under both "cni.dev/valid-attachments"
 * (the spec's name) and "cni.dev/attachments" (the name an earlier text used); either is
 * read. A missing list is an error: treating it as empty would collect every attachment.
 */
function parseValidAttachments(doc: JsonObject): CniAttachmentKey[] {
  const r = new FieldReader(CniErrorCode.INVALID_CONFIG);
  const key = doc['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = doc[key];
  if (list === undefined) {
    throw r.fail('cni.dev/valid-attachments', 'is required for GC (the attachments to keep); a missing list is not taken to mean "none"');
  }
  return r.array(list, key).map((a, i) => {
    const o = r.object(a, `${key}[${i}]`);
    return { containerId: r.string(o.containerID, `${key}[${i}].containerID`), ifname: r.string(o.ifname, `${key}[${i}].ifname`) };
  });
}
