//! Settings that can never work stop the process at start, with one line
//! naming the setting and the fix: an unknown scheme, a malformed URL, an
//! unreadable CA file. What can heal (HA or MySQL down, a wrong token, a
//! refused handshake) is not checked here: it is retried with backoff.

use std::path::Path;

use anyhow::{bail, Context};
use secrecy::ExposeSecret;
use url::Url;

use super::read_ca_file;
use super::Settings;

/// The schemes the redis crate connects with.
const REDIS_SCHEMES: &[&str] = &["redis", "rediss", "unix", "redis+unix", "valkey", "valkeys"];

/// The values of a MySQL URL's `ssl-mode`, as MySQL's own clients spell them.
const SSL_MODES: &[&str] = &[
    "disabled",
    "preferred",
    "required",
    "verify_ca",
    "verify_identity",
];

impl Settings {
    /// Every setting that can be judged without a network: errors name the
    /// setting and say what to set instead. Warns of the explicit opt-outs.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(link) = self.home_assistant()? {
            if link.rest.host_str().is_none_or(str::is_empty) {
                bail!("HA_URL has no host name: set it like http://homeassistant.local:8123");
            }
            if let Some(path) = &self.ha_ca_file {
                read_ca_file(path).context("HA_CA_FILE")?;
            }
            if !self.ha_tls_verify {
                tracing::warn!(
                    "HA_TLS_VERIFY=false: Home Assistant's certificate is not checked; anyone on the path can read the token"
                );
            }
        }
        if let Some(url) = self.redis_url() {
            let scheme = scheme_of(url).context("REDIS_URL")?;
            if !REDIS_SCHEMES.contains(&scheme.as_str()) {
                bail!("REDIS_URL: unknown scheme {scheme}://; use redis://host:6379, or rediss://host:6380 for TLS");
            }
            redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("REDIS_URL: not a Redis URL (e.g. redis://:password@host:6379/0)")?;
            if let Some(path) = &self.redis_ca_file {
                read_ca_file(path).context("REDIS_CA_FILE")?;
                if scheme != "rediss" && scheme != "valkeys" {
                    tracing::warn!(
                        "REDIS_CA_FILE is set but REDIS_URL is not rediss://: it is not used"
                    );
                }
            }
            if !self.redis_tls_verify {
                tracing::warn!("REDIS_TLS_VERIFY=false: Redis's certificate is not checked");
            }
        }
        for (name, url) in [
            ("DATABASE_URL", &self.database_url),
            ("FETCHERS_SQL_URL", &self.fetchers_sql_url),
        ] {
            if let Some(url) = url {
                mysql_url(url.expose_secret()).with_context(|| name.to_string())?;
            }
        }
        Ok(())
    }
}

/// The scheme of a URL, without ever showing the URL (it may hold a password).
fn scheme_of(url: &str) -> anyhow::Result<String> {
    match Url::parse(url) {
        Ok(u) => Ok(u.scheme().to_string()),
        Err(e) => bail!("not a URL ({e})"),
    }
}

/// A MySQL URL sqlx will take, whose TLS parameters can work.
fn mysql_url(url: &str) -> anyhow::Result<()> {
    let scheme = scheme_of(url)?;
    if scheme != "mysql" && scheme != "mariadb" {
        bail!("unknown scheme {scheme}://; use mysql://user:password@host:3306/database");
    }
    let parsed = Url::parse(url)?;
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "ssl-mode" | "sslmode" if !SSL_MODES.contains(&&*value.to_ascii_lowercase()) => {
                bail!(
                    "ssl-mode={value} is not one of {}",
                    SSL_MODES.join(", ").to_ascii_uppercase()
                )
            }
            "ssl-ca" | "sslca" => {
                read_ca_file(Path::new(&*value)).context("ssl-ca")?;
            }
            _ => {}
        }
    }
    url.parse::<sqlx::mysql::MySqlConnectOptions>()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("not a MySQL URL (e.g. mysql://user:password@host:3306/database)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn err(s: &Settings) -> String {
        format!("{:#}", s.validate().unwrap_err())
    }

    #[test]
    fn what_can_never_work_is_named_with_its_fix() {
        let mut s = Settings::embedded();
        s.ha_url = Some(Url::parse("ftp://ha.local").unwrap());
        s.ha_token = Some(SecretString::from("t"));
        assert!(err(&s).contains("http://"), "{}", err(&s));
        s.ha_url = Some(Url::parse("https://ha.local").unwrap());
        s.ha_ca_file = Some("/nonexistent/ca.pem".into());
        let e = err(&s);
        assert!(
            e.starts_with("HA_CA_FILE: cannot read /nonexistent/ca.pem"),
            "{e}"
        );

        let mut s = Settings::embedded();
        s.redis_url = Some(SecretString::from("http://pw@127.0.0.1"));
        let e = err(&s);
        assert!(
            e.contains("REDIS_URL: unknown scheme http://") && !e.contains("pw"),
            "{e}"
        );

        let mut s = Settings::embedded();
        s.database_url = Some(SecretString::from("postgres://u:secret@h/db"));
        let e = err(&s);
        assert!(
            e.starts_with("DATABASE_URL: unknown scheme postgres://") && !e.contains("secret"),
            "{e}"
        );
        s.database_url = Some(SecretString::from("mysql://u@h/db?ssl-mode=sometimes"));
        assert!(
            err(&s).contains("ssl-mode=sometimes is not one of"),
            "{}",
            err(&s)
        );
        s.database_url = Some(SecretString::from(
            "mysql://u@h/db?ssl-mode=VERIFY_CA&ssl-ca=/none.pem",
        ));
        assert!(
            err(&s).contains("DATABASE_URL: ssl-ca: cannot read /none.pem"),
            "{}",
            err(&s)
        );
        s.database_url = None;
        s.fetchers_sql_url = Some(SecretString::from("not a url"));
        assert!(
            err(&s).starts_with("FETCHERS_SQL_URL: not a URL"),
            "{}",
            err(&s)
        );

        assert!(Settings::embedded().validate().is_ok());
    }

    #[test]
    fn the_supervisor_token_reaches_ha_through_the_supervisor() {
        let mut s = Settings::embedded();
        s.supervisor_token = Some(SecretString::from("sup"));
        let link = s.home_assistant().unwrap().unwrap();
        assert_eq!(link.rest.as_str(), "http://supervisor/core");
        assert_eq!(link.ws.as_str(), "ws://supervisor/core/websocket");
        assert_eq!(link.via, "SUPERVISOR_TOKEN");
        s.ha_url = Some(Url::parse("https://ha.example").unwrap());
        s.ha_token = Some(SecretString::from("t"));
        assert_eq!(s.home_assistant().unwrap().unwrap().via, "HA_URL");
    }
}
