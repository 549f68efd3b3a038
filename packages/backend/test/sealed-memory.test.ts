/**
 * `requireSealedMemory`: guest memory in a file the front-end could still shrink is refused (a
 * truncate under the mapping would make the next access a SIGBUS); sealed memory is taken, and so
 * is unsealed memory when the option is off (QEMU's memory-backend-file cannot be sealed).
 */
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { closeFd, ftruncate, memfdCreate, MFD, sealedMemfd } from "@vhostkit/transport/sys";
import { ProtocolFeature } from "@vhostkit/wire";
import { serveFd, type BackendEvent, type DeviceBackend } from "../src/index.js";
import { ScriptedFrontend } from "./helpers/scripted-frontend.js";

const device: DeviceBackend = { features: 0n, queueCount: 1, maxQueueSize: 64, processQueue() {} };
const MiB = 1n << 20n;

function unsealedMemfd(size: bigint): number {
  const fd = memfdCreate("vhostkit-test-unsealed", MFD.CLOEXEC | MFD.ALLOW_SEALING);
  assert.ok(fd >= 0 && ftruncate(fd, size) === 0);
  return fd;
}

const fdCount = (): number => readdirSync("/proc/self/fd").length;

// The shared reactor opens its epoll fd and wake-up eventfd on first use: open them before counting.
before(async () => {
  const [mine, theirs] = socketPair();
  const served = serveFd(theirs, device);
  const fe = new ScriptedFrontend(new Endpoint(mine));
  try {
    assert.equal(await fe.get("GET_QUEUE_NUM"), 1n);
  } finally {
    fe.close();
    await served;
  }
});

for (const required of [true, false]) {
  test(`requireSealedMemory ${required}: ${required ? "an unsealed memfd is refused, a sealed one taken" : "both taken"}; every fd closed`, async () => {
    const before = fdCount();
    const [mine, theirs] = socketPair();
    const rejected: string[] = [];
    const served = serveFd(theirs, device, {
      requireSealedMemory: required,
      onEvent: (e: BackendEvent) => void (e.kind === "rejected" && rejected.push(e.error instanceof Error ? e.error.message : String(e.error))),
    });
    const fe = new ScriptedFrontend(new Endpoint(mine));
    const loose = unsealedMemfd(MiB);
    const sealed = sealedMemfd("vhostkit-test-sealed", MiB);
    try {
      assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
      assert.ok(sealed >= 0);
      const region = (gpa: bigint) => ({ guestPhysAddr: gpa, memorySize: MiB, userAddr: 0x7000_0000_0000n + gpa, mmapOffset: 0n });
      assert.equal(await fe.ack("ADD_MEM_REG", region(0n), [loose]), required ? 1n : 0n, "unsealed guest memory");
      assert.equal(
        await fe.ack("SET_MEM_TABLE", { regions: [region(0n), region(MiB)] }, [sealed, loose]),
        required ? 1n : 0n,
        "a table with one unsealed region",
      );
      assert.equal(await fe.ack("ADD_MEM_REG", region(4n * MiB), [sealed]), 0n, "sealed guest memory is always taken");
      if (required) assert.ok(rejected.length >= 2 && rejected.every((m) => /F_SEAL_SHRINK/.test(m)), rejected.join("; "));
      else assert.equal(rejected.length, 0);
    } finally {
      closeFd(loose);
      if (sealed >= 0) closeFd(sealed);
      fe.close();
      await served;
    }
    assert.equal(fdCount(), before, "the back-end closed every fd it received");
  });
}
