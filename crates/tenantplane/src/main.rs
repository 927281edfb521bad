//! `tenantplane`: the server and its command-line client. This crate is the composition
//! root only: it parses arguments, loads configuration and calls into the library crates.

mod cli;
mod demo;
mod fhir;
mod flags;
mod migrate;
mod output;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc for every allocation of the process, SQLite's included (unprefixed `malloc`),
/// with a background thread purging unused pages: glibc's malloc kept freed memory (≈ 200
/// KiB per tenant ever touched, with a live heap a tenth of that). Its build-time settings
/// (two arenas, 1 s decay) are in `.cargo/config.toml`; see docs/benchmarks.md, memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Return freed memory to the system while the server idles, not only when it next
    // allocates.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: jemalloc background purging unavailable: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (SQLite, Argon2, validation) is bounded by its own semaphores;
        // this caps the threads (and their stacks) a burst can leave behind.
        .max_blocking_threads(64)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = cli::exit_code(&e);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
