/**
 * `podnet cleanup`: removes everything podnet made on this host — pod sandboxes and their
 * pause processes, pod namespaces with the node's prefix, podnet veths, the bridge, the
 * transports' devices and routes, the service proxy's rules of every mode,
 * podnet's nft tables, and the node's state (IPAM journal, subnet claim, records).
 * Idempotent; refuses while an agent holds the state dir (it would fight the agent).
 * The API objects (the Node and its subnet) are left alone: the next agent reuses them,
 * or an administrator deletes the Node.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { NETNS_RUN_DIR, Netlink } from '../kernel/index.js';
import { nftDeleteTable } from '../kernel/nft.js';
import { FileStore } from '../ipam/index.js';
import { DEFAULT_NETNS_PREFIX, validateNetnsPrefix } from '../pods/names.js';
import { SandboxRecords } from '../pods/records.js';
import { BRIDGE, destroySandbox } from '../pods/sandbox.js';
import { formatError, isPodnetError, ErrorCodes } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { NFT_TABLE } from './masquerade.js';
import { teardownAll } from '../transport/index.js';
import { readAgentSettings } from './settings.js';
import { cleanupOtherModes } from '../proxy/modes.js';
import { removeNetns } from './pods.js';

export interface CleanupReport {
  sandboxes: number;
  namespaces: number;
  links: number;
}

export async function cleanup(opts: { nodeName: string; stateDir: string; netnsPrefix?: string; log: Logger }): Promise<CleanupReport> {
  const { stateDir, log } = opts;
  const settings = readAgentSettings(stateDir);
  const prefix = validateNetnsPrefix(opts.netnsPrefix ?? settings?.netnsPrefix ?? DEFAULT_NETNS_PREFIX, '--netns-prefix');
  const report: CleanupReport = { sandboxes: 0, namespaces: 0, links: 0 };
  // Holding the IPAM lock proves no agent runs on this state dir.
  let store: FileStore | undefined;
  if (existsSync(stateDir)) {
    try {
      store = await FileStore.open(stateDir);
    } catch (e) {
      if (isPodnetError(e, ErrorCodes.IPAM_LOCKED)) throw e;
      log.warn({ stateDir, err: formatError(e) }, 'the IPAM state is unreadable; removing it anyway');
    }
  }
  const host = Netlink.open();
  try {
    if (existsSync(stateDir)) {
      const records = SandboxRecords.open(stateDir);
      for (const rec of records.list()) {
        try {
          await destroySandbox(host, rec);
          report.sandboxes++;
        } catch (e) {
          log.warn({ owner: rec.owner, err: formatError(e) }, 'cannot remove a sandbox; continuing');
        }
      }
    }
    for (const n of existsSync(NETNS_RUN_DIR) ? readdirSync(NETNS_RUN_DIR) : []) {
      if (!n.startsWith(prefix)) continue;
      removeNetns(n);
      report.namespaces++;
    }
    for (const l of await host.links.list()) {
      if ((l.kind === 'veth' && /^pn[0-9a-f]{11}$/.test(l.name)) || (l.kind === 'bridge' && l.name === BRIDGE)) {
        if (await host.links.delete(l.index)) report.links++;
      }
    }
    await teardownAll(host);
    // The proxy of every mode (iptables PODNET-* chains and ipsets, IPVS services and podnet-ipvs0, nftables chains)...
    await cleanupOtherModes(undefined, log);
    // ...and podnet's nft tables (egress masquerade, what the nftables proxy left).
    for (const fam of ['ip', 'ip6'] as const) await nftDeleteTable(fam, NFT_TABLE);
  } finally {
    host.close();
    await store?.close();
  }
  rmSync(stateDir, { recursive: true, force: true });
  log.info({ node: opts.nodeName, ...report }, 'podnet cleanup done');
  return report;
}
