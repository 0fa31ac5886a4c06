/**
 * The operator pages under docs/ against the code they describe:
 * - docs/metrics.md names every Prometheus metric the source defines, and no other;
 * - every `--flag` in docs/proxy.md and docs/transports.md is an option of `podnet agent`
 *   (src/cli/agent.ts), or one of a short explicit list of other commands' flags, each
 *   checked against the command that defines it;
 * - relative links in the pages lead to files that exist;
 * - packaging/prometheus/podnet-scrape.yml parses and scrapes what the page says.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { AGENT_PORT } from './agent/config.js';

/** The checkout: the nearest directory above this file holding package.json and docs/. */
function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'docs'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no checkout above ${from}`);
  }
}

const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const METRIC_CLASS = '(?:Counter|Gauge|Histogram|Summary)';

/**
 * Metric names defined in one source file: `new Counter({ name: 'x', ... })` (any of the
 * four prom-client kinds), and calls of a local helper that forwards its first argument as
 * the name (`const counter = (name: string, ...) => new Counter({ name, ... })`, then
 * `counter('x', ...)`). A shorthand `name,` that no helper explains fails the test rather
 * than going unnoticed.
 */
function metricNamesIn(text: string, file: string): string[] {
  const names: string[] = [];
  for (const m of text.matchAll(new RegExp(`new\\s+${METRIC_CLASS}\\s*(?:<[^>]*>)?\\(\\s*\\{\\s*name:\\s*'([^']+)'`, 'g'))) names.push(m[1]!);
  const helpers = [...text.matchAll(new RegExp(`const\\s+(\\w+)\\s*=\\s*\\(\\s*name\\b[\\s\\S]*?=>\\s*new\\s+${METRIC_CLASS}\\s*(?:<[^>]*>)?\\(\\s*\\{\\s*name\\s*,`, 'g'))].map((m) => m[1]!);
  const shorthand = [...text.matchAll(new RegExp(`new\\s+${METRIC_CLASS}\\s*(?:<[^>]*>)?\\(\\s*\\{\\s*name\\s*,`, 'g'))].length;
  if (shorthand !== helpers.length) throw new Error(`${file}: a metric whose name is not a string literal and not given through a recognised helper`);
  for (const h of helpers) for (const m of text.matchAll(new RegExp(`\\b${h}\\(\\s*'([^']+)'`, 'g'))) names.push(m[1]!);
  return names;
}

/** Every metric name defined under src/, by file (files that import prom-client). */
function definedMetrics(): Map<string, string> {
  const byName = new Map<string, string>();
  for (const file of sourceFiles('src')) {
    const text = read(file);
    if (!/from 'prom-client'/.test(text)) continue;
    for (const n of metricNamesIn(text, file)) byName.set(n, file);
  }
  return byName;
}

