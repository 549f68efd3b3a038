/*
 * C baseline for the regions benchmark: the two mmap calls of one SHMEM_MAP + SHMEM_UNMAP pair
 * into a PROT_NONE reservation, exactly as @vhostkit/regions makes them:
 *   mmap(base, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, 0)
 *   mmap(base, len, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_FIXED, -1, 0)
 * With a third argument "full", each pair also makes the other system calls the public API path
 * makes: dup of the fd (the caller's stand-in for a fresh SCM_RIGHTS fd), fstat (size check
 * before mmap), fcntl(F_GET_SEALS) (the fd must be sealed against shrinking) and close (at unmap).
 * Usage: regions-mmap <len> <pairs> [full]. Prints nanoseconds per pair (last line).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t len = strtoull(argv[1], NULL, 0);
  long pairs = strtol(argv[2], NULL, 0);
  int full = argc > 3 && strcmp(argv[3], "full") == 0;
  int fd = memfd_create("bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, (off_t)len) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) return 1;
  size_t window = len * 4;
  char *base = mmap(NULL, window, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < pairs; i++) {
    int mfd = fd;
    if (full) {
      struct stat st;
      mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (mfd < 0 || fstat(mfd, &st) != 0 || (size_t)st.st_size < len) return 1;
      if ((fcntl(mfd, F_GET_SEALS) & F_SEAL_SHRINK) == 0) return 1;
    }
    if (mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mfd, 0) == MAP_FAILED) return 1;
    if (mmap(base, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) return 1;
    if (full) close(mfd);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  printf("%.1f\n", ns / (double)pairs);
  return 0;
}
