/**
 * Sandbox records: what the node holds for each sandbox that cannot be read back from
 * the kernel alone (who owns it, the pause process and its start time, the addresses it
 * was given). One JSON file per sandbox in `<stateDir>/sandboxes/`, written atomically
 * (temp file, rename), so a crash of the agent leaves the old record or the new one,
 * never half of one. They are not fsynced: written data survives a killed agent, and
 * what a record describes (pause processes, namespaces) does not survive a machine
 * crash anyway, while the addresses that must never be handed out twice are in the
 * fsynced IPAM journal. The kernel state they describe is re-checked by
 * the reconciler; a record without its sandbox is repaired or removed.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoOf } from '../util/errors.js';
import { validateOwnerId } from './names.js';

export interface SandboxRecord {
  /** Pod uid (agent path) or cni-<containerId>-<ifname> (CNI path). */
  owner: string;
  kind: 'pod' | 'cni';
  /** Pod identity (from the API or CNI_ARGS), when known. */
  namespace?: string;
  name?: string;
  uid?: string;
  /** CNI: container id and interface name. */
  containerId?: string;
  /** The pod's network namespace: its path, and for agent sandboxes its name under /run/netns. */
  netnsPath: string;
  netnsName?: string;
  /** The pause process owning the namespaces (agent sandboxes). */
  pausePid?: number;
  /** Its start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart. */
  pauseStart?: number;
  hostVeth: string;
  ifname: string;
  /** "10.244.1.5/24", "fd00:10:244:1::5/64". */
  addresses: string[];
  /** Gateways by family: "10.244.1.1". */
  gateways: string[];
  mac?: string;
  mtu: number;
  createdAt: string;
}

export class SandboxRecords {
  readonly dir: string;
  readonly #byOwner = new Map<string, SandboxRecord>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (creating) `<stateDir>/sandboxes` and reads every record; unreadable files are reported and skipped. */
  static open(stateDir: string, onBad: (file: string, err: unknown) => void = () => undefined): SandboxRecords {
    const r = new SandboxRecords(join(stateDir, 'sandboxes'));
    mkdirSync(r.dir, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(r.dir)) {
      if (f.endsWith('.tmp')) {
        rmSync(join(r.dir, f), { force: true });
        continue;
      }
      if (!f.endsWith('.json')) continue;
      try {
        const rec = JSON.parse(readFileSync(join(r.dir, f), 'utf8')) as SandboxRecord;
        validateOwnerId(rec.owner);
        r.#byOwner.set(rec.owner, rec);
      } catch (e) {
        onBad(f, e);
      }
    }
    return r;
  }

  get(owner: string): SandboxRecord | undefined {
    return this.#byOwner.get(owner);
  }

  list(): SandboxRecord[] {
    return [...this.#byOwner.values()];
  }

  /** The record of pod NAMESPACE/NAME (agent sandboxes), whatever its uid. */
  byPod(namespace: string, name: string): SandboxRecord | undefined {
    for (const r of this.#byOwner.values()) if (r.kind === 'pod' && r.namespace === namespace && r.name === name) return r;
    return undefined;
  }

  /** Writes a record (atomic replace). */
  save(rec: SandboxRecord): void {
    const file = this.#file(rec.owner);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, JSON.stringify(rec), { mode: 0o600 });
    renameSync(tmp, file);
    this.#byOwner.set(rec.owner, rec);
  }

  /** Removes a record; removing a missing one is fine. */
  remove(owner: string): void {
    try {
      rmSync(this.#file(owner));
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
    this.#byOwner.delete(owner);
  }

  #file(owner: string): string {
    return join(this.dir, `${validateOwnerId(owner)}.json`);
  }

}
