// Prints a JSON snapshot of the root network namespace (used by scripts/test.sh before
// the netns tier, compared by zz-root-netns.test.ts after it).
import { rootNetnsSnapshot } from './harness.js';

process.stdout.write(JSON.stringify(await rootNetnsSnapshot()) + '\n');
