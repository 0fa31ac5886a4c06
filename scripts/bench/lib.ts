/**
 * Shared pieces of the benchmarks: timing, statistics, the results table and the JSON
 * written to bench/results/<name>.json. Benchmarks compare with a baseline measured in
 * the same run; absolute times on a shared machine are noisy, ratios are what we quote.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/kernel/native.js';
import { formatError } from '../../src/util/errors.js';

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface Stats {
  n: number;
  median: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  total: number;
}

export function stats(samples: number[]): Stats {
  const a = [...samples].sort((x, y) => x - y);
  const n = a.length;
  if (n === 0) return { n: 0, median: NaN, p99: NaN, mean: NaN, min: NaN, max: NaN, total: 0 };
  const median = n % 2 ? a[(n - 1) / 2]! : (a[n / 2 - 1]! + a[n / 2]!) / 2;
  const p99 = a[Math.min(n - 1, Math.ceil(n * 0.99) - 1)]!;
  const total = a.reduce((s, x) => s + x, 0);
  return { n, median, p99, mean: total / n, min: a[0]!, max: a[n - 1]!, total };
}

export function fmt(ms: number, digits = 3): string {
  return Number.isFinite(ms) ? ms.toFixed(digits) : '-';
}

/** Prints a plain-text table (first row = header). */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export function writeResults(name: string, data: unknown): string {
  const dir = join(packageRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ benchmark: name, date: new Date().toISOString(), host: hostFacts(), ...(data as object) }, null, 2) + '\n');
  return file;
}

function hostFacts() {
  return { node: process.version, platform: process.platform, kernel: process.release && (process as { report?: { getReport(): { header: { osRelease: string } } } }).report?.getReport().header.osRelease };
}

/** Peak resident set size of this process so far, in MiB. */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Progress on stderr for long loops: one line, rewritten in place on a tty. */
export function progress(label: string, i: number, n: number): void {
  if (i % Math.max(1, Math.floor(n / 10)) !== 0 && i !== n) return;
  const msg = `${label}: ${i}/${n}`;
  if (process.stderr.isTTY) process.stderr.write(`\r${msg}${i === n ? '\n' : ''}`);
  else process.stderr.write(`${msg}\n`);
}

/**
 * Runs a benchmark's body and ends the process: sockets and agents a run leaves open would
 * keep the loop alive (the harness's exit hook removes what a failure left). A failure is
 * printed as `bench <name>: <error>` and exits 1.
 */
export async function runThenExit(name: string, body: () => Promise<unknown>): Promise<never> {
  try {
    await body();
  } catch (e) {
    console.error(`bench ${name}: ${formatError(e)}`);
    process.exitCode = 1;
  }
  process.exit(process.exitCode ?? 0);
}
