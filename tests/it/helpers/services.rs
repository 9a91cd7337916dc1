//! Where the services the tests use run, from the environment `scripts/test.sh`
//! sets. Redis: [`redis_url`]. MySQL: `DATABASE_URL`, which `sqlx::test` reads
//! itself. A real Home Assistant: `HA_TEST_URL` and `HA_TEST_TOKEN`, read by
//! [`real_ha`](super::real::real_ha).

/// The Redis of the tests: `REDIS_TEST_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string())
}
