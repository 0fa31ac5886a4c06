// `podnet demo` and `podnet demo down`, as a newcomer runs them, and what the demo claims:
// nodes Ready, pods with IPs, the ClusterIP answered from a pod on another node, the trace
// verdict Delivered — and after `down` nothing left: no namespace, process or state dir of
// the demo, and the machine's root namespace (links, addresses, routes) as before. Run twice
// to check that a second `podnet demo` replaces the first safely. The demo's namespaces carry
// this run's prefix (pnt-<pid>-demo), so a crashed run is swept like every test's.
import t from 'tap';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { NetNS } from '../src/kernel/index.js';
import { CLI } from './lib/agents.js';
import { insideOwnNetns, runPrefix, skipReason } from './lib/harness.js';

const skip = skipReason();
if (skip) t.test('podnet demo', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'demo')) {
  const prefix = `${runPrefix()}-demo`;
  const port = String(20000 + (process.pid % 20000));
  const down = () => execa(process.execPath, [CLI, 'demo', 'down', '--prefix', prefix], { reject: false, timeout: 60_000 });
  t.teardown(async () => {
    await down();
  });
  // The machine's root namespace, seen through PID 1.
  const rootState = async () => {
    const parts: string[] = [];
    for (const args of [['-j', 'link'], ['-j', 'addr'], ['-j', 'route', 'show', 'table', 'all'], ['-j', 'rule']]) {
      const r = await execa('nsenter', ['-t', '1', '-n', '--', 'ip', ...args], { reject: false });
      parts.push(String(r.stdout).replace(/"(rx|tx)_[a-z_]+":\d+,?/g, ''));
    }
    return parts.join('\n');
  };
  const before = await rootState();
  const ours = () => NetNS.list().filter((n) => n.startsWith(`${prefix}-`));

  for (const round of [1, 2]) {
    await t.test(`podnet demo (run ${round})`, async (t) => {
      const t0 = Date.now();
      const r = await execa(process.execPath, [CLI, 'demo', '--prefix', prefix, '--api-port', port], { reject: false, timeout: 120_000, env: { NO_COLOR: '1' } });
      const s = (Date.now() - t0) / 1000;
      const out = String(r.stdout);
      if (r.exitCode !== 0) t.comment(`${out}\n${String(r.stderr)}`);
      t.equal(r.exitCode, 0, `podnet demo exits 0 (${s.toFixed(1)} s)`);
      t.ok(s <= 30, `it takes at most 30 s (${s.toFixed(1)} s)`);
      if (round === 2) t.match(out, /removed the earlier demo/, 'the second run replaced the first');
      for (const n of ['n1', 'n2', 'n3']) t.match(out, new RegExp(`(node/)?${n}\\s+Ready`), `node ${n} Ready`);
      for (const p of ['client', 'web-1', 'web-2']) t.match(out, new RegExp(`${p}\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+10\\.244\\.\\d+\\.\\d+`), `pod ${p} Running with an IP`);
      const answers = [...out.matchAll(/hello from (web-[12]) \(10\.244\.\d+\.\d+\), you are (10\.244\.\d+\.\d+)/g)];
      t.equal(answers.length, 6, 'the ClusterIP answered the client pod 6 times');
      t.ok(answers.every((a) => a[1] === 'web-1' || a[1] === 'web-2'), `by the endpoints on n2 / n3 (${answers.map((a) => a[1]).join(' ')})`);
      t.match(out, /verdict: Delivered/, 'the trace verdict is Delivered');
      t.match(out, /VXLAN VNI 1 to node n[23]/, 'the trace shows the VXLAN hop');
      t.ok(existsSync(`/run/${prefix}/trace.svg`), 'the trace is written as SVG');
      // The same trace as JSON, from the control namespace, as the demo tells the user to.
      const j = await execa('nsenter', [`--net=/run/netns/${prefix}-ctl`, '--', process.execPath, CLI, 'trace', '--server', `unix:///run/${prefix}/api.sock`, '--token-file', `/run/${prefix}/admin.token`, '--from', 'default/client', '--to', 'svc/default/web:80', '--json'], { reject: false });
      const verdict = (JSON.parse(String(j.stdout) || '{}') as { verdict?: { kind: string } }).verdict?.kind;
      t.equal(verdict, 'Delivered', `podnet trace --json from ${prefix}-ctl: ${verdict ?? j.stderr}`);
      // kubectl (when installed) against the loopback port the demo printed.
      const k = await execa('kubectl', ['--kubeconfig', `/run/${prefix}/kubeconfig`, 'get', 'pods', '-o', 'name'], { reject: false }).catch(() => undefined);
      if (k) t.same(String(k.stdout).split('\n').sort(), ['pod/client', 'pod/web-1', 'pod/web-2'], 'kubectl with the written kubeconfig lists the pods');
      t.ok(ours().length >= 5, `the demo's namespaces exist (${ours().length})`);
    });
  }

  await t.test('podnet demo down removes every trace of it', async (t) => {
    const r = await down();
    t.equal(r.exitCode, 0, `podnet demo down: ${String(r.stdout).trim()}`);
    t.same(ours(), [], 'no namespace of the demo is left');
    t.notOk(existsSync(`/run/${prefix}`), `/run/${prefix} is gone`);
    const procs = await execa('pgrep', ['-f', `/run/${prefix}/`], { reject: false });
    t.equal(String(procs.stdout).trim(), '', 'no process of the demo is left');
    t.equal(await rootState(), before, "the machine's root namespace has the same links, addresses, routes and rules as before");
    const again = await down();
    t.equal(again.exitCode, 0, 'podnet demo down again: nothing to do, still success');
  });
}
