/**
 * Applies a transport's desired state against the kernel: what is missing is added, what
 * differs is replaced, and what podnet owns but no longer wants is deleted. Ownership:
 *  - routes of the main table with podnet's route protocol (RTPROT_PODNET, `proto 222`
 *    in `ip route`), whatever their device;
 *  - permanent neighbour entries and FDB entries with a remote destination on the
 *    transport's own devices (podnet.1).
 * Nothing else is ever touched. Each call reads the current state once (three dumps) and
 * sends only the differences.
 */
import type { Netlink } from '../kernel/index.js';
import type { Route } from '../kernel/index.js';
import { Cidr } from '../util/ipnet.js';
import type { DesiredFdb, DesiredNeigh, DesiredRoute, DesiredState, SyncReport } from './types.js';

/** rtm_protocol of every route a podnet transport installs. */
export const RTPROT_PODNET = 222;

const routeKey = (dst: string) => Cidr.parse(dst).toString();

function sameRoute(r: Route, want: DesiredRoute, devIndex: number | undefined): boolean {
  return (r.via ?? undefined) === (want.via ?? undefined) && r.devIndex === devIndex && r.onlink === !!want.onlink;
}

export async function applyState(nl: Netlink, desired: DesiredState, owned: { neighDevs: string[] }): Promise<SyncReport> {
  const report: SyncReport = { added: 0, replaced: 0, deleted: 0, problems: desired.problems };
  // ---- routes
  const have = await nl.routes.list({ table: 'all', protocol: RTPROT_PODNET });
  const byDst = new Map<string, Route>();
  for (const r of have) byDst.set(routeKey(r.dst), r);
  const devIndex = new Map<string, number | undefined>();
  const indexOf = async (dev: string) => {
    if (!devIndex.has(dev)) devIndex.set(dev, (await nl.links.get(dev))?.index);
    return devIndex.get(dev);
  };
  const wanted = new Set<string>();
  for (const want of desired.routes) {
    const key = routeKey(want.dst);
    wanted.add(key);
    const cur = byDst.get(key);
    if (cur && sameRoute(cur, want, await indexOf(want.dev))) continue;
    await nl.routes.ensure({ dst: key, ...(want.via ? { via: want.via } : {}), dev: want.dev, ...(want.onlink ? { onlink: true } : {}), protocol: RTPROT_PODNET });
    if (cur) report.replaced++;
    else report.added++;
  }
  for (const r of have) {
    if (wanted.has(routeKey(r.dst))) continue;
    if (await nl.routes.delete({ dst: r.dst, table: r.table, ...(r.devIndex !== undefined ? { dev: r.devIndex } : {}) })) report.deleted++;
  }
  // ---- neighbours and FDB entries on the transport's devices
  for (const dev of owned.neighDevs) {
    if ((await indexOf(dev)) === undefined) continue;
    const neighWant = desired.neighbours.filter((n) => n.dev === dev);
    const neighHave = (await nl.neigh.list({ dev })).filter((n) => n.state.includes('permanent'));
    await converge(neighHave, neighWant, (n) => n.ip, (n) => n.ip, (h, w) => h.mac === w.mac.toLowerCase(), (w) => nl.neigh.ensure(w), (h) => nl.neigh.delete({ dev, ip: h.ip }), report);
    const fdbWant = desired.fdb.filter((f) => f.dev === dev);
    const fdbHave = (await nl.fdb.list({ dev })).filter((f) => f.dst !== undefined);
    await converge(fdbHave, fdbWant, (f) => `${f.mac}|${f.dst}`, (f: DesiredFdb) => `${f.mac.toLowerCase()}|${f.dst}`, () => true, (w) => nl.fdb.ensure(w), (h) => nl.fdb.delete({ dev, mac: h.mac, dst: h.dst! }), report);
  }
  return report;
}

async function converge<H, W extends DesiredNeigh | DesiredFdb>(
  have: H[],
  want: W[],
  haveKey: (h: H) => string,
  wantKey: (w: W) => string,
  same: (h: H, w: W) => boolean,
  put: (w: W) => Promise<unknown>,
  drop: (h: H) => Promise<unknown>,
  report: SyncReport,
): Promise<void> {
  const byKey = new Map(have.map((h) => [haveKey(h), h]));
  const keep = new Set<string>();
  for (const w of want) {
    const k = wantKey(w);
    keep.add(k);
    const h = byKey.get(k);
    if (h && same(h, w)) continue;
    await put(w);
    if (h) report.replaced++;
    else report.added++;
  }
  for (const h of have) {
    if (keep.has(haveKey(h))) continue;
    await drop(h);
    report.deleted++;
  }
}
