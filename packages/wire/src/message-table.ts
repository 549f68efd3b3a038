/**
 * The message table (docs/protocol.md#front-end-requests, docs/protocol.md#back-end-requests;
 * docs/shmem.md#dialects, docs/shmem.md#extension-wire-format): for every request on each
 * channel, its request and reply payload codecs, the fds it and its reply carry, and its reply rule.
 * Lookups are dialect-aware: a {@link Dialect} value picks which SHMEM ids exist on a connection.
 * @module
 */
import type { PayloadCodec } from "./codec/payload-codec.js";
import type { Dialect } from "./dialect.js";
import { UPSTREAM } from "./dialect.js";
import { MAX_FDS_PER_MSG } from "./limits.js";
import { CrosvmSharedMemoryRegionsCodec, CrosvmShmemMapCodec, CrosvmShmemUnmapCodec } from "./messages/crosvm.js";
import { DeviceConfigCodec } from "./messages/config.js";
import { DeviceStateParamsCodec, DeviceStateReplyCodec } from "./messages/device-state.js";
import { InflightCodec } from "./messages/inflight.js";
import { IotlbCodec } from "./messages/iotlb.js";
import { MemReadReplyCodec, MemReadRequestCodec, MemWriteRequestCodec } from "./messages/mem-access.js";
import { LogBaseReplyCodec, LogCodec, MemoryTableCodec, SingleRegionCodec } from "./messages/memory.js";
import { Empty, Opaque, U64 } from "./messages/scalar.js";
import { SharedObjectCodec, SharedObjectReplyCodec } from "./messages/shared-object.js";
import { MMapRequestCodec, ShmemConfigCodec } from "./messages/shmem.js";
import { VringAddrCodec, VringAreaCodec, VringFileCodec, VringStateCodec } from "./messages/vring.js";
import type { BackendRequestName, Channel, FrontendRequestName } from "./requests.js";
import { BackendRequest, FrontendRequest } from "./requests.js";

/**
 * How many fds travel with a message (SCM_RIGHTS on the header's first byte, docs/protocol.md#file-descriptors):
 * - `"none"`: fds are not allowed (rust-vmm `check_attached_files`);
 * - `"one"`: exactly one;
 * - `"zeroOrOne"`: 0 or 1; for vring file / vring area payloads the no-fd bit decides (see {@link expectedFdCount});
 * - `"perRegion"`: exactly one per memory table region (SET_MEM_TABLE).
 */
export type FdRule = "none" | "one" | "zeroOrOne" | "perRegion";

/**
 * When a request gets a reply (docs/protocol.md#front-end-requests, the "always answered" list;
 * docs/protocol.md#reply-rules; docs/shmem.md#replies-to-map-and-unmap):
 * - `"always"`: always, regardless of REPLY_ACK, with the `reply` payload;
 * - `"ack"`: only a u64 REPLY_ACK status, when NEED_REPLY is set and REPLY_ACK was negotiated;
 * - `"logShmfd"`: always when LOG_SHMFD was negotiated (SET_LOG_BASE), else the ack rule;
 * - `"postcopy"`: with `postcopyReply` in postcopy mode (SET_MEM_TABLE, ADD_MEM_REG), else the ack rule.
 */
export type ReplyRule = "always" | "ack" | "logShmfd" | "postcopy";

/**
 * One row of the message table.
 * @typeParam Req - request payload value type; @typeParam Rep - reply payload value type.
 */
export interface MessageSpec<Req = unknown, Rep = unknown> {
  /** Spec name without `VHOST_USER_`, e.g. `"SET_VRING_ADDR"`. */
  readonly name: string;
  /** Request id on `channel`. */
  readonly id: number;
  /** `"frontend"` (main socket) or `"backend"` (back-end channel). */
  readonly channel: Channel;
  /** Request payload codec. */
  readonly request: PayloadCodec<Req>;
  /** Reply payload codec (u64 status for the ack rule). */
  readonly reply: PayloadCodec<Rep>;
  /** Reply payload in postcopy mode (rule `"postcopy"` only). */
  readonly postcopyReply?: PayloadCodec<Rep>;
  /** Reply rule. */
  readonly replyRule: ReplyRule;
  /** Fds carried by the request. */
  readonly fds: FdRule;
  /** Fds carried by the reply. */
  readonly replyFds: FdRule;
}

