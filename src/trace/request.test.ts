import { describe, expect, it } from 'vitest';
import { failure } from '../testing/errors.js';
import { makePacket, parseNodeRequest, parseTarget } from './request.js';

describe('parseTarget', () => {
  it('IPv4 address and port, tcp by default', () => {
    expect(parseTarget('10.96.0.10:80')).toEqual({ kind: 'ip', ip: '10.96.0.10', port: 80, proto: 'tcp' });
  });

  it('a protocol suffix (any case)', () => {
    expect(parseTarget('10.96.0.10:80/udp')).toEqual({ kind: 'ip', ip: '10.96.0.10', port: 80, proto: 'udp' });
    expect(parseTarget('10.96.0.10:53/UDP')).toEqual({ kind: 'ip', ip: '10.96.0.10', port: 53, proto: 'udp' });
    expect(parseTarget('10.96.0.10:3868/sctp')).toEqual({ kind: 'ip', ip: '10.96.0.10', port: 3868, proto: 'sctp' });
  });

  it('surrounding whitespace is ignored', () => {
    expect(parseTarget('  10.96.0.10:443 ')).toEqual({ kind: 'ip', ip: '10.96.0.10', port: 443, proto: 'tcp' });
  });

  it('a port with no address (":80/udp") is not an address', () => {
    const e = failure(() => parseTarget(':80/udp'));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.context.field).toBe('--to');
    expect(e.message).toBe('--to: ":80" is not an IP address or svc/NAMESPACE/NAME');
  });

  it('IPv6 in brackets with a port and protocol', () => {
    expect(parseTarget('[fd00::1]:80/tcp')).toEqual({ kind: 'ip', ip: 'fd00::1', port: 80, proto: 'tcp' });
    expect(parseTarget('[fd00:10:96::a]:53/udp')).toEqual({ kind: 'ip', ip: 'fd00:10:96::a', port: 53, proto: 'udp' });
  });

  it('icmp needs no port (IPv6 bare, IPv4 bare, IPv6 in brackets)', () => {
    expect(parseTarget('fd00::1/icmp')).toEqual({ kind: 'ip', ip: 'fd00::1', port: 0, proto: 'icmp' });
    expect(parseTarget('10.244.1.5/icmp')).toEqual({ kind: 'ip', ip: '10.244.1.5', port: 0, proto: 'icmp' });
    expect(parseTarget('[fd00::1]/icmp')).toEqual({ kind: 'ip', ip: 'fd00::1', port: 0, proto: 'icmp' });
  });

  it('a Service with a numeric port', () => {
    expect(parseTarget('svc/default/web:80')).toEqual({ kind: 'service', namespace: 'default', name: 'web', port: 80, proto: 'tcp' });
    expect(parseTarget('svc/kube-system/kube-dns:53/udp')).toEqual({ kind: 'service', namespace: 'kube-system', name: 'kube-dns', port: 53, proto: 'udp' });
  });

  it('a Service with a port name', () => {
    expect(parseTarget('svc/default/web:http')).toEqual({ kind: 'service', namespace: 'default', name: 'web', port: 0, proto: 'tcp', portName: 'http' });
  });

  it('a Service without a port: only for icmp', () => {
    expect(parseTarget('svc/default/web/icmp')).toEqual({ kind: 'service', namespace: 'default', name: 'web', port: 0, proto: 'icmp' });
    const e = failure(() => parseTarget('svc/default/web'));
    expect(e.context.field).toBe('--to');
    expect(e.message).toBe('--to: "svc/default/web" has no port (svc/NAMESPACE/NAME:PORT, PORT a number or a port name)');
  });

  it('no port', () => {
    const e = failure(() => parseTarget('10.96.0.10'));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.context.field).toBe('--to');
    expect(e.message).toBe('--to: "10.96.0.10" has no port (ADDRESS:PORT[/tcp|udp|sctp|icmp])');
    // A bare IPv6 address is the address, never ADDRESS:PORT.
    expect(failure(() => parseTarget('fd00::1:80')).message).toBe('--to: "fd00::1:80" has no port (ADDRESS:PORT[/tcp|udp|sctp|icmp])');
    expect(failure(() => parseTarget('[fd00::1]')).message).toMatch(/^--to: "\[fd00::1\]" has no port/);
    expect(failure(() => parseTarget('10.96.0.10:http')).message).toMatch(/^--to: "10.96.0.10:http" has no port/);
  });

  it('a port out of range: 0 and 70000', () => {
    const zero = failure(() => parseTarget('10.96.0.10:0'));
    expect(zero.context.field).toBe('--to');
    expect(zero.message).toBe('--to: port 0 is out of range 1-65535');
    expect(failure(() => parseTarget('10.96.0.10:70000')).message).toBe('--to: port 70000 is out of range 1-65535');
    expect(failure(() => parseTarget('[fd00::1]:70000/udp')).message).toBe('--to: port 70000 is out of range 1-65535');
    const svc = failure(() => parseTarget('svc/default/web:70000'));
    expect(svc.context.field).toBe('--to');
    expect(svc.message).toBe('--to: port 70000 is out of range 1-65535');
    expect(failure(() => parseTarget('svc/default/web:0')).message).toBe('--to: port 0 is out of range 1-65535');
  });

  it('not an IP address', () => {
    const e = failure(() => parseTarget('web.default:80'));
    expect(e.context.field).toBe('--to');
    expect(e.message).toBe('--to: "web.default" is not an IP address or svc/NAMESPACE/NAME');
    expect(failure(() => parseTarget('10.96.0.300:80')).message).toBe('--to: "10.96.0.300" is not an IP address or svc/NAMESPACE/NAME');
    expect(failure(() => parseTarget('[nope]:80')).message).toBe('--to: "nope" is not an IP address or svc/NAMESPACE/NAME');
  });

  it('bad svc syntax', () => {
    for (const t of ['svc/default:80', 'svc/default/web/extra:80', 'svc//web:80', 'svc/default/:80']) {
      const e = failure(() => parseTarget(t));
      expect(e.context.field).toBe('--to');
      expect(e.message).toBe(`--to: ${JSON.stringify(t)} is not svc/NAMESPACE/NAME:PORT`);
    }
  });

  it('the field can be renamed', () => {
    expect(failure(() => parseTarget('10.96.0.10', '--via')).context.field).toBe('--via');
  });
});

