/**
 * Small helpers shared by the unit tests of every room (test-only).
 */
import { PodnetError } from '../util/errors.js';

/** The PodnetError `fn` throws (anything else thrown is rethrown; nothing thrown fails). */
export function failure(fn: () => unknown): PodnetError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PodnetError) return e;
    throw e;
  }
  throw new Error('expected a PodnetError, nothing was thrown');
}
