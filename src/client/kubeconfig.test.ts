import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, ClientErrorCodes } from './errors.js';
import { configFromFlags, defaultKubeconfigPath, inClusterConfig, loadKubeconfig, parseKubeconfig } from './kubeconfig.js';

let dir: string;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podnet-kubeconfig-'));
  await mkdir(join(dir, 'certs'));
  await writeFile(join(dir, 'certs', 'ca.crt'), 'CA-PEM');
  await writeFile(join(dir, 'certs', 'client.crt'), 'CERT-PEM');
  await writeFile(join(dir, 'certs', 'client.key'), 'KEY-PEM');
  await writeFile(join(dir, 'token'), 'file-token\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a kubeconfig and loads it, returning the error if it fails. */
async function load(text: string, context?: string): Promise<Awaited<ReturnType<typeof loadKubeconfig>>> {
  const path = join(dir, 'config');
  await writeFile(path, text);
  return loadKubeconfig({ path, ...(context ? { context } : {}) });
}
async function loadError(text: string, context?: string): Promise<ClientError> {
  const e = await load(text, context).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ClientError);
  expect((e as ClientError).code).toBe(ClientErrorCodes.KUBECONFIG);
  return e as ClientError;
}

const base = (user: string, cluster = 'server: https://10.0.0.1:6443'): string => `
apiVersion: v1
kind: Config
current-context: a
clusters:
- name: c1
  cluster:
    ${cluster}
contexts:
- name: a
  context: {cluster: c1, user: u1, namespace: kube-system}
- name: b
  context: {cluster: c1}
users:
- name: u1
  user:
    ${user}
`;

