/**
 * The IPVS generic netlink encoding without a kernel: golden bytes written out by hand from
 * include/uapi/linux/ip_vs.h (the attribute numbers, the network-order port, the 16-byte
 * nf_inet_addr, the {flags, mask} pair), replies shaped like the kernel's
 * ip_vs_genl_fill_service / _fill_dest decoded, and the executor over a fake socket (which
 * message goes out, how kernel errors map). The real kernel is exercised in vm-tests/.
 */
import { describe, expect, it } from 'vitest';
import { PodnetError } from '../util/errors.js';
import {
  CTRL_ATTR_FAMILY_ID,
  CTRL_ATTR_FAMILY_NAME,
  GENL_ID_CTRL,
  IPVS_CMD,
  IPVS_CMD_ATTR_DEST,
  IPVS_CMD_ATTR_SERVICE,
  IPVS_DEST_ATTR,
  IPVS_SVC_ATTR,
  Ipvs,
  encodeDest,
  encodeGetFamily,
  encodeService,
  encodeServiceId,
  genlHeader,
  parseAttrs,
  parseDest,
  parseService,
  resolveFamily,
  serviceLabel,
} from './ipvs.js';
import { NLM_F, NetlinkHandle } from './netlink.js';
import type { RawMessage } from './netlink.js';
import { errorMsg, fakeSocket } from './testing.js';

const hex = (s: string) => Buffer.from(s, 'hex');

/** One attribute, padded: the test's own encoder, to build kernel-shaped replies. */
function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const be16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

const web = { family: 4 as const, protocol: 'TCP' as const, address: '10.96.0.1', port: 80 };

describe('IPVS encoding (golden bytes)', () => {
  it('a new TCP service 10.96.0.1:80 rr: every field the kernel requires, in libipvs order', () => {
    const got = Buffer.concat([genlHeader(IPVS_CMD.NEW_SERVICE), encodeService({ ...web, scheduler: 'rr' })]);
    expect(got.toString('hex')).toBe(
      [
        '01010000', // genlmsghdr: cmd NEW_SERVICE, version 1
        '54000180', // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, 84 bytes
        '0600010002000000', // AF = AF_INET (u16)
        '0600020006000000', // PROTOCOL = 6 (u16)
        '14000300' + '0a600001' + '000000000000000000000000', // ADDR = 10.96.0.1 in a 16-byte nf_inet_addr
        '0600040000500000', // PORT = 80, network order
        '0700060072720000', // SCHED_NAME = "rr\0"
        '0c000700' + '00000000' + 'ffffffff', // FLAGS = {flags 0, mask ~0}
        '0800080000000000', // TIMEOUT = 0
        '08000900ffffffff', // NETMASK = 255.255.255.255
      ].join(''),
    );
  });

  it('session affinity: the persistent flag, the timeout, and an IPv6 netmask as a prefix length', () => {
    const s = encodeService({ family: 6, protocol: 'UDP', address: 'fd00:10:96::a', port: 53, scheduler: 'rr', persistentTimeout: 10800 });
    const a = parseAttrs(s.subarray(4));
    expect(a.get(IPVS_SVC_ATTR.AF)!.readUInt16LE(0)).toBe(10);
    expect(a.get(IPVS_SVC_ATTR.PROTOCOL)!.readUInt16LE(0)).toBe(17);
    expect(a.get(IPVS_SVC_ATTR.ADDR)!.toString('hex')).toBe('fd00001000960000000000000000000a');
    expect(a.get(IPVS_SVC_ATTR.FLAGS)!.toString('hex')).toBe('01000000ffffffff');
    expect(a.get(IPVS_SVC_ATTR.TIMEOUT)!.readUInt32LE(0)).toBe(10800);
    expect(a.get(IPVS_SVC_ATTR.NETMASK)!.readUInt32LE(0)).toBe(128);
  });

  it('a real server: service id + IPVS_CMD_ATTR_DEST with masq, weight 1, thresholds, family', () => {
    const got = Buffer.concat([genlHeader(IPVS_CMD.NEW_DEST), encodeServiceId(web), encodeDest(4, { address: '10.244.1.5', port: 8080 })]);
    expect(got.toString('hex')).toBe(
      [
        '05010000',
        '30000180', // service, nested, 48 bytes
        '0600010002000000',
        '0600020006000000',
        '14000300' + '0a600001' + '000000000000000000000000',
        '0600040000500000',
        '48000280', // dest, nested, 72 bytes
        '14000100' + '0af40105' + '000000000000000000000000',
        '060002001f900000', // port 8080 = 0x1f90, network order
        '0800030000000000', // FWD_METHOD masq
        '0800040001000000', // WEIGHT 1
        '0800050000000000', // U_THRESH
        '0800060000000000', // L_THRESH
        '06000b0002000000', // ADDR_FAMILY AF_INET
      ].join(''),
    );
  });

  it('deleting a real server names only its address and port (and family)', () => {
    const a = parseAttrs(encodeDest(4, { address: '10.244.1.5', port: 8080 }, false).subarray(4));
    expect([...a.keys()]).toEqual([IPVS_DEST_ATTR.ADDR, IPVS_DEST_ATTR.PORT, IPVS_DEST_ATTR.ADDR_FAMILY]);
  });

  it('CTRL_CMD_GETFAMILY "IPVS"', () => {
    expect(encodeGetFamily('IPVS').toString('hex')).toBe('03010000' + '0900' + '0200' + Buffer.from('IPVS\0').toString('hex') + '000000');
  });

  it('refuses what the kernel would refuse, before sending', () => {
    const cases: [string, () => unknown][] = [
      ['address of the other family', () => encodeService({ ...web, address: 'fd00::1', scheduler: 'rr' })],
      ['port out of range', () => encodeService({ ...web, port: 70000, scheduler: 'rr' })],
      ['bad scheduler name', () => encodeService({ ...web, scheduler: 'r r' })],
      ['zero persistence timeout', () => encodeService({ ...web, scheduler: 'rr', persistentTimeout: 0 })],
      ['real server of the other family', () => encodeDest(4, { address: 'fd00::5', port: 80 })],
      ['negative weight', () => encodeDest(4, { address: '10.0.0.1', port: 80, weight: -1 })],
    ];
    for (const [name, fn] of cases) expect(fn, name).toThrowError(expect.objectContaining({ code: 'PODNET_INVALID_ARGUMENT' }) as Error);
  });
});

