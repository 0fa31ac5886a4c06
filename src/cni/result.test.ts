import { describe, expect, it } from 'vitest';
import { CniError } from './errors.js';
import { encodeError, encodeResult, encodeVersionResult, formatResult, parseResult, type CniAddResult } from './result.js';
import { SUPPORTED_VERSIONS } from './spec.js';
import { SAMPLE_RESULT } from './testing.js';

const full: CniAddResult = {
  interfaces: [{ name: 'eth0', mac: '02:42:0a:f4:01:05', mtu: 1450, sandbox: '/run/netns/x', socketPath: '/run/vhost.sock', pciID: '0000:00:1f.6' }],
  ips: [
    { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 },
    { address: 'fd00:10:244:1::5/64', interface: 0 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
  dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] },
};

describe('encodeResult: the shape of each spec version', () => {
  it('1.1.0 carries the 1.1 interface and route attributes', () => {
    expect(encodeResult(full, '1.1.0')).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0', mac: '02:42:0a:f4:01:05', mtu: 1450, sandbox: '/run/netns/x', socketPath: '/run/vhost.sock', pciID: '0000:00:1f.6' }],
      ips: [
        { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 },
        { address: 'fd00:10:244:1::5/64', interface: 0 },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }],
      dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['default.svc.cluster.local'], options: ['ndots:5'] },
    });
  });

  it('1.0.0 drops the 1.1 additions and has no ips version', () => {
    expect(encodeResult(full, '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', mac: '02:42:0a:f4:01:05', sandbox: '/run/netns/x' }],
      ips: [
        { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 },
        { address: 'fd00:10:244:1::5/64', interface: 0 },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
      dns: full.dns,
    });
  });

  it.each(['0.3.0', '0.3.1', '0.4.0'] as const)('%s gives every ips entry its "version"', (v) => {
    const out = encodeResult(full, v) as { cniVersion: string; ips: { version: string }[]; interfaces: object[]; routes: object[] };
    expect(out.cniVersion).toBe(v);
    expect(out.ips).toEqual([
      { version: '4', address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 },
      { version: '6', address: 'fd00:10:244:1::5/64', interface: 0 },
    ]);
    expect(out.interfaces).toEqual([{ name: 'eth0', mac: '02:42:0a:f4:01:05', sandbox: '/run/netns/x' }]);
    expect(out.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
  });

  it('omits empty lists and always prints dns', () => {
    expect(encodeResult({ interfaces: [], ips: [], routes: [] }, '1.0.0')).toEqual({ cniVersion: '1.0.0', dns: {} });
  });

  it('formatResult is one line of JSON', () => {
    const text = formatResult(SAMPLE_RESULT, '1.0.0');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trim().includes('\n')).toBe(false);
    expect(JSON.parse(text)).toEqual(encodeResult(SAMPLE_RESULT, '1.0.0'));
  });

  it('a printed result parses back to the same value, in every version (prevResult round trip)', () => {
    for (const v of SUPPORTED_VERSIONS) {
      const back = parseResult(encodeResult(SAMPLE_RESULT, v));
      expect(back).toEqual(SAMPLE_RESULT);
    }
  });
});

describe('parseResult', () => {
  it('accepts a reference-plugin result (bridge + host-local, 0.4.0 shape)', () => {
    const r = parseResult({
      cniVersion: '0.4.0',
      interfaces: [{ name: 'cni0', mac: '00:11:22:33:44:55' }, { name: 'veth3243', mac: '55:44:33:22:11:11' }, { name: 'eth0', mac: '99:88:77:66:55:44', sandbox: '/var/run/netns/blue' }],
      ips: [{ version: '4', address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.1.0.1'] },
    });
    expect(r.ips).toEqual([{ address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }]);
    expect(r.interfaces[2]?.sandbox).toBe('/var/run/netns/blue');
  });
  it('an IPAM-style result without interfaces', () => {
    expect(parseResult({ ips: [{ address: '10.1.0.5/16' }] })).toEqual({ interfaces: [], ips: [{ address: '10.1.0.5/16' }], routes: [] });
  });
  it('reports the field path with the given code', () => {
    try {
      parseResult({ interfaces: [{}] }, 'result', 999);
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(CniError);
      expect((e as CniError).code).toBe(999);
      expect((e as CniError).message).toBe('result.interfaces[0].name is required (a string)');
    }
  });
  it('rejects a prefix length over the family maximum', () => {
    expect(() => parseResult({ routes: [{ dst: '10.0.0.0/33' }] })).toThrow(/prevResult\.routes\[0\]\.dst/);
    expect(() => parseResult({ ips: [{ address: 'fd00::1/129' }] })).toThrow(/prevResult\.ips\[0\]\.address/);
  });
});

describe('error and VERSION objects', () => {
  it('error: cniVersion, code, msg, details (omitted when absent)', () => {
    expect(encodeError(new CniError(7, 'mtu must be an integer', 'PODNET_INVALID_ARGUMENT: ...'), '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      code: 7,
      msg: 'mtu must be an integer',
      details: 'PODNET_INVALID_ARGUMENT: ...',
    });
    expect(encodeError(new CniError(11, 'busy'))).toEqual({ cniVersion: '1.1.0', code: 11, msg: 'busy' });
  });
  it('VERSION echoes a well-formed requested version, else answers 1.1.0', () => {
    const supportedVersions = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
    expect(encodeVersionResult('1.0.0')).toEqual({ cniVersion: '1.0.0', supportedVersions });
    expect(encodeVersionResult()).toEqual({ cniVersion: '1.1.0', supportedVersions });
    expect(encodeVersionResult('"><')).toEqual({ cniVersion: '1.1.0', supportedVersions });
  });
});
