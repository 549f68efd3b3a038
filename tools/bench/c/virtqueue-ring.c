/*
 * Bare C split-ring device loop: the baseline of tools/bench/src/virtqueue.ts.
 *
 * Queue size 256 in mmapped memfd memory. Each round the "driver" makes a full ring's worth of
 * chains available (avail.idx += chains; the ring slots and descriptors are laid once), and the
 * device pops them (acquire load of avail.idx, head/next/len/loop checks, reads addr/len/flags of
 * every descriptor), writes one used element per chain, publishes used.idx (release store), then a
 * full fence and a read of avail.flags (the NO_INTERRUPT decision) — the same ring operations the
 * library performs. Usage: virtqueue-ring <descs-per-chain 1|3> <milliseconds>. Prints chains/s.
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
struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  int per = argc > 1 ? atoi(argv[1]) : 1;
  double ms = argc > 2 ? atof(argv[2]) : 500;
  size_t bytes = 1 << 20;
  int fd = memfd_create("vq-bench", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, bytes) != 0) return 1;
  uint8_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) return 1;
  memset(mem, 0, bytes);
  volatile struct desc *desc = (struct desc *)mem;
  uint16_t *avail = (uint16_t *)(mem + 16 * Q);
  uint32_t *used = (uint32_t *)(mem + ((16 * Q + 6 + 2 * Q + 3) & ~3));
  uint16_t *used16 = (uint16_t *)used;
  int chains = Q / per;
  for (int c = 0; c < chains; c++)
    for (int j = 0; j < per; j++) {
      int d = c * per + j;
      desc[d].addr = 0x10000 + (uint64_t)d * 64;
      desc[d].len = 64;
      desc[d].flags = (j < per - 1 ? 1 : 0) | (j > 0 ? 2 : 0);
      desc[d].next = j < per - 1 ? d + 1 : 0;
    }
  for (int s = 0; s < Q; s++) avail[2 + s] = (uint16_t)(per * (s % chains));

  uint16_t last_avail = 0, next_used = 0;
  uint64_t sum = 0, total = 0;
  int notify = 0;
  double t0 = 0, end = 0;
  for (int phase = 0; phase < 2; phase++) {
    double start = now_ms();
    end = start + (phase == 0 ? 200 : ms);
    t0 = start;
    total = 0;
    while (now_ms() < end) {
      for (int r = 0; r < 64; r++) {
        /* driver: publish a ring's worth of chains */
        __atomic_store_n(&avail[1], (uint16_t)(avail[1] + chains), __ATOMIC_RELEASE);
        /* device: pop */
        uint16_t ai = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
        uint16_t n = ai - last_avail;
        if (n > Q) return 2;
        for (uint16_t k = 0; k < n; k++) {
          uint16_t head = avail[2 + ((last_avail + k) & (Q - 1))];
          if (head >= Q) return 3;
          uint16_t d = head;
          uint32_t wlen = 0;
          for (int count = 0;; ) {
            if (++count > Q) return 4;
            uint16_t f = desc[d].flags;
            uint32_t len = desc[d].len;
            if (len == 0) return 5;
            sum += desc[d].addr + len;
            if (f & 2) wlen += len;
            if (!(f & 1)) break;
            d = desc[d].next;
            if (d >= Q) return 6;
          }
          uint16_t slot = next_used & (Q - 1);
          used[1 + 2 * slot] = head;
          used[2 + 2 * slot] = wlen;
          next_used++;
        }
        last_avail = ai;
        /* device: publish used, full fence, notification decision */
        __atomic_store_n(&used16[1], next_used, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        notify += (__atomic_load_n(&avail[0], __ATOMIC_ACQUIRE) & 1) == 0;
        total += n;
      }
    }
  }
  double secs = (now_ms() - t0) / 1e3;
  fprintf(stderr, "checksum %llu notify %d\n", (unsigned long long)sum, notify);
  printf("%.0f\n", total / secs);
  return 0;
}
