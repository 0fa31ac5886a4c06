// kubectl — a real Kubernetes client — against a running `podnet api` (inside this test's
// own network namespace): apply, get (-o wide, -A, -o yaml), apply of a changed manifest,
// get --watch seeing an update, endpointslices, delete.
import t from 'tap';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { insideOwnNetns, skipReason, waitFor, testTempDir } from './lib/harness.js';
import { startApi } from './lib/api.js';

const kubectlMissing = await execa('kubectl', ['version', '--client'], { reject: false }).then((r) => (r.exitCode === 0 ? undefined : 'kubectl is not installed'), () => 'kubectl is not installed');
const skip = skipReason() ?? kubectlMissing;

if (skip) {
  t.test('kubectl against podnet api', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'kubectl')) {
  await (async () => {
    const api = await startApi();
    t.teardown(() => api.cleanup());
    const cache = testTempDir('kcache');
    t.teardown(() => rmSync(cache, { recursive: true, force: true }));
    const kubectl = (...args: string[]) => execa('kubectl', ['--kubeconfig', api.kubeconfig, '--cache-dir', cache, ...args], { reject: false, timeout: 30_000 });
    const ok = async (...args: string[]) => {
      const r = await kubectl(...args);
      if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
      return r;
    };
    const manifest = (port: number, replicasLabel = 'v1') => `apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {tier: front, rev: ${replicasLabel}}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: ${port}
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web}
spec:
  nodeName: n1
  containers:
  - name: srv
    image: podnet/demo
    ports:
    - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Node
metadata:
  name: n1
status:
  addresses: [{type: InternalIP, address: 198.18.0.1}]
  conditions: [{type: Ready, status: "True", reason: KubeletReady, message: ready}]
`;
    const dir = testTempDir('manifests');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'app.yaml');
    writeFileSync(file, manifest(80));

    t.test('apply creates', async (t) => {
      const r = await ok('apply', '-f', file);
      t.match(r.stdout, /service\/web created/);
      t.match(r.stdout, /pod\/web-0 created/);
      t.match(r.stdout, /node\/n1 created/);
      t.notMatch(r.stderr, /warning/i, 'no warnings (openapi v3 patch computation works)');
      const svc = await api.call<{ spec: { clusterIP: string } }>('GET', '/api/v1/namespaces/default/services/web');
      t.equal(svc.status, 200, 'the service is stored');
      t.match(svc.body.spec.clusterIP, /^10\.(9[6-9]|1[01][0-9])\./, 'with a ClusterIP from 10.96.0.0/12');
    });

    t.test('get -o wide shows the usual columns', async (t) => {
      const svc = (await ok('get', 'svc', '-o', 'wide')).stdout;
      t.match(svc, /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\s+SELECTOR/m);
      t.match(svc, /^web\s+ClusterIP\s+10\.\d+\.\d+\.\d+\s+<none>\s+80\/TCP\s+\S+\s+app=web/m);
      const nodes = (await ok('get', 'nodes', '-o', 'wide')).stdout;
      t.match(nodes, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP/m);
      t.match(nodes, /^n1\s+Ready\s+<none>\s+\S+\s+\S+\s+198\.18\.0\.1/m);
      // Give the pod an IP the way an agent would, then look at it.
      const st = await api.call('PATCH', '/api/v1/namespaces/default/pods/web-0/status', { status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }], hostIP: '198.18.0.1', conditions: [{ type: 'Ready', status: 'True' }] } }, { 'content-type': 'application/merge-patch+json' });
      t.equal(st.status, 200);
      const pods = (await ok('get', 'pods', '-o', 'wide')).stdout;
      t.match(pods, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE/m);
      t.match(pods, /^web-0\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.5\s+n1/m);
      const all = (await ok('get', 'svc,pods,nodes', '-A')).stdout;
      t.match(all, /^NAMESPACE\s+NAME/m, '-A prints a NAMESPACE column');
      t.match(all, /^default\s+service\/web/m);
      t.match(all, /^default\s+pod\/web-0/m);
    });

    t.test('endpointslices list the pod', async (t) => {
      const out = await waitFor(async () => {
        const r = (await ok('get', 'endpointslices')).stdout;
        return /^web-\S+\s+IPv4\s+8080\s+10\.244\.1\.5/m.test(r) ? r : undefined;
      }, 10_000, 'the endpoint slice of web');
      t.match(out, /^NAME\s+ADDRESSTYPE\s+PORTS\s+ENDPOINTS/m);
      const yaml = (await ok('get', 'endpointslices', '-l', 'kubernetes.io/service-name=web', '-o', 'yaml')).stdout;
      t.match(yaml, /nodeName: n1/);
      t.match(yaml, /ready: true/);
    });

    t.test('-o yaml and apply of a changed manifest', async (t) => {
      const y = (await ok('get', 'svc', 'web', '-o', 'yaml')).stdout;
      t.match(y, /kubectl\.kubernetes\.io\/last-applied-configuration/);
      t.match(y, /port: 80\n/);
      writeFileSync(file, manifest(8080, 'v2'));
      const r = await ok('apply', '-f', file);
      t.match(r.stdout, /service\/web configured/);
      t.match(r.stdout, /pod\/web-0 unchanged/);
      const svc = await api.call<{ spec: { ports: { port: number }[] }; metadata: { labels: Record<string, string> } }>('GET', '/api/v1/namespaces/default/services/web');
      t.same(svc.body.spec.ports.map((p) => p.port), [8080], 'the port was replaced, not added (strategic merge with $setElementOrder)');
      t.equal(svc.body.metadata.labels.rev, 'v2');
    });

    t.test('get --watch sees an update', async (t) => {
      const child = spawn('kubectl', ['--kubeconfig', api.kubeconfig, '--cache-dir', cache, 'get', 'svc', 'web', '--watch', '--output-watch-events'], { stdio: ['ignore', 'pipe', 'pipe'] });
      t.teardown(() => child.kill('SIGKILL'));
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => /ADDED\s+web/.test(out), 10_000, 'the initial ADDED line');
      const r = await api.call('PATCH', '/api/v1/namespaces/default/services/web', { spec: { ports: [{ name: 'http', port: 9090, targetPort: 'http' }] } }, { 'content-type': 'application/merge-patch+json' });
      t.equal(r.status, 200);
      await waitFor(() => /MODIFIED\s+web\s+ClusterIP\s+\S+\s+\S+\s+9090\/TCP/.test(out), 10_000, 'the MODIFIED line with the new port');
      t.pass('kubectl printed the change');
    });

    t.test('delete', async (t) => {
      const r = await ok('delete', 'svc', 'web');
      t.match(r.stdout, /service "web" deleted/);
      const g = await api.call('GET', '/api/v1/namespaces/default/services/web');
      t.equal(g.status, 404);
      const p = await ok('delete', 'pod', 'web-0', '--grace-period=0', '--force');
      t.match(p.stdout + p.stderr, /pod "web-0" (force )?deleted/);
      t.equal((await api.call('GET', '/api/v1/namespaces/default/pods/web-0')).status, 404);
      const slices = await waitFor(async () => {
        const l = await api.call<{ items: unknown[] }>('GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices');
        return l.body.items.length === 0 ? l : undefined;
      }, 10_000, 'managed slices to go with the service');
      t.same(slices?.body.items, []);
    });

    t.test('errors reach kubectl as Status messages', async (t) => {
      writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {ports: [{port: 70000}]}\n');
      const r = await kubectl('apply', '-f', join(dir, 'bad.yaml'));
      t.not(r.exitCode, 0);
      t.match(r.stderr, /is invalid/);
      t.match(r.stderr, /metadata\.name/);
      t.match(r.stderr, /spec\.ports\[0\]\.port/);
      writeFileSync(join(dir, 'unknown.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: typo}\nspec: {ports: [{port: 80}], selectr: {app: x}}\n');
      const u = await kubectl('apply', '-f', join(dir, 'unknown.yaml'));
      t.not(u.exitCode, 0, 'strict field validation (kubectl default) refuses an unknown field');
      t.match(u.stderr, /selectr/);
      t.equal((await api.call('GET', '/api/v1/namespaces/default/services/typo')).status, 404, 'nothing stored');
    });
  })();
}
