/**
 * `@vhostkit/transport`: moves vhost-user frames and their file descriptors over AF_UNIX stream
 * sockets (SCM_RIGHTS) through koffi, without ever blocking the JavaScript thread, in Bun and in
 * Node >= 20. No protocol logic: framing (header + fds first, then exactly `size` bytes), fd
 * ownership ({@link OwnedFd}), request/reply with REPLY_ACK, eventfds for kick/call/err, and one
 * epoll {@link Reactor} that waits for all of them on a single worker thread.
 * @packageDocumentation
 */
export { Endpoint, copyMessage } from "./endpoint.js";
export type { BorrowedMessage, EndpointOptions, PayloadTail, ReceivedMessage } from "./endpoint.js";
export { OwnedFd } from "./owned-fd.js";
export { socketPair } from "./socket-pair.js";
export { TransportError, shouldReconnect, isTransportError } from "./transport-error.js";
export type { TransportErrorCode, TransportErrorKind } from "./transport-error.js";
export { Errno, ERRNO_TABLE } from "./sys/errno.js";
export type { ErrnoName } from "./sys/errno.js";
export { callHook } from "./call-hook.js";
export { errnoName, describeErrno } from "./errno-text.js";
export { RequestChannel, sendReply, sendAck } from "./request-channel.js";
export type { Payload, RequestOptions, RequestChannelOptions, RequestWithOptions } from "./request-channel.js";
export { EventFd } from "./event-fd.js";
export { Reactor, SPIN_FLOOR_MICROS } from "./reactor.js";
export { Watch } from "./watch.js";
export { PipeEnd, createPipe } from "./pipe.js";
export type { PipeDirection } from "./pipe.js";
export type { ReactorOptions } from "./reactor.js";
export { listen, connect, Listener } from "./listener.js";
export type { ListenOptions, ConnectOptions, RetryPolicy } from "./listener.js";