/** A GET_SERVICE reply as ip_vs_genl_fill_service writes it (with stats and the HASHED flag). */
function serviceReply(o: { af: number; proto: number; addr: Buffer; port: number; sched: string; flags: number; timeout: number; netmask: number; fwmark?: number }): Buffer {
  const addr = Buffer.alloc(16);
  o.addr.copy(addr);
  const flags = Buffer.concat([u32(o.flags), u32(0xffffffff)]);
  const stats = nla(IPVS_SVC_ATTR.STATS | 0x8000, Buffer.concat([nla(1, u32(7)), nla(2, u32(9))]));
  const body = Buffer.concat([
    nla(IPVS_SVC_ATTR.AF, u16(o.af)),
    ...(o.fwmark ? [nla(IPVS_SVC_ATTR.FWMARK, u32(o.fwmark))] : [nla(IPVS_SVC_ATTR.PROTOCOL, u16(o.proto)), nla(IPVS_SVC_ATTR.ADDR, addr), nla(IPVS_SVC_ATTR.PORT, be16(o.port))]),
    nla(IPVS_SVC_ATTR.SCHED_NAME, Buffer.from(`${o.sched}\0`)),
    nla(IPVS_SVC_ATTR.FLAGS, flags),
    nla(IPVS_SVC_ATTR.TIMEOUT, u32(o.timeout)),
    nla(IPVS_SVC_ATTR.NETMASK, u32(o.netmask)),
    stats,
  ]);
  return Buffer.concat([genlHeader(IPVS_CMD.NEW_SERVICE), nla(IPVS_CMD_ATTR_SERVICE | 0x8000, body)]);
}

