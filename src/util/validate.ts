/**
 * Validation of every name that reaches the kernel or a file path. Each check throws a
 * PodnetError that names the field and the reason, and returns the value unchanged.
 */
import { ErrorCodes, PodnetError } from './errors.js';

/** IFNAMSIZ is 16 including the terminating NUL. */
export const IFNAME_MAX = 15;

/**
 * Interface names, as the kernel's dev_valid_name() accepts them plus a printable-ASCII
 * rule: 1–15 bytes, not "." or "..", no "/", ":" or whitespace.
 */
export function validateIfName(name: unknown, field = 'interface name'): string {
  if (typeof name !== 'string') throw invalidName(field, name, 'must be a string');
  if (name.length === 0) throw invalidName(field, name, 'must not be empty');
  if (Buffer.byteLength(name) > IFNAME_MAX) throw invalidName(field, name, `is longer than ${IFNAME_MAX} bytes`);
  if (name === '.' || name === '..') throw invalidName(field, name, 'must not be "." or ".."');
  if (!/^[\x21-\x7e]+$/.test(name)) throw invalidName(field, name, 'must be printable ASCII without spaces');
  if (/[/:]/.test(name)) throw invalidName(field, name, 'must not contain "/" or ":"');
  return name;
}

/**
 * Network namespace names (files under /run/netns): 1–64 characters of [A-Za-z0-9_.-],
 * starting with a letter or digit — so never "/", never "." or "..", never hidden.
 */
export function validateNetnsName(name: unknown, field = 'netns name'): string {
  if (typeof name !== 'string') throw invalidName(field, name, 'must be a string');
  if (name.length === 0) throw invalidName(field, name, 'must not be empty');
  if (name.length > 64) throw invalidName(field, name, 'is longer than 64 characters');
  if (name.includes('/')) throw invalidName(field, name, 'must not contain "/"');
  if (name.includes('..')) throw invalidName(field, name, 'must not contain ".."');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw invalidName(field, name, 'may only contain letters, digits, "_", "." and "-", and must start with a letter or digit');
  }
  return name;
}

/** A MAC address as six hex octets separated by ":"; returned lower-case. */
export function validateMac(mac: unknown, field = 'mac'): string {
  if (typeof mac !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new PodnetError(ErrorCodes.INVALID_MAC, `${field} ${JSON.stringify(mac)} is not a MAC address like 02:00:00:00:00:01`, { field });
  }
  return mac.toLowerCase();
}

export function validateInt(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`, { field });
  }
  return value;
}

function invalidName(field: string, value: unknown, reason: string): PodnetError {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return new PodnetError(ErrorCodes.INVALID_NAME, `${field} ${shown} ${reason}`, { field });
}
