/**
 * Front-end side of the fallback benchmark's shared-buffer row (run by Bun): what a MEM_READ would
 * cost if the data went through a buffer shared by both processes instead of through the socket
 * (a design measured, not a protocol vhostkit speaks). The channel is fd 3, the buffer (a sealed
 * memfd of 64 KiB from the benchmark process) fd 4. Each request is a MEM_READ head (16 bytes):
 * the range is translated in the benchmark's guest (fallback-guest.ts) and copied into the buffer,
 * and the reply is the head echoed (16 bytes, no data); a range the guest cannot serve gets a head
 * with size 0. Runs until the channel closes.
 */
import { type GuestAddress, translateRange } from "@vhostkit/regions";
import { Endpoint, OwnedFd, sendReply } from "@vhostkit/transport";
import { MAP, PROT, mmap, nativeView } from "@vhostkit/transport/sys";
import { MEM_RW_HEADER_SIZE, MEM_RW_MAX_DATA, decodeMemAccessHead, encodeMemAccessHead } from "@vhostkit/wire";
import { frontEndGuest } from "./fallback-guest.js";

const { space } = frontEndGuest();
const mapped = mmap(0n, MEM_RW_MAX_DATA, PROT.READ | PROT.WRITE, MAP.SHARED, 4, 0n);
const buffer = new Uint8Array(nativeView(mapped.ptr, MEM_RW_MAX_DATA));
const ep = new Endpoint(new OwnedFd(3));
const head = new Uint8Array(MEM_RW_HEADER_SIZE);

/** Serve one request: copy into the buffer, build the reply head; returns the request id. */
function serve(payload: Uint8Array, request: number): number {
  const name = "BACKEND_MEM_READ";
  head.fill(0); // a malformed request: a failure head at address 0
  try {
    const { guestAddress, size } = decodeMemAccessHead(name, payload); // size <= 64 KiB: within the buffer
    encodeMemAccessHead(name, guestAddress, 0, head);
    if (size === 0) return request;
    let at = 0;
    for (const s of translateRange(space, guestAddress as GuestAddress, size, false)) {
      buffer.set(s.bytes, at);
      at += s.bytes.length;
    }
    encodeMemAccessHead(name, guestAddress, size, head);
  } catch {
    // the failure head stays
  }
  return request;
}

for (;;) {
  let request: number;
  try {
    request = await ep.recvWith((m) => serve(m.payload, m.request));
  } catch {
    break; // the benchmark closed the channel
  }
  await sendReply(ep, request, head);
}
