import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniError } from './errors.js';
import { parseCniArgs, parseRequest, type CniRawRequest } from './protocol.js';
import { CONTAINER_ID, SAMPLE_RESULT, cniEnv, netConf, rawRequest, repoRoot } from './testing.js';

function failure(raw: CniRawRequest): CniError {
  try {
    parseRequest(raw);
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('parseRequest accepted the request');
}

const prev = { cniVersion: '1.0.0', ...SAMPLE_RESULT };

describe('parseRequest: valid requests', () => {
  it('ADD: attachment, pod identity from CNI_ARGS, CNI_PATH, typed config', () => {
    const req = parseRequest(rawRequest('ADD', netConf({ socket: '/run/podnet/cni.sock', ipMasq: true, mtu: 1450, runtimeConfig: { portMappings: [] } })));
    expect(req.command).toBe('ADD');
    if (req.command !== 'ADD') return;
    expect(req.attachment).toEqual({ containerId: CONTAINER_ID, ifname: 'eth0', netns: '/run/netns/netns-0b8c4f6e' });
    expect(req.pod).toEqual({ namespace: 'default', name: 'web-0', uid: '5d1f0c2e-1111-2222-3333-444455556666' });
    expect(req.args.ignoreUnknown).toBe(true);
    expect(req.path).toEqual(['/opt/cni/bin', '/usr/lib/cni']);
    expect(req.config).toMatchObject({ cniVersion: '1.0.0', name: 'podnet', type: 'podnet-cni', socket: '/run/podnet/cni.sock', ipMasq: true, mtu: 1450, runtimeConfig: { portMappings: [] } });
    expect(req.config.raw.name).toBe('podnet');
  });

  it('DEL with an empty CNI_NETNS (containerd after the task exited) is valid', () => {
    const req = parseRequest(rawRequest('DEL', netConf({ prevResult: prev }), { CNI_NETNS: '' }));
    expect(req).toMatchObject({ command: 'DEL', attachment: { containerId: CONTAINER_ID, ifname: 'eth0', netns: '' } });
    if (req.command === 'DEL') expect(req.config.prevResult?.ips[0]?.address).toBe('10.244.1.5/24');
  });

  it('DEL without CNI_NETNS at all, without CNI_PATH and without prevResult is valid', () => {
    const req = parseRequest(rawRequest('DEL', netConf(), { CNI_NETNS: undefined, CNI_PATH: undefined, CNI_ARGS: undefined }));
    expect(req).toMatchObject({ command: 'DEL', path: [], attachment: { netns: '' }, pod: {} });
  });

  it('DEL keeps going with a malformed prevResult (and says why it dropped it)', () => {
    const req = parseRequest(rawRequest('DEL', netConf({ prevResult: { ips: [{ address: 'banana' }] } })));
    expect(req.command).toBe('DEL');
    if (req.command !== 'DEL') return;
    expect(req.config.prevResult).toBeUndefined();
    expect(req.prevResultError).toMatch(/prevResult\.ips\[0\]\.address/);
  });

  it('CHECK carries the parsed prevResult', () => {
    const req = parseRequest(rawRequest('CHECK', netConf({ prevResult: prev })));
    if (req.command !== 'CHECK') throw new Error(req.command);
    expect(req.config.prevResult.interfaces).toHaveLength(3);
    expect(req.config.prevResult.routes).toEqual(SAMPLE_RESULT.routes);
  });

  it('STATUS needs no container variables', () => {
    const req = parseRequest({ env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0' })) });
    expect(req).toMatchObject({ command: 'STATUS', path: ['/opt/cni/bin'], config: { cniVersion: '1.1.0' } });
  });

  it('GC reads cni.dev/valid-attachments (or libcni\'s second spelling cni.dev/attachments)', () => {
    const keep = [{ containerID: CONTAINER_ID, ifname: 'eth0' }, { containerID: 'other', ifname: 'net1' }];
    for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
      const req = parseRequest({ env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0', [key]: keep })) });
      expect(req).toMatchObject({ command: 'GC', validAttachments: [{ containerId: CONTAINER_ID, ifname: 'eth0' }, { containerId: 'other', ifname: 'net1' }] });
    }
    const empty = parseRequest({ env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] })) });
    expect(empty).toMatchObject({ validAttachments: [] });
  });

  it('VERSION needs nothing and remembers the requested cniVersion', () => {
    expect(parseRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.0.0"}' })).toEqual({ command: 'VERSION', cniVersion: '1.0.0' });
    expect(parseRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: '' })).toEqual({ command: 'VERSION' });
    expect(parseRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: 'not json' })).toEqual({ command: 'VERSION' });
  });

  it('accepts every supported cniVersion for ADD and DEL, and cni.dev/ keys, capabilities, dns, args', () => {
    for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      expect(parseRequest(rawRequest('ADD', netConf({ cniVersion: v }))).command).toBe('ADD');
      expect(parseRequest(rawRequest('DEL', netConf({ cniVersion: v }))).command).toBe('DEL');
    }
    const req = parseRequest(
      rawRequest('ADD', netConf({ 'cni.dev/future': 1, capabilities: { portMappings: true }, dns: { nameservers: ['10.96.0.10'] }, args: { cni: { ips: [] } } })),
    );
    expect(req).toMatchObject({ config: { capabilities: { portMappings: true }, dns: { nameservers: ['10.96.0.10'] } } });
  });
});