/** A {@link MessageSpec} without its identity (name, id, channel): one table entry's payload facts. */
export type MessageRow<Req, Rep> = Omit<MessageSpec<Req, Rep>, "name" | "id" | "channel">;

function row<Req, Rep>(
  request: PayloadCodec<Req>,
  reply: PayloadCodec<Rep>,
  replyRule: ReplyRule,
  fds: FdRule = "none",
  replyFds: FdRule = "none",
): MessageRow<Req, Rep> {
  return { request, reply, replyRule, fds, replyFds };
}

const ack = <Req>(request: PayloadCodec<Req>, fds: FdRule = "none"): MessageRow<Req, bigint> => row(request, U64, "ack", fds);
const always = <Req, Rep>(request: PayloadCodec<Req>, reply: PayloadCodec<Rep>, replyFds: FdRule = "none"): MessageRow<Req, Rep> =>
  row(request, reply, "always", "none", replyFds);

/**
 * Front-end rows by request name, with precise codec types (docs/protocol.md#front-end-requests; id 1004 for the
 * crosvm-legacy dialect). Prefer {@link tryMessageSpec}, which applies the dialect.
 */
export const FrontendTable = {
  GET_FEATURES: always(Empty, U64),
  SET_FEATURES: ack(U64),
  SET_OWNER: ack(Empty),
  RESET_OWNER: ack(Empty),
  SET_MEM_TABLE: { request: MemoryTableCodec, reply: U64, postcopyReply: MemoryTableCodec, replyRule: "postcopy", fds: "perRegion", replyFds: "none" },
  SET_LOG_BASE: row(LogCodec, LogBaseReplyCodec, "logShmfd", "one"),
  SET_LOG_FD: ack(Empty, "one"),
  SET_VRING_NUM: ack(VringStateCodec),
  SET_VRING_ADDR: ack(VringAddrCodec),
  SET_VRING_BASE: ack(VringStateCodec),
  GET_VRING_BASE: always(VringStateCodec, VringStateCodec),
  SET_VRING_KICK: ack(VringFileCodec, "zeroOrOne"),
  SET_VRING_CALL: ack(VringFileCodec, "zeroOrOne"),
  SET_VRING_ERR: ack(VringFileCodec, "zeroOrOne"),
  GET_PROTOCOL_FEATURES: always(Empty, U64),
  SET_PROTOCOL_FEATURES: ack(U64),
  GET_QUEUE_NUM: always(Empty, U64),
  SET_VRING_ENABLE: ack(VringStateCodec),
  SEND_RARP: ack(U64),
  NET_SET_MTU: ack(U64),
  SET_BACKEND_REQ_FD: ack(Empty, "one"),
  IOTLB_MSG: always(IotlbCodec, U64),
  SET_VRING_ENDIAN: ack(VringStateCodec),
  GET_CONFIG: always(DeviceConfigCodec, DeviceConfigCodec),
  SET_CONFIG: ack(DeviceConfigCodec),
  CREATE_CRYPTO_SESSION: always(Opaque, Opaque),
  CLOSE_CRYPTO_SESSION: ack(U64),
  POSTCOPY_ADVISE: always(Empty, Empty, "one"),
  POSTCOPY_LISTEN: ack(Empty),
  POSTCOPY_END: always(Empty, U64),
  GET_INFLIGHT_FD: always(InflightCodec, InflightCodec, "zeroOrOne"),
  SET_INFLIGHT_FD: ack(InflightCodec, "one"),
  GPU_SET_SOCKET: ack(Empty, "one"),
  RESET_DEVICE: ack(Empty),
  VRING_KICK: ack(VringStateCodec),
  GET_MAX_MEM_SLOTS: always(Empty, U64),
  ADD_MEM_REG: { request: SingleRegionCodec, reply: U64, postcopyReply: SingleRegionCodec, replyRule: "postcopy", fds: "one", replyFds: "none" },
  REM_MEM_REG: ack(SingleRegionCodec),
  SET_STATUS: ack(U64),
  GET_STATUS: always(Empty, U64),
  GET_SHARED_OBJECT: always(SharedObjectCodec, SharedObjectReplyCodec, "zeroOrOne"),
  SET_DEVICE_STATE_FD: row(DeviceStateParamsCodec, DeviceStateReplyCodec, "always", "one", "zeroOrOne"),
  CHECK_DEVICE_STATE: always(Empty, U64),
  GET_SHMEM_CONFIG: always(Empty, ShmemConfigCodec),
  GET_VRING_BASE_SKIP_DRAIN: always(VringStateCodec, VringStateCodec),
  GET_SHARED_MEMORY_REGIONS: always(Empty, CrosvmSharedMemoryRegionsCodec),
} satisfies Record<FrontendRequestName, MessageRow<unknown, unknown>>;

