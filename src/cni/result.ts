/**
 * CNI result types: the ADD result in the shape of each supported spec version, the
 * error object and the VERSION answer; and the parser for a result received back as
 * `prevResult` (DEL, CHECK, chained ADD).
 *
 * Shapes by version (SPEC.md "Section 5: Result Types"):
 * - 1.1.0: interfaces[{name, mac, mtu, sandbox, socketPath, pciID}], ips[{address, gateway,
 *   interface}], routes[{dst, gw, mtu, advmss, priority, table, scope}], dns{}
 * - 1.0.0: the same without the 1.1 additions (interface mtu/socketPath/pciID, route
 *   mtu/advmss/priority/table/scope)
 * - 0.3.0, 0.3.1, 0.4.0: as 1.0.0, and every ips entry has "version": "4" | "6"
 * Empty lists are omitted and `dns` is always present, as the reference plugins print it.
 */
import { isIP } from 'node:net';
import { CniError, CniErrorCode } from './errors.js';
import { FieldReader } from './fields.js';
import { LATEST_VERSION, SUPPORTED_VERSIONS, type CniVersion } from './spec.js';

/** An interface created (or adjusted) by the attachment. */
export interface CniInterface {
  name: string;
  /** Hardware address, when L2 addresses are meaningful. */
  mac?: string;
  /** 1.1.0+: the interface MTU. */
  mtu?: number;
  /** The netns path (CNI_NETNS) for a container interface; absent for a host interface. */
  sandbox?: string;
  /** 1.1.0+: a vhost-user or similar socket path. */
  socketPath?: string;
  /** 1.1.0+: the PCI address of a device-backed interface. */
  pciID?: string;
}

/** An address assigned by the attachment. */
export interface CniIpConfig {
  /** Address with the subnet's prefix length, e.g. "10.244.1.5/24". */
  address: string;
  /** The subnet's default gateway, if it has one. */
  gateway?: string;
  /** Index into `interfaces` of the interface holding the address. */
  interface?: number;
}

