/**
 * One back-end's memory table as this front-end sent it: guest RAM, plus the shared-memory
 * mappings of devices propagated into it (eager propagation), kept in step with those mappings by
 * ADD_MEM_REG / REM_MEM_REG (or whole SET_MEM_TABLEs without CONFIGURE_MEM_SLOTS).
 * @module
 */
import { closeFd, dupCloexec } from "@vhostkit/transport/sys";
import { SYNTHETIC_USER_BASE, type GuestRam, type ShmemMapping, type ShmemMappingEvent } from "@vhostkit/regions";
import { MAX_MEM_TABLE_REGIONS, type MemoryRegion } from "@vhostkit/wire";
import type { DeviceOptions } from "./device-options.js";
import { asFrontendError, FrontendError, isConnectionLost } from "./errors.js";
import type { Frontend } from "./frontend.js";

/** The memory-table entry of a SHMEM mapping: GPA = window + offset, synthetic user address, `mmap_offset` = `fd_offset`. @internal */
export function mappingRegion(m: ShmemMapping): MemoryRegion {
  return { guestPhysAddr: m.guestPhysAddr, memorySize: m.len, userAddr: SYNTHETIC_USER_BASE + m.guestPhysAddr, mmapOffset: m.fdOffset };
}

/** Guest RAM blocks as memory-table regions, with their memfds (borrowed). @internal */
export function ramTable(ram: GuestRam): { readonly regions: MemoryRegion[]; readonly fds: number[] } {
  const blocks = ram.memoryTable();
  return {
    regions: blocks.map((b) => ({ guestPhysAddr: b.guestPhysAddr, memorySize: b.memorySize, userAddr: b.userspaceAddr, mmapOffset: b.mmapOffset })),
    fds: blocks.map((b) => b.fd),
  };
}

/** Options of a {@link MemoryTableMirror}. @internal */
export interface MemoryTableMirrorOptions {
  /** The connection the table goes over. */
  readonly connection: Frontend;
  /** Guest RAM, the first entries of every table. */
  readonly ram: GuestRam;
  /** CONFIGURE_MEM_SLOTS negotiated: entries come and go one by one, up to `maxMemSlots`; else whole tables of at most 8 regions. */
  readonly slotted: boolean;
  /** GET_MAX_MEM_SLOTS (with CONFIGURE_MEM_SLOTS). */
  readonly maxMemSlots: number | undefined;
  /** The device's shared-memory policy. */
  readonly policy: NonNullable<DeviceOptions["sharedMemoryPolicy"]>;
  /** The guest propagates shared memory at all (its `propagateSharedMemory` option). */
  readonly propagating: boolean;
  /** vhostkit MEM_READ/MEM_WRITE was negotiated with this back-end (it reaches what is not in its table). */
  readonly memRw: boolean;
  /** This back-end's table can no longer be trusted or sent to: the device fails with `error`. */
  readonly onFatal: (error: FrontendError) => void;
}

/** A propagated mapping in the table, with a private dup of its fd (the mapping's own fd may close first). */
interface PropagatedEntry {
  readonly region: MemoryRegion;
  readonly fd: number;
}

/**
 * Mirrors one back-end's memory table. Its life: nothing sent yet (mapping changes are not its
 * concern), then {@link MemoryTableMirror.send} sends the first table and from then on
 * {@link MemoryTableMirror.propagate} keeps it in step; `drain` (the device is closing) lets what is
 * queued go out but takes no new changes; `stop` (failed or closed) sends nothing more.
 * @internal
 */
export class MemoryTableMirror {
  readonly #options: MemoryTableMirrorOptions;
  #phase: "unsent" | "mirroring" | "draining" | "stopped" = "unsent";
  /** Propagated mappings in this back-end's table, by guest-physical address. */
  readonly #propagated = new Map<bigint, PropagatedEntry>();
  /** The table messages, one after the other; each waits for the reply gate it was queued with. */
  #queue: Promise<void> = Promise.resolve();

  /** @param options - the connection, what was negotiated, and where a fatal failure goes. */
  constructor(options: MemoryTableMirrorOptions) {
    this.#options = options;
  }

