// The IPVS mode's graceful termination against an in-memory kernel (IPVS table, the dummy
// device's addresses, ipsets): the draining real server's weight, the model, and the
// periodic check that deletes it once IPVS counts no connection. The real kernel runs the
// same mode in the vm tier (vm-tests/proxy-ipvs.test.ts, "endpoint changes").
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildSnapshot } from '../snapshot.js';
import type { ProxyNodeConfig } from '../types.js';
import { svc, slice } from './testdata/fixtures.js';

interface FakeDest {
  address: string;
  port: number;
  weight: number;
  conns: number;
}
interface FakeService {
  family: 4 | 6;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  address: string;
  port: number;
  scheduler: string;
  timeout: number;
  persistent: boolean;
  dests: Map<string, FakeDest>;
}

const kernel = vi.hoisted(() => ({
  services: new Map<string, FakeService>(),
  addrs: new Set<string>(),
  sets: new Map<string, Set<string>>(),
  calls: [] as string[],
}));

const sid = (s: { protocol: string; address: string; port: number }) => `${s.protocol} ${s.address}:${s.port}`;
const did = (d: { address: string; port: number }) => `${d.address}:${d.port}`;

vi.mock('../../kernel/ipvs.js', () => ({
  Ipvs: {
    open: async () => ({
      listServices: async () => [...kernel.services.values()].map(({ dests: _d, ...s }) => ({ ...s, flags: 0, netmask: 0xffffffff })),
      listDests: async (s: FakeService) => {
        const have = kernel.services.get(sid(s));
        if (!have) throw new Error(`no service ${sid(s)}`);
        return [...have.dests.values()].map((d) => ({ family: 4, address: d.address, port: d.port, weight: d.weight, forward: 'masq', upperThreshold: 0, lowerThreshold: 0, activeConns: 0, inactiveConns: d.conns, persistentConns: 0 }));
      },
      addService: async (s: FakeService) => {
        kernel.calls.push(`add-service ${sid(s)}`);
        kernel.services.set(sid(s), { ...s, dests: new Map() });
      },
      updateService: async (s: FakeService) => {
        kernel.calls.push(`update-service ${sid(s)}`);
      },
      deleteService: async (s: FakeService) => {
        kernel.calls.push(`del-service ${sid(s)}`);
        kernel.services.delete(sid(s));
      },
      addDest: async (s: FakeService, d: FakeDest) => {
        kernel.calls.push(`add-dest ${sid(s)} ${did(d)} w${d.weight}`);
        kernel.services.get(sid(s))!.dests.set(did(d), { ...d, conns: 0 });
      },
      updateDest: async (s: FakeService, d: FakeDest) => {
        kernel.calls.push(`update-dest ${sid(s)} ${did(d)} w${d.weight}`);
        kernel.services.get(sid(s))!.dests.get(did(d))!.weight = d.weight;
      },
      deleteDest: async (s: FakeService, d: FakeDest) => {
        kernel.calls.push(`del-dest ${sid(s)} ${did(d)}`);
        return kernel.services.get(sid(s))!.dests.delete(did(d));
      },
      close: () => undefined,
    }),
  },
}));

vi.mock('../../kernel/index.js', () => ({
  Netlink: {
    open: () => ({
      links: { ensure: async () => undefined, get: async () => ({ index: 7 }), delete: async () => undefined },
      addrs: {
        list: async () => [...kernel.addrs].map((ip) => ({ family: 4, ip, scope: 0 })),
        ensure: async (_dev: string, cidr: string) => void kernel.addrs.add(cidr.split('/')[0]!),
        delete: async (_dev: string, cidr: string) => void kernel.addrs.delete(cidr.split('/')[0]!),
      },
      close: () => undefined,
    }),
  },
}));

vi.mock('../../kernel/ipset.js', () => ({
  ipsetRestore: async (script: string) => {
    for (const line of script.split('\n')) {
      const [cmd, set, entry] = line.split(' ');
      if (cmd === 'create' && !kernel.sets.has(set!)) kernel.sets.set(set!, new Set());
      if (cmd === 'add') kernel.sets.get(set!)!.add(entry!);
      if (cmd === 'del') kernel.sets.get(set!)!.delete(entry!);
    }
  },
  ipsetNames: async () => [...kernel.sets.keys()],
  ipsetMembers: async (name: string) => [...(kernel.sets.get(name) ?? [])],
  ipsetDestroy: async () => undefined,
}));

