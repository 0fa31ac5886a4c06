/**
 * Per-namespace sysctls. /proc/sys/net resolves against the network namespace of the
 * thread that opens the file, so reading or writing inside NetNS.run hits that namespace.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';
import type { NetNS } from './netns.js';

function pathOf(key: string): string {
  // "net.ipv4.ip_forward" or "net/ipv4/ip_forward"; interface names may contain dots, so
  // only the dotted form of well-known keys is converted.
  if (!/^net[./][A-Za-z0-9_./-]+$/.test(key) || key.includes('..')) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `sysctl key ${JSON.stringify(key)} is not a net.* key`, { field: 'sysctl' });
  }
  return `/proc/sys/${key.includes('/') ? key : key.replace(/\./g, '/')}`;
}

/** Equivalent to `ip netns exec NS sysctl -w KEY=VALUE`. */
export function setSysctl(netns: NetNS | undefined, key: string, value: string): void {
  const path = pathOf(key);
  const write = () => writeFileSync(path, value);
  try {
    if (netns) netns.run(write);
    else write();
  } catch (e) {
    throw new PodnetError(ErrorCodes.NATIVE, `cannot set ${key}=${value}: ${errnoOf(e) ?? String(e)}`, { netns: netns?.label, sysctl: key }, { cause: e });
  }
}

/** Equivalent to `ip netns exec NS sysctl -n KEY`. */
export function getSysctl(netns: NetNS | undefined, key: string): string {
  const path = pathOf(key);
  const read = () => readFileSync(path, 'utf8').trim();
  return netns ? netns.run(read) : read();
}
