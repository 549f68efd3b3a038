/** Dirty-log test helpers: the pages a range covers, and the pages a device writes of a queue's rings. */
import { LOG_PAGE_SIZE, type DriverQueue } from "../../src/index.js";

/** The page addresses of `[addr, addr + len)`. */
export function pagesOf(addr: bigint, len: number): number[] {
  const out: number[] = [];
  for (let p = Math.floor(Number(addr) / LOG_PAGE_SIZE); p <= Math.floor((Number(addr) + len - 1) / LOG_PAGE_SIZE); p++) out.push(p * LOG_PAGE_SIZE);
  return out;
}

/** Sorted, without duplicates. */
export const union = (...lists: number[][]): number[] => [...new Set(lists.flat())].sort((a, b) => a - b);

/** What the device writes of `q`'s rings: split, the used ring; packed, the descriptor ring and the device area. */
export function ringPages(q: DriverQueue): number[] {
  return q.packed ? union(pagesOf(q.rings.desc, 16 * q.size), pagesOf(q.rings.used, 4)) : pagesOf(q.rings.used, 6 + 8 * q.size);
}
