#!/usr/bin/env node
// Sums the results of every test tier into one last line: "N passed, N failed[, N skipped]".
// Counts test cases: vitest tests, and the top-level t.test() blocks of each tap file
// (read from the raw TAP tap saves in .tap/test-results). A tier that failed without a
// failing test case (crash, build error) counts as one failure, so it cannot pass unseen.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};

const tiers = [];

function tierFromRc(name, rc, counts) {
  if (Number(rc ?? 0) !== 0 && counts.failed === 0) {
    counts.failed = 1;
    counts.notes.push(`${name} tier exited with status ${rc} outside any test`);
  }
  tiers.push({ name, ...counts });
}

if (opt('build-rc') !== undefined) tierFromRc('build', opt('build-rc'), { passed: 0, failed: 0, skipped: 0, notes: [] });

if (opt('unit')) {
  const counts = { passed: 0, failed: 0, skipped: 0, notes: [] };
  const file = opt('unit');
  if (existsSync(file)) {
    const r = JSON.parse(readFileSync(file, 'utf8'));
    counts.passed = r.numPassedTests ?? 0;
    counts.failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0);
    counts.skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  } else {
    counts.notes.push('no vitest report');
  }
  tierFromRc('unit', opt('unit-rc'), counts);
}

function tapFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tapFiles(p));
    else if (p.endsWith('.tap')) out.push(p);
  }
  return out.sort();
}

function countTap(dir, name) {
  const counts = { passed: 0, failed: 0, skipped: 0, notes: [] };
  for (const f of tapFiles(dir)) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /^(not ok|ok) \d+( - .*)?$/.exec(line);
      if (!m) continue;
      if (/# (SKIP|TODO)\b/i.test(line)) counts.skipped++;
      else if (m[1] === 'ok') counts.passed++;
      else counts.failed++;
    }
  }
  return counts;
}

for (const [flag, name] of [['tap', 'netns'], ['vm', 'vm']]) {
  if (opt(flag)) tierFromRc(name, opt(`${flag}-rc`), countTap(opt(flag), name));
}

const total = { passed: 0, failed: 0, skipped: 0 };
console.log('');
console.log('== summary');
for (const t of tiers) {
  total.passed += t.passed;
  total.failed += t.failed;
  total.skipped += t.skipped;
  if (t.name === 'build' && t.failed === 0) continue;
  console.log(`   ${t.name.padEnd(6)} ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped${t.notes.length ? `  (${t.notes.join('; ')})` : ''}`);
}
console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ''}`);
process.exitCode = total.failed > 0 ? 1 : 0;
