// The IPVS generic netlink executor (src/kernel/ipvs.ts) against a real IPVS, inside a
// namespace of the UML guest: every change is made through the executor only and read back
// with ipvsadm, and what the executor lists is compared with what it was told.
import t from 'tap';
import { Ipvs } from '../src/kernel/ipvs.js';
import { Scope } from '../netns-tests/lib/harness.js';
import { ipvsadm, lines, vmSkipReason } from './lib.js';

const skip = await vmSkipReason();

t.test('services and real servers: create, read back, update, delete (compared with ipvsadm -Ln)', { skip }, async (t) => {
  const scope = new Scope('ipvsk');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('n');
  const ipvs = await Ipvs.open(ns);
  t.teardown(() => ipvs.close());

  const web = { family: 4 as const, protocol: 'TCP' as const, address: '10.96.0.10', port: 80 };
  const dns6 = { family: 6 as const, protocol: 'UDP' as const, address: 'fd00:10:96::a', port: 53 };
  const sctp = { family: 4 as const, protocol: 'SCTP' as const, address: '10.96.0.20', port: 9000 };
  await Promise.all([
    ipvs.addService({ ...web, scheduler: 'rr' }),
    ipvs.addDest(web, { address: '10.244.1.5', port: 8080 }),
    ipvs.addDest(web, { address: '10.244.1.6', port: 8080, weight: 3 }),
    ipvs.addService({ ...dns6, scheduler: 'sh', persistentTimeout: 600 }),
    ipvs.addDest(dns6, { address: 'fd00:10:244:1::5', port: 5353 }),
    ipvs.addService({ ...sctp, scheduler: 'rr' }),
  ]);
  t.equal(
    await ipvsadm(ns),
    lines(`
      SCTP 10.96.0.20:9000 rr
      TCP 10.96.0.10:80 rr
      -> 10.244.1.5:8080 Masq 1 0 0
      -> 10.244.1.6:8080 Masq 3 0 0
      UDP [fd00:10:96::a]:53 sh persistent 600
      -> [fd00:10:244:1::5]:5353 Masq 1 0 0
    `),
    'ipvsadm sees what the executor created (TCP, SCTP, IPv6 UDP with persistence)',
  );

  const listed = await ipvs.listServices();
  t.same(
    listed.map((s) => [s.protocol, s.address, s.port, s.scheduler, s.persistent, s.timeout]).sort(),
    [
      ['SCTP', '10.96.0.20', 9000, 'rr', false, 0],
      ['TCP', '10.96.0.10', 80, 'rr', false, 0],
      ['UDP', 'fd00:10:96::a', 53, 'sh', true, 600],
    ],
    'the GET_SERVICE dump decodes to what was created',
  );
  t.same(
    (await ipvs.listDests(web)).map((d) => [d.address, d.port, d.weight, d.forward]).sort(),
    [
      ['10.244.1.5', 8080, 1, 'masq'],
      ['10.244.1.6', 8080, 3, 'masq'],
    ],
    'the GET_DEST dump decodes to what was added',
  );
  t.match(await ipvs.getService(dns6), { family: 6, netmask: 128, persistent: true }, 'one service by id');
  t.equal(await ipvs.getService({ ...web, port: 81 }), undefined, 'a missing service is undefined');

  await ipvs.updateService({ ...web, scheduler: 'rr', persistentTimeout: 30 });
  await ipvs.updateService({ ...dns6, scheduler: 'rr' });
  await ipvs.updateDest(web, { address: '10.244.1.6', port: 8080, weight: 0 });
  t.equal(await ipvs.deleteDest(web, { address: '10.244.1.5', port: 8080 }), true, 'a real server is removed');
  t.equal(await ipvs.deleteDest(web, { address: '10.244.1.5', port: 8080 }), false, 'removing it again is false, not an error');
  t.equal(await ipvs.deleteService(sctp), true, 'a service is removed');
  t.equal(await ipvs.deleteService(sctp), false, 'removing it again is false');
  t.equal(
    await ipvsadm(ns),
    lines(`
      TCP 10.96.0.10:80 rr persistent 30
      -> 10.244.1.6:8080 Masq 0 0 0
      UDP [fd00:10:96::a]:53 rr
      -> [fd00:10:244:1::5]:5353 Masq 1 0 0
    `),
    'updates: persistence on and off, scheduler, weight 0',
  );

  const exists = await ipvs.addService({ ...web, scheduler: 'rr' }).catch((e: unknown) => e);
  t.match(exists, { code: 'PODNET_NETLINK', errno: 'EEXIST', context: { service: 'TCP 10.96.0.10:80' } }, 'a duplicate service is EEXIST with the service in the context');
  const noSvc = await ipvs.addDest(sctp, { address: '10.244.1.9', port: 1 }).catch((e: unknown) => e);
  t.match(noSvc, { code: 'PODNET_NETLINK', errno: 'ESRCH' }, 'a real server for a missing service is ESRCH');
  const noSched = await ipvs.addService({ ...sctp, scheduler: 'nosuch' }).catch((e: unknown) => e);
  t.match(noSched, { code: 'PODNET_NETLINK', errno: 'ENOENT' }, 'an unknown scheduler is ENOENT');
});

t.test('IPVS tables are per namespace; flush empties only its own', { skip }, async (t) => {
  const scope = new Scope('ipvsns');
  t.teardown(() => scope.cleanup());
  const a = await scope.netns('a');
  const b = await scope.netns('b');
  const ia = await Ipvs.open(a);
  const ib = await Ipvs.open(b);
  t.teardown(() => {
    ia.close();
    ib.close();
  });
  await ia.addService({ family: 4, protocol: 'TCP', address: '192.0.2.1', port: 80, scheduler: 'rr' });
  await ib.addService({ family: 4, protocol: 'UDP', address: '192.0.2.2', port: 53, scheduler: 'rr' });
  t.equal(await ipvsadm(a), 'TCP 192.0.2.1:80 rr', 'a has only its service');
  t.equal(await ipvsadm(b), 'UDP 192.0.2.2:53 rr', 'b has only its service');
  await ia.flush();
  t.equal(await ipvsadm(a), '', 'a is empty after its flush');
  t.equal(await ipvsadm(b), 'UDP 192.0.2.2:53 rr', 'b is untouched');
});
