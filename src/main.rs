fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`mlvf results | head`) as Unix tools do, instead of
    // panicking on the failed write (Rust ignores SIGPIPE by default).
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    mlvf::cli::main_with(mlvf::stages::StageRegistry::product())
}
