// Removes namespaces (and the processes inside them) left by crashed test or benchmark
// runs. scripts/test.sh runs it before the netns tier.
import { sweepLeftovers } from './harness.js';

const removed = sweepLeftovers();
if (removed.length) console.log(`sweep: removed ${removed.length} leftover namespace(s): ${removed.join(' ')}`);