function destReply(addr: Buffer, port: number, weight: number, af = 2): Buffer {
  const a = Buffer.alloc(16);
  addr.copy(a);
  const body = Buffer.concat([
    nla(IPVS_DEST_ATTR.ADDR, a),
    nla(IPVS_DEST_ATTR.PORT, be16(port)),
    nla(IPVS_DEST_ATTR.FWD_METHOD, u32(0)),
    nla(IPVS_DEST_ATTR.WEIGHT, u32(weight)),
    nla(IPVS_DEST_ATTR.U_THRESH, u32(0)),
    nla(IPVS_DEST_ATTR.L_THRESH, u32(0)),
    nla(IPVS_DEST_ATTR.ACTIVE_CONNS, u32(3)),
    nla(IPVS_DEST_ATTR.INACT_CONNS, u32(4)),
    nla(IPVS_DEST_ATTR.PERSIST_CONNS, u32(1)),
    nla(IPVS_DEST_ATTR.ADDR_FAMILY, u16(af)),
  ]);
  return Buffer.concat([genlHeader(IPVS_CMD.NEW_DEST), nla(IPVS_CMD_ATTR_DEST | 0x8000, body)]);
}

describe('IPVS decoding', () => {
  it('a service reply: address, port, scheduler; persistence from the flags (HASHED ignored)', () => {
    const s = parseService(serviceReply({ af: 2, proto: 6, addr: Buffer.from([10, 96, 0, 1]), port: 80, sched: 'rr', flags: 0x3, timeout: 600, netmask: 0xffffffff }));
    expect(s).toEqual({ ...web, scheduler: 'rr', flags: 3, timeout: 600, netmask: 0xffffffff, persistent: true });
    expect(serviceLabel(s!)).toBe('TCP 10.96.0.1:80');
  });

  it('IPv6 and UDP', () => {
    const s = parseService(serviceReply({ af: 10, proto: 17, addr: hex('fd000010009600000000000000000053'), port: 53, sched: 'sh', flags: 0x2, timeout: 0, netmask: 128 }));
    expect(s).toMatchObject({ family: 6, protocol: 'UDP', address: 'fd00:10:96::53', port: 53, scheduler: 'sh', persistent: false });
    expect(serviceLabel(s!)).toBe('UDP [fd00:10:96::53]:53');
  });

  it('a firewall-mark service is not an address service: skipped', () => {
    expect(parseService(serviceReply({ af: 2, proto: 0, addr: Buffer.alloc(4), port: 0, sched: 'rr', flags: 2, timeout: 0, netmask: 0, fwmark: 7 }))).toBeUndefined();
  });

  it('a dest reply', () => {
    expect(parseDest(destReply(Buffer.from([10, 244, 1, 5]), 8080, 1), 4)).toEqual({
      family: 4,
      address: '10.244.1.5',
      port: 8080,
      weight: 1,
      forward: 'masq',
      upperThreshold: 0,
      lowerThreshold: 0,
      activeConns: 3,
      inactiveConns: 4,
      persistentConns: 1,
    });
  });

  it('round trip: what we encode decodes to what we meant', () => {
    const spec = { family: 6 as const, protocol: 'SCTP' as const, address: 'fd00::1', port: 9000, scheduler: 'rr', persistentTimeout: 30 };
    const s = parseService(Buffer.concat([genlHeader(IPVS_CMD.NEW_SERVICE), encodeService(spec)]));
    expect(s).toMatchObject({ family: 6, protocol: 'SCTP', address: 'fd00::1', port: 9000, scheduler: 'rr', timeout: 30, netmask: 128, persistent: true });
    const d = parseDest(Buffer.concat([genlHeader(IPVS_CMD.NEW_DEST), encodeDest(6, { address: 'fd00::5', port: 80, weight: 0 })]), 6);
    expect(d).toMatchObject({ family: 6, address: 'fd00::5', port: 80, weight: 0, forward: 'masq' });
  });
});

// ---- the executor over a fake socket

const ack = (): RawMessage => errorMsg(0);


const familyReply = (id: number): RawMessage => ({
  type: GENL_ID_CTRL,
  flags: 0,
  seq: 1,
  data: Buffer.concat([genlHeader(1, 2), nla(CTRL_ATTR_FAMILY_NAME, Buffer.from('IPVS\0')), nla(CTRL_ATTR_FAMILY_ID, u16(id))]),
});