/** `--flags` defined by a command source file (`.option('--x …')`, `.requiredOption(…)`, `new Option(…)`). */
function definedFlags(file: string): Set<string> {
  const text = read(file);
  return new Set([...text.matchAll(/(?:\.option|\.requiredOption|new Option)\(\s*'(--[a-z][a-z0-9-]*)/g)].map((m) => m[1]!));
}

/** `--flag` words of a page (not table rules `|---|`, not em dashes). */
function flagsIn(text: string): Set<string> {
  return new Set([...text.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)].map((m) => m[0]));
}

/**
 * Flags the two pages may mention that are not `podnet agent`'s, with the command file
 * that defines each (checked below). Keep this short: the pages are about the agent.
 */
const OTHER_COMMANDS: Record<string, string> = {
  '--from': 'src/cli/trace.ts', // podnet trace
  '--to': 'src/cli/trace.ts',
  '--size': 'src/cli/trace.ts',
  '--event-ttl': 'src/cli/api.ts', // podnet api: how long the transport's Events stay
};

/** V8 options the pages name (how the agent's node runs: src/agent/node-options.ts, src/util/gc.ts), checked against `node --v8-options`. */
const V8_OPTIONS = ['--max-semi-space-size', '--compact-on-every-full-gc'];

const PAGES = ['docs/proxy.md', 'docs/transports.md', 'docs/cni.md', 'docs/api.md', 'docs/metrics.md'];

describe('docs/metrics.md', () => {
  const defined = definedMetrics();
  const page = read('docs/metrics.md');

  it('finds the metric definitions in the source', () => {
    expect(defined.size).toBeGreaterThanOrEqual(25);
    for (const n of ['podnet_agent_sandbox_operations_total', 'podnet_agent_udp_tunnel_drops_total', 'podnet_proxy_sync_duration_seconds', 'podnet_network_programming_duration_seconds', 'apiserver_request_total', 'podnet_api_watchers']) {
      expect(defined.has(n), n).toBe(true);
    }
    expect(new Set(defined.values())).toEqual(new Set(['src/agent/metrics.ts', 'src/proxy/metrics.ts', 'src/api/server/metrics.ts']));
  });

  it('names every metric the source defines', () => {
    const missing = [...defined.keys()].filter((n) => !new RegExp(`\`${n}\``).test(page));
    expect(missing, `metrics defined in the source but not documented: ${missing.map((n) => `${n} (${defined.get(n)})`).join(', ')}`).toEqual([]);
  });

  it('names no podnet or apiserver metric that the source does not define', () => {
    const mentioned = new Set([...page.matchAll(/\b(?:podnet|apiserver)_[a-z0-9_]*[a-z0-9]\b/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')));
    const unknown = [...mentioned].filter((n) => !defined.has(n));
    expect(unknown).toEqual([]);
  });
});

describe('flags in docs/proxy.md and docs/transports.md', () => {
  const agent = definedFlags('src/cli/agent.ts');

  it('reads the agent command', () => {
    for (const f of ['--proxy-mode', '--proxy-min-sync-period', '--proxy-sync-period', '--proxy-full-sync-period', '--backend', '--direct-routing', '--mtu']) expect(agent.has(f), f).toBe(true);
  });

  for (const page of ['docs/proxy.md', 'docs/transports.md']) {
    it(`${page}: every --flag is the agent's or listed with its command`, () => {
      const flags = flagsIn(read(page));
      expect(flags.size).toBeGreaterThan(0);
      const unknown = [...flags].filter((f) => !agent.has(f) && !OTHER_COMMANDS[f] && !V8_OPTIONS.includes(f));
      expect(unknown, `${page} mentions flags podnet agent does not have`).toEqual([]);
    });
  }

  it('the V8 options the pages name are V8\'s', () => {
    const v8 = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8' });
    for (const o of V8_OPTIONS) expect(v8, o).toMatch(new RegExp(`^\\s+${o} \\(`, 'm'));
  });

  it('the other commands really have the listed flags', () => {
    for (const [flag, file] of Object.entries(OTHER_COMMANDS)) expect(definedFlags(file).has(flag), `${flag} in ${file}`).toBe(true);
  });
});

describe('links in the operator pages', () => {
  for (const page of PAGES) {
    it(`${page}: relative links lead to existing files`, () => {
      const text = read(page);
      const broken: string[] = [];
      for (const m of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const abs = resolve(ROOT, dirname(page), target);
        if (!existsSync(abs)) broken.push(relative(ROOT, abs));
      }
      expect(broken).toEqual([]);
    });
  }
});

describe('packaging/prometheus/podnet-scrape.yml', () => {
  const doc = parseYaml(read('packaging/prometheus/podnet-scrape.yml')) as {
    scrape_configs: { job_name: string; scheme: string; metrics_path: string; bearer_token_file?: string; static_configs: { targets: string[] }[] }[];
  };
  const job = (name: string) => doc.scrape_configs.find((j) => j.job_name === name);

  it('scrapes the api over HTTPS and every agent on its port, both with a bearer token file', () => {
    const api = job('podnet-api');
    const agents = job('podnet-agent');
    expect(api?.scheme).toBe('https');
    expect(agents?.scheme).toBe('http');
    for (const j of [api!, agents!]) {
      expect(j.metrics_path).toBe('/metrics');
      expect(j.bearer_token_file).toMatch(/^\//);
    }
    const targets = agents!.static_configs.flatMap((s) => s.targets);
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) expect(t.endsWith(`:${AGENT_PORT}`), t).toBe(true);
  });

  it('is referenced from docs/metrics.md', () => {
    expect(read('docs/metrics.md')).toContain('(../packaging/prometheus/podnet-scrape.yml)');
  });
});
