fn main() -> std::process::ExitCode {
    mlvf::cli::main_with(mlvf::stages::StageRegistry::product())
}
