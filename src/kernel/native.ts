/**
 * Loader for the native addon (native/src/addon.cc) and the path of the pause program.
 * Both are built by `npm run build:native` (scripts/setup.sh runs it).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';

export interface NativeAddon {
  runInNetns<T>(fd: number, fn: () => T): T;
  prepareNetnsDir(dir: string): void;
  createNetns(path: string): void;
  deleteNetns(path: string): void;
  nsType(fd: number): number;
  openTun(name: string, persist: boolean): { fd: number; name: string };
  /** posix_spawn (on a libuv thread) in a new session; stdout+stderr on a pipe whose read end is `fd`. */
  spawnDetached(path: string, argv: string[]): Promise<{ pid: number; fd: number }>;
  /** waitpid(pid, WNOHANG): true once reaped (or not our child). */
  reap(pid: number): boolean;
  /** RTM_DELLINK of `name` in the namespace at `nsPath`, on a libuv thread; false when already gone. */
  deleteLinkAsync(nsPath: string, name: string): Promise<boolean>;
}

/** CLONE_NEWNET: the value NS_GET_NSTYPE returns for a network namespace. */
export const CLONE_NEWNET = 0x40000000;

/** The repository root, found from this file (dist/src/kernel or src/kernel). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'cannot find the podnet package root (package.json next to native/)');
})();

const releaseDir = join(packageRoot, 'native', 'build', 'Release');

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (addon) return addon;
  const file = join(releaseDir, 'podnet_native.node');
  if (!existsSync(file)) {
    throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'the native addon is not built: run scripts/setup.sh (or npm run build:native)', { file });
  }
  addon = createRequire(import.meta.url)(file) as NativeAddon;
  return addon;
}

/** Absolute path of the pause program. */
export function pauseBinary(): string {
  const file = join(releaseDir, 'pause');
  if (!existsSync(file)) {
    throw new PodnetError(ErrorCodes.NATIVE_MISSING, 'the pause program is not built: run scripts/setup.sh (or npm run build:native)', { file });
  }
  return file;
}

/** Wraps an addon call: system errors become PODNET_NATIVE errors with the errno. */
export function nativeCall<T>(what: string, context: Record<string, string | number | undefined>, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PodnetError) throw e;
    const errno = errnoOf(e);
    const msg = e instanceof Error ? e.message : String(e);
    if (errno === 'EPERM' || errno === 'EACCES') {
      throw new PodnetError(ErrorCodes.PERMISSION, `${what}: permission denied (podnet must run as root)`, context, { cause: e, errno });
    }
    throw new PodnetError(ErrorCodes.NATIVE, `${what}: ${msg}`, context, { cause: e, ...(errno ? { errno } : {}) });
  }
}
