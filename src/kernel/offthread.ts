/**
 * Kernel requests that block for long inside the system call, run on a libuv worker
 * thread instead of the event loop. Deleting a link makes the kernel wait for an RCU
 * grace period (~16-20 ms here) inside sendmsg(): on the event-loop thread that would
 * stall every other request of the agent.
 */
import { validateIfName } from '../util/validate.js';
import { native, nativeCall } from './native.js';
import type { NetNS } from './netns.js';

/**
 * Deletes link `name` in a namespace (a NetNS, a path, or the calling process's own
 * namespace when undefined), off the event loop. Returns false when the link or the
 * namespace is already gone. Equivalent to `ip -n NS link del NAME`.
 */
export async function deleteLinkOffThread(netns: NetNS | string | undefined, name: string): Promise<boolean> {
  validateIfName(name);
  const path = typeof netns === 'string' ? netns : (netns?.path ?? '/proc/self/ns/net');
  const p = nativeCall('deleting a link', { link: name, netns: path }, () => native().deleteLinkAsync(path, name));
  try {
    return await p;
  } catch (e) {
    return nativeCall('deleting a link', { link: name, netns: path }, () => {
      throw e;
    });
  }
}
