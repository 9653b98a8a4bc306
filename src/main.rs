fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`mlvf results | head`) as Unix tools do, instead of
    // panicking on the failed write (Rust ignores SIGPIPE by default).
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    mlvf::cli::main_with(mlvf::stages::StageRegistry::product())
}

/// Training allocates and frees the same few-megabyte tensors every step. glibc serves blocks
/// above its mmap threshold (128 KiB to start) with fresh mappings and unmaps them on free, so
/// every step page-faults and zeroes them again: a third of a tiny model's training step was
/// kernel time (perf, 2026-12-03). Serving them from the heap and keeping freed memory there
/// (these settings given as glibc's MALLOC_*_ environment variables) made the LM's training
/// step 14 % faster on 2 cores with bit-identical weights. Memory is returned when the
/// task process exits, which is soon: every task is its own process.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        // glibc's largest accepted mmap threshold (32 MiB on 64-bit); bigger blocks still map.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
