// glibc's allocator kept ~700 MB resident with 256 phones pushing (one arena per thread,
// fragmented by request-sized JSON trees); mimalloc returns freed pages to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    purge_freed_memory_at_once();
    hamlet_server::cli::main()
}

/// mimalloc keeps freed pages for `purge_delay` ms (10) before handing them back; with 256
/// phones that held 160-200 MB resident against 120-150 MB purging at once. Purging at once
/// costs about 15 % of the server's CPU while pushing (page faults; docs/benchmarks.md): memory
/// is the target here. `MIMALLOC_PURGE_DELAY` set in the environment still wins.
fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc 2's `mi_option_t` (libmimalloc-sys names no constant).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called first thing in main, before any other thread exists (mimalloc's
        // option setters are not thread safe).
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    }
}
