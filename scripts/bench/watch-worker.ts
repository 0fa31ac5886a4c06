/**
 * A child of the api benchmark: opens N watches on one collection and records, for each
 * event, the delay between the timestamp the writer put in the object and its arrival.
 * Writes {"latencies":[...ms], "events": n} to RESULT_FILE when told to stop (SIGTERM) or
 * when every watcher has seen `expect` events.
 */
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'undici';

const [url, path, token, watchersArg, expectArg, startRV, resultFile] = process.argv.slice(2);
const watchers = Number(watchersArg);
const expect = Number(expectArg);
const agent = new Agent({ connections: watchers + 2 });
const latencies: number[] = [];
let done = 0;
const now = () => performance.timeOrigin + performance.now();

async function watch(): Promise<void> {
  const r = await request(`${url}${path}?watch=true&resourceVersion=${startRV}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
  let buf = '';
  let seen = 0;
  for await (const chunk of r.body) {
    const t = now();
    buf += chunk.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /"holderIdentity":"t([\d.]+)"/.exec(line);
      if (m) {
        latencies.push(t - Number(m[1]));
        seen++;
      }
    }
    if (seen >= expect) break;
  }
  r.body.destroy();
}

function finish(): void {
  writeFileSync(resultFile!, JSON.stringify({ latencies, events: latencies.length }));
  process.exit(0);
}

process.on('SIGTERM', finish);
process.stdout.write('ready\n');
await Promise.all(
  Array.from({ length: watchers }, () =>
    watch().then(() => {
      done++;
    }),
  ),
);
finish();
