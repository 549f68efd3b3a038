/**
 * The device-lifecycle checks of `vhost-user-device check`: the status byte round trip
 * (docs/protocol.md#device-status), RESET_DEVICE (docs/protocol.md#reset) and whether the shared
 * memory regions come with the channel that maps them (docs/shmem.md#map-and-unmap-requests).
 * @module
 */
import { ProtocolFeature } from "@vhostkit/wire";
import type { CheckResult } from "./check-result.js";
import type { DeviceInfo } from "./negotiation.js";
import type { Frontend } from "./frontend.js";

/** VIRTIO device status bits (docs/protocol.md#device-status). */
export const DeviceStatus = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 64, FAILED: 128 } as const;

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * SET_STATUS `value`, then GET_STATUS must read it back (STATUS negotiated), as a driver writes
 * the status byte step by step.
 */
export async function statusRoundTrip(fe: Frontend, info: DeviceInfo, value: number, when: string): Promise<CheckResult> {
  const name = `status ${when}`;
  if ((info.ackedProtocolFeatures & ProtocolFeature.STATUS) === 0n) return { name, status: "skip", reason: "STATUS not offered" };
  try {
    await fe.ack("SET_STATUS", BigInt(value));
    const got = (await fe.call("GET_STATUS", undefined)).value;
    return got === BigInt(value)
      ? { name, status: "pass", reason: `SET_STATUS ${hex(value)} read back with GET_STATUS` }
      : { name, status: "fail", reason: `SET_STATUS ${hex(value)}, GET_STATUS returned ${hex(got)}` };
  } catch (err) {
    return { name, status: "fail", reason: message(err) };
  }
}

/**
 * RESET_DEVICE (RESET_DEVICE negotiated): acknowledged, the status byte back at 0 when STATUS is
 * negotiated, and the connection still answering (a reset is not a disconnect).
 */
export async function resetRoundTrip(fe: Frontend, info: DeviceInfo): Promise<CheckResult> {
  const name = "RESET_DEVICE";
  const acked = info.ackedProtocolFeatures;
  if ((acked & ProtocolFeature.RESET_DEVICE) === 0n)
    return { name, status: "skip", reason: "RESET_DEVICE not offered (a front-end falls back to RESET_OWNER)" };
  try {
    await fe.resetDevice();
    let after = "";
    if ((acked & ProtocolFeature.STATUS) !== 0n) {
      const status = (await fe.call("GET_STATUS", undefined)).value;
      if (status !== 0n) return { name, status: "fail", reason: `GET_STATUS after the reset returned ${hex(status)}, not 0` };
      after = ", the status byte back at 0";
    }
    await fe.getFeatures();
    return { name, status: "pass", reason: `acknowledged${after}; the connection still answers` };
  } catch (err) {
    return { name, status: "fail", reason: message(err) };
  }
}

/**
 * The regions a back-end declares are only usable with a back-end channel that carries fds:
 * regions without BACKEND_REQ and BACKEND_SEND_FD can never be mapped.
 */
export function shmemChannelCheck(info: DeviceInfo): CheckResult {
  const name = "shmem back-end channel";
  if (info.shmem.length === 0) return { name, status: "skip", reason: "no shared memory regions" };
  const need = ProtocolFeature.BACKEND_REQ | ProtocolFeature.BACKEND_SEND_FD;
  const missing = need & ~info.ackedProtocolFeatures;
  if (missing !== 0n)
    return {
      name,
      status: "fail",
      reason: `${info.shmem.length} region(s) declared, but protocol features ${hex(missing)} (BACKEND_REQ / BACKEND_SEND_FD) not offered: nothing can ever be mapped`,
    };
  return { name, status: "pass", reason: `${info.shmem.length} region(s) with a back-end channel that carries fds` };
}
