import { describe, expect, it } from 'vitest';
import { validateIfName, validateInt, validateMac, validateNetnsName } from './validate.js';
import { PodnetError } from './errors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as PodnetError).code;
  }
  return undefined;
}

describe('validateIfName', () => {
  it.each(['eth0', 'podnet0', 'podnet.1', 'pn0123456789abc', 'a'])('accepts %j', (n) => expect(validateIfName(n)).toBe(n));
  it.each([
    ['', /must not be empty/],
    ['pn0123456789abcd', /longer than 15 bytes/],
    ['.', /must not be "." or ".."/],
    ['..', /must not be "." or ".."/],
    ['a/b', /must not contain "\/" or ":"/],
    ['eth0:1', /must not contain "\/" or ":"/],
    ['eth 0', /printable ASCII without spaces/],
    ['eth\t0', /printable ASCII/],
    ['ethé', /longer than 15 bytes|printable ASCII/],
  ])('rejects %j', (n, why) => {
    expect(() => validateIfName(n, 'peer name')).toThrowError(why);
    expect(() => validateIfName(n, 'peer name')).toThrowError(/^peer name /);
    expect(codeOf(() => validateIfName(n))).toBe('PODNET_INVALID_NAME');
  });
  it('rejects non-strings', () => expect(() => validateIfName(42)).toThrowError(/must be a string/));
  it('counts bytes, not characters', () => expect(() => validateIfName('ééééééééé')).toThrowError(/longer than 15 bytes/));
});

describe('validateNetnsName', () => {
  it.each(['pod-a', 'pnt-1234-n1', 'node.1', 'A_b'])('accepts %j', (n) => expect(validateNetnsName(n)).toBe(n));
  it.each([
    ['', /must not be empty/],
    ['../etc', /must not contain "\/"/],
    ['a..b', /must not contain "\.\."/],
    ['..', /must not contain "\.\."/],
    ['a/b', /must not contain "\/"/],
    ['.hidden', /must start with a letter or digit/],
    ['-rf', /must start with a letter or digit/],
    ['a b', /may only contain/],
    ['x'.repeat(65), /longer than 64/],
  ])('rejects %j', (n, why) => {
    expect(() => validateNetnsName(n)).toThrowError(why);
    expect(codeOf(() => validateNetnsName(n))).toBe('PODNET_INVALID_NAME');
  });
});

describe('validateMac / validateInt', () => {
  it('normalises MACs to lower case', () => expect(validateMac('02:AB:00:00:00:01')).toBe('02:ab:00:00:00:01'));
  it.each(['02:ab:00:00:00', '02-ab-00-00-00-01', '02:ab:00:00:00:0g', ''])('rejects MAC %j', (m) => {
    expect(codeOf(() => validateMac(m, 'VtepMAC'))).toBe('PODNET_INVALID_MAC');
    expect(() => validateMac(m, 'VtepMAC')).toThrowError(/^VtepMAC /);
  });
  it('bounds integers', () => {
    expect(validateInt(1450, 'mtu', 68, 65535)).toBe(1450);
    expect(() => validateInt(67, 'mtu', 68, 65535)).toThrowError('mtu must be an integer between 68 and 65535, got 67');
    expect(() => validateInt(1.5, 'mtu', 68, 65535)).toThrowError(/got 1.5/);
    expect(() => validateInt('1500', 'mtu', 68, 65535)).toThrowError(/got "1500"/);
  });
});
