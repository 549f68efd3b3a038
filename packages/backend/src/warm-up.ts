/**
 * Warm-up of the back-end's shared-memory paths (docs/performance.md#first-shmem-request): once per
 * process, before the first connection is served, a scratch dispatcher takes an ADD_MEM_REG and a
 * REM_MEM_REG of a scratch memfd and a scratch {@link BackendClient} sends a SHMEM_MAP and a
 * SHMEM_UNMAP, each over its own socketpair, so that the first real request of a session does not
 * run that code for the first time.
 * @module
 */
import { Endpoint, type Reactor, sendAck, socketPair } from "@vhostkit/transport";
import { closeFd, pageSize, sealedMemfd } from "@vhostkit/transport/sys";
import { encodeMessage, FrontendRequest, HEADER_SIZE, HeaderFlag, ProtocolFeature, VirtioFeature, type FrontendRequestName } from "@vhostkit/wire";
import { BackendClient } from "./backend-client.js";
import type { DeviceBackend } from "./device-backend.js";

/** The longest a dispatcher waits for the warm-up before it serves anyway (ms). */
const WARM_UP_LIMIT_MS = 2000;
/**
 * Times each path runs: past the first run of every function and its inline caches (more rounds
 * buy little: the slower first ~100 requests of a session come mostly from elsewhere,
 * tools/bench/README.md).
 */
const WARM_UP_ROUNDS = 4;
/** Where the scratch region sits in the scratch session (any page-aligned address). */
const SCRATCH_GPA = 1n << 40n;

let done: Promise<void> | undefined;
let running = false;
/** The steps the warm-up completed, in order (for tests). */
const steps: string[] = [];

/** The steps the process's warm-up completed so far, in order. @internal */
export function warmUpStepsForTesting(): readonly string[] {
  return steps;
}

/** Serves `endpoint` for `device` until the peer leaves (a dispatcher's `run`); never rejects. */
export type ServeConnection = (endpoint: Endpoint, device: DeviceBackend) => Promise<void>;

/**
 * Runs the warm-up once per process (later calls return the same promise; a call made by the
 * warm-up's own dispatcher, or while it runs, returns at once). Never rejects: a failed step only
 * ends the warm-up early. Skipped when `VHOSTKIT_WARM_UP=0`. Everything it opens (two socketpairs,
 * one memfd, the scratch mappings) is closed before the promise resolves, unless it outlives
 * {@link WARM_UP_LIMIT_MS}, in which case the caller goes on and the warm-up finishes on its own.
 * @param serve - runs the scratch session (the dispatcher passes its own kind, with `reactor`).
 * @param reactor - the reactor the scratch endpoints use (the caller's; default the shared one).
 * @internal
 */
export function warmUpBackend(serve: ServeConnection, reactor?: Reactor): Promise<void> {
  if (running) return Promise.resolve();
  if (done === undefined) {
    if (process.env["VHOSTKIT_WARM_UP"] === "0") done = Promise.resolve();
    else {
      running = true;
      const work = run(serve, reactor)
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const limit = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, WARM_UP_LIMIT_MS);
        timer.unref?.();
      });
      done = Promise.race([work, limit]).finally(() => clearTimeout(timer));
    }
  }
  return done;
}

async function run(serve: ServeConnection, reactor: Reactor | undefined): Promise<void> {
  const page = pageSize();
  const memfd = sealedMemfd("vhostkit-warm-up", BigInt(page));
  if (memfd < 0) return;
  try {
    await propagationSide(serve, memfd, page, reactor);
    await mapperSide(memfd, page, reactor);
  } finally {
    closeFd(memfd);
  }
}

/** A device that has no work: the scratch session's. */
const SCRATCH_DEVICE: DeviceBackend = { features: 0n, queueCount: 1, maxQueueSize: 256, processQueue: () => undefined };

/** ADD_MEM_REG and REM_MEM_REG through a dispatcher, as a front-end propagating a mapping sends them. */
async function propagationSide(serve: ServeConnection, memfd: number, page: number, reactor: Reactor | undefined): Promise<void> {
  const [mine, theirs] = socketPair();
  const opts = reactor === undefined ? {} : { reactor };
  const fe = new Endpoint(mine, opts);
  const served = serve(new Endpoint(theirs, opts), SCRATCH_DEVICE);
  try {
    const ask = async (name: FrontendRequestName, value: unknown, fds: number[] = [], flags: number = HeaderFlag.VERSION): Promise<void> => {
      const frame = encodeMessage("frontend", name as never, flags, value as never);
      await fe.send(FrontendRequest[name], flags, frame.subarray(HEADER_SIZE), fds);
      if (flags === HeaderFlag.VERSION && !name.startsWith("GET_")) return;
      const reply = await fe.recv();
      for (const f of reply.fds) f.close();
      const p = reply.payload;
      if ((flags & HeaderFlag.NEED_REPLY) !== 0 && (p.byteLength !== 8 || new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true) !== 0n))
        throw new Error(`warm-up: ${name} refused`);
    };
    await ask("GET_FEATURES", undefined);
    await ask("SET_FEATURES", VirtioFeature.PROTOCOL_FEATURES);
    await ask("GET_PROTOCOL_FEATURES", undefined);
    await ask("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS);
    const region = { guestPhysAddr: SCRATCH_GPA, memorySize: BigInt(page), userAddr: SCRATCH_GPA, mmapOffset: 0n };
    const acked = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;
    for (let i = 0; i < WARM_UP_ROUNDS; i++) {
      await ask("ADD_MEM_REG", region, [memfd], acked);
      await ask("REM_MEM_REG", region, [], acked);
    }
    steps.push("ADD_MEM_REG", "REM_MEM_REG");
  } finally {
    fe.close();
    await served;
  }
}

/** SHMEM_MAP and SHMEM_UNMAP through a back-end client, answered as a front-end does. */
async function mapperSide(memfd: number, page: number, reactor: Reactor | undefined): Promise<void> {
  const [mine, theirs] = socketPair();
  const opts = reactor === undefined ? {} : { reactor };
  const fe = new Endpoint(theirs, opts);
  const client = new BackendClient(new Endpoint(mine, opts), {
    replyAck: true,
    shmem: true,
    sendFd: true,
    config: false,
    memRw: false,
    isRunning: () => true,
  });
  const answer = async (): Promise<void> => {
    const m = await fe.recv();
    for (const f of m.fds) f.close();
    await sendAck(fe, m.request, 0n);
  };
  try {
    const mapping = { shmid: 0, shmOffset: 0n, len: BigInt(page) };
    for (let i = 0; i < WARM_UP_ROUNDS; i++) {
      await Promise.all([client.shmemMap({ ...mapping, writable: true }, memfd), answer()]);
      await Promise.all([client.shmemUnmap(mapping), answer()]);
    }
    steps.push("BACKEND_SHMEM_MAP", "BACKEND_SHMEM_UNMAP");
  } finally {
    client.close();
    fe.close();
  }
}
