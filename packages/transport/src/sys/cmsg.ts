/**
 * CMSG_* arithmetic for SCM_RIGHTS on 64-bit Linux (cmsghdr: u64 len, i32 level, i32 type).
 * @module
 */
/** SOL_SOCKET. */
export const SOL_SOCKET = 1;
/** SCM_RIGHTS. */
export const SCM_RIGHTS = 1;
/** sizeof(struct cmsghdr) on LP64. */
export const CMSG_HDR = 16;
/** CMSG_ALIGN: round up to 8 bytes. */
export function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}
/** CMSG_LEN(n): header + n data bytes. */
export function cmsgLen(n: number): number {
  return CMSG_HDR + n;
}
/** CMSG_SPACE(n): header + n data bytes, aligned. */
export function cmsgSpace(n: number): number {
  return CMSG_HDR + cmsgAlign(n);
}
