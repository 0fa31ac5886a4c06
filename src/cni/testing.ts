/**
 * Test helpers for the CNI layer: request builders and a recording fake handler.
 * Not imported by production code.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ErrorCode } from '../util/errors.js';
import { CniError } from './errors.js';
import type { CniHandler } from './handler.js';
import type { CniAddRequest, CniCheckRequest, CniDelRequest, CniGcRequest, CniRawRequest, CniRequest, CniStatusRequest } from './protocol.js';
import type { CniAddResult } from './result.js';

export const CONTAINER_ID = '3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755';

/** A valid network configuration, with `extra` merged in (undefined removes a key). */
export function netConf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const conf: Record<string, unknown> = { cniVersion: '1.0.0', name: 'podnet', type: 'podnet-cni', ...extra };
  for (const [k, v] of Object.entries(conf)) if (v === undefined) delete conf[k];
  return conf;
}

/** The environment a runtime sets for `command` (undefined in `extra` removes a variable). */
export function cniEnv(command: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: CONTAINER_ID,
    CNI_NETNS: '/run/netns/netns-0b8c4f6e',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=5d1f0c2e-1111-2222-3333-444455556666',
    CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
    ...extra,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

export function rawRequest(command: string, conf: Record<string, unknown> | string = netConf(), env: Record<string, string | undefined> = {}): CniRawRequest {
  return { env: cniEnv(command, env), stdin: typeof conf === 'string' ? conf : JSON.stringify(conf) };
}

/** The result the fake handler returns for ADD. */
export const SAMPLE_RESULT: CniAddResult = {
  interfaces: [
    { name: 'podnet0', mac: '02:42:0a:f4:01:01' },
    { name: 'pn3f6940ab', mac: '02:42:0a:f4:01:02' },
    { name: 'eth0', mac: '02:42:0a:f4:01:05', sandbox: '/run/netns/netns-0b8c4f6e' },
  ],
  ips: [
    { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
    { address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0' }],
  dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
};

/** A CniHandler that records each request and answers from its fields. */
export class FakeHandler implements CniHandler {
  readonly calls: CniRequest[] = [];
  result: CniAddResult = SAMPLE_RESULT;
  /** Thrown by every method when set. */
  error: unknown;
  /** Awaited by every method before it answers. */
  gate: Promise<void> | undefined;

  async add(req: CniAddRequest): Promise<CniAddResult> {
    await this.enter(req);
    return this.result;
  }
  async del(req: CniDelRequest): Promise<void> {
    await this.enter(req);
  }
  async check(req: CniCheckRequest): Promise<void> {
    await this.enter(req);
  }
  async status(req: CniStatusRequest): Promise<void> {
    await this.enter(req);
  }
  async gc(req: CniGcRequest): Promise<void> {
    await this.enter(req);
  }

  private async enter(req: CniRequest): Promise<void> {
    this.calls.push(req);
    if (this.gate) await this.gate;
    if (this.error !== undefined) throw this.error;
  }
}

/** Parses a CNI error object from stdout. */
export function errorOf(stdout: string): { cniVersion: string; code: number; msg: string; details?: string } {
  const o = JSON.parse(stdout) as { cniVersion: string; code: number; msg: string; details?: string };
  if (typeof o.code !== 'number') throw new CniError(999, `not an error object: ${stdout}`);
  return o;
}

/** The repository root (the directory with package.json and native/binding.gyp). */
export function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'native', 'binding.gyp'))) return d;
    d = resolve(d, '..');
  }
  return process.cwd();
}

/** An IPAM error code by name (the IPAM room owns the list; the mapping is keyed by string). */
export function ipamCode(code: string): ErrorCode {
  return code as ErrorCode;
}
