/// How long leftover blocking work (a render finishing at its deadline) may
/// hold up the exit once the service has stopped.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// Every runtime thread's stack, renders' blocking threads included: a known
/// size, twice what the deepest value a template may build needs (tokio's own
/// 2 MiB default is what `bounds`' tests show is enough).
const THREAD_STACK: usize = 4 * 1024 * 1024;

fn main() -> std::process::ExitCode {
    ha_fetchers::cli::load_env();
    ha_fetchers::memory::tune();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build();
    match rt {
        Ok(rt) => {
            let code = rt.block_on(ha_fetchers::cli::main());
            rt.shutdown_timeout(RUNTIME_SHUTDOWN);
            code
        }
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
