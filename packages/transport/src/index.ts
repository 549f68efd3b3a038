/**
 * `@vhostkit/transport`: moves vhost-user frames and their fds over AF_UNIX stream sockets
 * (SCM_RIGHTS) through koffi, without blocking the JavaScript thread. No protocol logic.
 * @packageDocumentation
 */
export { Endpoint, HEADER_SIZE } from "./endpoint.js";
export type { EndpointOptions, ReceivedMessage } from "./endpoint.js";
export { OwnedFd } from "./owned-fd.js";
export { socketPair } from "./socket-pair.js";
export { TransportError, shouldReconnect } from "./transport-error.js";
export type { TransportErrorCode, TransportErrorKind } from "./transport-error.js";
export { RequestChannel, HeaderFlag } from "./request-channel.js";
export type { RequestOptions } from "./request-channel.js";
export { EventFd } from "./event-fd.js";
export { listen, connect, Listener } from "./listener.js";
export type { ListenOptions, RetryPolicy } from "./listener.js";