describe('makePacket', () => {
  it('IPv4 TCP: 20 + 20 bytes', () => {
    expect(makePacket({ src: '10.244.1.3', dst: '10.96.0.10', proto: 'tcp', sport: 40000, dport: 80 })).toEqual({ family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 40 });
  });

  it('IPv6 UDP: 40 + 8 bytes', () => {
    expect(makePacket({ src: 'fd00:10:244:1::3', dst: 'fd00:10:96::a', proto: 'udp', sport: 5353, dport: 53 })).toEqual({ family: 6, proto: 'udp', src: 'fd00:10:244:1::3', sport: 5353, dst: 'fd00:10:96::a', dport: 53, size: 48 });
  });

  it('IPv4 ICMP: 20 + 8 bytes; IPv6 TCP: 60', () => {
    expect(makePacket({ src: '10.244.1.3', dst: '10.244.2.5', proto: 'icmp', sport: 7, dport: 0 }).size).toBe(28);
    expect(makePacket({ src: 'fd00::1', dst: 'fd00::2', proto: 'tcp', sport: 1, dport: 2 }).size).toBe(60);
  });

  it('an explicit size wins', () => {
    expect(makePacket({ src: '10.244.1.3', dst: '10.244.2.5', proto: 'tcp', sport: 40000, dport: 80, size: 1400 }).size).toBe(1400);
  });
});

