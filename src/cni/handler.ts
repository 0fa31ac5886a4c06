/**
 * The contract between the CNI protocol layer and the agent: the agent implements
 * CniHandler (with the same sandbox/IPAM code and lock it uses for its own pods), and
 * `dispatch` turns one raw invocation into the binary's stdout and exit status.
 *
 * Handler rules (from the spec and the reference plugins):
 * - add: create the interface CNI_IFNAME in attachment.netns and return what was
 *   created; an interface of that name that already exists is an error. If
 *   config.prevResult is set (a chained ADD), include it, modified as needed.
 * - del: undo add; succeed when things are already gone, when attachment.netns is ""
 *   (containerd after the task exited) and when called twice. Release the IPAM
 *   reservation even when the netns has vanished.
 * - check: confirm config.prevResult still holds; throw if something is missing.
 * - status: resolve when ADD could be served now; throw CniError 50 (or 51) otherwise.
 * - gc: release everything of this network whose (containerId, ifname) is not in
 *   validAttachments. The runtime runs no ADD or DEL while GC runs.
 * To choose a CNI code yourself throw a CniError; other errors are mapped by toCniError.
 */
import type { Logger } from '../util/log.js';
import { CniError, CniErrorCode, toCniError } from './errors.js';
import type { CniResponse } from './frame.js';
import {
  parseRequest,
  peekCniVersion,
  type CniAddRequest,
  type CniCheckRequest,
  type CniDelRequest,
  type CniGcRequest,
  type CniRawRequest,
  type CniRequest,
  type CniStatusRequest,
} from './protocol.js';
import { formatErrorResult, formatResult, formatVersionResult, parseResult, type CniAddResult } from './result.js';
import { LATEST_VERSION } from './spec.js';

export interface CniHandler {
  add(req: CniAddRequest): Promise<CniAddResult>;
  del(req: CniDelRequest): Promise<void>;
  check(req: CniCheckRequest): Promise<void>;
  status(req: CniStatusRequest): Promise<void>;
  gc(req: CniGcRequest): Promise<void>;
}

export interface DispatchOptions {
  /** Failures are logged at warn, successes at debug. */
  log?: Logger;
}

/**
 * Runs one invocation: validate (protocol.ts), call the handler, print the result in the
 * configuration's cniVersion. Never throws: every failure becomes a CNI error object.
 */
export async function dispatch(raw: CniRawRequest, handler: CniHandler, opts: DispatchOptions = {}): Promise<CniResponse> {
  const started = Date.now();
  let req: CniRequest | undefined;
  try {
    req = parseRequest(raw);
    const stdout = await run(req, handler);
    opts.log?.debug({ ...describe(req), ms: Date.now() - started }, 'cni request done');
    return { exit: 0, stdout };
  } catch (e) {
    const err = toCniError(e, req?.command ?? raw.env.CNI_COMMAND);
    opts.log?.warn(
      { ...(req ? describe(req) : { command: raw.env.CNI_COMMAND, containerId: raw.env.CNI_CONTAINERID }), code: err.code, err: err.message, ms: Date.now() - started },
      'cni request failed',
    );
    return errorResponse(err, errorVersion(raw, req));
  }
}

/** The response for a failure that happened outside dispatch (bad frame, timeout). */
export function errorResponse(err: CniError, cniVersion: string = LATEST_VERSION): CniResponse {
  return { exit: 1, stdout: formatErrorResult(err, cniVersion) };
}

async function run(req: CniRequest, handler: CniHandler): Promise<string> {
  switch (req.command) {
    case 'VERSION':
      return formatVersionResult(req.cniVersion);
    case 'ADD': {
      const result = await handler.add(req);
      return formatResult(checkedResult(result), req.config.cniVersion);
    }
    case 'DEL':
      await handler.del(req);
      return '';
    case 'CHECK':
      await handler.check(req);
      return '';
    case 'STATUS':
      await handler.status(req);
      return '';
    case 'GC':
      await handler.gc(req);
      return '';
  }
}

/** The handler's result, validated like a prevResult: a bad one is an agent bug (999). */
function checkedResult(result: CniAddResult): CniAddResult {
  try {
    return parseResult(result, 'result', CniErrorCode.INTERNAL);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new CniError(CniErrorCode.INTERNAL, `the podnet agent produced an invalid ADD result: ${why}`);
  }
}

/** Error objects carry the configuration's cniVersion ("the same value as provided"). */
function errorVersion(raw: CniRawRequest, req: CniRequest | undefined): string {
  if (req && req.command !== 'VERSION') return req.config.cniVersion;
  return peekCniVersion(raw.stdin) ?? LATEST_VERSION;
}

function describe(req: CniRequest): Record<string, string | number> {
  if (req.command === 'ADD' || req.command === 'DEL' || req.command === 'CHECK') {
    const { containerId, ifname, netns } = req.attachment;
    const pod = req.pod.namespace && req.pod.name ? `${req.pod.namespace}/${req.pod.name}` : (req.pod.name ?? '');
    return { command: req.command, network: req.config.name, containerId, ifname, netns, ...(pod ? { pod } : {}) };
  }
  if (req.command === 'GC') return { command: req.command, network: req.config.name, keep: req.validAttachments.length };
  if (req.command === 'STATUS') return { command: req.command, network: req.config.name };
  return { command: req.command };
}
