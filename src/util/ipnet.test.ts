import { describe, expect, it } from 'vitest';
import { Cidr, bigToIp, compareIP, ipFromBytes, ipToBig, ipToBytes, parseIP, parseInterfaceAddress } from './ipnet.js';
import { PodnetError } from './errors.js';

describe('parseIP', () => {
  it.each([
    ['10.244.1.2', '10.244.1.2'],
    ['fd00:10:244::2', 'fd00:10:244::2'],
    ['FD00:0010:0244:0000:0000:0000:0000:0002', 'fd00:10:244::2'],
    ['::1', '::1'],
  ])('accepts %s as %s', (input, out) => expect(parseIP(input)).toBe(out));

  it.each(['10.244.1', '10.244.1.256', '010.1.1.1', 'fd00::10::1', '', 'example.com', '1.2.3.4/24'])('rejects %j naming the field', (input) => {
    expect(() => parseIP(input, 'spec.podIP')).toThrowError(/spec\.podIP .* is not an IPv4 or IPv6 address/);
    try {
      parseIP(input, 'spec.podIP');
    } catch (e) {
      expect((e as PodnetError).code).toBe('PODNET_INVALID_IP');
      expect((e as PodnetError).context.field).toBe('spec.podIP');
    }
  });
});

describe('bytes', () => {
  it('round-trips IPv4 and IPv6', () => {
    for (const ip of ['0.0.0.0', '198.18.0.1', '255.255.255.255', '::', 'fd00:10:244:1::2', 'fe80::1:2:3:4']) {
      const b = ipToBytes(ip);
      expect(b.length).toBe(ip.includes(':') ? 16 : 4);
      expect(ipFromBytes(b)).toBe(ip);
    }
  });
  it('is network order', () => {
    expect([...ipToBytes('10.244.1.2')]).toEqual([10, 244, 1, 2]);
    expect(ipToBytes('fd00::1').toString('hex')).toBe('fd000000000000000000000000000001');
  });
  it('rejects other lengths', () => expect(() => ipFromBytes(Buffer.alloc(5))).toThrow(PodnetError));
  it('big integers round-trip', () => {
    expect(ipToBig('0.0.1.0')).toBe(256n);
    expect(bigToIp(ipToBig('fd00:10:244::ff') + 1n, 6)).toBe('fd00:10:244::100');
  });
});

describe('Cidr', () => {
  it('parses and normalises', () => {
    const c = Cidr.parse('10.244.0.0/16');
    expect(c.family).toBe(4);
    expect(c.prefix).toBe(16);
    expect(c.size).toBe(65536n);
    expect(c.toString()).toBe('10.244.0.0/16');
    expect(Cidr.parse('FD00:10:244::/56').toString()).toBe('fd00:10:244::/56');
  });
  it('rejects host bits in strict mode and suggests the network', () => {
    expect(() => Cidr.parse('10.244.1.5/16', 'clusterCIDR')).toThrowError(/clusterCIDR "10.244.1.5\/16" has host bits set \(did you mean 10.244.0.0\/16\?\)/);
    expect(Cidr.parse('10.244.1.5/16', 'x', { strict: false }).network).toBe('10.244.0.0');
  });
  it.each(['10.244.0.0', '10.244.0.0/33', 'fd00::/129', 'x/8', '10.244.0.0/-1', '10.244.0.0/ 8', 42])('rejects %j', (bad) => {
    expect(() => Cidr.parse(bad)).toThrow(PodnetError);
  });
  it('contains, covers, overlaps', () => {
    const c = Cidr.parse('10.244.0.0/16');
    expect(c.contains('10.244.255.255')).toBe(true);
    expect(c.contains('10.245.0.0')).toBe(false);
    expect(c.contains('fd00::1')).toBe(false);
    expect(c.covers(Cidr.parse('10.244.3.0/24'))).toBe(true);
    expect(Cidr.parse('10.244.3.0/24').covers(c)).toBe(false);
    expect(Cidr.parse('10.244.3.0/24').overlaps(c)).toBe(true);
    expect(Cidr.parse('10.245.0.0/24').overlaps(c)).toBe(false);
  });
  it('nth, offsetOf and last', () => {
    const c = Cidr.parse('10.244.1.0/24');
    expect(c.nth(1)).toBe('10.244.1.1');
    expect(c.last).toBe('10.244.1.255');
    expect(c.offsetOf('10.244.1.77')).toBe(77n);
    expect(() => c.nth(256)).toThrow(PodnetError);
    const v6 = Cidr.parse('fd00:10:244:1::/64');
    expect(v6.nth(2)).toBe('fd00:10:244:1::2');
    expect(v6.last).toBe('fd00:10:244:1:ffff:ffff:ffff:ffff');
  });
  it('carves subnets', () => {
    const c = Cidr.parse('10.244.0.0/16');
    expect(c.subnetCount(24)).toBe(256n);
    expect(c.subnet(24, 0).toString()).toBe('10.244.0.0/24');
    expect(c.subnet(24, 5).toString()).toBe('10.244.5.0/24');
    expect(c.subnet(24, 255).toString()).toBe('10.244.255.0/24');
    expect(() => c.subnet(24, 256)).toThrow(/outside 0..255/);
    expect(() => c.subnet(8, 0)).toThrow(/does not fit/);
    expect(Cidr.parse('fd00:10:244::/56').subnet(64, 3).toString()).toBe('fd00:10:244:3::/64');
  });
});

describe('parseInterfaceAddress', () => {
  it('keeps host bits and defaults to a host prefix', () => {
    expect(parseInterfaceAddress('10.244.1.2/24')).toEqual({ ip: '10.244.1.2', prefix: 24, family: 4 });
    expect(parseInterfaceAddress('fd00::2')).toEqual({ ip: 'fd00::2', prefix: 128, family: 6 });
  });
  it('rejects junk', () => expect(() => parseInterfaceAddress('10.244.1.2/40', 'eth0 address')).toThrowError(/eth0 address .* prefix length over 32/));
});

describe('compareIP', () => {
  it('orders numerically, v4 before v6', () => {
    expect(['10.0.0.10', '10.0.0.9', 'fd00::1', '9.255.255.255'].sort(compareIP)).toEqual(['9.255.255.255', '10.0.0.9', '10.0.0.10', 'fd00::1']);
  });
});
