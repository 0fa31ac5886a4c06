/**
 * `npm run bench -- <name> [options]`: runs one benchmark, prints its table and writes
 * bench/results/<name>.json.
 */
const benches: Record<string, () => Promise<{ run(argv: string[]): Promise<void> }>> = {
  kernel: () => import('./kernel.js'),
  api: () => import('./api.js'),
  pods: () => import('./pods.js'),
  transport: () => import('./transport.js'),
  proxy: () => import('./proxy.js'),
  trace: () => import('./trace.js'),
};

const [name, ...rest] = process.argv.slice(2);
if (!name || !(name in benches)) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join('|')}> [options]`);
  process.exit(2);
}
try {
  await (await benches[name]!()).run(rest);
} catch (e) {
  console.error(`bench ${name}: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
