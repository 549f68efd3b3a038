/*
 * Bare C virtqueue loops: the baselines of tools/bench/src/virtqueue.ts, one per mode.
 *
 * Queue size 256 (packed: chains x descs-per-chain, 256 or 255, so that one round is one lap) in
 * mmapped memfd memory; each round moves a full ring's worth of chains through it.
 *
 * split-device (default): the "driver" makes the chains available (avail.idx += chains; the ring
 *   slots and descriptors are laid once), and the device pops them (acquire load of avail.idx,
 *   head/next/len/loop checks, reads addr/len/flags of every descriptor), writes one used element
 *   per chain, publishes used.idx (release store), then a full fence and a read of avail.flags
 *   (the NO_INTERRUPT decision).
 * packed-device: the "driver" marks every descriptor available for this lap (flags, and the head's
 *   len the device overwrote; first head last, release), and the device pops each list (acquire
 *   load of the head's flags, wrap/len/loop/ID checks, reads every descriptor, ID state), writes one
 *   used descriptor per list (id, len; flags of all but the first, then the first with a release
 *   store), then a full fence and a read of the driver area's flags (the interrupt decision).
 * split-driver / packed-driver: the driver adds every chain (free descriptor list or free buffer
 *   IDs, descriptors written, avail slot / head flags held back), publishes (release store, full
 *   fence, the kick decision from the used flags / device area), a bare "device" returns them all
 *   in order, and the driver collects them (acquire load, ID checks, frees descriptors or IDs, keeps
 *   each chain's token).
 *
 * The library benchmark (src/virtqueue-node.mjs) performs the same ring operations per mode.
 * Usage: virtqueue-ring <descs-per-chain 1|3> <milliseconds> [mode]. Prints chains/s.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define Q 256
#define NEXT 1
#define WRITE 2
#define AVAIL 0x80
#define USED 0x8000
struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
struct pdesc { uint64_t addr; uint32_t len; uint16_t id; uint16_t flags; };

static int per, chains, qp;
static uint8_t *mem;
static uint64_t sum;
static int notify;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- split ring: descriptor table at 0, avail ring at 16Q, used ring after it ---- */
static volatile struct desc *sdesc;
static uint16_t *avail;
static uint32_t *used;
static uint16_t *used16;

