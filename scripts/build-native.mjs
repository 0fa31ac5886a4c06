#!/usr/bin/env node
// Builds native/ with node-gyp from source. Node headers come from the local Node
// installation when it ships them (Debian/NodeSource put them in <prefix>/include/node),
// so the build needs no network; otherwise node-gyp falls back to its usual download.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const prefix = resolve(dirname(process.execPath), '..');
const args = [require.resolve('node-gyp/bin/node-gyp.js'), 'rebuild', '--loglevel=warn', '--directory', join(root, 'native')];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`build-native: node-gyp failed (exit ${r.status ?? r.signal})`);
  process.exit(1);
}
for (const out of ['podnet_native.node', 'pause', 'podnet-cni', 'podnet-probe']) {
  if (!existsSync(join(root, 'native', 'build', 'Release', out))) {
    console.error(`build-native: expected native/build/Release/${out} after the build`);
    process.exit(1);
  }
}