/**
 * Back-end rows by request name, with precise codec types (docs/protocol.md#back-end-requests,
 * docs/shmem.md#dialects, docs/shmem.md#extension-wire-format).
 * Prefer {@link tryMessageSpec}, which applies the dialect.
 */
export const BackendTable = {
  BACKEND_IOTLB_MSG: ack(IotlbCodec),
  BACKEND_CONFIG_CHANGE_MSG: ack(Empty),
  BACKEND_VRING_HOST_NOTIFIER_MSG: ack(VringAreaCodec, "zeroOrOne"),
  BACKEND_VRING_CALL: ack(VringStateCodec),
  BACKEND_VRING_ERR: ack(VringStateCodec),
  BACKEND_SHARED_OBJECT_ADD: ack(SharedObjectCodec),
  BACKEND_SHARED_OBJECT_REMOVE: ack(SharedObjectCodec),
  BACKEND_SHARED_OBJECT_LOOKUP: always(SharedObjectCodec, U64, "zeroOrOne"),
  BACKEND_SHMEM_MAP: ack(MMapRequestCodec, "one"),
  BACKEND_SHMEM_UNMAP: ack(MMapRequestCodec),
  BACKEND_MEM_READ: always(MemReadRequestCodec, MemReadReplyCodec),
  BACKEND_MEM_WRITE: always(MemWriteRequestCodec, U64),
  CROSVM_SHMEM_MAP: row(CrosvmShmemMapCodec, U64, "always", "one"),
  CROSVM_SHMEM_UNMAP: always(CrosvmShmemUnmapCodec, U64),
} satisfies Record<BackendRequestName, MessageRow<unknown, unknown>>;

/** Static type of the front-end table: request name → {@link MessageRow} with its precise codec types. */
export type FrontendRows = typeof FrontendTable;
/** Static type of the back-end table: request name → {@link MessageRow} with its precise codec types. */
export type BackendRows = typeof BackendTable;

/** Request payload value type of front-end request `N`. */
export type FrontendRequestValue<N extends FrontendRequestName> = FrontendRows[N] extends MessageRow<infer Req, unknown> ? Req : never;
/** Reply payload value type of front-end request `N` (in postcopy mode the same type: ack `bigint` or the table). */
export type FrontendReplyValue<N extends FrontendRequestName> =
  | (FrontendRows[N] extends MessageRow<unknown, infer Rep> ? Rep : never)
  | (FrontendRows[N] extends { postcopyReply: PayloadCodec<infer P> } ? P : never);
/** Request payload value type of back-end request `N`. */
export type BackendRequestValue<N extends BackendRequestName> = BackendRows[N] extends MessageRow<infer Req, unknown> ? Req : never;
/** Reply payload value type of back-end request `N`. */
export type BackendReplyValue<N extends BackendRequestName> = BackendRows[N] extends MessageRow<unknown, infer Rep> ? Rep : never;

