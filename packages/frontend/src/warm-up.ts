/**
 * Warm-up of the front-end's shared-memory paths (docs/performance.md#first-shmem-request): once per
 * process, before the first device connects, a scratch back-end request handler maps and unmaps a
 * scratch memfd in a scratch one-page region, and a scratch connection sends the ADD_MEM_REG and
 * REM_MEM_REG that propagate such a mapping, each over its own socketpair, so that the first real
 * SHMEM_MAP of a session does not run that code for the first time.
 * @module
 */
import { DeviceSharedMemory, guestAddress, SHMEM_MAP_FLAG_RW } from "@vhostkit/regions";
import { Endpoint, type Reactor, sendAck, socketPair } from "@vhostkit/transport";
import { closeFd, dupCloexec, pageSize, sealedMemfd } from "@vhostkit/transport/sys";
import { BackendRequest, encodeMessage, HEADER_SIZE, HeaderFlag, UPSTREAM, type BackendRequestName } from "@vhostkit/wire";
import { BackendRequestHandler } from "./backend-request-handler.js";
import { Frontend } from "./frontend.js";
import { mappingRegion } from "./memory-table-mirror.js";
import { sharedMemoryPort } from "./shared-memory-port.js";

/** The longest a device waits for the warm-up before it connects anyway (ms). */
const WARM_UP_LIMIT_MS = 2000;
/**
 * Times each path runs: past the first run of every function and its inline caches (more rounds
 * buy little: the slower first ~100 requests of a session come mostly from elsewhere,
 * tools/bench/README.md).
 */
const WARM_UP_ROUNDS = 4;
/** Where the scratch region sits (any page-aligned guest-physical address). */
const SCRATCH_GPA = 1n << 40n;

let done: Promise<void> | undefined;
/** The steps the warm-up completed, in order (for tests). */
const steps: string[] = [];

/** The steps the process's warm-up completed so far, in order. @internal */
export function warmUpStepsForTesting(): readonly string[] {
  return steps;
}

/**
 * Runs the warm-up once per process (later calls return the same promise). Never rejects: a failed
 * step only ends the warm-up early. Skipped when `VHOSTKIT_WARM_UP=0`. Everything it opens (two
 * socketpairs, one memfd, the scratch region) is released before the promise resolves, unless it
 * outlives {@link WARM_UP_LIMIT_MS}: the caller then goes on and the warm-up finishes on its own.
 * @param reactor - the reactor the scratch endpoints use (the caller's; default the shared one).
 * @internal
 */
export function warmUpFrontend(reactor?: Reactor): Promise<void> {
  if (done !== undefined) return done;
  if (process.env["VHOSTKIT_WARM_UP"] === "0") {
    done = Promise.resolve();
    return done;
  }
  const work = run(reactor).catch(() => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, WARM_UP_LIMIT_MS);
    timer.unref?.();
  });
  done = Promise.race([work, limit]).finally(() => clearTimeout(timer));
  return done;
}

async function run(reactor: Reactor | undefined): Promise<void> {
  const page = pageSize();
  const memfd = sealedMemfd("vhostkit-warm-up", BigInt(page));
  if (memfd < 0) return;
  const regions = new DeviceSharedMemory({ sizes: new Map([[0, BigInt(page)]]), guestPhysAddr: guestAddress(SCRATCH_GPA) });
  try {
    await handlerSide(regions, memfd, page, reactor);
    await propagationSide(regions, memfd, page, reactor);
  } finally {
    regions.dispose();
    closeFd(memfd);
  }
}

/** SHMEM_MAP and SHMEM_UNMAP from a back-end, through a handler into `regions`. */
async function handlerSide(regions: DeviceSharedMemory, memfd: number, page: number, reactor: Reactor | undefined): Promise<void> {
  const [mine, theirs] = socketPair();
  const opts = reactor === undefined ? {} : { reactor };
  const backend = new Endpoint(theirs, opts);
  const handler = new BackendRequestHandler(new Endpoint(mine, opts), {
    dialect: UPSTREAM,
    replyAck: true,
    backendSendFd: true,
    sharedMemory: sharedMemoryPort({ regions }),
  });
  const served = handler.start();
  const flags = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;
  const ask = async (name: BackendRequestName, fds: number[]): Promise<void> => {
    const value = { shmid: 0, fdOffset: 0n, shmOffset: 0n, len: BigInt(page), flags: SHMEM_MAP_FLAG_RW };
    await backend.send(BackendRequest[name], flags, encodeMessage("backend", name as never, flags, value as never).subarray(HEADER_SIZE), fds);
    const reply = await backend.recv();
    for (const f of reply.fds) f.close();
    const p = reply.payload;
    if (p.byteLength !== 8 || new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true) !== 0n) throw new Error(`warm-up: ${name} refused`);
  };
  try {
    for (let i = 0; i < WARM_UP_ROUNDS; i++) {
      await ask("BACKEND_SHMEM_MAP", [memfd]);
      await ask("BACKEND_SHMEM_UNMAP", []);
    }
    steps.push("BACKEND_SHMEM_MAP", "BACKEND_SHMEM_UNMAP");
  } finally {
    backend.close();
    handler.close();
    await served;
  }
}

/** ADD_MEM_REG and REM_MEM_REG of a mapping as propagation sends them, acknowledged by a scratch back-end. */
async function propagationSide(regions: DeviceSharedMemory, memfd: number, page: number, reactor: Reactor | undefined): Promise<void> {
  const [mine, theirs] = socketPair();
  const opts = reactor === undefined ? {} : { reactor };
  const backend = new Endpoint(theirs, opts);
  const fe = new Frontend(new Endpoint(mine, opts));
  fe.replyAck = true;
  const answer = async (): Promise<void> => {
    const m = await backend.recv();
    for (const f of m.fds) f.close();
    await sendAck(backend, m.request, 0n);
  };
  try {
    for (let i = 0; i < WARM_UP_ROUNDS; i++) {
      // A real mapping of the scratch region (its fd is the region's own dup, closed by the unmap).
      const own = regions.map(0, 0n, BigInt(page), dupCloexec(memfd), 0n, SHMEM_MAP_FLAG_RW);
      const region = mappingRegion(own);
      await Promise.all([fe.addMemReg(region, own.fd), answer()]);
      regions.unmap(0, 0n, BigInt(page));
      await Promise.all([fe.remMemReg(region), answer()]);
    }
    steps.push("ADD_MEM_REG", "REM_MEM_REG");
  } finally {
    fe.close();
    backend.close();
  }
}