static int split_device_round(void) {
  static uint16_t last_avail, next_used;
  __atomic_store_n(&avail[1], (uint16_t)(avail[1] + chains), __ATOMIC_RELEASE); /* driver */
  uint16_t ai = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
  uint16_t n = ai - last_avail;
  if (n > Q) exit(2);
  for (uint16_t k = 0; k < n; k++) {
    uint16_t head = avail[2 + ((last_avail + k) & (Q - 1))];
    if (head >= Q) exit(3);
    uint16_t d = head;
    uint32_t wlen = 0;
    for (int count = 0;;) {
      if (++count > Q) exit(4);
      uint16_t f = sdesc[d].flags;
      uint32_t len = sdesc[d].len;
      if (len == 0) exit(5);
      sum += sdesc[d].addr + len;
      if (f & WRITE) wlen += len;
      if (!(f & NEXT)) break;
      d = sdesc[d].next;
      if (d >= Q) exit(6);
    }
    uint16_t slot = next_used & (Q - 1);
    used[1 + 2 * slot] = head;
    used[2 + 2 * slot] = wlen;
    next_used++;
  }
  last_avail = ai;
  __atomic_store_n(&used16[1], next_used, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  notify += (__atomic_load_n(&avail[0], __ATOMIC_ACQUIRE) & 1) == 0;
  return n;
}

/* the split driver's private state */
static uint16_t free_next[Q], chain_len[Q], chain_last[Q], free_head, num_free = Q, avail_shadow, avail_pub, last_used;
static uint8_t in_flight[Q];
static int tokens[Q], out_tokens[Q];

static int split_driver_round(void) {
  for (int c = 0; c < chains; c++) {
    if (num_free < per) exit(7);
    uint16_t head = free_head, d = head;
    for (int i = 0; i < per; i++) {
      uint16_t nx = free_next[d];
      int last = i == per - 1;
      sdesc[d].addr = 0x10000 + (uint64_t)(c * per + i) * 64;
      sdesc[d].len = 64;
      sdesc[d].flags = (i > 0 ? WRITE : 0) | (last ? 0 : NEXT);
      sdesc[d].next = last ? 0 : nx;
      if (!last) d = nx;
    }
    free_head = free_next[d];
    num_free -= per;
    chain_len[head] = per, chain_last[head] = d, in_flight[head] = 1, tokens[head] = c;
    avail[2 + (avail_shadow & (Q - 1))] = head;
    avail_shadow++;
  }
  __atomic_store_n(&avail[1], avail_shadow, __ATOMIC_SEQ_CST);
  uint16_t old = avail_pub;
  avail_pub = avail_shadow;
  notify += avail_shadow != old && (__atomic_load_n(&used16[0], __ATOMIC_ACQUIRE) & 1) == 0;
  /* bare device: every available chain used, in order */
  uint16_t ui = used16[1];
  for (uint16_t i = old; i != avail_shadow; i++, ui++) {
    uint16_t slot = ui & (Q - 1);
    used[1 + 2 * slot] = avail[2 + (i & (Q - 1))];
    used[2 + 2 * slot] = (per - 1) * 64;
  }
  __atomic_store_n(&used16[1], ui, __ATOMIC_RELEASE);
  /* driver: collect */
  uint16_t p = __atomic_load_n(&used16[1], __ATOMIC_ACQUIRE) - last_used;
  if (p > Q) exit(8);
  for (int k = 0; k < p; k++) {
    uint16_t slot = last_used & (Q - 1);
    uint32_t id = used[1 + 2 * slot], len = used[2 + 2 * slot];
    if (id >= Q || !in_flight[id]) exit(9);
    in_flight[id] = 0;
    out_tokens[k] = tokens[id];
    sum += len;
    free_next[chain_last[id]] = free_head;
    free_head = id;
    num_free += chain_len[id];
    last_used++;
  }
  return p;
}

/* ---- packed ring: descriptor ring at 0, driver area at 16 qp, device area after it ---- */
static volatile struct pdesc *pdesc;
static uint16_t *drv_event, *dev_event;
static uint16_t base_flags[Q];
static uint8_t id_state[Q];
static uint16_t id_count[Q], pend_pos[Q], pend_flags[Q], pend_ids[Q];

static int packed_device_round(void) {
  static int drv_wrap = 1, avail_idx, avail_wrap = 1, used_idx, used_wrap = 1;
  /* driver: this lap's available bits on every descriptor, the first head last */
  uint16_t bits = drv_wrap ? AVAIL : USED;
  for (int d = qp - 1; d > 0; d--) {
    if (d % per == 0) pdesc[d].len = 64;
    pdesc[d].flags = base_flags[d] | bits;
  }
  pdesc[0].len = 64;
  __atomic_store_n(&pdesc[0].flags, base_flags[0] | bits, __ATOMIC_RELEASE);
  drv_wrap ^= 1;
  /* device: pop */
  int n = 0, held = 0, pend = 0;
  while (n < chains) {
    uint16_t f = __atomic_load_n(&pdesc[avail_idx].flags, __ATOMIC_ACQUIRE);
    if (((f >> 7) & 1) != avail_wrap || ((f >> 15) & 1) == avail_wrap) break;
    int pos = avail_idx, count = 0;
    uint32_t wlen = 0;
    uint16_t id;
    for (;;) {
      if (++count > qp - held) exit(4);
      uint16_t fl = count == 1 ? f : pdesc[pos].flags;
      if (count > 1 && (((fl >> 7) & 1) != avail_wrap || ((fl >> 15) & 1) == avail_wrap)) exit(10);
      uint32_t len = pdesc[pos].len;
      if (len == 0) exit(5);
      sum += pdesc[pos].addr + len;
      if (fl & WRITE) wlen += len;
      id = pdesc[pos].id;
      if (++pos == qp) pos = 0, avail_wrap ^= 1;
      if (!(fl & NEXT)) break;
    }
    if (id >= qp || id_state[id]) exit(11);
    id_state[id] = 1, id_count[id] = count, held += count;
    avail_idx = pos;
    /* used descriptor: id and len now, flags at publish */
    pend_pos[pend] = used_idx, pend_ids[pend] = id, pend_flags[pend] = (used_wrap ? AVAIL | USED : 0) | (wlen ? WRITE : 0);
    pdesc[used_idx].id = id;
    pdesc[used_idx].len = wlen;
    pend++;
    used_idx += count;
    if (used_idx >= qp) used_idx -= qp, used_wrap ^= 1;
    n++;
  }
  for (int i = pend - 1; i > 0; i--) pdesc[pend_pos[i]].flags = pend_flags[i];
  __atomic_store_n(&pdesc[pend_pos[0]].flags, pend_flags[0], __ATOMIC_SEQ_CST);
  for (int i = 0; i < pend; i++) id_state[pend_ids[i]] = 0;
  notify += (__atomic_load_n(&drv_event[1], __ATOMIC_SEQ_CST) & 3) != 1;
  return n;
}

/* the packed driver's private state */
static uint16_t pfree_next[Q], pfree_head, pnum_free, pavail_idx, pused_idx;
static int pavail_wrap = 1, pused_wrap = 1, dev_used_idx, dev_used_wrap = 1;

static int packed_driver_round(void) {
  int pend = 0;
  for (int c = 0; c < chains; c++) {
    if (pnum_free < per) exit(7);
    uint16_t id = pfree_head, head = pavail_idx, head_flags = 0;
    for (int i = 0; i < per; i++) {
      uint16_t fl = (pavail_wrap ? AVAIL : USED) | (i > 0 ? WRITE : 0) | (i < per - 1 ? NEXT : 0);
      pdesc[pavail_idx].addr = 0x10000 + (uint64_t)(c * per + i) * 64;
      pdesc[pavail_idx].len = 64;
      pdesc[pavail_idx].id = id;
      if (i == 0) head_flags = fl;
      else pdesc[pavail_idx].flags = fl;
      if (++pavail_idx == qp) pavail_idx = 0, pavail_wrap ^= 1;
    }
    pfree_head = pfree_next[id];
    pnum_free -= per;
    id_count[id] = per, id_state[id] = 1, tokens[id] = c;
    pend_pos[pend] = head, pend_flags[pend] = head_flags, pend_ids[pend] = id;
    pend++;
  }
  for (int i = pend - 1; i > 0; i--) pdesc[pend_pos[i]].flags = pend_flags[i];
  __atomic_store_n(&pdesc[pend_pos[0]].flags, pend_flags[0], __ATOMIC_SEQ_CST);
  for (int i = 0; i < pend; i++) id_state[pend_ids[i]] = 2;
  notify += (__atomic_load_n(&dev_event[1], __ATOMIC_ACQUIRE) & 3) != 1;
  /* bare device: every list used, in order; the first used descriptor's flags last */
  int first = dev_used_idx;
  uint16_t first_flags = 0;
  for (int c = 0; c < chains; c++) {
    uint16_t fl = (dev_used_wrap ? AVAIL | USED : 0) | (per > 1 ? WRITE : 0);
    pdesc[dev_used_idx].len = (per - 1) * 64;
    if (c == 0) first_flags = fl;
    else pdesc[dev_used_idx].flags = fl;
    dev_used_idx += per;
    if (dev_used_idx >= qp) dev_used_idx -= qp, dev_used_wrap ^= 1;
  }
  __atomic_store_n(&pdesc[first].flags, first_flags, __ATOMIC_RELEASE);
  /* driver: collect */
  int k = 0;
  for (; k < qp; k++) {
    uint16_t f = __atomic_load_n(&pdesc[pused_idx].flags, __ATOMIC_ACQUIRE);
    if ((f >> 15) != pused_wrap || ((f >> 7) & 1) != pused_wrap) break;
    uint16_t id = pdesc[pused_idx].id;
    if (id >= qp || id_state[id] != 2) exit(9);
    sum += (f & WRITE) ? pdesc[pused_idx].len : 0;
    out_tokens[k] = tokens[id];
    id_state[id] = 0;
    pfree_next[id] = pfree_head;
    pfree_head = id;
    pnum_free += id_count[id];
    pused_idx += id_count[id];
    if (pused_idx >= qp) pused_idx -= qp, pused_wrap ^= 1;
  }
  return k;
}

int main(int argc, char **argv) {
  per = argc > 1 ? atoi(argv[1]) : 1;
  double ms = argc > 2 ? atof(argv[2]) : 500;
  const char *mode = argc > 3 ? argv[3] : "split-device";
  size_t bytes = 1 << 20;
  int fd = memfd_create("vq-bench", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, bytes) != 0) return 1;
  mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) return 1;
  memset(mem, 0, bytes);
  chains = Q / per;
  qp = chains * per;
  int (*round)(void);
  if (strncmp(mode, "split", 5) == 0) {
    sdesc = (struct desc *)mem;
    avail = (uint16_t *)(mem + 16 * Q);
    used = (uint32_t *)(mem + ((16 * Q + 6 + 2 * Q + 3) & ~3));
    used16 = (uint16_t *)used;
    for (int i = 0; i < Q; i++) free_next[i] = i + 1;
    if (strcmp(mode, "split-device") == 0) {
      for (int c = 0; c < chains; c++)
        for (int j = 0; j < per; j++) {
          int d = c * per + j;
          sdesc[d].addr = 0x10000 + (uint64_t)d * 64;
          sdesc[d].len = 64;
          sdesc[d].flags = (j < per - 1 ? NEXT : 0) | (j > 0 ? WRITE : 0);
          sdesc[d].next = j < per - 1 ? d + 1 : 0;
        }
      for (int s = 0; s < Q; s++) avail[2 + s] = (uint16_t)(per * (s % chains));
      round = split_device_round;
    } else round = split_driver_round;
  } else {
    pdesc = (struct pdesc *)mem;
    drv_event = (uint16_t *)(mem + 16 * qp);
    dev_event = drv_event + 2;
    for (int i = 0; i < qp; i++) pfree_next[i] = i + 1;
    pnum_free = qp;
    /* a fresh ring: every descriptor used in the lap before the first */
    for (int d = 0; d < qp; d++) pdesc[d].flags = 0;
    if (strcmp(mode, "packed-device") == 0) {
      for (int c = 0; c < chains; c++)
        for (int j = 0; j < per; j++) {
          int d = c * per + j;
          pdesc[d].addr = 0x10000 + (uint64_t)d * 64;
          pdesc[d].len = 64;
          pdesc[d].id = c;
          base_flags[d] = (j < per - 1 ? NEXT : 0) | (j > 0 ? WRITE : 0);
        }
      round = packed_device_round;
    } else round = packed_driver_round;
  }

  uint64_t total = 0;
  double t0 = 0, end = 0;
  for (int phase = 0; phase < 2; phase++) {
    double start = now_ms();
    end = start + (phase == 0 ? 200 : ms);
    t0 = start;
    total = 0;
    while (now_ms() < end)
      for (int r = 0; r < 64; r++) {
        int n = round();
        if (n != chains) return 12;
        total += n;
      }
  }
  double secs = (now_ms() - t0) / 1e3;
  fprintf(stderr, "checksum %llu notify %d\n", (unsigned long long)sum, notify);
  if (notify == 0) return 13;
  printf("%.0f\n", total / secs);
  return 0;
}
