// Runs last: the machine's root network namespace has the same links, addresses, routes
// and rules as before the suite (scripts/test.sh snapshots it before any test runs).
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { rootNetnsSnapshot, skipReason, sweepLeftovers } from './lib/harness.js';
import { NetNS } from '../src/kernel/index.js';

const skip = skipReason();
const file = process.env.PODNET_ROOT_SNAPSHOT;

t.test('the root network namespace is untouched by the suite', { skip: skip ?? (!file || !existsSync(file) ? 'no snapshot from before the suite (run it through npm test)' : undefined) }, async (t) => {
  const before = JSON.parse(readFileSync(file!, 'utf8')) as Awaited<ReturnType<typeof rootNetnsSnapshot>>;
  const after = await rootNetnsSnapshot();
  t.same(after.links, before.links, 'links');
  t.same(after.addrs, before.addrs, 'addresses');
  t.same(after.routes, before.routes, 'routes (all tables)');
  t.same(after.rules, before.rules, 'policy rules');
});

t.test('no test namespaces are left behind', { skip }, async (t) => {
  sweepLeftovers();
  const left = NetNS.list().filter((n) => /^pnt-/.test(n));
  t.same(left, [], 'every pnt-* namespace was cleaned up');
});