vi.mock('../../kernel/iptables.js', () => ({ iptablesRestore: async () => undefined, iptablesSave: async () => '' }));
vi.mock('../../kernel/sysctl.js', () => ({ setSysctl: () => undefined }));

const { createIpvsMode } = await import('./index.js');
const { silentLogger } = await import('../../util/log.js');

const node: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
const web = svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] });
const http = [{ name: 'http', port: 8080 }];
const two = [
  { ip: '10.244.1.5', node: 'n1' },
  { ip: '10.244.2.5', node: 'n2' },
];
const snap = (eps: { ip: string; node: string }[]) => [buildSnapshot([web], [slice('web', eps, http)], node)];
const changed = new Set(['default/web:http']);
const VS = 'TCP 10.96.0.10:80';
const dests = () => [...(kernel.services.get(VS)?.dests.values() ?? [])].map((d) => `${did(d)} w${d.weight}`).sort();

describe('IPVS mode: graceful termination', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    kernel.services.clear();
    kernel.addrs.clear();
    kernel.sets.clear();
    kernel.calls.length = 0;
  });
  afterEach(() => vi.useRealTimers());

  it('a removed endpoint with connections drains at weight 0; the check deletes it once they are gone', async () => {
    const mode = createIpvsMode({ log: silentLogger(), drainCheckMs: 1000 });
    await mode.sync(snap(two), undefined);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w1']);
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 3;

    await mode.sync(snap(two.slice(0, 1)), changed);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w0']);
    expect(mode.lastSync()).toMatchObject({ full: false, byOp: { 'update-dest': 1 }, draining: 1 });
    expect(mode.model().virtualServers.get(VS)!.realServers.map((r) => `${r.address} w${r.weight}`)).toEqual(['10.244.1.5 w1', '10.244.2.5 w0']);

    // Still connections at the first check: kept. None at the next: deleted, model too.
    await vi.advanceTimersByTimeAsync(1000);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w0']);
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(dests()).toEqual(['10.244.1.5:8080 w1']);
    expect(kernel.calls.at(-1)).toBe(`del-dest ${VS} 10.244.2.5:8080`);
    expect(mode.model().virtualServers.get(VS)!.realServers.map((r) => r.address)).toEqual(['10.244.1.5']);
    // Nothing left to drain: the next full sync has nothing to do.
    await mode.sync(snap(two.slice(0, 1)), undefined);
    expect(mode.lastSync()).toMatchObject({ ops: 0, draining: 0 });
  });

  it('without connections a removed endpoint is deleted at once; one that comes back while draining gets weight 1 again', async () => {
    const mode = createIpvsMode({ log: silentLogger(), drainCheckMs: 1000 });
    await mode.sync(snap(two), undefined);
    await mode.sync(snap(two.slice(0, 1)), changed);
    expect(dests()).toEqual(['10.244.1.5:8080 w1']);
    expect(mode.lastSync()).toMatchObject({ byOp: { 'del-dest': 1 }, draining: 0 });

    await mode.sync(snap(two), changed);
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 2;
    await mode.sync(snap(two.slice(0, 1)), changed);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w0']);
    await mode.sync(snap(two), changed);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w1']);
    expect(mode.lastSync()).toMatchObject({ byOp: { 'update-dest': 1 }, draining: 0 });
    // The check has nothing to do any more: the endpoint stays although it has no connections left.
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 0;
    await vi.advanceTimersByTimeAsync(5000);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w1']);
  });

  it('a full sync keeps a draining real server while it has connections and deletes it after', async () => {
    const mode = createIpvsMode({ log: silentLogger(), drainCheckMs: 60_000 });
    await mode.sync(snap(two), undefined);
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 1;
    await mode.sync(snap(two.slice(0, 1)), undefined);
    expect(dests()).toEqual(['10.244.1.5:8080 w1', '10.244.2.5:8080 w0']);
    expect(mode.lastSync()).toMatchObject({ full: true, byOp: { 'update-dest': 1 }, draining: 1 });
    await mode.sync(snap(two.slice(0, 1)), undefined);
    expect(mode.lastSync()).toMatchObject({ ops: 0, draining: 1 });
    kernel.services.get(VS)!.dests.get('10.244.2.5:8080')!.conns = 0;
    await mode.sync(snap(two.slice(0, 1)), undefined);
    expect(mode.lastSync()).toMatchObject({ byOp: { 'del-dest': 1 }, draining: 0 });
    expect(dests()).toEqual(['10.244.1.5:8080 w1']);
  });
});
