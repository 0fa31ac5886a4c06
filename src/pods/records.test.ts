import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PodnetError } from '../util/errors.js';
import { SandboxRecords } from './records.js';
import type { SandboxRecord } from './records.js';
import { failure } from '../testing/errors.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'podnet-records-'));
  dirs.push(d);
  return d;
}

function podRecord(uid: string, namespace = 'default', name = 'web'): SandboxRecord {
  return {
    owner: uid,
    kind: 'pod',
    namespace,
    name,
    uid,
    netnsPath: `/run/netns/pn-${namespace}.${name}`,
    netnsName: `pn-${namespace}.${name}`,
    pausePid: 4242,
    pauseStart: 123456,
    hostVeth: 'pn0123456789a',
    ifname: 'eth0',
    addresses: ['10.244.1.5/24', 'fd00:10:244:1::5/64'],
    gateways: ['10.244.1.1', 'fd00:10:244:1::1'],
    mac: '02:00:0a:f4:01:05',
    mtu: 1450,
    createdAt: '2025-01-01T00:00:00.000Z',
  };
}

function cniRecord(containerId: string, ifname = 'eth0'): SandboxRecord {
  return {
    owner: `cni-${containerId}-${ifname}`,
    kind: 'cni',
    containerId,
    netnsPath: `/proc/4242/ns/net`,
    hostVeth: 'pnfedcba98765',
    ifname,
    addresses: ['10.244.1.6/24'],
    gateways: ['10.244.1.1'],
    mtu: 1450,
    createdAt: '2025-01-01T00:00:01.000Z',
  };
}


