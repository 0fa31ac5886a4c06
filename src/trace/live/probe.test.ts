import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { failure } from '../../testing/errors.js';
import { packageRoot } from '../../kernel/native.js';
import { parseProbeOutput, probeArgs, runProbe } from './probe.js';
import type { ProbeOptions } from './probe.js';

const base: ProbeOptions = { family: 4, proto: 'tcp', dst: '10.96.0.10', dport: 80, sport: 40000, dscp: 10, timeoutMs: 1000 };

describe('probeArgs', () => {
  it('tcp: no --size, payload with the trace id', () => {
    expect(probeArgs({ ...base, size: 100, id: 'abc', netnsPath: '/run/netns/pod' })).toEqual([
      '--netns', '/run/netns/pod',
      '--family', '4', '--proto', 'tcp', '--dst', '10.96.0.10',
      '--dport', '80',
      '--sport', '40000', '--dscp', '10', '--timeout-ms', '1000',
      '--payload', 'podnet-trace abc',
    ]);
  });

  it('udp over IPv6 with a source and a size', () => {
    expect(probeArgs({ ...base, family: 6, proto: 'udp', dst: 'fd00::a', src: 'fd00::1', size: 1400 })).toEqual([
      '--family', '6', '--proto', 'udp', '--dst', 'fd00::a',
      '--dport', '80', '--src', 'fd00::1',
      '--sport', '40000', '--dscp', '10', '--timeout-ms', '1000',
      '--size', '1400', '--payload', 'podnet-trace',
    ]);
  });

  it('icmp: no --dport (the echo id is sport)', () => {
    const args = probeArgs({ ...base, proto: 'icmp', dport: 0, sport: 7 });
    expect(args).not.toContain('--dport');
    expect(args.slice(args.indexOf('--sport'), args.indexOf('--sport') + 2)).toEqual(['--sport', '7']);
  });

  it('sctp is a clear error: the probe cannot send it', () => {
    expect(() => probeArgs({ ...base, proto: 'sctp' })).toThrowError(/cannot send SCTP/);
    expect(failure(() => probeArgs({ ...base, proto: 'sctp' })).code).toBe('PODNET_UNSUPPORTED');
  });

  it.each([
    [{ family: 5 }, /family must be 4 or 6/, 'PODNET_INVALID_ARGUMENT'],
    [{ proto: 'gre' }, /proto must be tcp, udp or icmp/, 'PODNET_INVALID_ARGUMENT'],
    [{ dst: 'fd00::1' }, /dst "fd00::1" is not an IPv4 address/, 'PODNET_INVALID_IP'],
    [{ dst: '10.0.0' }, /not an IPv4 address/, 'PODNET_INVALID_IP'],
    [{ dst: '--netns' }, /not an IPv4 address/, 'PODNET_INVALID_IP'],
    [{ family: 6, dst: '10.0.0.1' }, /not an IPv6 address/, 'PODNET_INVALID_IP'],
    [{ src: 'fd00::1' }, /src "fd00::1" is not an IPv4 address/, 'PODNET_INVALID_IP'],
    [{ dport: 0 }, /dport must be an integer between 1 and 65535/, 'PODNET_INVALID_ARGUMENT'],
    [{ proto: 'udp', dport: 65536 }, /dport/, 'PODNET_INVALID_ARGUMENT'],
    [{ sport: -1 }, /sport must be an integer between 0 and 65535/, 'PODNET_INVALID_ARGUMENT'],
    [{ sport: 1.5 }, /sport/, 'PODNET_INVALID_ARGUMENT'],
    [{ dscp: 64 }, /dscp must be an integer between 0 and 63/, 'PODNET_INVALID_ARGUMENT'],
    [{ timeoutMs: 0 }, /timeoutMs/, 'PODNET_INVALID_ARGUMENT'],
    [{ proto: 'udp', size: 27 }, /size must be an integer between 28 and 65535/, 'PODNET_INVALID_ARGUMENT'],
    [{ proto: 'icmp', family: 6, dst: 'fd00::1', size: 47 }, /size must be an integer between 48 and 65535/, 'PODNET_INVALID_ARGUMENT'],
    [{ netnsPath: 'run/netns/x' }, /netnsPath must be an absolute path/, 'PODNET_INVALID_ARGUMENT'],
    [{ id: 'Not-An-Id' }, /id must be 1 to 16 characters/, 'PODNET_INVALID_ARGUMENT'],
  ])('rejects %j', (patch, why, code) => {
    const o = { ...base, ...patch } as ProbeOptions;
    expect(() => probeArgs(o)).toThrowError(why);
    expect(failure(() => probeArgs(o)).code).toBe(code);
  });

  it('runProbe rejects bad options without running anything', async () => {
    await expect(runProbe({ ...base, proto: 'sctp' })).rejects.toMatchObject({ code: 'PODNET_UNSUPPORTED' });
    await expect(runProbe({ ...base, dscp: 99 })).rejects.toMatchObject({ code: 'PODNET_INVALID_ARGUMENT' });
  });
});

