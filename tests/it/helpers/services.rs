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

/// `DATABASE_URL` pointed at the database of `pool` (a `sqlx::test`
/// database), for a process or `Settings` of its own.
pub fn mysql_url_of(pool: &sqlx::MySqlPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the MySQL tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(
        pool.connect_options()
            .get_database()
            .expect("a test database"),
    );
    url.to_string()
}