/** A route created by the attachment. */
export interface CniRoute {
  /** Destination in CIDR notation ("0.0.0.0/0"). */
  dst: string;
  /** Next hop; when absent the `gateway` of the matching ips entry may be used. */
  gw?: string;
  /** 1.1.0+ route attributes. */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The success result of ADD, independent of the spec version it is printed in. */
export interface CniAddResult {
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns?: CniDns;
}

/** The error object printed on stdout when a command fails. */
export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** The VERSION answer. */
export interface CniVersionObject {
  cniVersion: string;
  supportedVersions: string[];
}

/** The JSON object of `result` in the shape of `cniVersion`. */
export function encodeResult(result: CniAddResult, cniVersion: CniVersion): Record<string, unknown> {
  const v1 = cniVersion.startsWith('1.');
  const v11 = cniVersion === '1.1.0';
  const out: Record<string, unknown> = { cniVersion };
  if (result.interfaces.length) {
    out.interfaces = result.interfaces.map((i) =>
      compact({
        name: i.name,
        mac: i.mac,
        mtu: v11 ? i.mtu : undefined,
        sandbox: i.sandbox,
        socketPath: v11 ? i.socketPath : undefined,
        pciID: v11 ? i.pciID : undefined,
      }),
    );
  }
  if (result.ips.length) {
    out.ips = result.ips.map((ip) =>
      compact({
        version: v1 ? undefined : ip.address.includes(':') ? '6' : '4',
        address: ip.address,
        gateway: ip.gateway,
        interface: ip.interface,
      }),
    );
  }
  if (result.routes.length) {
    out.routes = result.routes.map((r) =>
      compact({
        dst: r.dst,
        gw: r.gw,
        mtu: v11 ? r.mtu : undefined,
        advmss: v11 ? r.advmss : undefined,
        priority: v11 ? r.priority : undefined,
        table: v11 ? r.table : undefined,
        scope: v11 ? r.scope : undefined,
      }),
    );
  }
  out.dns = compact({ ...(result.dns ?? {}) });
  return out;
}

/** The ADD result as printed on stdout: one line of JSON. */
export function formatResult(result: CniAddResult, cniVersion: CniVersion): string {
  return `${JSON.stringify(encodeResult(result, cniVersion))}\n`;
}

/** The error object of `err`, in the configuration's cniVersion. */
export function encodeError(err: CniError, cniVersion: string = LATEST_VERSION): CniErrorObject {
  return compact<CniErrorObject>({ cniVersion, code: err.code, msg: err.message, details: err.details });
}

export function formatErrorResult(err: CniError, cniVersion: string = LATEST_VERSION): string {
  return `${JSON.stringify(encodeError(err, cniVersion))}\n`;
}

/**
 * The VERSION answer. Its cniVersion echoes the requested one ("the value of cniVersion
 * specified on input") when that is a well-formed version, else the latest.
 */
export function encodeVersionResult(requested?: string): CniVersionObject {
  // The same rule as the binary: N.N.N, at most 32 characters.
  const echo = typeof requested === 'string' && requested.length <= 32 && /^\d+\.\d+\.\d+$/.test(requested);
  return { cniVersion: echo ? requested : LATEST_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

export function formatVersionResult(requested?: string): string {
  return `${JSON.stringify(encodeVersionResult(requested))}\n`;
}

/**
 * Parses and validates a result in any supported version's shape (the `version` field of
 * 0.3/0.4 ips is checked against the address, then dropped). Throws CniError 7 naming the
 * field; `field` is the path prefix ("prevResult").
 */
export function parseResult(raw: unknown, field = 'prevResult', code: number = CniErrorCode.INVALID_CONFIG): CniAddResult {
  const r = new FieldReader(code);
  const o = r.object(raw, field);
  const interfaces = (r.optArray(o.interfaces, `${field}.interfaces`) ?? []).map((v, i) => {
    const p = `${field}.interfaces[${i}]`;
    const it = r.object(v, p);
    return compact<CniInterface>({
      name: r.string(it.name, `${p}.name`),
      mac: r.optString(it.mac, `${p}.mac`, false),
      mtu: r.optInt(it.mtu, `${p}.mtu`, 0, 0x7fffffff),
      sandbox: r.optString(it.sandbox, `${p}.sandbox`, false),
      socketPath: r.optString(it.socketPath, `${p}.socketPath`, false),
      pciID: r.optString(it.pciID, `${p}.pciID`, false),
    });
  });
  const ips = (r.optArray(o.ips, `${field}.ips`) ?? []).map((v, i) => {
    const p = `${field}.ips[${i}]`;
    const ip = r.object(v, p);
    const address = cidr(r, ip.address, `${p}.address`);
    const family = address.includes(':') ? '6' : '4';
    if (ip.version !== undefined && ip.version !== family) {
      throw r.bad(`${p}.version`, `must be "${family}" for address ${address}`, ip.version);
    }
    const gateway = ip.gateway === undefined ? undefined : addr(r, ip.gateway, `${p}.gateway`);
    const index = r.optInt(ip.interface, `${p}.interface`, 0, Math.max(0, interfaces.length - 1));
    if (index !== undefined && interfaces.length === 0) throw r.fail(`${p}.interface`, 'refers to an interface but interfaces is empty');
    return compact<CniIpConfig>({ address, gateway, interface: index });
  });
  const routes = (r.optArray(o.routes, `${field}.routes`) ?? []).map((v, i) => {
    const p = `${field}.routes[${i}]`;
    const rt = r.object(v, p);
    return compact<CniRoute>({
      dst: cidr(r, rt.dst, `${p}.dst`),
      gw: rt.gw === undefined ? undefined : addr(r, rt.gw, `${p}.gw`),
      mtu: r.optInt(rt.mtu, `${p}.mtu`, 0, 0x7fffffff),
      advmss: r.optInt(rt.advmss, `${p}.advmss`, 0, 0x7fffffff),
      priority: r.optInt(rt.priority, `${p}.priority`, 0, 0xffffffff),
      table: r.optInt(rt.table, `${p}.table`, 0, 0xffffffff),
      scope: r.optInt(rt.scope, `${p}.scope`, 0, 255),
    });
  });
  const dns = parseDns(r, o.dns, `${field}.dns`);
  return compact<CniAddResult>({ interfaces, ips, routes, dns });
}

/** Parses a `dns` object (network configuration or result). */
export function parseDns(r: FieldReader, raw: unknown, path: string): CniDns | undefined {
  const d = r.optObject(raw, path);
  if (!d) return undefined;
  return compact<CniDns>({
    nameservers: r.optStringArray(d.nameservers, `${path}.nameservers`),
    domain: r.optString(d.domain, `${path}.domain`, false),
    search: r.optStringArray(d.search, `${path}.search`),
    options: r.optStringArray(d.options, `${path}.options`),
  });
}

/** "ADDR/LEN" with host bits allowed (an interface address or a route destination). */
function cidr(r: FieldReader, v: unknown, path: string): string {
  const s = r.string(v, path);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  const family = m ? isIP(m[1]!) : 0;
  if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) {
    throw r.bad(path, 'must be an address with a prefix length like 10.244.1.5/24', v);
  }
  return s;
}

function addr(r: FieldReader, v: unknown, path: string): string {
  const s = r.string(v, path);
  if (isIP(s) === 0) throw r.bad(path, 'must be an IPv4 or IPv6 address', v);
  return s;
}

/** A copy of `o` without its undefined members. */
function compact<T extends object>(o: { [K in keyof T]: T[K] | undefined }): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}
