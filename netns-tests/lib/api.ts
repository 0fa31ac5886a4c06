/**
 * Runs `podnet api` as a real process for privileged tests (inside the test's own network
 * namespace: see insideOwnNetns), with a temp data dir, a token file (an admin and node
 * identities) and a kubeconfig for kubectl. Stopped by PID.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { makeCerts } from './certs.js';
import { testTempDir } from './harness.js';
import type { TestCerts } from './certs.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export const ADMIN_TOKEN = 'admin-token-0123456789';
export const nodeToken = (n: string) => `node-token-${n}`;

export interface ApiProcess {
  url: string;
  /** The CA that signed the server certificate (https only). */
  certs: TestCerts | undefined;
  dir: string;
  dataDir: string;
  kubeconfig: string;
  tokenFile: string;
  proc: ChildProcess;
  /** Ends the process with `signal` (SIGKILL for a crash) and waits for it. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same data dir and port. */
  restart(): Promise<void>;
  /** Admin request helper. */
  call<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
  cleanup(): Promise<void>;
  logs(): string;
}

export interface ApiProcessOptions {
  port?: number;
  /** Address to listen on (default 127.0.0.1); also put in the certificate. */
  host?: string;
  nodes?: string[];
  extraArgs?: string[];
  /** Serve plain HTTP (kubectl will not send a token then: only for anonymous tests). */
  insecure?: boolean;
  /** Use etcd instead of SQLite. */
  etcdServers?: string;
  etcdPrefix?: string;
  /** Options for node itself (e.g. --cpu-prof when profiling a benchmark). */
  nodeArgs?: string[];
}

/** SIGKILL, but a profiled process writes its profile only when it exits by itself: SIGTERM then. */
export const stopSignal = (nodeArgs: readonly string[] | undefined): NodeJS.Signals => (nodeArgs?.some((a) => a.startsWith('--cpu-prof') || a.startsWith('--heap-prof')) ? 'SIGTERM' : 'SIGKILL');

export async function startApi(opts: ApiProcessOptions = {}): Promise<ApiProcess> {
  const dir = testTempDir('api');
  const dataDir = join(dir, 'data');
  const tokenFile = join(dir, 'tokens.csv');
  const lines = [`${ADMIN_TOKEN},admin,uid-admin,"system:masters"`];
  for (const n of opts.nodes ?? ['n1', 'n2', 'n3']) lines.push(`${nodeToken(n)},system:node:${n},uid-${n},"system:nodes"`);
  writeFileSync(tokenFile, lines.join('\n') + '\n');
  const port = opts.port ?? 6443;
  const host = opts.host ?? '127.0.0.1';
  const certs = opts.insecure ? undefined : await makeCerts(host === '127.0.0.1' ? [] : [host]);
  const url = `${certs ? 'https' : 'http'}://${host}:${port}`;
  const dispatcher = certs ? new Agent({ connect: { ca: certs.caPem } }) : undefined;
  const kubeconfig = join(dir, 'kubeconfig');
  const caData = certs ? Buffer.from(certs.caPem).toString('base64') : '';
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: podnet, cluster: {server: "' + url + '"' + (certs ? ', certificate-authority-data: "' + caData + '"' : '') + '}}]',
      'users: [{name: admin, user: {token: "' + ADMIN_TOKEN + '"}}]',
      'contexts: [{name: podnet, context: {cluster: podnet, user: admin, namespace: default}}]',
      'current-context: podnet',
      '',
    ].join('\n'),
  );
  let out = '';
  const args = [
    ...(opts.nodeArgs ?? []),
    CLI, 'api',
    '--listen', `${host}:${port}`,
    '--token-auth-file', tokenFile,
    ...(certs ? ['--tls-cert-file', certs.certFile, '--tls-private-key-file', certs.keyFile] : []),
    ...(opts.etcdServers ? ['--etcd-servers', opts.etcdServers, ...(opts.etcdPrefix ? ['--etcd-prefix', opts.etcdPrefix] : [])] : ['--data-dir', dataDir]),
    ...(opts.extraArgs ?? []),
  ];
  const api: ApiProcess = {
    url,
    certs,
    dir,
    dataDir,
    kubeconfig,
    tokenFile,
    proc: undefined as unknown as ChildProcess,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      const p = api.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill(signal);
      await exited;
    },
    async restart() {
      api.proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PODNET_LOG_LEVEL: process.env.PODNET_LOG_LEVEL ?? 'warn' } });
      api.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      api.proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      await waitReady(url, api.proc, () => out, dispatcher);
    },
    async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const r = await request(url + path, {
        ...(dispatcher ? { dispatcher } : {}),
        method: method as 'GET',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      const text = await r.body.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: r.statusCode, body: parsed as T };
    },
    async cleanup() {
      await api.kill(stopSignal(opts.nodeArgs));
      await dispatcher?.close();
      certs?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
    logs: () => out,
  };
  await api.restart();
  return api;
}

async function waitReady(url: string, proc: ChildProcess, logs: () => string, dispatcher: Agent | undefined): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`podnet api exited (${proc.exitCode}) before it was ready:\n${logs()}`);
    try {
      const r = await request(`${url}/readyz`, dispatcher ? { dispatcher } : {});
      const t = await r.body.text();
      if (r.statusCode === 200 && t === 'ok') return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`podnet api not ready after 20 s:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
