import { describe, expect, it } from 'vitest';
import { failure } from '../../testing/errors.js';
import { PodnetError } from '../../util/errors.js';
import { silentLogger } from '../../util/log.js';
import { LIVE_WATCHDOG_MS, LiveTracer, ipvsConnections } from './agent.js';

const tracer = (podNetns: (ns: string, name: string) => string | undefined = () => undefined) => new LiveTracer({ log: silentLogger(), podNetns });

const start = { phase: 'start', id: 'k3x9a2', family: 4, dscp: 43, sport: 40000, proto: 'tcp' } as const;
const probe = {
  phase: 'probe',
  id: 'k3x9a2',
  dscp: 43,
  timeoutMs: 1000,
  packet: { family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 40 },
  source: { kind: 'pod', namespace: 'default', name: 'client' },
} as const;

describe('LiveTracer.parse', () => {
  const t = tracer();

  it('accepts start, probe (pod and node source) and stop', () => {
    expect(t.parse(start)).toEqual(start);
    expect(t.parse(probe)).toEqual(probe);
    const fromNode = { ...probe, source: { kind: 'node' }, packet: { ...probe.packet, family: 6, src: 'fd00::11', dst: 'fd00:10:96::a', proto: 'udp', size: 48 } };
    expect(t.parse(fromNode)).toEqual(fromNode);
    expect(t.parse({ phase: 'stop', id: 'k3x9a2' })).toEqual({ phase: 'stop', id: 'k3x9a2' });
    expect(t.parse({ ...start, proto: 'icmp', sport: 0, family: 6 })).toEqual({ ...start, proto: 'icmp', sport: 0, family: 6 });
  });

  function rejects(body: unknown, field: string, message: string | RegExp) {
    const e = failure(() => t.parse(body));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.context.field).toBe(field);
    if (typeof message === 'string') expect(e.message).toBe(message);
    else expect(e.message).toMatch(message);
  }

  it('rejects bad ids', () => {
    for (const id of ['', 'ABC', 'a-b', 'a'.repeat(17), 'podnet-trace-x', '../x']) {
      rejects({ phase: 'stop', id }, 'id', 'live trace request: id: not a trace id ([a-z0-9]{1,16})');
    }
    rejects({ ...start, id: 'Nope' }, 'id', 'live trace request: id: not a trace id ([a-z0-9]{1,16})');
    rejects({ phase: 'stop' }, 'id', /^live trace request: id: /);
  });

  it('rejects dscp 0 and 64', () => {
    rejects({ ...start, dscp: 0 }, 'dscp', /^live trace request: dscp: /);
    rejects({ ...start, dscp: 64 }, 'dscp', /^live trace request: dscp: /);
    rejects({ ...probe, dscp: 0 }, 'dscp', /^live trace request: dscp: /);
    rejects({ ...start, dscp: 1.5 }, 'dscp', /^live trace request: dscp: /);
  });

  it('rejects an unknown phase', () => {
    rejects({ phase: 'pause', id: 'k3x9a2' }, 'phase', /^live trace request: phase: /);
    rejects({ id: 'k3x9a2' }, 'phase', /^live trace request: phase: /);
    rejects('stop', '', /^live trace request: \(body\): /);
  });

  it('rejects other bad fields, naming the path', () => {
    rejects({ ...start, family: 5 }, 'family', /^live trace request: family: /);
    rejects({ ...start, sport: 65536 }, 'sport', /^live trace request: sport: /);
    rejects({ ...start, proto: 'gre' }, 'proto', /^live trace request: proto: /);
    rejects({ ...probe, timeoutMs: 30_001 }, 'timeoutMs', /^live trace request: timeoutMs: /);
    rejects({ ...probe, timeoutMs: 0 }, 'timeoutMs', /^live trace request: timeoutMs: /);
    rejects({ ...probe, packet: { ...probe.packet, dst: '10.96.0.10; rm -rf /' } }, 'packet.dst', 'live trace request: packet.dst: not an IP address');
    rejects({ ...probe, packet: { ...probe.packet, size: 19 } }, 'packet.size', /^live trace request: packet\.size: /);
    rejects({ ...probe, source: { kind: 'external' } }, 'source.kind', /^live trace request: source\.kind: /);
  });
});

