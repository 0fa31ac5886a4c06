// The pause program owns a pod's namespaces: it keeps the network namespace alive after
// the process that started it has exited, and releases it on SIGTERM.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { NetNS } from '../src/kernel/index.js';
import { pauseBinary } from '../src/kernel/native.js';
import { alive, startPause, stopPause } from '../src/kernel/pause.js';
import { Scope, ipJson, skipReason, waitFor } from './lib/harness.js';

const skip = skipReason();
const pauseModule = fileURLToPath(new URL('../src/kernel/pause.js', import.meta.url));

t.test('pause holds the namespace after its creator exits and releases it on SIGTERM', { skip }, async (t) => {
  const scope = new Scope('pause');
  t.teardown(() => scope.cleanup());
  const name = scope.name('pod');
  const path = `/run/netns/${name}`;
  t.teardown(() => NetNS.delete(name));

  // The creator is a separate Node process that starts pause and exits at once.
  const creator = await execa(process.execPath, ['--input-type=module', '-e', `const { startPause } = await import(${JSON.stringify(pauseModule)}); const pid = await startPause({ netnsPath: ${JSON.stringify(path)}, hostname: 'web-0' }); console.log(pid);`]);
  const pid = scope.own(Number(String(creator.stdout).trim()));
  t.ok(pid > 0, `creator started pause (pid ${pid}) and exited`);
  t.ok(alive(pid), 'pause is still running after its creator exited');
  t.ok(existsSync(path), 'the namespace is pinned at /run/netns/NAME');
  const ns = NetNS.open(name);
  t.equal(readlinkSync(`/proc/${pid}/ns/net`), `net:[${ns.ino}]`, 'the pinned namespace is the one pause owns');
  t.not(readlinkSync(`/proc/${pid}/ns/ipc`), readlinkSync('/proc/self/ns/ipc'), 'pause has its own IPC namespace');
  const hostname = await execa('nsenter', [`--uts=/proc/${pid}/ns/uts`, '--', 'hostname']);
  t.equal(String(hostname.stdout).trim(), 'web-0', 'pause has its own UTS namespace with the pod hostname');
  t.equal((await execa('ps', ['-o', 'sid=', '-p', String(pid)])).stdout.trim(), String(pid), 'pause leads its own session (detached)');

  // A veth whose other end lives in pause's namespace disappears when that namespace dies.
  const probe = await scope.netns('probe');
  const nl = scope.netlink(probe);
  await nl.links.ensure({ kind: 'veth', name: 'toPod', peer: { name: 'eth0', netns: ns } });
  ns.close();
  t.ok(await nl.links.get('toPod'), 'veth into the pod namespace exists');

  await stopPause(pid);
  t.notOk(alive(pid), 'pause exited on SIGTERM');
  t.notOk(existsSync(path), 'pause unpinned the namespace on its way out');
  await waitFor(async () => !(await nl.links.get('toPod')), 10_000, 'the pod namespace to be destroyed');
  t.pass('the namespace was released: the kernel destroyed it and the veth with it');
  t.same((await ipJson(probe, ['link', 'show', 'toPod']).catch(() => [])) as unknown[], [], 'ip agrees the veth is gone');
});

t.test('pause exits 0 on SIGINT and SIGTERM, and 2 on bad arguments', { skip }, async (t) => {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const child = spawn(pauseBinary(), [], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    child.kill(sig);
    const code = await new Promise((r) => child.once('exit', (c) => r(c)));
    t.equal(code, 0, `${sig}: clean exit`);
  }
  const bad = await execa(pauseBinary(), ['--bogus'], { reject: false });
  t.equal(bad.exitCode, 2, 'unknown flag: exit 2');
  const rel = await execa(pauseBinary(), ['--netns', 'relative/path'], { reject: false });
  t.equal(rel.exitCode, 2, 'relative --netns: exit 2');
  t.match(rel.stderr, /absolute path/);
});

t.test('startPause reports a failure to pin as an error', { skip }, async (t) => {
  const scope = new Scope('pausefail');
  t.teardown(() => scope.cleanup());
  const taken = await scope.netns('taken');
  await t.rejects(startPause({ netnsPath: taken.path }), { code: 'PODNET_NATIVE', message: /pause exited before it was ready.*File exists/ });
});
