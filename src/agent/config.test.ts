import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_PORT, readConfigFile, resolveConfig } from './config.js';
import type { RawOptions } from './config.js';
import { failure } from '../testing/errors.js';
import { tempFiles } from '../testing/files.js';

/** The smallest valid set of options; each case below changes one thing. */
const BASE: RawOptions = {
  nodeName: 'node-1',
  nodeIp: '198.18.0.1',
  clusterCidr: '10.244.0.0/16',
  stateDir: '/var/lib/podnet/agent',
  kubeconfig: '/etc/podnet/kubeconfig',
};


const { dir: tmp, file } = tempFiles('podnet-config-');

describe('resolveConfig refuses bad options, naming the field and the reason', () => {
  const INVALID = 'PODNET_INVALID_ARGUMENT';
  const NAME = 'PODNET_INVALID_NAME';
  // [what, changes to BASE, code, field named first, reason]
  const cases: [string, RawOptions, string, string, RegExp][] = [
    ['missing node name', { nodeName: undefined }, INVALID, '--node-name', /is required/],
    ['node name with upper case', { nodeName: 'Node-1' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name with "_"', { nodeName: 'node_1' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name starting with "-"', { nodeName: '-node' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name with ".."', { nodeName: 'a..b' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name with a label starting with "-"', { nodeName: 'a.-b' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name with a label ending with "-"', { nodeName: 'a-.b' }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['node name over 253 characters', { nodeName: `${'a'.repeat(60)}.`.repeat(4) + 'a'.repeat(10) }, INVALID, '--node-name', /not a DNS-1123 subdomain/],
    ['missing node IP', { nodeIp: undefined }, INVALID, '--node-ip', /is required/],
    ['node IP not an IP', { nodeIp: 'node-1.example' }, INVALID, '--node-ip', /is not an IP address/],
    ['node IP with a prefix', { nodeIp: '198.18.0.1/24' }, INVALID, '--node-ip', /is not an IP address/],
    ['second node IP not IPv6', { nodeIpv6: '198.18.0.2' }, INVALID, '--node-ipv6', /is not an IPv6 address/],
    ['second node IP of the same family', { nodeIp: 'fd00::1', nodeIpv6: 'fd00::2' }, INVALID, '--node-ipv6', /already IPv6/],
    ['missing cluster CIDR', { clusterCidr: undefined }, INVALID, '--cluster-cidr', /is required/],
    ['cluster CIDR not a CIDR', { clusterCidr: '10.244.0.0' }, INVALID, '--cluster-cidr', /is not a CIDR/],
    ['cluster CIDR garbage', { clusterCidr: 'pods' }, INVALID, '--cluster-cidr', /is not a CIDR/],
    ['cluster CIDR prefix over 32', { clusterCidr: '10.244.0.0/33' }, INVALID, '--cluster-cidr', /is not a CIDR/],
    ['cluster CIDR with host bits set', { clusterCidr: '10.244.1.0/16' }, INVALID, '--cluster-cidr', /has host bits set \(did you mean 10\.244\.0\.0\/16\?\)/],
    ['IPv6 CIDR given to --cluster-cidr', { clusterCidr: 'fd00:10:244::/56' }, INVALID, '--cluster-cidr', /is not an IPv4 CIDR/],
    ['IPv4 CIDR given to --cluster-cidr-v6', { clusterCidrV6: '10.245.0.0/16' }, INVALID, '--cluster-cidr-v6', /is not an IPv6 CIDR/],
    ['IPv6 cluster CIDR with host bits set', { clusterCidrV6: 'fd00:10:244::1/56' }, INVALID, '--cluster-cidr-v6', /has host bits set \(did you mean fd00:10:244::\/56\?\)/],
    ['subnet size larger than the cluster CIDR', { nodeSubnetSize: 8 }, INVALID, '--node-subnet-size', /\/8 is larger than the cluster CIDR 10\.244\.0\.0\/16/],
    ['subnet size leaving no room', { nodeSubnetSize: 31 }, INVALID, '--node-subnet-size', /\/31 leaves no room for pods \(at most \/30/],
    ['subnet size not a number', { nodeSubnetSize: 'big' }, INVALID, '--node-subnet-size', /must be an integer/],
    ['subnet size negative', { nodeSubnetSize: '-24' }, INVALID, '--node-subnet-size', /must be an integer/],
    ['IPv6 subnet size larger than the cluster CIDR', { clusterCidrV6: 'fd00:10:244::/56', nodeSubnetSizeV6: 48 }, INVALID, '--node-subnet-size-v6', /larger than the cluster CIDR/],
    ['IPv6 subnet size leaving no room', { clusterCidrV6: 'fd00:10:244::/56', nodeSubnetSizeV6: 127 }, INVALID, '--node-subnet-size-v6', /leaves no room .*at most \/126/],
    ['missing state dir', { stateDir: undefined }, INVALID, '--state-dir', /is required/],
    ['relative state dir', { stateDir: 'var/lib/podnet' }, INVALID, '--state-dir', /must be an absolute path/],
    ['state dir with ".."', { stateDir: '/var/lib/../podnet' }, INVALID, '--state-dir', /without "\.\."/],
    ['unknown backend', { backend: 'wireguard' }, INVALID, '--backend', /"wireguard" is not a backend \(known: vxlan, host-gw, udp\)/],
    ['unknown proxy mode', { proxyMode: 'userspace' }, INVALID, '--proxy-mode', /"userspace" is not a proxy mode/],
    ['proxy min sync period not a duration', { proxyMinSyncPeriod: 'soon' }, INVALID, '--proxy-min-sync-period', /"soon" is not a duration/],
    ['proxy sync period under 1s', { proxySyncPeriod: '500ms' }, INVALID, '--proxy-sync-period', /must be at least 1s/],
    ['proxy min sync period over the sync period', { proxyMinSyncPeriod: '1m', proxySyncPeriod: '30s' }, INVALID, '--proxy-min-sync-period', /must not be longer than --proxy-sync-period/],
    ['listen without a port', { listen: '198.18.0.1' }, INVALID, '--listen', /is not IP:PORT/],
    ['listen on a host name', { listen: 'node-1:10260' }, INVALID, '--listen', /is not IP:PORT/],
    ['listen on port 0', { listen: '198.18.0.1:0' }, INVALID, '--listen', /is not IP:PORT/],
    ['listen on a port over 65535', { listen: '198.18.0.1:70000' }, INVALID, '--listen', /is not IP:PORT/],
    ['listen on an unbracketed IPv6 address', { listen: 'fd00::1:10260' }, INVALID, '--listen', /is not IP:PORT/],
    ['netns prefix starting with "-"', { netnsPrefix: '-pn' }, NAME, '--netns-prefix', /must be 1-40 letters/],
    ['netns prefix "."', { netnsPrefix: '.' }, NAME, '--netns-prefix', /must be 1-40 letters/],
    ['netns prefix ".."', { netnsPrefix: '..' }, NAME, '--netns-prefix', /must be 1-40 letters/],
    ['netns prefix holding ".."', { netnsPrefix: 'pn..' }, NAME, '--netns-prefix', /without "\.\."/],
    ['netns prefix with "/"', { netnsPrefix: 'pn/' }, NAME, '--netns-prefix', /must be 1-40 letters/],
    ['netns prefix over 40 characters', { netnsPrefix: 'p'.repeat(41) }, NAME, '--netns-prefix', /must be 1-40 letters/],
    ['relative CNI socket', { cniSocket: 'cni.sock' }, INVALID, '--cni-socket', /must be an absolute path/],
    ['CNI socket path over 100 characters', { cniSocket: `/run/${'s'.repeat(100)}.sock` }, INVALID, '--cni-socket', /at most 100 characters/],
    ['bad duration', { resyncPeriod: 'soon' }, INVALID, '--resync-period', /"soon" is not a duration/],
    ['duration without a unit', { resyncPeriod: '30' }, INVALID, '--resync-period', /"30" is not a duration/],
    ['resync period under 1s', { resyncPeriod: '500ms' }, INVALID, '--resync-period', /at least 1s/],
    ['neither --kubeconfig nor --server', { kubeconfig: undefined }, INVALID, '--kubeconfig', /or --server is required/],
    ['both --kubeconfig and --server', { server: 'https://198.18.0.10:6443' }, INVALID, '--server', /cannot be combined with --kubeconfig/],
    ['mtu under 576', { mtu: 100 }, INVALID, '--mtu', /from 576 to 65535, got 100/],
    ['mtu over 65535', { mtu: '70000' }, INVALID, '--mtu', /from 576 to 65535, got "70000"/],
    ['mtu not an integer', { mtu: 1450.5 }, INVALID, '--mtu', /must be an integer/],
    ['pod concurrency 0', { podConcurrency: 0 }, INVALID, '--pod-concurrency', /from 1 to 256/],
    ['pod concurrency over 256', { podConcurrency: '257' }, INVALID, '--pod-concurrency', /from 1 to 256/],
    ['masquerade not a boolean', { masquerade: 'yes' }, INVALID, '--masquerade', /must be true or false/],
    ['insecure not a boolean', { server: 'https://a:6443', kubeconfig: undefined, insecureSkipTlsVerify: 1 }, INVALID, '--insecure-skip-tls-verify', /must be true or false/],
    ['a list where a string belongs', { backend: ['vxlan'] }, INVALID, '--backend', /must be a string/],
    ['underlay interface name too long', { iface: 'eth0123456789abc' }, NAME, '--iface', /longer than 15 bytes/],
  ];
  it.each(cases)('%s', (_what, change, code, field, reason) => {
    const e = failure(() => resolveConfig({ ...BASE, ...change }));
    expect(e.code).toBe(code);
    expect(e.message.startsWith(`${field} `)).toBe(true);
    expect(e.message).toMatch(reason);
    expect(e.context.field).toBe(field);
  });
});

describe('resolveConfig accepts good options', () => {
  it('fills the defaults', () => {
    const cfg = resolveConfig(BASE);
    expect(cfg).toEqual({
      nodeName: 'node-1',
      nodeIP: '198.18.0.1',
      nodeIPv6: undefined,
      iface: undefined,
      networks: [{ cidr: expect.objectContaining({ family: 4, network: '10.244.0.0', prefix: 16 }), subnetSize: 24 }],
      stateDir: '/var/lib/podnet/agent',
      backend: 'vxlan',
      directRouting: false,
      proxyMode: 'nftables',
      proxyMinSyncMs: 1000,
      proxySyncMs: 30000,
      proxyFullSyncMs: 3600000,
      listen: { host: '198.18.0.1', port: AGENT_PORT },
      masquerade: true,
      netnsPrefix: 'pn-',
      cniSocket: '/run/podnet/cni.sock',
      mtu: undefined,
      podConcurrency: 16,
      resyncMs: 30_000,
      connection: { kubeconfig: '/etc/podnet/kubeconfig' },
    });
    expect(AGENT_PORT).toBe(10260);
  });

  it('listens on [v6]:10260 for an IPv6 node IP, canonicalised', () => {
    const cfg = resolveConfig({ ...BASE, nodeIp: 'FD00:0:0::0001' });
    expect(cfg.nodeIP).toBe('fd00::1');
    expect(cfg.listen).toEqual({ host: 'fd00::1', port: 10260 });
  });

  it('takes an explicit listen address of either family', () => {
    expect(resolveConfig({ ...BASE, listen: '127.0.0.1:9000' }).listen).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(resolveConfig({ ...BASE, listen: '[::1]:9000' }).listen).toEqual({ host: '::1', port: 9000 });
    expect(resolveConfig({ ...BASE, listen: '0.0.0.0:10260' }).listen).toEqual({ host: '0.0.0.0', port: 10260 });
  });

  it('is dual-stack with both cluster CIDRs, IPv4 first, /64 by default for IPv6', () => {
    const cfg = resolveConfig({ ...BASE, clusterCidrV6: 'fd00:10:244::/56', nodeIpv6: 'fd00:198:18::1' });
    expect(cfg.networks.map((n) => [n.cidr.toString(), n.subnetSize])).toEqual([
      ['10.244.0.0/16', 24],
      ['fd00:10:244::/56', 64],
    ]);
    expect(cfg.nodeIPv6).toBe('fd00:198:18::1');
  });

  it('runs an IPv6-only cluster', () => {
    const cfg = resolveConfig({ ...BASE, nodeIp: 'fd00:198:18::1', clusterCidr: undefined, clusterCidrV6: 'fd00:10:244::/56', nodeSubnetSizeV6: '80' });
    expect(cfg.networks.map((n) => [n.cidr.toString(), n.subnetSize])).toEqual([['fd00:10:244::/56', 80]]);
  });

  it('accepts subnet sizes at both ends of the range', () => {
    expect(resolveConfig({ ...BASE, nodeSubnetSize: 16 }).networks[0]!.subnetSize).toBe(16);
    expect(resolveConfig({ ...BASE, nodeSubnetSize: '30' }).networks[0]!.subnetSize).toBe(30);
  });

  it('reads camelCase and flag-spelled keys alike', () => {
    const flagSpelled = resolveConfig({
      'node-name': 'node-1',
      '--node-ip': '198.18.0.1',
      'cluster-cidr': '10.244.0.0/16',
      'cluster-cidr-v6': 'fd00:10:244::/56',
      'node-subnet-size': '26',
      'node-subnet-size-v6': '72',
      'state-dir': '/var/lib/podnet/agent',
      'proxy-mode': 'ipvs',
      'netns-prefix': 'pnt-1-',
      'cni-socket': '/run/podnet-test/cni.sock',
      'pod-concurrency': '4',
      'resync-period': '1m30s',
      server: 'https://198.18.0.10:6443',
      'token-file': '/var/run/token',
      'ca-file': '/etc/podnet/ca.crt',
      'insecure-skip-tls-verify': 'true',
    });
    expect(flagSpelled).toMatchObject({
      nodeName: 'node-1',
      nodeIP: '198.18.0.1',
      proxyMode: 'ipvs',
      netnsPrefix: 'pnt-1-',
      cniSocket: '/run/podnet-test/cni.sock',
      podConcurrency: 4,
      resyncMs: 90_000,
      connection: { server: 'https://198.18.0.10:6443', tokenFile: '/var/run/token', caFile: '/etc/podnet/ca.crt', insecure: true },
    });
    expect(flagSpelled.networks.map((n) => n.subnetSize)).toEqual([26, 72]);
  });

  it('builds a --server connection without the options not given', () => {
    expect(resolveConfig({ ...BASE, kubeconfig: undefined, server: 'https://a:6443', token: 't0k', insecureSkipTlsVerify: false }).connection).toEqual({ server: 'https://a:6443', token: 't0k' });
  });

  it('takes backends case-insensitively, masquerade off, an mtu, strings from flags', () => {
    const cfg = resolveConfig({ ...BASE, backend: 'HOST-GW', masquerade: 'false', mtu: '1450', iface: 'ens3' });
    expect(cfg).toMatchObject({ backend: 'host-gw', masquerade: false, mtu: 1450, iface: 'ens3' });
    expect(resolveConfig({ ...BASE, masquerade: false }).masquerade).toBe(false);
    expect(resolveConfig({ ...BASE, backend: 'udp' }).backend).toBe('udp');
  });

  it('treats empty and undefined values as not given', () => {
    expect(resolveConfig({ ...BASE, backend: '', mtu: '', listen: null, netnsPrefix: undefined })).toMatchObject({ backend: 'vxlan', mtu: undefined, netnsPrefix: 'pn-' });
  });
});

describe('readConfigFile', () => {
  it('reads YAML with camelCase and flag-spelled keys into camelCase', () => {
    const p = file(['nodeName: node-1', 'node-ip: 198.18.0.1', 'cluster-cidr: 10.244.0.0/16', 'stateDir: /var/lib/podnet/agent', 'kubeconfig: /etc/podnet/kubeconfig', 'mtu: 1400', 'masquerade: false', ''].join('\n'));
    const raw = readConfigFile(p);
    expect(raw).toEqual({ nodeName: 'node-1', nodeIp: '198.18.0.1', clusterCidr: '10.244.0.0/16', stateDir: '/var/lib/podnet/agent', kubeconfig: '/etc/podnet/kubeconfig', mtu: 1400, masquerade: false });
    expect(resolveConfig(raw)).toMatchObject({ mtu: 1400, masquerade: false });
  });

  it('reads JSON', () => {
    const p = file(JSON.stringify({ ...BASE, backend: 'udp', podConcurrency: 8 }), 'json');
    expect(resolveConfig(readConfigFile(p))).toMatchObject({ backend: 'udp', podConcurrency: 8 });
  });

  it('maps flannel net-conf.json to clusterCidr / nodeSubnetSize / backend', () => {
    const p = file('{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw"}}', 'json');
    expect(readConfigFile(p)).toEqual({ clusterCidr: '10.244.0.0/16', nodeSubnetSize: 24, backend: 'host-gw' });
  });

  it('maps a dual-stack flannel config when EnableIPv6 is set', () => {
    const p = file(JSON.stringify({ EnableIPv4: true, EnableIPv6: true, Network: '10.42.0.0/16', IPv6Network: 'fd00:42::/56', SubnetLen: 25, IPv6SubnetLen: 72, SubnetMin: '10.42.10.0', Backend: { Type: 'VXLAN', VNI: 4096 } }), 'json');
    expect(readConfigFile(p)).toEqual({ clusterCidr: '10.42.0.0/16', nodeSubnetSize: 25, clusterCidrV6: 'fd00:42::/56', nodeSubnetSizeV6: 72, backend: 'vxlan' });
  });

  it('leaves out a flannel network whose family is not enabled, as flannel does', () => {
    // EnableIPv6 defaults to false in flannel: the IPv6Network is not used.
    expect(readConfigFile(file(JSON.stringify({ Network: '10.244.0.0/16', IPv6Network: 'fd00:10:244::/56', IPv6SubnetLen: 64 }), 'json'))).toEqual({ clusterCidr: '10.244.0.0/16' });
    // IPv6-only, as k3s writes it (a placeholder IPv4 network with EnableIPv4 false).
    const v6only = readConfigFile(file(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, Network: '0.0.0.0/0', IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } }), 'json'));
    expect(v6only).toEqual({ clusterCidrV6: 'fd00:10:244::/56', backend: 'vxlan' });
    const cfg = resolveConfig({ ...v6only, nodeName: 'n1', nodeIp: 'fd00::1', stateDir: '/s', kubeconfig: '/k' });
    expect(cfg.networks.map((n) => n.cidr.toString())).toEqual(['fd00:10:244::/56']);
  });

  it('refuses flannel Enable flags that are not booleans', () => {
    const e = failure(() => readConfigFile(file('{"Network":"10.244.0.0/16","EnableIPv6":"true"}', 'json')));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.message).toMatch(/^config key "EnableIPv6" must be true or false/);
  });

  it('takes flannel vxlan DirectRouting; resolveConfig insists on a boolean', () => {
    const c = readConfigFile(file('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}', 'json'));
    expect(c).toEqual({ clusterCidr: '10.244.0.0/16', backend: 'vxlan', directRouting: true });
    expect(resolveConfig({ ...BASE, ...c }).directRouting).toBe(true);
    const e = failure(() => resolveConfig({ ...BASE, directRouting: 'yes' }));
    expect(e.message).toMatch(/directRouting|--direct-routing/);
  });

  it('ignores a flannel Backend without a Type', () => {
    expect(readConfigFile(file('{"Network":"10.244.0.0/16","Backend":{"Port":8472}}', 'json'))).toEqual({ clusterCidr: '10.244.0.0/16' });
  });

  it.each([
    ['colour: blue\n', 'colour'],
    ['nodeIP: 198.18.0.1\n', 'nodeIP'],
    ['--log-level: debug\n', '--log-level'],
    ['{"Network":"10.244.0.0/16","Port":8285}', 'Port'],
  ])('refuses an unknown key, naming it: %j', (text, key) => {
    const e = failure(() => readConfigFile(file(text)));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.message.startsWith(`config key ${JSON.stringify(key)} is not an agent option`)).toBe(true);
  });

  it('reports a file that cannot be read', () => {
    const missing = join(tmp, 'missing.yaml');
    const e = failure(() => readConfigFile(missing));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.message).toMatch(new RegExp(`^--config "${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" cannot be read: ENOENT`));
    expect(failure(() => readConfigFile(tmp)).message).toMatch(/cannot be read: EISDIR/);
  });

  it.runIf(process.getuid?.() !== 0)('reports a file without read permission', () => {
    const p = file('nodeName: n1\n');
    chmodSync(p, 0o000);
    expect(failure(() => readConfigFile(p)).message).toMatch(/cannot be read: EACCES/);
  });

  it.each([
    ['a list', '- nodeName\n- node-1\n'],
    ['a string', 'node-1\n'],
    ['a number', '42\n'],
  ])('refuses a document that is %s, not a mapping', (_what, text) => {
    const e = failure(() => readConfigFile(file(text)));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.message).toMatch(/^--config ".*" must hold a mapping of options$/);
  });

  it('refuses text that is not YAML, and alias bombs', () => {
    expect(failure(() => readConfigFile(file('nodeName: [node-1\n'))).message).toMatch(/^--config ".*" is not YAML or JSON: /);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', ''].join('\n');
    expect(failure(() => readConfigFile(file(bomb))).message).toMatch(/is not YAML or JSON/);
  });

  it('reads an empty file as no options', () => {
    expect(readConfigFile(file(''))).toEqual({});
    expect(readConfigFile(file('# only a comment\n'))).toEqual({});
  });

  it('lets flags win over the file (merged as the agent command does)', () => {
    const fromFile = readConfigFile(file(['nodeName: node-1', 'nodeIp: 198.18.0.1', 'stateDir: /var/lib/podnet/agent', 'kubeconfig: /etc/podnet/kubeconfig', 'backend: udp', 'mtu: 1400', ''].join('\n')));
    const flannel = readConfigFile(file('{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw"}}', 'json'));
    const flags: RawOptions = { backend: 'vxlan', nodeSubnetSize: '26' };
    const cfg = resolveConfig({ ...fromFile, ...flannel, ...flags });
    expect(cfg).toMatchObject({ backend: 'vxlan', mtu: 1400 });
    expect(cfg.networks[0]!.subnetSize).toBe(26);
    // Without the flag, the file's value stands.
    expect(resolveConfig({ ...fromFile, ...flannel }).backend).toBe('host-gw');
  });
});
