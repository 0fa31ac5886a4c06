/**
 * Facts of the CNI spec this plugin speaks: the versions it supports, the commands, and
 * which command exists since which version. Pure data plus two small helpers.
 */

/** The spec versions podnet-cni accepts, oldest first (native/src/podnet-cni.c repeats this list). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The newest supported version: the answer's version when the request names none. */
export const LATEST_VERSION: CniVersion = '1.1.0';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;

export type CniCommand = (typeof CNI_COMMANDS)[number];

/**
 * The first spec version that has each command (CHECK came with 0.4.0, GC and STATUS
 * with 1.1.0). A configuration older than that gets code 1, as libcni's skel does.
 */
export const COMMAND_SINCE: Readonly<Record<CniCommand, string>> = {
  ADD: '0.1.0',
  DEL: '0.1.0',
  CHECK: '0.4.0',
  STATUS: '1.1.0',
  GC: '1.1.0',
  VERSION: '0.1.0',
};

export function isCniCommand(v: unknown): v is CniCommand {
  return typeof v === 'string' && (CNI_COMMANDS as readonly string[]).includes(v);
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** True for a "MAJOR.MINOR.PATCH" version string (no leading zeros, no pre-release). */
export function isVersionString(v: unknown): v is string {
  return typeof v === 'string' && /^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$/.test(v);
}

/** Orders two version strings numerically (both must satisfy isVersionString). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}
