/**
 * `@vhostkit/wire`: vhost-user messages as bytes and typed values.
 * @packageDocumentation
 */
export { VhostUserError, isVhostUserError } from "./errors.js";
export type { ErrorDetail } from "./errors.js";
