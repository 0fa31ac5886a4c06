/**
 * The child of the crash-durability test: opens the store in DIR and writes as fast as
 * it can until it is killed. 32 concurrent writers create `/registry/crash/N` (value
 * `valueFor(N)`), one more updates `/registry/crash-counter` to 1, 2, 3, …; each write
 * is printed to stdout only after its promise resolved ("k N" / "c N"). Whatever it
 * printed must be in the store after `kill -9`.
 *
 * Usage: node --import src/testing/register-ts.mjs crash-writer.mjs DIR
 */
import { SqliteStore } from '../sqlite.js';

/** Also in sqlite.test.ts, which checks the stored values against it. */
function valueFor(n) {
  return JSON.stringify({ n, pad: 'x'.repeat(n % 7 === 0 ? 20_000 : 100) });
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: crash-writer.mjs DIR');
const store = SqliteStore.open(dir);
let next = 0;

async function creator() {
  for (;;) {
    const n = next++;
    await store.create(`/registry/crash/${n}`, valueFor(n));
    process.stdout.write(`k ${n}\n`);
  }
}

async function counter() {
  let kv = await store.create('/registry/crash-counter', '0');
  for (let i = 1; ; i++) {
    kv = await store.update(kv.key, String(i), kv.modRevision);
    process.stdout.write(`c ${i}\n`);
  }
}

for (let i = 0; i < 32; i++) void creator();
void counter();
