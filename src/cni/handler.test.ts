import { describe, expect, it } from 'vitest';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { CniError, toCniError } from './errors.js';
import { dispatch } from './handler.js';
import { encodeResult } from './result.js';
import { CONTAINER_ID, FakeHandler, SAMPLE_RESULT, errorOf, ipamCode, netConf, rawRequest } from './testing.js';

describe('dispatch: success', () => {
  it('ADD prints the handler result in the configuration\'s cniVersion', async () => {
    const h = new FakeHandler();
    for (const v of ['0.3.1', '1.0.0', '1.1.0'] as const) {
      const res = await dispatch(rawRequest('ADD', netConf({ cniVersion: v })), h);
      expect(res.exit).toBe(0);
      expect(JSON.parse(res.stdout)).toEqual(encodeResult(SAMPLE_RESULT, v));
    }
    expect(h.calls[0]).toMatchObject({ command: 'ADD', attachment: { containerId: CONTAINER_ID, ifname: 'eth0' }, pod: { name: 'web-0' } });
  });

  it('DEL, CHECK, STATUS and GC print nothing and exit 0', async () => {
    const h = new FakeHandler();
    const prev = { cniVersion: '1.1.0', ...SAMPLE_RESULT };
    const runs = [
      rawRequest('DEL', netConf({ cniVersion: '1.1.0', prevResult: prev }), { CNI_NETNS: '' }),
      rawRequest('CHECK', netConf({ cniVersion: '1.1.0', prevResult: prev })),
      { env: { CNI_COMMAND: 'STATUS' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0' })) },
      { env: { CNI_COMMAND: 'GC' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] })) },
    ];
    for (const raw of runs) expect(await dispatch(raw, h)).toEqual({ exit: 0, stdout: '' });
    expect(h.calls.map((c) => c.command)).toEqual(['DEL', 'CHECK', 'STATUS', 'GC']);
  });

  it('VERSION is answered without the handler', async () => {
    const h = new FakeHandler();
    const res = await dispatch({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"0.4.0"}' }, h);
    expect(res.exit).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    expect(h.calls).toEqual([]);
  });
});