describe('parseNodeRequest', () => {
  const valid = () => ({
    packet: { family: 4, proto: 'tcp', src: '10.244.1.3', sport: 40000, dst: '10.96.0.10', dport: 80, size: 40 },
    ingress: { kind: 'pod', namespace: 'default', name: 'client' },
    directory: {
      nodes: [{ name: 'n1', addresses: ['192.168.1.11'], podCIDRs: ['10.244.1.0/24'] }],
      pods: [{ namespace: 'default', name: 'client', ips: ['10.244.1.3'], node: 'n1' }],
    },
  });

  it('accepts a valid body and returns it', () => {
    const body = valid();
    expect(parseNodeRequest(body)).toEqual(body);
    const live = { ...valid(), ingress: { kind: 'transport', fromNode: 'n2' }, live: { id: 'abc123', dscp: 43, timeoutMs: 1000 } };
    expect(parseNodeRequest(live)).toEqual(live);
    for (const ingress of [{ kind: 'node' }, { kind: 'external' }]) expect(parseNodeRequest({ ...valid(), ingress }).ingress).toEqual(ingress);
  });

  it("accepts a node's transport problem in the directory, bounded", () => {
    const b = valid();
    const nodes = [{ ...b.directory.nodes[0]!, transportProblem: { reason: 'NotOnLink', message: 'peer n2 (192.168.1.12) is off-link' } }];
    expect(parseNodeRequest({ ...b, directory: { ...b.directory, nodes } }).directory.nodes[0]!.transportProblem).toEqual({ reason: 'NotOnLink', message: 'peer n2 (192.168.1.12) is off-link' });
    const long = [{ ...b.directory.nodes[0]!, transportProblem: { reason: 'x'.repeat(257), message: '' } }];
    expect(failure(() => parseNodeRequest({ ...b, directory: { ...b.directory, nodes: long } })).context.field).toBe('directory.nodes.0.transportProblem.reason');
  });

  it('accepts IPv6', () => {
    const body = { ...valid(), packet: { family: 6, proto: 'udp', src: 'fd00:10:244:1::3', sport: 1, dst: 'fd00:10:96::a', dport: 53, size: 48 } };
    expect(parseNodeRequest(body).packet.family).toBe(6);
  });

  function rejects(body: unknown, field: string, message: string) {
    const e = failure(() => parseNodeRequest(body));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.context.field).toBe(field);
    expect(e.message).toBe(message);
  }

  it('rejects a bad IP', () => {
    const b = valid();
    rejects({ ...b, packet: { ...b.packet, src: '10.244.1.300' } }, 'packet.src', 'trace request: packet.src: not an IP address');
    rejects({ ...b, packet: { ...b.packet, dst: 'web' } }, 'packet.dst', 'trace request: packet.dst: not an IP address');
    rejects({ ...b, directory: { ...b.directory, pods: [{ namespace: 'default', name: 'client', ips: ['nope'] }] } }, 'directory.pods.0.ips.0', 'trace request: directory.pods.0.ips.0: not an IP address');
  });

  it('rejects a family mismatch (IPv6 source with family 4)', () => {
    const b = valid();
    rejects({ ...b, packet: { ...b.packet, src: 'fd00::3' } }, 'packet', 'trace request: packet: src and dst must be IPv4 addresses');
    rejects({ ...b, packet: { ...b.packet, family: 6 } }, 'packet', 'trace request: packet: src and dst must be IPv6 addresses');
  });

  it('rejects an unknown ingress kind', () => {
    const e = failure(() => parseNodeRequest({ ...valid(), ingress: { kind: 'tunnel' } }));
    expect(e.context.field).toBe('ingress.kind');
    expect(e.message).toMatch(/^trace request: ingress\.kind: /);
  });

  it('rejects bad names', () => {
    const b = valid();
    rejects({ ...b, ingress: { kind: 'pod', namespace: 'Default', name: 'client' } }, 'ingress.namespace', 'trace request: ingress.namespace: not a DNS-1123 name');
    rejects({ ...b, ingress: { kind: 'pod', namespace: 'default', name: 'client-' } }, 'ingress.name', 'trace request: ingress.name: not a DNS-1123 name');
    rejects({ ...b, ingress: { kind: 'transport', fromNode: 'n_2' } }, 'ingress.fromNode', 'trace request: ingress.fromNode: not a DNS-1123 name');
    rejects({ ...b, directory: { ...b.directory, nodes: [{ name: 'N1', addresses: [], podCIDRs: [] }] } }, 'directory.nodes.0.name', 'trace request: directory.nodes.0.name: not a DNS-1123 name');
  });

  it('rejects out-of-range numbers and a bad live marker', () => {
    const b = valid();
    expect(failure(() => parseNodeRequest({ ...b, packet: { ...b.packet, dport: 65536 } })).context.field).toBe('packet.dport');
    expect(failure(() => parseNodeRequest({ ...b, packet: { ...b.packet, size: 19 } })).context.field).toBe('packet.size');
    expect(failure(() => parseNodeRequest({ ...b, packet: { ...b.packet, proto: 'gre' } })).context.field).toBe('packet.proto');
    expect(failure(() => parseNodeRequest({ ...b, live: { id: 'ABC', dscp: 43, timeoutMs: 1000 } })).context.field).toBe('live.id');
    expect(failure(() => parseNodeRequest({ ...b, live: { id: 'abc', dscp: 0, timeoutMs: 1000 } })).context.field).toBe('live.dscp');
    expect(failure(() => parseNodeRequest({ ...b, live: { id: 'abc', dscp: 43, timeoutMs: 30_001 } })).context.field).toBe('live.timeoutMs');
  });

  it('rejects a missing directory and a non-object body', () => {
    const { directory: _d, ...noDir } = valid();
    rejects(noDir, 'directory', 'trace request: directory: Invalid input: expected object, received undefined');
    const e = failure(() => parseNodeRequest(5));
    expect(e.context.field).toBe('');
    expect(e.message).toMatch(/^trace request: \(body\): /);
  });
});
