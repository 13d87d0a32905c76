// Process-wide memory policy for Lockstep's binaries: keep freed heap memory in the process
// instead of handing it back to the kernel.
//
// Why: loading a shard and running steps allocate and free the same large buffers over and
// over (1 MiB control chunks, per-step tensors of 4 KiB - 16 MiB). glibc by default serves
// blocks above a moving threshold with mmap and trims the heap top after frees, so the next
// block of that size is fresh memory again: a page fault per 4 KiB on first touch. On this
// project's build VM a first touch costs ~3.5 s per GiB (a rewrite ~0.06 s), so a 1 GB shard
// paid for its chunk buffers many times over (BENCHMARKS.md, "Shard loading").
//
// KeepFreedMemory() fixes glibc's mmap threshold at 32 MiB (its maximum; blocks below it come
// from the heap and are reused) and raises the trim threshold to 1 GiB. Call it first thing in
// main(). Returns false when the allocator does not take the settings (another malloc, e.g.
// under AddressSanitizer): nothing else changes, only speed.
#pragma once

namespace lockstep {

bool KeepFreedMemory();

}  // namespace lockstep