describe('dispatch: failures become CNI error objects', () => {
  it('validation errors never reach the handler and carry the config\'s cniVersion', async () => {
    const h = new FakeHandler();
    const res = await dispatch(rawRequest('ADD', netConf({ cniVersion: '0.4.0', mtu: 'big' })), h);
    expect(res.exit).toBe(1);
    expect(errorOf(res.stdout)).toEqual({ cniVersion: '0.4.0', code: 7, msg: 'mtu must be an integer between 68 and 65535, got "big"' });
    expect(h.calls).toEqual([]);
  });

  it('stdin not JSON is code 6 with cniVersion 1.1.0', async () => {
    const res = await dispatch(rawRequest('ADD', 'garbage'), new FakeHandler());
    expect(errorOf(res.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 6 });
  });

  it('an unsupported cniVersion is echoed in the error object', async () => {
    const res = await dispatch(rawRequest('ADD', netConf({ cniVersion: '0.2.0' })), new FakeHandler());
    expect(errorOf(res.stdout)).toMatchObject({ cniVersion: '0.2.0', code: 1 });
  });

  type MapCase = [name: string, thrown: unknown, command: string, code: number, msg: string];
  const mapping: MapCase[] = [
    ['a CniError keeps its code and details', new CniError(3, 'container gone', 'netns /proc/1/ns/net'), 'ADD', 3, 'container gone'],
    ['INVALID_CIDR → 7', new PodnetError(ErrorCodes.INVALID_CIDR, 'subnet "x" is not a prefix'), 'ADD', 7, 'subnet "x" is not a prefix'],
    ['INVALID_NAME → 7', new PodnetError(ErrorCodes.INVALID_NAME, 'bad name'), 'ADD', 7, 'bad name'],
    ['NETNS_NOT_FOUND → 3', new PodnetError(ErrorCodes.NETNS_NOT_FOUND, 'network namespace /proc/9/ns/net does not exist'), 'CHECK', 3, 'network namespace /proc/9/ns/net does not exist'],
    ['NOT_A_NETNS → 4', new PodnetError(ErrorCodes.NOT_A_NETNS, '/tmp/x is not a network namespace'), 'ADD', 4, '/tmp/x is not a network namespace'],
    ['NETLINK_TIMEOUT → 11', new PodnetError(ErrorCodes.NETLINK_TIMEOUT, 'no netlink answer'), 'ADD', 11, 'no netlink answer'],
    ['DUMP_INTERRUPTED → 11', new PodnetError(ErrorCodes.DUMP_INTERRUPTED, 'dump interrupted'), 'DEL', 11, 'dump interrupted'],
    ['IPAM_LOCKED → 11', new PodnetError(ipamCode('PODNET_IPAM_LOCKED'), 'IPAM state is locked by pid 7'), 'ADD', 11, 'IPAM state is locked by pid 7'],
    ['IPAM_EXHAUSTED → 101', new PodnetError(ipamCode('PODNET_IPAM_EXHAUSTED'), 'no free address in 10.244.1.0/24'), 'ADD', 101, 'no free address in 10.244.1.0/24'],
    ['a netlink EBUSY → 11', new PodnetError(ErrorCodes.NETLINK, 'the kernel refused RTM_NEWLINK', {}, { errno: 'EBUSY' }), 'ADD', 11, 'the kernel refused RTM_NEWLINK'],
    ['a netlink EPERM → 100', new PodnetError(ErrorCodes.NETLINK, 'the kernel refused RTM_NEWLINK', {}, { errno: 'EPERM' }), 'ADD', 100, 'the kernel refused RTM_NEWLINK'],
    ['LINK_EXISTS → 100', new PodnetError(ErrorCodes.LINK_EXISTS, 'link eth0 already exists in the pod'), 'ADD', 100, 'link eth0 already exists in the pod'],
    ['an unknown Error → 999', new TypeError('x is undefined'), 'ADD', 999, 'x is undefined'],
    ['a thrown string → 999', 'boom', 'DEL', 999, 'boom'],
    ['STATUS: any failure → 50', new PodnetError(ErrorCodes.NETLINK, 'bridge podnet0 is missing'), 'STATUS', 50, 'bridge podnet0 is missing'],
    ['STATUS: a CniError 51 stays 51', new CniError(51, 'transport down'), 'STATUS', 51, 'transport down'],
  ];

  it.each(mapping)('%s', async (_name, thrown, command, code, msg) => {
    const h = new FakeHandler();
    h.error = thrown;
    const prev = { cniVersion: '1.1.0', ...SAMPLE_RESULT };
    const raw =
      command === 'STATUS'
        ? { env: { CNI_COMMAND: 'STATUS' }, stdin: JSON.stringify(netConf({ cniVersion: '1.1.0' })) }
        : rawRequest(command, netConf({ cniVersion: '1.1.0', prevResult: prev }));
    const res = await dispatch(raw, h);
    expect(res.exit).toBe(1);
    const obj = errorOf(res.stdout);
    expect({ code: obj.code, msg: obj.msg, cniVersion: obj.cniVersion }).toEqual({ code, msg, cniVersion: '1.1.0' });
    expect(toCniError(thrown, command).code).toBe(code);
  });

  it('details carry the PODNET_ code and context', () => {
    const e = toCniError(new PodnetError(ErrorCodes.LINK_EXISTS, 'link eth0 already exists', { netns: '/run/netns/a', link: 'eth0' }), 'ADD');
    expect(e.details).toBe('PODNET_LINK_EXISTS: link eth0 already exists (netns=/run/netns/a, link=eth0)');
  });

  it('an invalid result from the handler is an agent bug: 999', async () => {
    const h = new FakeHandler();
    h.result = { interfaces: [], ips: [{ address: 'not-an-ip' }], routes: [] };
    const res = await dispatch(rawRequest('ADD'), h);
    expect(errorOf(res.stdout)).toMatchObject({ code: 999, msg: expect.stringMatching(/invalid ADD result: result\.ips\[0\]\.address/) });
  });
});
