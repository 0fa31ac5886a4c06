/**
 * The proxy modes by name, and the cleanup of every mode (an agent starting in one mode
 * removes what another mode left, as kube-proxy does; `podnet cleanup` removes them all).
 */
import { formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { createIptablesMode } from './iptables/index.js';
import { createIpvsMode } from './ipvs/index.js';
import { createNftablesMode } from './nftables/index.js';
import { PROXY_MODES } from './types.js';
import type { ProxyMode, ProxyModeName } from './types.js';

/** A mode working in the caller's network namespace (the agent runs in its node's). */
export function createMode(name: ProxyModeName, log: Logger): ProxyMode {
  const l = log.child({ component: 'proxy', mode: name });
  switch (name) {
    case 'nftables':
      return createNftablesMode({ log: l });
    case 'iptables':
      return createIptablesMode({ log: l });
    case 'ipvs':
      return createIpvsMode({ log: l });
  }
}

/**
 * Removes the rules of every mode but `keep`. A mode whose kernel support is missing
 * (no ip_vs here) has nothing to remove: its failure is logged at debug and ignored.
 */
export async function cleanupOtherModes(keep: ProxyModeName | undefined, log: Logger): Promise<void> {
  for (const name of PROXY_MODES) {
    if (name === keep) continue;
    const mode = createMode(name, log);
    try {
      await mode.cleanup();
    } catch (e) {
      log.debug({ mode: name, err: formatError(e) }, 'nothing removed for this proxy mode');
    } finally {
      await mode.close?.();
    }
  }
}
