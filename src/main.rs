fn main() -> std::process::ExitCode {
    ha_fetchers::cli::load_env();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(ha_fetchers::cli::main()),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
