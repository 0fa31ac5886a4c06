// Network namespaces through the native addon: create / open / list / delete, visible to
// iproute2, equality by inode, and `run` always returning to the original namespace.
import t from 'tap';
import { readlinkSync, writeFileSync, rmSync } from 'node:fs';
import { NetNS } from '../src/kernel/index.js';
import { Scope, sh, skipReason, sweepLeftovers } from './lib/harness.js';

const skip = skipReason();

t.test('create, list, open, delete: visible to ip netns', { skip }, async (t) => {
  const scope = new Scope('ns');
  t.teardown(() => scope.cleanup());
  const name = scope.name('a');
  const ns = NetNS.create(name);
  t.teardown(() => {
    ns.close();
    NetNS.delete(name);
  });
  t.ok(NetNS.list().includes(name), 'NetNS.list shows it');
  const listed = String((await sh(undefined, 'ip', ['netns', 'list'])).stdout);
  t.match(listed, new RegExp(`^${name}\\b`, 'm'), 'ip netns list shows it');
  const links = String((await sh(undefined, 'ip', ['netns', 'exec', name, 'ip', '-o', 'link'])).stdout);
  t.match(links, /1: lo:/, 'ip netns exec works inside it');
  t.notMatch(links, /eth0/, 'it is a fresh namespace');

  const again = NetNS.open(name);
  t.ok(again.equals(ns), 'opening by name gives the same namespace (inode)');
  const byPath = NetNS.open(`/run/netns/${name}`);
  t.ok(byPath.equals(ns), 'opening by path gives the same namespace');
  t.notOk(ns.equals(NetNS.current()), 'differs from the current namespace');
  again.close();
  byPath.close();

  t.throws(() => NetNS.create(name), { code: 'PODNET_NETNS_EXISTS' }, 'creating twice is PODNET_NETNS_EXISTS');
  const ensured = NetNS.ensure(name);
  t.ok(ensured.equals(ns), 'ensure returns the existing one');
  ensured.close();

  t.equal(NetNS.delete(name), true, 'delete returns true');
  t.notOk(NetNS.list().includes(name), 'gone from the list');
  t.notMatch(String((await sh(undefined, 'ip', ['netns', 'list'])).stdout), new RegExp(`^${name}\\b`, 'm'), 'gone for ip netns list');
  t.equal(NetNS.delete(name), false, 'deleting a missing namespace is not an error');
});

t.test('errors: not found, not a netns, invalid names', { skip }, async (t) => {
  t.throws(() => NetNS.open('pnt-does-not-exist'), { code: 'PODNET_NETNS_NOT_FOUND' });
  const file = `/tmp/pnt-${process.pid}-notns`;
  writeFileSync(file, 'x');
  t.teardown(() => rmSync(file, { force: true }));
  t.throws(() => NetNS.open(file), { code: 'PODNET_NOT_A_NETNS' }, 'a regular file is refused');
  t.throws(() => NetNS.open('/proc/self/ns/uts'), { code: 'PODNET_NOT_A_NETNS', message: /not a network namespace/ }, 'a UTS namespace is refused');
  t.throws(() => NetNS.create('../escape'), { code: 'PODNET_INVALID_NAME' });
  t.throws(() => NetNS.create('a/b'), { code: 'PODNET_INVALID_NAME' });
  t.throws(() => NetNS.delete('..'), { code: 'PODNET_INVALID_NAME' });
});

t.test('run() executes inside and always comes back, even when fn throws', { skip }, async (t) => {
  const scope = new Scope('run');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const home = readlinkSync('/proc/thread-self/ns/net');
  const inside = ns.run(() => readlinkSync('/proc/thread-self/ns/net'));
  t.not(inside, home, 'inside the namespace during fn');
  t.equal(inside, `net:[${ns.ino}]`, 'it is the right namespace');
  t.equal(readlinkSync('/proc/thread-self/ns/net'), home, 'back home after fn');
  t.throws(() => ns.run(() => { throw new Error('boom'); }), /boom/);
  t.equal(readlinkSync('/proc/thread-self/ns/net'), home, 'back home after a throwing fn');
  const nested = ns.run(() => NetNS.current().run(() => readlinkSync('/proc/thread-self/ns/net')));
  t.equal(nested, inside, 'nested run in the current namespace stays there');
});

t.test('a handle keeps a deleted namespace usable until closed', { skip }, async (t) => {
  const name = `pnt-${process.pid}-held`;
  const ns = NetNS.create(name);
  NetNS.delete(name);
  t.equal(ns.run(() => readlinkSync('/proc/thread-self/ns/net')), `net:[${ns.ino}]`, 'still enterable through the fd');
  ns.close();
  t.ok(ns.closed);
  t.throws(() => ns.fd, /closed/);
});

t.test('the sweeper removes namespaces of dead runs and the processes inside them', { skip }, async (t) => {
  // A pid that certainly does not exist: beyond pid_max.
  const deadPid = 4194304 + 7;
  const name = `pnt-${deadPid}-leftover`;
  const ns = NetNS.create(name);
  t.teardown(() => {
    ns.close();
    NetNS.delete(name);
  });
  const sleeper = (await import('node:child_process')).spawn('nsenter', ['--net=' + ns.path, '--', 'sleep', '300'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 200));
  const mine = `pnt-${process.pid}-alive`;
  const keep = NetNS.create(mine);
  t.teardown(() => {
    keep.close();
    NetNS.delete(mine);
  });
  const removed = sweepLeftovers();
  t.ok(removed.includes(name), 'the dead run namespace was swept');
  t.notOk(removed.includes(mine), 'a live run namespace is kept');
  t.notOk(NetNS.list().includes(name));
  const exit = await new Promise((r) => sleeper.once('exit', (_c, s) => r(s)));
  t.equal(exit, 'SIGKILL', 'the process left inside was stopped');
});
