fn main() -> std::process::ExitCode {
    hamlet_server::cli::main()
}