describe('loadKubeconfig', () => {
  it('reads server, token and the context namespace of the current context', async () => {
    const c = await load(base('token: abc'));
    expect(c.server).toBe('https://10.0.0.1:6443');
    expect(c.token).toBe('abc');
    expect(c.namespace).toBe('kube-system');
    expect(c.insecureSkipTLSVerify).toBeUndefined();
    expect(c.source).toContain('context a');
  });

  it('uses a named context instead of current-context (no user: anonymous)', async () => {
    const c = await load(base('token: abc'), 'b');
    expect(c.token).toBeUndefined();
    expect(c.namespace).toBeUndefined();
  });

  it('reads a token file relative to the kubeconfig directory and remembers it for rotation', async () => {
    const c = await load(base('tokenFile: token'));
    expect(c.token).toBe('file-token');
    expect(c.tokenFile).toBe(join(dir, 'token'));
  });

  it('prefers token over tokenFile, as client-go does', async () => {
    const c = await load(base('{token: inline, tokenFile: token}'));
    expect(c.token).toBe('inline');
    expect(c.tokenFile).toBeUndefined();
  });

  it('decodes certificate-authority-data and client cert/key data', async () => {
    const c = await load(
      base(`{client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')}}`, `{server: "https://k:6443", certificate-authority-data: ${b64('CA')}}`),
    );
    expect(c.ca?.toString()).toBe('CA');
    expect(c.cert?.toString()).toBe('CERT');
    expect(c.key?.toString()).toBe('KEY');
  });

  it('reads certificate files relative to the kubeconfig directory (absolute paths as given)', async () => {
    const c = await load(
      base(`{client-certificate: certs/client.crt, client-key: ${join(dir, 'certs', 'client.key')}}`, '{server: "https://k:6443", certificate-authority: certs/ca.crt}'),
    );
    expect(c.ca?.toString()).toBe('CA-PEM');
    expect(c.cert?.toString()).toBe('CERT-PEM');
    expect(c.key?.toString()).toBe('KEY-PEM');
  });

  it('accepts insecure-skip-tls-verify and tls-server-name', async () => {
    const c = await load(base('token: x', '{server: "https://k:6443", insecure-skip-tls-verify: true, tls-server-name: api.example}'));
    expect(c.insecureSkipTLSVerify).toBe(true);
    expect(c.tlsServerName).toBe('api.example');
  });

  it('reads JSON kubeconfigs too', async () => {
    const json = JSON.stringify({
      'current-context': 'x',
      clusters: [{ name: 'c', cluster: { server: 'http://127.0.0.1:8080/prefix/' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      users: [{ name: 'u', user: { username: 'admin', password: 'pw' } }],
    });
    const c = await load(json);
    expect(c.server).toBe('http://127.0.0.1:8080/prefix');
    expect(c.username).toBe('admin');
    expect(c.password).toBe('pw');
  });

  it.each([
    ['a token file that cannot be read', base('tokenFile: /nonexistent/token'), 'users[0].user.tokenFile: cannot read /nonexistent/token: ENOENT'],
    ['the token-file spelling', base('token-file: /nonexistent/t'), 'users[0].user.token-file: cannot read /nonexistent/t: ENOENT'],
    ['a missing CA file', base('token: x', '{server: "https://k", certificate-authority: nope.crt}'), 'clusters[0].cluster.certificate-authority: cannot read $DIR/nope.crt: ENOENT'],
    ['a missing server', base('token: x', '{insecure-skip-tls-verify: true}'), 'clusters[0].cluster.server: is required'],
    ['a server that is not a URL', base('token: x', '{server: "k8s:6443:x"}'), 'clusters[0].cluster.server: "k8s:6443:x": scheme must be https or http'],
    ['bad base64', base('token: x', '{server: "https://k", certificate-authority-data: "%%%"}'), 'clusters[0].cluster.certificate-authority-data: is not valid base64'],
    ['a cert without a key', base(`client-certificate-data: ${b64('C')}`), 'users[0].user.client-key: is required with client-certificate (or use client-key-data)'],
    ['insecure with a CA', base('token: x', `{server: "https://k", insecure-skip-tls-verify: true, certificate-authority-data: ${b64('CA')}}`), 'clusters[0].cluster.insecure-skip-tls-verify: cannot be combined with certificate-authority(-data): pick one'],
    ['an exec plugin', base('exec: {command: aws}'), 'users[0].user.exec: is not supported by podnet (use a token, token file or client certificate)'],
    ['a wrongly typed field', base('token: 12'), 'users[0].user.token: must be a string, not number'],
    ['a non-boolean insecure flag', base('token: x', '{server: "https://k", insecure-skip-tls-verify: maybe}'), 'clusters[0].cluster.insecure-skip-tls-verify: must be true or false, not "maybe"'],
  ])('names the field for %s', async (_name, text, message) => {
    const e = await loadError(text);
    expect(e.message).toBe(message.replace('$DIR', dir));
    expect(e.context['field']).toBe(message.split(':')[0]);
  });

  it('names unknown contexts, clusters and users with the ones that exist', async () => {
    expect((await loadError(base('token: x'), 'zzz')).message).toBe('contexts: no context named "zzz" in contexts (have: a, b)');
    const noCluster = base('token: x').replace('{cluster: c1, user: u1', '{cluster: c9, user: u1');
    expect((await loadError(noCluster)).message).toBe('contexts[0].context.cluster: no cluster named "c9" in clusters (have: c1)');
    const noUser = base('token: x').replace('user: u1,', 'user: u9,');
    expect((await loadError(noUser)).message).toBe('contexts[0].context.user: no user named "u9" in users (have: u1)');
  });

  it('requires a current-context when no context is asked for', async () => {
    const e = await loadError(base('token: x').replace('current-context: a', ''));
    expect(e.message).toBe('current-context: is not set and no context was asked for');
  });

  it('reports unreadable and malformed files', async () => {
    const missing = (await loadKubeconfig({ path: join(dir, 'nope') }).catch((e: unknown) => e)) as ClientError;
    expect(missing.message).toBe(`cannot read kubeconfig ${join(dir, 'nope')}: ENOENT`);
    expect((await loadError('clusters: [')).message).toMatch(/^not valid YAML or JSON/);
    expect((await loadError('just text')).message).toMatch(/^is not a kubeconfig/);
  });

  it('parses text in memory with a base directory', async () => {
    const c = await parseKubeconfig(base('tokenFile: token'), { dir });
    expect(c.token).toBe('file-token');
  });
});

describe('configFromFlags', () => {
  it('builds a config from server, token, CA file and insecure', async () => {
    const c = await configFromFlags({ server: 'https://10.0.0.1:6443', token: 't', caFile: join(dir, 'certs', 'ca.crt') });
    expect(c).toMatchObject({ server: 'https://10.0.0.1:6443', token: 't', source: 'flags' });
    expect(c.ca?.toString()).toBe('CA-PEM');
    expect((await configFromFlags({ server: 'https://x', insecure: true })).insecureSkipTLSVerify).toBe(true);
  });

  it('turns unix:// servers into a socket path over plain HTTP', async () => {
    expect(await configFromFlags({ server: 'unix:///run/podnet/api.sock' })).toMatchObject({ server: 'http://localhost', socketPath: '/run/podnet/api.sock' });
  });

  it('names the flag that is wrong', async () => {
    const err = (p: Promise<unknown>): Promise<string> => p.then(() => 'no error', (e: unknown) => (e as Error).message);
    expect(await err(configFromFlags({ server: '' }))).toBe('server: is required');
    expect(await err(configFromFlags({ server: 'https://x', caFile: '/nonexistent/ca' }))).toBe('caFile: cannot read /nonexistent/ca: ENOENT');
    expect(await err(configFromFlags({ server: 'https://x', insecure: true, caFile: '/ca' }))).toBe('insecure: cannot be combined with caFile: pick one');
    expect(await err(configFromFlags({ server: 'https://x', certFile: '/c' }))).toBe('keyFile: is required with certFile');
  });
});

describe('inClusterConfig and defaultKubeconfigPath', () => {
  it('reads the service account mount', async () => {
    const sa = join(dir, 'sa');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'token'), 'sa-token\n');
    await writeFile(join(sa, 'ca.crt'), 'SA-CA');
    await writeFile(join(sa, 'namespace'), 'kube-system');
    const c = await inClusterConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '443' }, dir: sa });
    expect(c).toMatchObject({ server: 'https://[fd00:10:96::1]:443', token: 'sa-token', tokenFile: join(sa, 'token'), namespace: 'kube-system' });
    expect(c.ca?.toString()).toBe('SA-CA');
    await expect(inClusterConfig({ env: {}, dir: sa })).rejects.toThrow('KUBERNETES_SERVICE_HOST: is not set');
  });

  it('follows $KUBECONFIG, else ~/.kube/config', () => {
    expect(defaultKubeconfigPath({ env: { KUBECONFIG: '/a:/b' } })).toBe('/a');
    expect(defaultKubeconfigPath({ env: {}, home: '/home/x' })).toBe('/home/x/.kube/config');
  });
});
