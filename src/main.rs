fn main() -> std::process::ExitCode {
    mlvf::cli::main()
}