type Case = [name: string, raw: CniRawRequest, code: number, message: RegExp];

const badEnv = (command: string, env: Record<string, string | undefined>, conf: Record<string, unknown> = netConf()): CniRawRequest => rawRequest(command, conf, env);

const cases: Case[] = [
  // 4: invalid environment
  ['CNI_COMMAND missing', { env: {}, stdin: '{}' }, 4, /CNI_COMMAND is not set/],
  ['CNI_COMMAND unknown', badEnv('ATTACH', {}), 4, /CNI_COMMAND "ATTACH" is not one of ADD, DEL, CHECK, STATUS, GC, VERSION/],
  ['CNI_COMMAND lower case', badEnv('add', {}), 4, /CNI_COMMAND "add"/],
  ['ADD without CNI_CONTAINERID', badEnv('ADD', { CNI_CONTAINERID: undefined }), 4, /ADD needs CNI_CONTAINERID, but it is not set/],
  ['ADD without CNI_NETNS', badEnv('ADD', { CNI_NETNS: undefined }), 4, /ADD needs CNI_NETNS/],
  ['ADD with an empty CNI_NETNS', badEnv('ADD', { CNI_NETNS: '' }), 4, /ADD needs CNI_NETNS/],
  ['ADD without CNI_IFNAME and CNI_NETNS', badEnv('ADD', { CNI_IFNAME: undefined, CNI_NETNS: undefined }), 4, /CNI_NETNS and CNI_IFNAME, but they are not set/],
  ['CHECK without CNI_NETNS', badEnv('CHECK', { CNI_NETNS: undefined }, netConf({ prevResult: prev })), 4, /CHECK needs CNI_NETNS/],
  ['DEL without CNI_IFNAME', badEnv('DEL', { CNI_IFNAME: undefined }), 4, /DEL needs CNI_IFNAME/],
  ['CNI_CONTAINERID with a slash', badEnv('ADD', { CNI_CONTAINERID: 'abc/def' }), 4, /CNI_CONTAINERID "abc\/def" must start with a letter or digit/],
  ['CNI_CONTAINERID starting with a dot', badEnv('ADD', { CNI_CONTAINERID: '.hidden' }), 4, /CNI_CONTAINERID "\.hidden"/],
  ['CNI_IFNAME of 16 bytes', badEnv('ADD', { CNI_IFNAME: 'eth0123456789abc' }), 4, /CNI_IFNAME "eth0123456789abc" is longer than 15 bytes/],
  ['CNI_IFNAME with a slash', badEnv('ADD', { CNI_IFNAME: 'eth/0' }), 4, /CNI_IFNAME "eth\/0" must not contain/],
  ['CNI_IFNAME with a space', badEnv('DEL', { CNI_IFNAME: 'eth 0' }), 4, /CNI_IFNAME "eth 0" must be printable ASCII/],
  ['CNI_IFNAME ".."', badEnv('ADD', { CNI_IFNAME: '..' }), 4, /CNI_IFNAME "\.\." must not be/],
  ['CNI_NETNS relative', badEnv('ADD', { CNI_NETNS: 'netns-1' }), 4, /CNI_NETNS "netns-1" must be an absolute path/],
  ['CNI_ARGS pair without =', badEnv('ADD', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME' }), 4, /CNI_ARGS entry "K8S_POD_NAME" is not KEY=VALUE/],
  ['CNI_ARGS value with =', badEnv('ADD', { CNI_ARGS: 'K8S_POD_NAME=a=b' }), 4, /CNI_ARGS entry "K8S_POD_NAME=a=b"/],
  ['CNI_ARGS unknown key', badEnv('ADD', { CNI_ARGS: 'K8S_POD_NAME=web;FOO=bar' }), 4, /CNI_ARGS has unknown key FOO \(set IgnoreUnknown=1/],
  ['CNI_ARGS bad IgnoreUnknown', badEnv('ADD', { CNI_ARGS: 'IgnoreUnknown=yes' }), 4, /IgnoreUnknown must be 1, true, 0 or false, got "yes"/],
  // 6: stdin not decodable
  ['stdin not JSON', rawRequest('ADD', '{"cniVersion": "1.0.0", name'), 6, /stdin is not valid JSON/],
  ['stdin empty', rawRequest('ADD', ''), 6, /stdin is empty/],
  ['stdin a JSON array', rawRequest('ADD', '[1,2]'), 6, /must be a JSON object, got an array/],
  ['stdin a JSON string', rawRequest('DEL', '"podnet"'), 6, /must be a JSON object, got "podnet"/],
  ['GC stdin not JSON', { env: { CNI_COMMAND: 'GC' }, stdin: '{' }, 6, /not valid JSON/],
  // 1: incompatible version
  ['cniVersion unsupported (old)', rawRequest('ADD', netConf({ cniVersion: '0.2.0' })), 1, /cniVersion 0\.2\.0 is not supported: podnet-cni supports 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/],
  ['cniVersion unsupported (new)', rawRequest('ADD', netConf({ cniVersion: '2.0.0' })), 1, /cniVersion 2\.0\.0 is not supported/],
  ['CHECK on 0.3.1', rawRequest('CHECK', netConf({ cniVersion: '0.3.1', prevResult: prev })), 1, /cniVersion 0\.3\.1 has no CHECK command: CHECK needs cniVersion 0\.4\.0 or newer/],
  ['STATUS on 1.0.0', { env: { CNI_COMMAND: 'STATUS' }, stdin: JSON.stringify(netConf()) }, 1, /has no STATUS command: STATUS needs cniVersion 1\.1\.0/],
  ['GC on 1.0.0', { env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ 'cni.dev/valid-attachments': [] })) }, 1, /has no GC command: GC needs cniVersion 1\.1\.0/],
  // 7: invalid network configuration
  ['cniVersion missing', rawRequest('ADD', netConf({ cniVersion: undefined })), 7, /cniVersion is required/],
  ['cniVersion a number', rawRequest('ADD', netConf({ cniVersion: 1 })), 7, /cniVersion must be a version string like "1\.0\.0", got 1/],
  ['cniVersion not semver', rawRequest('ADD', netConf({ cniVersion: '1.0' })), 7, /cniVersion must be a version string/],
  ['name missing', rawRequest('ADD', netConf({ name: undefined })), 7, /name is required/],
  ['name empty', rawRequest('ADD', netConf({ name: '' })), 7, /name must not be empty/],
  ['name with a space', rawRequest('ADD', netConf({ name: 'pod net' })), 7, /name must start with a letter or digit .*got "pod net"/],
  ['type missing', rawRequest('DEL', netConf({ type: undefined })), 7, /type is required/],
  ['type a path', rawRequest('ADD', netConf({ type: '/opt/cni/bin/podnet-cni' })), 7, /type must be a file name/],
  ['socket relative', rawRequest('ADD', netConf({ socket: 'cni.sock' })), 7, /socket must be an absolute path of at most 107 bytes, got "cni\.sock"/],
  ['socket too long', rawRequest('ADD', netConf({ socket: `/${'x'.repeat(107)}` })), 7, /socket must be an absolute path of at most 107 bytes/],
  ['socket not a string', rawRequest('ADD', netConf({ socket: 42 })), 7, /socket must be a string, got 42/],
  ['ipMasq a string', rawRequest('ADD', netConf({ ipMasq: 'yes' })), 7, /ipMasq must be true or false, got "yes"/],
  ['mtu too large', rawRequest('ADD', netConf({ mtu: 9000000 })), 7, /mtu must be an integer between 68 and 65535, got 9000000/],
  ['mtu fractional', rawRequest('ADD', netConf({ mtu: 1500.5 })), 7, /mtu must be an integer/],
  ['dns.nameservers not a list', rawRequest('ADD', netConf({ dns: { nameservers: '10.96.0.10' } })), 7, /dns\.nameservers must be a JSON array/],
  ['runtimeConfig a list', rawRequest('ADD', netConf({ runtimeConfig: [] })), 7, /runtimeConfig must be a JSON object, got \[\]/],
  ['capabilities value not boolean', rawRequest('ADD', netConf({ capabilities: { portMappings: 'yes' } })), 7, /capabilities\.portMappings must be true or false/],
  ['CHECK without prevResult', rawRequest('CHECK', netConf()), 7, /prevResult is required for CHECK/],
  ['prevResult bad address', rawRequest('CHECK', netConf({ prevResult: { ips: [{ address: '10.244.1.5' }] } })), 7, /prevResult\.ips\[0\]\.address must be an address with a prefix length/],
  ['prevResult version mismatch', rawRequest('ADD', netConf({ prevResult: { ips: [{ version: '6', address: '10.244.1.5/24' }] } })), 7, /prevResult\.ips\[0\]\.version must be "4"/],
  ['prevResult interface index out of range', rawRequest('CHECK', netConf({ prevResult: { interfaces: [{ name: 'eth0' }], ips: [{ address: '10.244.1.5/24', interface: 3 }] } })), 7, /prevResult\.ips\[0\]\.interface must be an integer between 0 and 0, got 3/],
  ['prevResult route without dst', rawRequest('CHECK', netConf({ prevResult: { routes: [{ gw: '10.244.1.1' }] } })), 7, /prevResult\.routes\[0\]\.dst is required/],
  ['prevResult gateway not an IP', rawRequest('CHECK', netConf({ prevResult: { ips: [{ address: '10.244.1.5/24', gateway: 'router' }] } })), 7, /prevResult\.ips\[0\]\.gateway must be an IPv4 or IPv6 address/],
  ['GC without valid-attachments', { env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0' })) }, 7, /cni\.dev\/valid-attachments is required for GC/],
  ['GC attachment without containerID', { env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ ifname: 'eth0' }] })) }, 7, /cni\.dev\/valid-attachments\[0\]\.containerID is required/],
  ['GC attachments not a list', { env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': {} })) }, 7, /cni\.dev\/valid-attachments must be a JSON array/],
  // 2: unsupported field
  ['unknown field', rawRequest('ADD', netConf({ ipmasq: true })), 2, /unsupported field ipmasq = true/],
  ['ipam section', rawRequest('ADD', netConf({ ipam: { type: 'host-local' } })), 2, /unsupported field ipam = \{"type":"host-local"\}.*allocates pod addresses itself/],
];

describe('parseRequest: every bad input gets the right code and names the field', () => {
  it.each(cases)('%s', (_name, raw, code, message) => {
    const e = failure(raw);
    expect({ code: e.code, message: e.message }).toEqual({ code, message: expect.stringMatching(message) });
  });
});

describe('parseCniArgs', () => {
  it('parses pairs, skips empty segments, fills the pod identity', () => {
    const a = parseCniArgs('K8S_POD_NAMESPACE=kube-system;;K8S_POD_NAME=coredns-1;K8S_POD_INFRA_CONTAINER_ID=abc;');
    expect(a).toEqual({
      values: { K8S_POD_NAMESPACE: 'kube-system', K8S_POD_NAME: 'coredns-1', K8S_POD_INFRA_CONTAINER_ID: 'abc' },
      ignoreUnknown: false,
      pod: { namespace: 'kube-system', name: 'coredns-1', infraContainerId: 'abc' },
    });
  });
  it('IgnoreUnknown accepts 1/true (any case) and allows other keys', () => {
    expect(parseCniArgs('IgnoreUnknown=TRUE;IP=10.244.1.9').ignoreUnknown).toBe(true);
    expect(parseCniArgs('IgnoreUnknown=1;IP=10.244.1.9').values.IP).toBe('10.244.1.9');
    expect(() => parseCniArgs('IgnoreUnknown=0;IP=10.244.1.9')).toThrow(/unknown key IP/);
  });
  it('empty or missing CNI_ARGS is no arguments', () => {
    expect(parseCniArgs(undefined)).toEqual({ values: {}, ignoreUnknown: false, pod: {} });
    expect(parseCniArgs('')).toEqual({ values: {}, ignoreUnknown: false, pod: {} });
  });
  it('podman\'s CNI_ARGS', () => {
    expect(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=festive_bose').pod).toEqual({ name: 'festive_bose' });
  });
});

describe('environment is read from the injected value only', () => {
  it('ignores non-CNI variables and needs none of the process environment', () => {
    const raw = rawRequest('ADD', netConf(), { PATH: '/usr/bin', HOME: '/root' });
    expect(parseRequest(raw).command).toBe('ADD');
    expect(cniEnv('ADD').CNI_COMMAND).toBe('ADD');
  });
});

describe('examples/cni/podnet.conflist', () => {
  it('is what a runtime turns into a valid plugin configuration', () => {
    const list = JSON.parse(readFileSync(join(repoRoot(), 'examples', 'cni', 'podnet.conflist'), 'utf8')) as {
      cniVersion: string;
      cniVersions: string[];
      name: string;
      plugins: Record<string, unknown>[];
    };
    expect(list.plugins.map((p) => p.type)).toEqual(['podnet-cni']);
    // Section 3: the runtime inserts name and cniVersion (the negotiated one) into each plugin object.
    for (const v of [list.cniVersion, ...list.cniVersions]) {
      const req = parseRequest(rawRequest('ADD', { ...list.plugins[0], name: list.name, cniVersion: v }));
      expect(req).toMatchObject({ command: 'ADD', config: { name: 'podnet', type: 'podnet-cni', socket: '/run/podnet/cni.sock', cniVersion: v } });
    }
  });
});
