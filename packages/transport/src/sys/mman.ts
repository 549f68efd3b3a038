/**
 * Memory-management system calls (memfd, mmap, munmap, mprotect, ftruncate) for guest memory and
 * VIRTIO Shared Memory Regions. Filled in by the regions work.
 * @module
 */
export {};
