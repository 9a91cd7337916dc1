/// How long leftover blocking work (a render finishing at its deadline) may
/// hold up the exit once the service has stopped.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> std::process::ExitCode {
    ha_fetchers::cli::load_env();
    match tokio::runtime::Runtime::new() {
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
