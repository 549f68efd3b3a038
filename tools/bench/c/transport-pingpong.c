/* C baseline for tools/bench/src/transport.ts: the same vhost-user ping-pong as the vhostkit
 * benchmark, between two processes over an AF_UNIX socketpair.
 *   request: 12-byte header + 8-byte payload (optionally 1 eventfd attached to the header)
 *   reply:   12-byte header + u64
 * The server reads the header (with its fds) first, then exactly `size` payload bytes, as vhostkit
 * does. Prints the mean nanoseconds per round trip on stdout.
 * Usage: transport-pingpong <round-trips> <fds: 0|1> [spin]   (C client and C server)
 *        transport-pingpong serve                            (C server only, on fd 3, for a vhostkit client)
 * With "spin" both ends busy-poll (MSG_DONTWAIT, retry on EAGAIN) instead of sleeping in recvmsg:
 * the best a C peer can do on a machine with a free core, and the fair match for vhostkit's
 * spinning reactor under Bun.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int spin = 0;

static int recv_exact(int fd, uint8_t *buf, size_t len, int *got_fd) {
  size_t off = 0;
  while (off < len) {
    struct iovec iov = {buf + off, len - off};
    char ctl[CMSG_SPACE(8 * sizeof(int))];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | (spin ? MSG_DONTWAIT : 0));
    if (n < 0 && spin && errno == EAGAIN) continue;
    if (n <= 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && got_fd) memcpy(got_fd, CMSG_DATA(c), sizeof(int));
    off += (size_t)n;
  }
  return 0;
}

static int send_msg(int fd, const uint8_t *buf, size_t len, int pass_fd) {
  struct iovec iov = {(void *)buf, len};
  char ctl[CMSG_SPACE(sizeof(int))];
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (pass_fd >= 0) {
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  return sendmsg(fd, &m, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void serve(int sock) {
  uint8_t hdr[12], body[8], reply[20];
  for (;;) {
    int fd = -1;
    if (recv_exact(sock, hdr, 12, &fd) != 0) _exit(0);
    uint32_t size;
    memcpy(&size, hdr + 8, 4);
    if (size != 8 || recv_exact(sock, body, 8, NULL) != 0) _exit(2);
    if (fd >= 0) close(fd);
    uint32_t flags = 0x5, rsize = 8;
    memcpy(reply, hdr, 4);
    memcpy(reply + 4, &flags, 4);
    memcpy(reply + 8, &rsize, 4);
    memset(reply + 12, 0, 8);
    if (send_msg(sock, reply, 20, -1) != 0) _exit(3);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "serve") == 0) serve(3);
  long n = argc > 1 ? atol(argv[1]) : 10000;
  int with_fd = argc > 2 ? atoi(argv[2]) : 0;
  spin = argc > 3 && strcmp(argv[3], "spin") == 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    serve(sv[1]);
  }
  close(sv[1]);
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  uint8_t req[20] = {0}, rep[20];
  uint32_t request = 1, flags = 1, size = 8;
  memcpy(req, &request, 4);
  memcpy(req + 4, &flags, 4);
  memcpy(req + 8, &size, 4);
  struct timespec t0, t1;
  /* Round trips before the timed ones: VHOSTKIT_BENCH_RT_WARM (as the vhostkit client), else n / 10 + 1. */
  const char *warm_env = getenv("VHOSTKIT_BENCH_RT_WARM");
  long warm = warm_env ? atol(warm_env) : n / 10 + 1;
  for (long i = 0; i < warm; i++) {
    send_msg(sv[0], req, 20, with_fd ? efd : -1);
    recv_exact(sv[0], rep, 20, NULL);
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    if (send_msg(sv[0], req, 20, with_fd ? efd : -1) != 0) return 4;
    if (recv_exact(sv[0], rep, 12, NULL) != 0 || recv_exact(sv[0], rep + 12, 8, NULL) != 0) return 5;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(sv[0]);
  waitpid(pid, NULL, 0);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  printf("%.1f\n", ns / (double)n);
  return 0;
}