describe('parseProbeOutput', () => {
  it('reads the JSON line, with the optional fields', () => {
    expect(parseProbeOutput('{"result":"connected","rttMs":0.105,"sport":40000}\n', 0)).toEqual({ result: 'connected', rttMs: 0.105, sport: 40000, sent: true });
    expect(
      parseProbeOutput(
        '{"result":"unreachable","rttMs":3062.367,"sport":57752,"errno":"EHOSTUNREACH","message":"198.18.0.7 is unreachable","from":"198.18.0.1","icmpType":3,"icmpCode":1}',
        0,
      ),
    ).toEqual({ result: 'unreachable', rttMs: 3062.367, sport: 57752, errno: 'EHOSTUNREACH', message: '198.18.0.7 is unreachable', from: '198.18.0.1', icmpType: 3, icmpCode: 1, sent: true });
    expect(parseProbeOutput('{"result":"error","sport":48691,"errno":"EMSGSIZE","message":"too big","mtu":1500}', 1)).toMatchObject({ result: 'error', mtu: 1500, sent: false });
  });

  it('anything else is undefined', () => {
    for (const s of ['', 'podnet-probe: --dst is required', '{"result":"maybe","sport":1}', '{not json']) expect(parseProbeOutput(s, 0)).toBeUndefined();
  });
});

// The program's own argument checks: every one fails before a socket exists (exit 2).
const binary = join(packageRoot, 'native', 'build', 'Release', 'podnet-probe');
describe.skipIf(!existsSync(binary))('podnet-probe arguments', () => {
  it.each([
    [[], /--family 4\|6 is required/],
    [['--family', '5'], /--family must be 4 or 6, got "5"/],
    [['--family', '4'], /--proto tcp\|udp\|icmp is required/],
    [['--family', '4', '--proto', 'sctp', '--dst', '10.0.0.1', '--dport', '1'], /sctp is not supported by podnet-probe/],
    [['--family', '4', '--proto', 'tcp'], /--dst ADDR is required/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0'], /--dst "10.0.0" is not an IPv4 address/],
    [['--family', '6', '--proto', 'tcp', '--dst', '10.0.0.1'], /is not an IPv6 address/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--src', 'fd00::1', '--dport', '1'], /--src "fd00::1" is not an IPv4 address/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1'], /--dport N \(1 to 65535\) is required for tcp/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--dport', '70000'], /--dport must be an integer from 0 to 65535, got 70000/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--dport', '80x'], /--dport must be an integer/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--dport', '1', '--sport', '-1'], /--sport must be an integer from 0 to 65535, got "-1"/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--dport', '1', '--dscp', '64'], /--dscp must be an integer from 0 to 63, got 64/],
    [['--family', '4', '--proto', 'tcp', '--dst', '10.0.0.1', '--dport', '1', '--size', '100'], /--size applies to udp and icmp probes only/],
    [['--family', '4', '--proto', 'udp', '--dst', '10.0.0.1', '--dport', '1', '--size', '27'], /--size must be an integer from 28 to 65535/],
    [['--family', '6', '--proto', 'icmp', '--dst', 'fd00::1', '--size', '65536'], /--size must be an integer from 48 to 65535/],
    [['--family', '4', '--proto', 'icmp', '--dst', '10.0.0.1', '--dport', '5'], /--dport does not apply to icmp/],
    [['--family', '4', '--proto', 'udp', '--dst', '10.0.0.1', '--dport', '1', '--timeout-ms', '0'], /--timeout-ms must be an integer from 1 to 600000/],
    [['--family', '4', '--proto', 'udp', '--dst', '10.0.0.1', '--dport', '1', '--payload', ''], /--payload must be 1 to 256 bytes/],
    [['--family', '4', '--proto', 'udp', '--dst', '10.0.0.1', '--dport', '1', '--netns', 'relative'], /--netns must be an absolute path/],
    [['--family', '4', '--family', '4'], /--family given twice/],
    [['--bogus', 'x'], /unknown option --bogus/],
    [['--family'], /--family needs a value/],
    [['stray'], /unexpected argument "stray"/],
  ])('%j', async (args, why) => {
    const r = await execa(binary, args, { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(why);
  });
});