describe('LiveTracer.handle without the kernel', () => {
  it('stop of a trace that is not running: empty, saying so', async () => {
    const t = tracer();
    expect(await t.handle({ phase: 'stop', id: 'gone1' })).toEqual({ events: [], conntrack: [], reason: 'no live trace gone1 on this node (stopped already)' });
  });

  it('probe from a pod without a sandbox on this node: refused before sending', async () => {
    const asked: string[] = [];
    const t = tracer((ns, name) => {
      asked.push(`${ns}/${name}`);
      return undefined;
    });
    const e = await t.handle(t.parse(probe)).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(PodnetError);
    expect((e as PodnetError).code).toBe('PODNET_INVALID_ARGUMENT');
    expect((e as PodnetError).message).toBe('pod default/client has no sandbox on this node');
    expect(asked).toEqual(['default/client']);
  });

  it('the watchdog is 30 s', () => {
    expect(LIVE_WATCHDOG_MS).toBe(30_000);
  });
});

describe('ipvsConnections', () => {
  // /proc/net/ip_vs_conn as the kernel prints it (seq_printf "%-3s %08X %04X %08X %04X
  // %08X %04X %-11s %7u%s"; IPv6 addresses as %pI6).
  const text = [
    'Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData',
    // 10.244.1.3:40000 → 10.96.0.10:80 → 10.244.2.5:8080
    'TCP 0AF40103 9C40 0A60000A 0050 0AF40205 1F90 SYN_RECV         57',
    // another client port (40001) to the same Service
    'TCP 0AF40103 9C41 0A60000A 0050 0AF40305 1F90 ESTABLISHED     899',
    // port 80 as a client port must not match "0050" in the ToIP port column
    'TCP 0AF40104 0050 0A60000A 9C40 0AF40205 1F90 TIME_WAIT        98',
    // UDP from the same client port
    'UDP 0AF40103 9C40 0A600035 0035 0AF40206 0035 UDP              297',
    // IPv6
    'TCP fd00:0010:0244:0001:0000:0000:0000:0003 9C40 fd00:0010:0096:0000:0000:0000:0000:000a 0050 fd00:0010:0244:0002:0000:0000:0000:0005 1F90 SYN_RECV         57',
    '',
  ].join('\n');

  it('the lines whose client port (FPrt, hex) is the probe port', () => {
    expect(ipvsConnections(40000, text)).toEqual([
      'TCP 0AF40103 9C40 0A60000A 0050 0AF40205 1F90 SYN_RECV         57',
      'UDP 0AF40103 9C40 0A600035 0035 0AF40206 0035 UDP              297',
      'TCP fd00:0010:0244:0001:0000:0000:0000:0003 9C40 fd00:0010:0096:0000:0000:0000:0000:000a 0050 fd00:0010:0244:0002:0000:0000:0000:0005 1F90 SYN_RECV         57',
    ]);
    expect(ipvsConnections(40001, text)).toEqual(['TCP 0AF40103 9C41 0A60000A 0050 0AF40305 1F90 ESTABLISHED     899']);
  });

  it('short ports are zero-padded to 4 hex digits', () => {
    expect(ipvsConnections(80, text)).toEqual(['TCP 0AF40104 0050 0A60000A 9C40 0AF40205 1F90 TIME_WAIT        98']);
  });

  it('no match, the header alone, nothing', () => {
    expect(ipvsConnections(12345, text)).toEqual([]);
    expect(ipvsConnections(40000, text.split('\n')[0]!)).toEqual([]);
    expect(ipvsConnections(40000, '')).toEqual([]);
  });

  it('the header line is never a match', () => {
    // A header-like first line is skipped even if its third column looked like a port.
    expect(ipvsConnections(40000, 'TCP 0AF40103 9C40 x\nTCP 0AF40103 9C40 y')).toEqual(['TCP 0AF40103 9C40 y']);
  });
});
