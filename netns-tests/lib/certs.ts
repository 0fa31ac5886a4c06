/**
 * A throw-away CA and a server certificate (SAN 127.0.0.1, ::1, localhost and extra
 * names), made with openssl, for tests that serve HTTPS.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { testTempDir } from './harness.js';

export interface TestCerts {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  caPem: string;
  cleanup(): void;
}

export async function makeCerts(extraSans: string[] = []): Promise<TestCerts> {
  const dir = testTempDir('certs');
  const p = (f: string) => join(dir, f);
  const ossl = (...args: string[]) => execa('openssl', args, { cwd: dir });
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=podnet-test-ca');
  await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=podnet-api');
  const sans = ['IP:127.0.0.1', 'IP:::1', 'DNS:localhost', ...extraSans.map((s) => (/^[\d.:]+$/.test(s) ? `IP:${s}` : `DNS:${s}`))];
  writeFileSync(p('ext.cnf'), `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\n`);
  await ossl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.crt'), '-days', '2', '-extfile', p('ext.cnf'));
  return {
    dir,
    caFile: p('ca.crt'),
    certFile: p('server.crt'),
    keyFile: p('server.key'),
    caPem: readFileSync(p('ca.crt'), 'utf8'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