function build<N extends string>(
  channel: Channel,
  ids: Readonly<Record<N, number>>,
  rows: Readonly<Record<N, MessageRow<unknown, unknown>>>,
): ReadonlyMap<N, MessageSpec> {
  const out = new Map<N, MessageSpec>();
  for (const name of Object.keys(ids) as N[]) {
    out.set(name, Object.freeze({ name, id: ids[name], channel, ...(rows[name] as MessageRow<unknown, unknown>) }) as MessageSpec);
  }
  return out;
}

const FRONTEND_SPECS = build<FrontendRequestName>("frontend", FrontendRequest, FrontendTable);
const BACKEND_SPECS = build<BackendRequestName>("backend", BackendRequest, BackendTable);

/** Every front-end row by name, dialect-independent (includes both SHMEM config queries, ids 44 and 1004). */
export const FrontendMessages: ReadonlyMap<FrontendRequestName, MessageSpec> = FRONTEND_SPECS;
/** Every back-end row by name, dialect-independent (includes ids 9/10 and crosvm's 1000/1001). */
export const BackendMessages: ReadonlyMap<BackendRequestName, MessageSpec> = BACKEND_SPECS;

/** Names whose existence depends on the dialect (docs/shmem.md#dialects). */
const SHMEM_NAMES: ReadonlySet<string> = new Set([
  "GET_SHMEM_CONFIG",
  "GET_SHARED_MEMORY_REGIONS",
  "BACKEND_SHMEM_MAP",
  "BACKEND_SHMEM_UNMAP",
  "CROSVM_SHMEM_MAP",
  "CROSVM_SHMEM_UNMAP",
]);

interface DialectTable {
  readonly frontend: ReadonlyMap<number, MessageSpec>;
  readonly backend: ReadonlyMap<number, MessageSpec>;
  readonly frontendByName: ReadonlyMap<string, MessageSpec>;
  readonly backendByName: ReadonlyMap<string, MessageSpec>;
}

const tables = new WeakMap<Dialect, DialectTable>();

function dialectTable(dialect: Dialect): DialectTable {
  let t = tables.get(dialect);
  if (t !== undefined) return t;
  const shmemIds = [dialect.shmemConfigRequest, dialect.shmemMapRequest, dialect.shmemUnmapRequest];
  const pick = (specs: ReadonlyMap<string, MessageSpec>, channel: Channel): Map<number, MessageSpec> => {
    const out = new Map<number, MessageSpec>();
    for (const spec of specs.values()) {
      if (SHMEM_NAMES.has(spec.name)) {
        const isConfig = channel === "frontend";
        if (isConfig ? spec.id !== dialect.shmemConfigRequest : !shmemIds.slice(1).includes(spec.id)) continue;
        if (!isConfig && dialect.mandatoryShmemReplies && spec.replyRule !== "always") {
          out.set(spec.id, Object.freeze({ ...spec, replyRule: "always" }));
          continue;
        }
      }
      out.set(spec.id, spec);
    }
    return out;
  };
  const frontend = pick(FRONTEND_SPECS, "frontend");
  const backend = pick(BACKEND_SPECS, "backend");
  const byName = (m: Map<number, MessageSpec>): Map<string, MessageSpec> => new Map([...m.values()].map((spec) => [spec.name, spec]));
  t = { frontend, backend, frontendByName: byName(frontend), backendByName: byName(backend) };
  tables.set(dialect, t);
  return t;
}

/**
 * The row for request `id` on `channel` as it exists in `dialect`, or `undefined` for an id
 * unknown on this connection (e.g. 44 in crosvm-legacy, 1000 in upstream). In dialects with
 * mandatory SHMEM replies the MAP/UNMAP rows report `replyRule: "always"`.
 */
export function tryMessageSpec(channel: Channel, id: number, dialect: Dialect = UPSTREAM): MessageSpec | undefined {
  const t = dialectTable(dialect);
  return (channel === "frontend" ? t.frontend : t.backend).get(id);
}

