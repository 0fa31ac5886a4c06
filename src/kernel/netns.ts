/**
 * Network namespaces as values. A NetNS is a handle: a path plus an open file descriptor
 * that keeps the namespace alive while the handle is open. Code never "enters" a
 * namespace and stays: `run(fn)` executes a synchronous function inside it and always
 * returns, which is enough to open sockets (netlink, TUN, TCP) that then live there.
 */
import { closeSync, fstatSync, openSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';
import { validateNetnsName } from '../util/validate.js';
import { CLONE_NEWNET, native, nativeCall } from './native.js';

/** Where named namespaces live (iproute2's NETNS_RUN_DIR). */
export const NETNS_RUN_DIR = '/run/netns';

const preparedDirs = new Set<string>();

export class NetNS {
  /** The name under NETNS_RUN_DIR, or undefined for a namespace opened by path. */
  readonly name: string | undefined;
  readonly path: string;
  readonly dev: bigint;
  readonly ino: bigint;
  #fd: number;

  private constructor(name: string | undefined, path: string, fd: number) {
    this.name = name;
    this.path = path;
    this.#fd = fd;
    const st = fstatSync(fd, { bigint: true });
    this.dev = st.dev;
    this.ino = st.ino;
  }

  /** The open descriptor (throws once closed). */
  get fd(): number {
    if (this.#fd < 0) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'network namespace handle is closed', { netns: this.label });
    return this.#fd;
  }

  /** Name if it has one, else path: for messages and logs. */
  get label(): string {
    return this.name ?? this.path;
  }

  /**
   * Creates a named namespace pinned at /run/netns/NAME and returns a handle to it.
   * Equivalent to `ip netns add NAME`. Throws PODNET_NETNS_EXISTS if the name is taken.
   */
  static create(name: string, opts: { dir?: string } = {}): NetNS {
    validateNetnsName(name);
    const dir = opts.dir ?? NETNS_RUN_DIR;
    const path = join(dir, name);
    const addon = native();
    if (!preparedDirs.has(dir)) {
      nativeCall('preparing the netns directory', { dir }, () => addon.prepareNetnsDir(dir));
      preparedDirs.add(dir);
    }
    try {
      addon.createNetns(path);
    } catch (e) {
      if (errnoOf(e) === 'EEXIST') {
        throw new PodnetError(ErrorCodes.NETNS_EXISTS, `network namespace ${name} already exists`, { netns: name, path }, { cause: e, errno: 'EEXIST' });
      }
      return nativeCall('creating a network namespace', { netns: name, path }, () => {
        throw e;
      });
    }
    // Just made by us: no need to check the type as open() does.
    return new NetNS(name, path, openSync(path, 'r'));
  }

  /** Creates the namespace unless it exists; either way returns a handle. */
  static ensure(name: string, opts: { dir?: string } = {}): NetNS {
    try {
      return NetNS.create(name, opts);
    } catch (e) {
      if (e instanceof PodnetError && e.code === ErrorCodes.NETNS_EXISTS) return NetNS.open(name, undefined, opts);
      throw e;
    }
  }

  /**
   * Opens a namespace by name (under /run/netns) or by path (/proc/PID/ns/net, a bind
   * mount...). Throws PODNET_NETNS_NOT_FOUND or PODNET_NOT_A_NETNS.
   */
  static open(nameOrPath: string, name?: string, opts: { dir?: string } = {}): NetNS {
    let path: string;
    if (nameOrPath.includes('/')) {
      path = nameOrPath;
    } else {
      name = validateNetnsName(nameOrPath);
      path = join(opts.dir ?? NETNS_RUN_DIR, nameOrPath);
    }
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const errno = errnoOf(e);
      if (errno === 'ENOENT') {
        throw new PodnetError(ErrorCodes.NETNS_NOT_FOUND, `network namespace ${name ?? path} does not exist`, { netns: name, path }, { cause: e, errno });
      }
      throw new PodnetError(ErrorCodes.NOT_A_NETNS, `cannot open network namespace ${path}: ${errno ?? String(e)}`, { path }, { cause: e, ...(errno ? { errno } : {}) });
    }
    let type: number;
    try {
      type = native().nsType(fd);
    } catch (e) {
      closeSync(fd);
      throw new PodnetError(ErrorCodes.NOT_A_NETNS, `${path} is not a namespace file`, { path }, { cause: e });
    }
    if (type !== CLONE_NEWNET) {
      closeSync(fd);
      throw new PodnetError(ErrorCodes.NOT_A_NETNS, `${path} is a namespace but not a network namespace`, { path });
    }
    return new NetNS(name, path, fd);
  }

  /** The network namespace of the calling thread (the host, for the agent). */
  static current(): NetNS {
    return NetNS.open('/proc/thread-self/ns/net');
  }

  /** Names of the namespaces pinned under /run/netns. Equivalent to `ip netns list`. */
  static list(opts: { dir?: string } = {}): string[] {
    try {
      return readdirSync(opts.dir ?? NETNS_RUN_DIR).sort();
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return [];
      throw e;
    }
  }

  static exists(name: string, opts: { dir?: string } = {}): boolean {
    validateNetnsName(name);
    try {
      statSync(join(opts.dir ?? NETNS_RUN_DIR, name));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Unpins a named namespace. Equivalent to `ip netns delete NAME`. Returns false when it
   * did not exist (deleting a missing namespace is not an error). The kernel destroys the
   * namespace once no process, descriptor or mount holds it any more.
   */
  static delete(name: string, opts: { dir?: string } = {}): boolean {
    validateNetnsName(name);
    const path = join(opts.dir ?? NETNS_RUN_DIR, name);
    try {
      native().deleteNetns(path);
      return true;
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return false;
      return nativeCall('deleting a network namespace', { netns: name, path }, () => {
        throw e;
      });
    }
  }

  /**
   * Runs `fn` synchronously with the calling thread inside this namespace, then returns
   * to the original one (even when fn throws). fn must not await: anything it starts
   * asynchronously runs after the thread is back home. Sockets created in fn stay here.
   */
  run<T>(fn: () => T): T {
    return native().runInNetns(this.fd, fn);
  }

  /**
   * PIDs of the processes whose network namespace is the one at `path` (a name under
   * /run/netns or any path), except the calling process. Equivalent to `ip netns pids NAME`.
   */
  static pids(nameOrPath: string): number[] {
    const path = nameOrPath.includes('/') ? nameOrPath : join(NETNS_RUN_DIR, validateNetnsName(nameOrPath));
    let ino: bigint;
    try {
      ino = statSync(path, { bigint: true }).ino;
    } catch {
      return [];
    }
    const want = `net:[${ino}]`;
    const out: number[] = [];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const pid = Number(d);
      if (pid === process.pid) continue;
      try {
        if (readlinkSync(`/proc/${pid}/ns/net`) === want) out.push(pid);
      } catch {
        /* gone, or not ours to read */
      }
    }
    return out;
  }

  /** Same namespace (same inode on the nsfs), whatever the path used to open it. */
  equals(other: NetNS): boolean {
    return this.dev === other.dev && this.ino === other.ino;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  close(): void {
    if (this.#fd >= 0) {
      closeSync(this.#fd);
      this.#fd = -1;
    }
  }

  toString(): string {
    return `netns:${this.label}`;
  }
}
