/**
 * The child of the IPAM crash test: opens the FileStore in DIR and allocates (and
 * sometimes releases) as fast as it can until it is killed. 16 concurrent workers
 * allocate owners `r<ROUND>-p<N>`; a line is printed only after the promise resolved,
 * i.e. after the op is durable:
 *   ready                      the store is open
 *   a <id> <ipv4> <ipv6>       allocation acknowledged
 *   R <id>                     release started (printed before the call: stdout to a
 *                              pipe is synchronous on Linux, so it precedes the write)
 *   r <id>                     release acknowledged
 * Whatever it printed as acknowledged must hold after `kill -9`; a started release may
 * or may not have happened.
 *
 * Usage: node --import src/testing/register-ts.mjs crash-allocator.mjs DIR ROUND
 */
import { FileStore } from '../filestore.js';
import { IpamAllocator } from '../allocator.js';

const [dir, round] = process.argv.slice(2);
if (!dir || !round) throw new Error('usage: crash-allocator.mjs DIR ROUND');
// Small compaction thresholds so kills also land in the middle of compactions.
const store = await FileStore.open(dir, { compactMinRecords: 200, compactRatio: 2 });
const ipam = await IpamAllocator.open(store, { subnets: ['10.244.0.0/16', 'fd00:10:244:1::/64'] });
process.stdout.write('ready\n');

let next = 0;
const held = [];

async function worker() {
  for (;;) {
    const id = `r${round}-p${next++}`;
    const a = await ipam.allocate({ id, namespace: 'crash', name: id, ifname: 'eth0' });
    process.stdout.write(`a ${id} ${a.addresses.map((x) => x.ip).join(' ')}\n`);
    held.push(id);
    if (Math.random() < 0.45) {
      const [victim] = held.splice(Math.floor(Math.random() * held.length), 1);
      process.stdout.write(`R ${victim}\n`);
      await ipam.release(victim);
      process.stdout.write(`r ${victim}\n`);
    }
  }
}

for (let i = 0; i < 16; i++) void worker();