/**
 * The row for request `name` on `channel` as it exists in `dialect`, or `undefined` when the name
 * is unknown or the request does not exist in this dialect.
 */
export function tryMessageSpecByName(channel: Channel, name: string, dialect: Dialect = UPSTREAM): MessageSpec | undefined {
  const t = dialectTable(dialect);
  return (channel === "frontend" ? t.frontendByName : t.backendByName).get(name);
}

/** Every row that exists in `dialect` on `channel`, in id order. */
export function messageSpecs(channel: Channel, dialect: Dialect = UPSTREAM): readonly MessageSpec[] {
  const t = dialectTable(dialect);
  return [...(channel === "frontend" ? t.frontend : t.backend).values()].sort((a, b) => a.id - b.id);
}

/**
 * True when `spec`'s request always gets a reply, given the negotiated modes (docs/protocol.md#front-end-requests):
 * `"always"` rows; SET_LOG_BASE with LOG_SHMFD; SET_MEM_TABLE / ADD_MEM_REG in postcopy. Requests
 * under the ack rule are answered only when NEED_REPLY is set and REPLY_ACK was negotiated.
 */
export function alwaysReplied(spec: MessageSpec, modes: { readonly logShmfd?: boolean; readonly postcopy?: boolean } = {}): boolean {
  const rule = spec.replyRule;
  switch (rule) {
    case "always":
      return true;
    case "ack":
      return false;
    case "logShmfd":
      return modes.logShmfd === true;
    case "postcopy":
      return modes.postcopy === true;
    default: {
      const unreachable: never = rule;
      return unreachable;
    }
  }
}

/** Inclusive range of fd counts, `[min, max]`. */
export interface FdRange {
  /** Fewest fds allowed. */
  readonly min: number;
  /** Most fds allowed. */
  readonly max: number;
}

/**
 * Fd counts allowed for a message following `rule`, refined by its decoded payload `value` where
 * the payload decides: vring file / vring area no-fd bit (exactly 0 or 1), memory table (exactly
 * nregions), GET_INFLIGHT_FD reply (0 when mmap_size is 0, else 1), SET_DEVICE_STATE_FD reply (bit 8).
 * Without `value` the rule's loosest range is returned. Fds are not owned here: the caller closes
 * what it does not keep.
 */
export function expectedFdCount(rule: FdRule, value?: unknown): FdRange {
  switch (rule) {
    case "none":
      return { min: 0, max: 0 };
    case "one":
      return { min: 1, max: 1 };
    case "zeroOrOne": {
      if (typeof value === "object" && value !== null) {
        if ("noFd" in value && typeof value.noFd === "boolean") {
          return value.noFd ? { min: 0, max: 0 } : { min: 1, max: 1 };
        }
        if ("mmapSize" in value && typeof value.mmapSize === "bigint") {
          return value.mmapSize === 0n ? { min: 0, max: 0 } : { min: 1, max: 1 };
        }
      }
      return { min: 0, max: 1 };
    }
    case "perRegion": {
      if (typeof value === "object" && value !== null && "regions" in value && Array.isArray(value.regions)) {
        return { min: value.regions.length, max: value.regions.length };
      }
      return { min: 0, max: MAX_FDS_PER_MSG };
    }
    default: {
      const unreachable: never = rule;
      return unreachable;
    }
  }
}

/**
 * A per-connection fd policy for transports (`fdsAllowed` of `@vhostkit/transport`): the most fds
 * a frame with header `request`/`flags` may carry on `channel` in `dialect` — the request's rule,
 * or the reply's when the REPLY bit (0x4) is set. Unknown ids allow none (rust-vmm
 * `check_attached_files`), so stray fds are closed before the id is reported as unknown.
 */
export function maxFdsFor(channel: Channel, dialect: Dialect = UPSTREAM): (request: number, flags: number) => number {
  return (request, flags) => {
    const spec = tryMessageSpec(channel, request, dialect);
    if (spec === undefined) return 0;
    return expectedFdCount((flags & 0x4) !== 0 ? spec.replyFds : spec.fds).max;
  };
}