  /** Entries this back-end takes: its slots with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE's 8. */
  get #tableCap(): number {
    return this.#options.slotted ? (this.#options.maxMemSlots ?? 0) : MAX_MEM_TABLE_REGIONS;
  }

  /** Entries in use: guest RAM plus the propagated mappings. */
  get #tableUsed(): number {
    return this.#options.ram.memoryTable().length + this.#propagated.size;
  }

  /** Live mappings are put into this table (else the back-end reaches them only by MEM_READ/MEM_WRITE, if at all). */
  get #takesMappings(): boolean {
    return this.#options.propagating && this.#options.policy !== "mem-rw";
  }

  /**
   * Sends the first memory table (once; later calls return at once): guest RAM (ADD_MEM_REG per
   * block with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE; user addresses synthetic) and as many of
   * `mappings` (the live mappings this back-end may hold) as fit. A back-end that refuses it fails
   * the device: part of the table may be in it already, and a resend would overlap.
   * @throws FrontendError `NEGOTIATION` when guest RAM — or RAM and `mappings`, when nothing else
   *   reaches them — does not fit (nothing sent then), `REFUSED`, `DISCONNECTED`, `TIMEOUT`, `PROTOCOL`.
   */
  async send(mappings: readonly ShmemMapping[]): Promise<void> {
    if (this.#phase !== "unsent") return;
    this.#checkRoom(mappings.length);
    // From here on propagate() records every mapping change and queues its message behind the
    // table (a map or unmap elsewhere while the table is on its way must not be lost).
    this.#phase = "mirroring";
    const table = this.#sendTable(mappings);
    this.#queue = this.#queue.then(() => table.catch(() => undefined));
    try {
      await table;
    } catch (err) {
      const e = asFrontendError(err, "SET_MEM_TABLE");
      if (e.code === "REFUSED") this.#options.onFatal(new FrontendError("REFUSED", `the back-end refused guest memory: ${e.message}`, e.detail, { cause: e }));
      throw e;
    }
  }

  /**
   * Before the first table: guest RAM must fit the back-end's slots, and so must the live
   * shared-memory mappings of other devices unless MEM_READ/MEM_WRITE reaches the rest — a
   * back-end that could not serve buffers in them must not start silently.
   */
  #checkRoom(mappings: number): void {
    const ramCount = this.#options.ram.memoryTable().length;
    const cap = this.#tableCap;
    if (this.#options.slotted && cap < ramCount) {
      throw new FrontendError("NEGOTIATION", `back-end has ${cap} memory slots, guest RAM needs ${ramCount}`, {
        request: "GET_MAX_MEM_SLOTS",
        expected: ramCount,
        actual: cap,
      });
    }
    if (!this.#takesMappings || (this.#options.policy === "auto" && this.#options.memRw)) return;
    const need = ramCount + mappings;
    if (need > cap) {
      throw new FrontendError(
        "NEGOTIATION",
        `back-end has ${cap} memory slots: guest RAM and the live shared-memory mappings of other devices need ${need}, and MEM_READ/MEM_WRITE is not in use (policy ${this.#options.policy})`,
        { request: "GET_MAX_MEM_SLOTS", expected: cap, actual: need },
      );
    }
  }

  async #sendTable(mappings: readonly ShmemMapping[]): Promise<void> {
    const fe = this.#options.connection;
    const ram = ramTable(this.#options.ram);
    if (this.#takesMappings) {
      for (const m of mappings) {
        if (this.#tableUsed >= this.#tableCap) break; // the rest reaches it by MEM_READ/MEM_WRITE (#checkRoom)
        this.#addPropagated(m.guestPhysAddr, mappingRegion(m), m.fd);
      }
    }
    if (!this.#options.slotted) return fe.setMemTable(...this.#fullTable());
    // Taken before the first await: mapping changes from now on are queued by propagate() and sent
    // after the table (an unmap of one of these follows its ADD; its fd stays open until then).
    const initial = [...this.#propagated.values()];
    for (const [i, r] of ram.regions.entries()) await fe.addMemReg(r, ram.fds[i] as number);
    for (const p of initial) await fe.addMemReg(p.region, p.fd);
  }

  /** RAM plus propagated mappings, at most 8 regions (SET_MEM_TABLE without CONFIGURE_MEM_SLOTS). */
  #fullTable(): [MemoryRegion[], number[]] {
    const { regions, fds } = ramTable(this.#options.ram);
    // #propagated never holds more than fits (#tableCap), so this stays within 8 regions.
    for (const p of this.#propagated.values()) {
      regions.push(p.region);
      fds.push(p.fd);
    }
    return [regions, fds];
  }

  /** Records a propagated mapping with a private dup of its fd; false when already there or the dup failed. */
  #addPropagated(gpa: bigint, region: MemoryRegion, fd: number): boolean {
    if (this.#propagated.has(gpa)) return false;
    const dup = dupCloexec(fd);
    if (dup < 0) return false;
    this.#propagated.set(gpa, { region, fd: dup });
    return true;
  }

  /** Forgets a propagated mapping and closes its dup. */
  #removePropagated(gpa: bigint): void {
    const p = this.#propagated.get(gpa);
    if (p === undefined) return;
    this.#propagated.delete(gpa);
    closeFd(p.fd);
  }

  /**
   * Why a new shared-memory mapping of another device could not reach this back-end, or
   * `undefined` when it can (propagated into its table, or served by MEM_READ/MEM_WRITE). A
   * read-only mapping is never propagated to another back-end — a memory-table entry cannot be
   * read-only, so the back-end could write it (docs/shmem.md#propagation-policy) — and reaches it only through
   * MEM_READ/MEM_WRITE, which refuse the writes.
   */
  reachRefusal(writable = true): string | undefined {
    if (this.#phase !== "mirroring") return undefined;
    const policy = this.#options.policy;
    const memRw = this.#options.memRw;
    if (policy === "mem-rw") return memRw ? undefined : "policy mem-rw but MEM_READ/MEM_WRITE was not negotiated";
    if (!writable) {
      if (policy === "auto" && memRw) return undefined;
      return "a read-only mapping is never propagated (a memory-table entry cannot be read-only) and MEM_READ/MEM_WRITE is not in use";
    }
    const propagating = this.#options.propagating;
    const used = this.#tableUsed;
    const cap = this.#tableCap;
    if (propagating && used < cap) return undefined;
    if (policy === "auto" && memRw) return undefined;
    return propagating
      ? `no free memory slot (${used} of ${cap} used) and no MEM_READ/MEM_WRITE`
      : "propagation is off and MEM_READ/MEM_WRITE was not negotiated";
  }

  /**
   * Eager propagation (docs/shmem.md#eager-propagation): puts new mappings into this back-end's memory table and
   * takes removed ones out, in order, without ever blocking the back-end channel that produced them
   * (the updates are queued on this device's own connection, each sent once `after` resolves).
   * Mappings that do not fit (no free slot, or more than 8 regions without CONFIGURE_MEM_SLOTS) are
   * not propagated. A refused addition drops that entry; a refused removal fails this device (its
   * table would keep a stale range), as does a transport failure — this device only.
   */
  propagate(events: readonly ShmemMappingEvent[], after: Promise<void>): void {
    if (this.#phase !== "mirroring" || this.#options.policy === "mem-rw") return;
    const fe = this.#options.connection;
    const slotted = this.#options.slotted;
    // The bookkeeping (#propagated) follows the events at once, in order; only the messages wait in
    // the queue. A map, unmap and re-map of the same address queued together therefore become ADD,
    // REM, ADD — never a REM of an entry a later map silently reused.
    const work: { readonly run: () => Promise<void>; readonly done?: () => void; readonly refused?: () => void }[] = [];
    for (const e of events) {
      const gpa = e.mapping.guestPhysAddr as bigint;
      if (e.kind === "map") {
        if (this.#tableUsed >= this.#tableCap || !this.#addPropagated(gpa, mappingRegion(e.mapping), e.mapping.fd)) continue;
        const p = this.#propagated.get(gpa) as PropagatedEntry;
        work.push({
          run: slotted ? () => fe.addMemReg(p.region, p.fd) : () => fe.setMemTable(...this.#fullTable()),
          // The back-end does not have it: free its slot and fd (unless an unmap already took it out).
          refused: () => {
            if (this.#propagated.get(gpa) === p) this.#removePropagated(gpa);
          },
        });
      } else {
        const p = this.#propagated.get(gpa);
        if (p === undefined) continue;
        this.#propagated.delete(gpa);
        work.push({
          run: slotted ? () => fe.remMemReg(p.region) : () => fe.setMemTable(...this.#fullTable()),
          // The private dup stays open until the REM (or the ADD queued before it) has been sent.
          done: () => closeFd(p.fd),
          // The back-end keeps translating a range that no longer holds this mapping (a later map
          // there would reach it as the old bytes): its table cannot be trusted any more.
          refused: () =>
            this.#options.onFatal(
              new FrontendError(
                "REFUSED",
                `the back-end refused to remove gpa 0x${gpa.toString(16)} from its memory table after that mapping went away: its table no longer matches guest memory`,
                { request: slotted ? "REM_MEM_REG" : "SET_MEM_TABLE" },
              ),
            ),
        });
      }
    }
    for (const w of work) {
      this.#queue = this.#queue.then(async () => {
        try {
          await after; // reply-first (docs/shmem.md#reply-first-ordering): the mapper's reply goes out before any table update
          if (this.#phase === "stopped") return;
          await w.run();
        } catch (err) {
          const e = asFrontendError(err, "PROPAGATE");
          if (isConnectionLost(e)) this.#options.onFatal(e);
          else if (e.code === "REFUSED") w.refused?.();
        } finally {
          w.done?.();
        }
      });
    }
  }

  /** Resolves when every queued table message was sent and answered. */
  settled(): Promise<void> {
    return this.#queue;
  }

  /** The device is closing: what is queued still goes out, no new change is taken. */
  drain(): void {
    if (this.#phase !== "stopped") this.#phase = "draining";
  }

  /** The device failed or closed: nothing more is sent (queued messages are skipped). */
  stop(): void {
    this.#phase = "stopped";
  }

  /** Stops and closes the private dups of every propagated mapping. */
  release(): void {
    this.stop();
    for (const gpa of [...this.#propagated.keys()]) this.#removePropagated(gpa);
  }
}
