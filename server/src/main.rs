// glibc's allocator kept ~700 MB resident with 256 phones pushing (one arena per thread,
// fragmented by request-sized JSON trees); mimalloc returns freed pages to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hamlet_server::cli::main()
}
