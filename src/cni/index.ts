/** podnet's CNI plugin, agent side: protocol layer, handler contract, socket server. */
export { CniError, CniErrorCode, isCniError, toCniError } from './errors.js';
export { callAgent, type CallOptions } from './client.js';
export { FRAME_HEADER_BYTES, FRAME_VERSION, MAX_FRAME_BYTES, decodeRequest, decodeResponse, encodeFrame, type CniResponse } from './frame.js';
export { dispatch, errorResponse, type CniHandler, type DispatchOptions } from './handler.js';
export {
  SOCKET_PATH_MAX,
  parseCniArgs,
  parseRequest,
  type CniAddRequest,
  type CniArgs,
  type CniAttachment,
  type CniAttachmentKey,
  type CniCheckRequest,
  type CniDelRequest,
  type CniGcRequest,
  type CniNetConf,
  type CniPodIdentity,
  type CniRawRequest,
  type CniRequest,
  type CniStatusRequest,
  type CniVersionRequest,
} from './protocol.js';
export {
  encodeError,
  encodeResult,
  encodeVersionResult,
  formatErrorResult,
  formatResult,
  formatVersionResult,
  parseResult,
  type CniAddResult,
  type CniDns,
  type CniErrorObject,
  type CniInterface,
  type CniIpConfig,
  type CniRoute,
  type CniVersionObject,
} from './result.js';
export { CniServer, DEFAULT_SOCKET_PATH, type CniServerOptions } from './server.js';
export { CNI_COMMANDS, LATEST_VERSION, SUPPORTED_VERSIONS, type CniCommand, type CniVersion } from './spec.js';