describe('Ipvs executor (fake socket)', () => {
  it('resolves the family id with CTRL_CMD_GETFAMILY, then sends requests to that id', async () => {
    const { sock, sent } = fakeSocket([[familyReply(28), ack()], [ack()], [ack()]]);
    const h = NetlinkHandle.fromSocket(sock);
    const id = await resolveFamily(h, 'IPVS');
    expect(id).toBe(28);
    expect(sent[0]).toMatchObject({ type: GENL_ID_CTRL });
    expect(sent[0]!.body.equals(encodeGetFamily('IPVS'))).toBe(true);
    const ipvs = Ipvs.fromHandle(h, id);
    await Promise.all([ipvs.addService({ ...web, scheduler: 'rr' }), ipvs.addDest(web, { address: '10.244.1.5', port: 8080 })]);
    expect(sent.slice(1).map((s) => [s.type, s.body[0]])).toEqual([
      [28, IPVS_CMD.NEW_SERVICE],
      [28, IPVS_CMD.NEW_DEST],
    ]);
  });

  it('no IPVS family: PODNET_UNSUPPORTED naming the module', async () => {
    const { sock } = fakeSocket([[errorMsg(-2)]]);
    const err = await resolveFamily(NetlinkHandle.fromSocket(sock), 'IPVS').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodnetError);
    expect(err).toMatchObject({ code: 'PODNET_UNSUPPORTED', errno: 'ENOENT' });
    expect(String(err)).toMatch(/modprobe ip_vs/);
  });

  it('lists services with a dump and decodes each; dests with a dump naming the service', async () => {
    const svc = serviceReply({ af: 2, proto: 6, addr: Buffer.from([10, 96, 0, 1]), port: 80, sched: 'rr', flags: 2, timeout: 0, netmask: 0xffffffff });
    const { sock, sent } = fakeSocket([
      [{ type: 28, flags: NLM_F.MULTI, seq: 1, data: svc }],
      [
        { type: 28, flags: NLM_F.MULTI, seq: 2, data: destReply(Buffer.from([10, 244, 1, 5]), 8080, 1) },
        { type: 28, flags: NLM_F.MULTI, seq: 2, data: destReply(Buffer.from([10, 244, 1, 6]), 8080, 2) },
      ],
    ]);
    const ipvs = Ipvs.fromHandle(NetlinkHandle.fromSocket(sock), 28);
    const services = await ipvs.listServices();
    expect(services.map(serviceLabel)).toEqual(['TCP 10.96.0.1:80']);
    const dests = await ipvs.listDests(services[0]!);
    expect(dests.map((d) => `${d.address}:${d.port}/${d.weight}`)).toEqual(['10.244.1.5:8080/1', '10.244.1.6:8080/2']);
    expect(sent.map((s) => s.flags & NLM_F.DUMP)).toEqual([NLM_F.DUMP, NLM_F.DUMP]);
    expect(sent[1]!.body.subarray(4).equals(encodeServiceId(web))).toBe(true);
  });

  it('kernel errors: EEXIST is an error with context; deleting what is gone (ESRCH, ENOENT) is false', async () => {
    const { sock } = fakeSocket([[errorMsg(-17)], [errorMsg(-3)], [errorMsg(-2)], [errorMsg(-3)]]);
    const ipvs = Ipvs.fromHandle(NetlinkHandle.fromSocket(sock), 28);
    const err = await ipvs.addService({ ...web, scheduler: 'rr' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PODNET_NETLINK', errno: 'EEXIST', context: { service: 'TCP 10.96.0.1:80' } });
    expect(await ipvs.deleteService(web)).toBe(false);
    expect(await ipvs.deleteDest(web, { address: '10.244.1.5', port: 8080 })).toBe(false);
    expect(await ipvs.getService(web)).toBeUndefined();
  });

  it('EPERM is PODNET_PERMISSION', async () => {
    const { sock } = fakeSocket([[errorMsg(-1)]]);
    const ipvs = Ipvs.fromHandle(NetlinkHandle.fromSocket(sock), 28);
    await expect(ipvs.flush()).rejects.toMatchObject({ code: 'PODNET_PERMISSION', errno: 'EPERM' });
  });
});
