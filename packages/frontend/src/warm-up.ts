/**
 * Warm-up of the front-end's shared-memory paths (docs/performance.md#first-shmem-request): once per
 * process, before the first device connects, a scratch back-end maps and unmaps a scratch memfd in a
 * scratch one-page region through the path a guest's device takes (back-end request handler, the
 * device's port into the guest's shared memory, the reply gate), and the memory-table mirrors of
 * that back-end and of one other scratch back-end send the ADD_MEM_REG and REM_MEM_REG that
 * propagate each mapping, all over socketpairs, so that the first real SHMEM_MAP of a session does
 * not run that code for the first time.
 * @module
 */
import { DeviceSharedMemory, GuestRam, guestAddress, SHMEM_MAP_FLAG_RW } from "@vhostkit/regions";
import { Endpoint, type Reactor, sendAck, socketPair } from "@vhostkit/transport";
import { closeFd, pageSize, sealedMemfd } from "@vhostkit/transport/sys";
import { BackendRequest, encodeMessage, FrontendRequest, HEADER_SIZE, HeaderFlag, UPSTREAM, type BackendRequestName } from "@vhostkit/wire";
import { BackendRequestHandler } from "./backend-request-handler.js";
import { Frontend } from "./frontend.js";
import { type DeviceSharedMemoryPort, GuestSharedMemory } from "./guest-shared-memory.js";
import { MemoryTableMirror } from "./memory-table-mirror.js";

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
 * step only ends the warm-up early. Skipped when `VHOSTKIT_WARM_UP=0`. Everything it opens (three
 * socketpairs, two memfds, the scratch region and one page of scratch guest RAM) is released before the promise resolves, unless it
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
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: BigInt(page) }], name: "vhostkit-warm-up" });
  try {
    await guestPath(regions, ram, memfd, page, reactor);
  } finally {
    ram.dispose();
    regions.dispose();
    closeFd(memfd);
  }
}

/** A scratch back-end's connection as a device of a guest has it: a {@link Frontend} with its memory-table mirror. */
interface ScratchLink {
  readonly fe: Frontend;
  readonly mirror: MemoryTableMirror;
  /** The scratch back-end's end of the socket. */
  readonly backend: Endpoint;
  /** Propagated table updates it received (ADD_MEM_REG / REM_MEM_REG of the scratch mapping). */
  readonly received: { ADD_MEM_REG: number; REM_MEM_REG: number };
}

/** A scratch back-end that acknowledges every message until its socket closes. */
function scratchLink(ram: GuestRam, opts: { reactor?: Reactor }): ScratchLink {
  const [mine, theirs] = socketPair();
  const fe = new Frontend(new Endpoint(mine, opts));
  fe.replyAck = true;
  const backend = new Endpoint(theirs, opts);
  const mirror = new MemoryTableMirror({
    connection: fe,
    ram,
    slotted: true,
    maxMemSlots: 8,
    policy: "propagate",
    propagating: true,
    memRw: false,
    onFatal: () => undefined,
  });
  const received = { ADD_MEM_REG: 0, REM_MEM_REG: 0 };
  void (async () => {
    for (;;) {
      const m = await backend.recv();
      for (const f of m.fds) f.close();
      if (m.request === FrontendRequest.ADD_MEM_REG) received.ADD_MEM_REG++;
      if (m.request === FrontendRequest.REM_MEM_REG) received.REM_MEM_REG++;
      await sendAck(backend, m.request, 0n);
    }
  })().catch(() => undefined); // ends when the warm-up closes the socket
  return { fe, mirror, backend, received };
}

/**
 * SHMEM_MAP and SHMEM_UNMAP from a back-end through the path a guest's device takes: its back-end
 * request handler, its port into the guest's shared memory (admission, the reply gate) and `regions`,
 * with the ADD_MEM_REG / REM_MEM_REG that propagate each mapping to its own and to one other scratch
 * back-end through their memory-table mirrors.
 */
async function guestPath(regions: DeviceSharedMemory, ram: GuestRam, memfd: number, page: number, reactor: Reactor | undefined): Promise<void> {
  const opts = reactor === undefined ? {} : { reactor };
  const shared = new GuestSharedMemory(true);
  const links = [scratchLink(ram, opts), scratchLink(ram, opts)];
  const ports = links.map((l, i) => shared.join(i === 0 ? regions : undefined, l.mirror, undefined));
  const [mine, theirs] = socketPair();
  const mapper = new Endpoint(theirs, opts);
  const handler = new BackendRequestHandler(new Endpoint(mine, opts), {
    dialect: UPSTREAM,
    replyAck: true,
    backendSendFd: true,
    sharedMemory: ports[0] as DeviceSharedMemoryPort,
  });
  const served = handler.start();
  const flags = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;
  const ask = async (name: BackendRequestName, fds: number[]): Promise<void> => {
    const value = { shmid: 0, fdOffset: 0n, shmOffset: 0n, len: BigInt(page), flags: SHMEM_MAP_FLAG_RW };
    await mapper.send(BackendRequest[name], flags, encodeMessage("backend", name as never, flags, value as never).subarray(HEADER_SIZE), fds);
    const reply = await mapper.recv();
    for (const f of reply.fds) f.close();
    const p = reply.payload;
    if (p.byteLength !== 8 || new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true) !== 0n) throw new Error(`warm-up: ${name} refused`);
    await Promise.all(links.map((l) => l.mirror.settled()));
  };
  try {
    await Promise.all(links.map((l) => l.mirror.send([]))); // the first table: guest RAM
    const other = (links[1] as ScratchLink).received;
    const ramAdds = other.ADD_MEM_REG;
    for (let i = 0; i < WARM_UP_ROUNDS; i++) {
      await ask("BACKEND_SHMEM_MAP", [memfd]);
      await ask("BACKEND_SHMEM_UNMAP", []);
    }
    steps.push("BACKEND_SHMEM_MAP", "BACKEND_SHMEM_UNMAP");
    // The other back-end got every mapping into its table and out again: propagation ran too.
    if (other.ADD_MEM_REG - ramAdds === WARM_UP_ROUNDS && other.REM_MEM_REG === WARM_UP_ROUNDS) steps.push("ADD_MEM_REG", "REM_MEM_REG");
  } finally {
    mapper.close();
    handler.close();
    await served;
    for (const [i, l] of links.entries()) {
      l.mirror.release();
      (ports[i] as DeviceSharedMemoryPort).leave();
      l.fe.close();
      l.backend.close();
    }
  }
}
