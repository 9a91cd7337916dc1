//! TLS on every link, against real TLS endpoints signed by a CA the run
//! makes: Home Assistant (the simulated one) behind a TLS-terminating
//! `socat`, `redis-server --tls-port`, and a MariaDB with `ssl_cert`. Each
//! link connects with the right CA, refuses a wrong one (and the platform's
//! roots) with an error naming the link and the reason, and connects without
//! verification only when asked. Real HA serving TLS itself is in `real_ha_tls`.

use std::path::Path;
use std::time::Duration;

use ha_fetchers::fetchers::{db, FetchRequest};
use ha_fetchers::ha::HaRest;
use ha_fetchers::sim::Sim;
use ha_fetchers::state::RedisStore;
use ha_fetchers::tls::{client_config, Trust};
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::helpers::tls::{self, pki};
use crate::helpers::{settings, TOKEN};

/// Runs the application; its base URL and what stops it.
async fn run(s: Settings) -> (String, CancellationToken) {
    let app = Application::build(s).await.expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    (base, stop)
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `cond` for up to 20 s: whether it came to hold.
async fn until<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Runs the `sql` fetcher `tls_probe` in `app`.
async fn probe(app: &Application) -> ha_fetchers::fetchers::FetchOutcome {
    app.engine()
        .fetchers()
        .run(FetchRequest {
            name: "tls_probe".into(),
            params: Default::default(),
        })
        .await
}

fn trust(ca: Option<&Path>, verify: bool) -> Trust {
    Trust {
        ca_file: ca.map(Path::to_path_buf),
        skip_verify: !verify,
    }
}

#[tokio::test]
async fn ha_behind_a_tls_proxy_is_reached_only_with_the_right_trust() {
    let pki = pki();
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let proxy = tls::proxy(&pki, sim.url().port().unwrap());
    let https = Url::parse(&format!("https://127.0.0.1:{}", proxy.port)).unwrap();
    let with = |ca: Option<&Path>, verify: bool| {
        let mut s = settings(&sim);
        s.ha_url = Some(https.clone());
        s.ha_ca_file = ca.map(Path::to_path_buf);
        s.ha_tls_verify = verify;
        s
    };
    let rest = |ca: Option<&Path>, verify: bool| {
        let tls = client_config(&trust(ca, verify)).unwrap();
        HaRest::with_tls(
            https.clone(),
            SecretString::from(TOKEN),
            Duration::from_secs(5),
            Some(tls),
        )
    };

    // The right CA: the live link (wss://) and the REST fallback both work.
    let (base, stop) = run(with(Some(&pki.ca), true)).await;
    let ok = until(|| async {
        let h = get(&base, "/api/health/websocket").await;
        h["connected"] == true && h["entity_count"].as_u64() > Some(0)
    })
    .await;
    let health = get(&base, "/api/health/websocket").await;
    assert!(ok, "not connected through the proxy: {health}");
    assert_eq!(health["tls"], "verified", "{health}");
    assert!(health["entity_count"].as_u64().unwrap() > 0, "{health}");
    assert!(!rest(Some(&pki.ca), true).states().await.unwrap().is_empty());
    stop.cancel();

    // A wrong CA, and the platform's roots: refused, health says why, and
    // the REST fallback refuses alike.
    for ca in [Some(pki.wrong_ca.as_path()), None] {
        let (base, stop) = run(with(ca, true)).await;
        let why = "certificate verify failed: unknown issuer";
        let said = until(|| async {
            let h = get(&base, "/api/health/websocket").await;
            h["last_error"].as_str().is_some_and(|e| e.contains(why))
        })
        .await;
        let health = get(&base, "/api/health/websocket").await;
        assert!(said, "{ca:?}: {health}");
        assert_eq!(health["connected"], false, "{health}");
        let err = rest(ca, true).states().await.unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        stop.cancel();
    }

    // Verification off only when asked: it connects, and health shows it.
    let (base, stop) = run(with(Some(&pki.wrong_ca), false)).await;
    let ok =
        until(|| async { get(&base, "/api/health/websocket").await["connected"] == true }).await;
    let health = get(&base, "/api/health/websocket").await;
    assert!(ok && health["tls"] == "unverified", "{health}");
    stop.cancel();
    sim.stop();
}

#[tokio::test]
async fn rediss_connects_with_the_right_ca_only() {
    let pki = pki();
    let server = tls::redis(&pki);
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    let with = |ca: Option<&Path>, verify: bool| {
        let mut s = Settings::embedded();
        s.redis_url = Some(SecretString::from(url.clone()));
        s.redis_prefix = "tls-test:".into();
        s.redis_ca_file = ca.map(Path::to_path_buf);
        s.redis_tls_verify = verify;
        s
    };

    let store = RedisStore::connect_with(&url, "tls-test:", &trust(Some(&pki.ca), true))
        .await
        .expect("rediss:// with the right CA");
    use ha_fetchers::state::Store as _;
    store.ping().await.unwrap();
    let (base, stop) = run(with(Some(&pki.ca), true)).await;
    let health = get(&base, "/api/health/redis").await;
    assert!(
        health["ok"] == true && health["backend"] == "redis",
        "{health}"
    );
    stop.cancel();

    for ca in [Some(pki.wrong_ca.as_path()), None] {
        let err = match Application::build(with(ca, true)).await {
            Ok(_) => panic!("{ca:?}: a certificate from another CA was taken"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.starts_with("REDIS_URL")
                && err.contains("certificate verify failed: unknown issuer"),
            "{err}"
        );
    }

    let (base, stop) = run(with(None, false)).await;
    assert_eq!(get(&base, "/api/health/redis").await["ok"], true);
    stop.cancel();
}

#[tokio::test]
async fn mysql_over_tls_checks_the_ca_named_in_the_url() {
    let pki = pki();
    let server = tls::mariadb(&pki);
    let url = |mode: &str, ca: &Path| {
        format!(
            "mysql://root@127.0.0.1:{}/hf?ssl-mode={mode}&ssl-ca={}",
            server.port,
            ca.display()
        )
    };
    let verified = url("VERIFY_IDENTITY", &pki.ca);
    let admin = db::pool(&verified.replace("/hf?", "/mysql?")).unwrap();
    sqlx::query("CREATE DATABASE hf")
        .execute(&admin)
        .await
        .unwrap();
    let cipher: (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(
        !cipher.1.is_empty(),
        "the session is not encrypted: {cipher:?}"
    );
    let pool = db::pool(&verified).unwrap();
    db::migrate(&pool).await.unwrap();
    sqlx::query("INSERT INTO data_fetchers (name, source, params) VALUES ('tls_probe', 'sql', ?)")
        .bind(json!({"query": "SELECT 41 + 1 AS answer"}).to_string())
        .execute(&pool)
        .await
        .unwrap();

    // DATABASE_URL and FETCHERS_SQL_URL over TLS, checked against the CA.
    let with = |database: String, sql: String| {
        let mut s = Settings::embedded();
        s.database_url = Some(SecretString::from(database));
        s.fetchers_sql_url = Some(SecretString::from(sql));
        s
    };
    let app = Application::build(with(verified.clone(), verified.clone()))
        .await
        .expect("MySQL over TLS with the right CA");
    let out = probe(&app).await;
    assert_eq!(
        out.result.as_deref().ok(),
        Some(&json!([{"answer": 42}])),
        "{:?}",
        out.result
    );
    app.shutdown_token().cancel();

    // A wrong CA is refused at start, loudly: no quiet fallback to the files.
    let wrong = url("VERIFY_CA", &pki.wrong_ca);
    let err = match Application::build(with(wrong.clone(), verified.clone())).await {
        Ok(_) => panic!("a certificate from another CA was taken"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("a wrong CA for DATABASE_URL: {err}");
    assert!(
        err.starts_with("DATABASE_URL is set but cannot be used") && err.contains("certificate"),
        "{err}"
    );
    // FETCHERS_SQL_URL with the wrong CA fails its fetchers, alone, naming why.
    let app = Application::build(with(verified.clone(), wrong))
        .await
        .unwrap();
    let out = probe(&app).await;
    let err = out.result.unwrap_err().to_string();
    eprintln!("a wrong CA for FETCHERS_SQL_URL: {err}");
    assert!(err.contains("certificate"), "{err}");
    app.shutdown_token().cancel();

    // ssl-mode=REQUIRED encrypts without checking: verification off, as asked.
    let unchecked = url("REQUIRED", &pki.wrong_ca);
    Application::build(with(unchecked.clone(), unchecked))
        .await
        .expect("ssl-mode=REQUIRED does not check the certificate");
}

/// No quiet fallback to the files when `DATABASE_URL` itself is wrong (a
/// login refused, a database that does not exist); MySQL merely down still
/// serves them until it answers.
#[tokio::test]
async fn a_database_url_that_cannot_work_stops_the_start_but_mysql_down_does_not() {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the MySQL tests");
    let mut url = Url::parse(&base).unwrap();
    let build = |u: String| async move {
        let mut s = Settings::embedded();
        s.database_url = Some(SecretString::from(u));
        Application::build(s).await.map_err(|e| format!("{e:#}"))
    };
    url.set_path("/ha_fetchers_no_such_database");
    let err = build(url.to_string())
        .await
        .err()
        .expect("an unknown database is refused");
    assert!(
        err.starts_with("DATABASE_URL is set but cannot be used")
            && err.contains("Unknown database"),
        "{err}"
    );
    url.set_path("/mysql");
    url.set_username("ha_fetchers_nobody").unwrap();
    url.set_password(Some("wrong")).unwrap();
    let err = build(url.to_string())
        .await
        .err()
        .expect("a refused login is refused");
    assert!(
        err.contains("Access denied") && !err.contains("wrong@"),
        "{err}"
    );

    let app = build("mysql://root@127.0.0.1:1/down".into())
        .await
        .expect("MySQL down serves the shipped files");
    assert!(app.engine().fetchers().get("ha_lights_on").is_some());
    app.shutdown_token().cancel();
}