describe('SandboxRecords', () => {
  it('creates <stateDir>/sandboxes, private to the agent, and starts empty', () => {
    const s = stateDir();
    const r = SandboxRecords.open(s);
    expect(r.dir).toBe(join(s, 'sandboxes'));
    expect(statSync(r.dir).mode & 0o777).toBe(0o700);
    expect(r.list()).toEqual([]);
  });

  it('saves, gets, lists, finds by pod and removes', () => {
    const r = SandboxRecords.open(stateDir());
    const web = podRecord('uid-web');
    const db = podRecord('uid-db', 'prod', 'db');
    const cni = cniRecord('c0ffee');
    for (const rec of [web, db, cni]) r.save(rec);

    expect(r.get('uid-web')).toEqual(web);
    expect(r.get('cni-c0ffee-eth0')).toEqual(cni);
    expect(r.get('uid-missing')).toBeUndefined();
    expect(r.list().map((x) => x.owner).sort()).toEqual(['cni-c0ffee-eth0', 'uid-db', 'uid-web']);
    expect(r.byPod('prod', 'db')).toEqual(db);
    expect(r.byPod('default', 'db')).toBeUndefined();

    r.remove('uid-db');
    expect(r.get('uid-db')).toBeUndefined();
    expect(r.byPod('prod', 'db')).toBeUndefined();
    expect(readdirSync(r.dir).sort()).toEqual(['cni-c0ffee-eth0.json', 'uid-web.json']);
  });

  it('finds only agent sandboxes by pod, not CNI attachments', () => {
    const r = SandboxRecords.open(stateDir());
    r.save({ ...cniRecord('c0ffee'), namespace: 'default', name: 'web' });
    expect(r.byPod('default', 'web')).toBeUndefined();
    r.save(podRecord('uid-web'));
    expect(r.byPod('default', 'web')?.owner).toBe('uid-web');
  });

  it('replaces a record atomically, leaving no temp file', () => {
    const r = SandboxRecords.open(stateDir());
    r.save(podRecord('uid-web'));
    r.save({ ...podRecord('uid-web'), pausePid: 5151 });
    expect(r.get('uid-web')?.pausePid).toBe(5151);
    expect(readdirSync(r.dir)).toEqual(['uid-web.json']);
    expect(JSON.parse(readFileSync(join(r.dir, 'uid-web.json'), 'utf8')).pausePid).toBe(5151);
    expect(statSync(join(r.dir, 'uid-web.json')).mode & 0o777).toBe(0o600);
  });

  it('removing a missing record is fine', () => {
    const r = SandboxRecords.open(stateDir());
    expect(() => r.remove('uid-never-saved')).not.toThrow();
    r.save(podRecord('uid-web'));
    rmSync(join(r.dir, 'uid-web.json'));
    expect(() => r.remove('uid-web')).not.toThrow();
    expect(r.get('uid-web')).toBeUndefined();
  });

  it('reads its records back when reopened', () => {
    const s = stateDir();
    const first = SandboxRecords.open(s);
    const web = podRecord('uid-web');
    const cni = cniRecord('c0ffee', 'net1');
    first.save(web);
    first.save(cni);
    first.save(podRecord('uid-gone', 'default', 'gone'));
    first.remove('uid-gone');

    const again = SandboxRecords.open(s);
    expect(again.get('uid-web')).toEqual(web);
    expect(again.get('cni-c0ffee-net1')).toEqual(cni);
    expect(again.get('uid-gone')).toBeUndefined();
    expect(again.list()).toHaveLength(2);
  });

  it('removes a torn temp file on open, keeping the record it was replacing', () => {
    const s = stateDir();
    const first = SandboxRecords.open(s);
    first.save(podRecord('uid-web'));
    // A crash between writing the temp file and the rename.
    writeFileSync(join(first.dir, 'uid-web.json.tmp'), '{"owner":"uid-web","kind":"po');
    writeFileSync(join(first.dir, 'uid-new.json.tmp'), '');
    const bad: string[] = [];
    const again = SandboxRecords.open(s, (f) => bad.push(f));
    expect(bad).toEqual([]);
    expect(readdirSync(again.dir)).toEqual(['uid-web.json']);
    expect(again.get('uid-web')).toEqual(podRecord('uid-web'));
    expect(again.get('uid-new')).toBeUndefined();
  });

  it('reports unreadable record files through onBad and skips them', () => {
    const s = stateDir();
    SandboxRecords.open(s).save(podRecord('uid-web'));
    const dir = join(s, 'sandboxes');
    writeFileSync(join(dir, 'uid-torn.json'), '{"owner":"uid-torn",');
    writeFileSync(join(dir, 'uid-null.json'), 'null');
    writeFileSync(join(dir, 'uid-noowner.json'), '{"kind":"pod"}');
    writeFileSync(join(dir, 'uid-evil.json'), JSON.stringify({ ...podRecord('x'), owner: '../../etc/passwd' }));
    mkdirSync(join(dir, 'uid-dir.json'));
    writeFileSync(join(dir, 'README'), 'not a record');

    const bad: [string, unknown][] = [];
    const r = SandboxRecords.open(s, (f, e) => bad.push([f, e]));
    expect(bad.map(([f]) => f).sort()).toEqual(['uid-dir.json', 'uid-evil.json', 'uid-noowner.json', 'uid-null.json', 'uid-torn.json']);
    expect(bad.find(([f]) => f === 'uid-torn.json')?.[1]).toBeInstanceOf(SyntaxError);
    expect((bad.find(([f]) => f === 'uid-evil.json')?.[1] as PodnetError).code).toBe('PODNET_INVALID_NAME');
    expect(r.list().map((x) => x.owner)).toEqual(['uid-web']);
    // Skipped files are left for a human to look at, not deleted.
    expect(existsSync(join(dir, 'uid-torn.json'))).toBe(true);
  });

  it('opens without an onBad callback', () => {
    const s = stateDir();
    mkdirSync(join(s, 'sandboxes'));
    writeFileSync(join(s, 'sandboxes', 'uid-torn.json'), '{');
    expect(SandboxRecords.open(s).list()).toEqual([]);
  });

  it.each(['../../escape', '../sandboxes2/x', '/etc/passwd', '.', '..', '.hidden', '', 'a/b'])('validates the owner id %j before it reaches a file path', (owner) => {
    const s = stateDir();
    const r = SandboxRecords.open(s);
    expect(failure(() => r.save({ ...podRecord('x'), owner })).code).toBe('PODNET_INVALID_NAME');
    expect(failure(() => r.remove(owner)).code).toBe('PODNET_INVALID_NAME');
    expect(readdirSync(r.dir)).toEqual([]);
    expect(readdirSync(s)).toEqual(['sandboxes']);
    expect(r.get(owner)).toBeUndefined();
  });
});
