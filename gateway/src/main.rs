fn main() -> std::process::ExitCode {
    osprey::cli::main()
}
