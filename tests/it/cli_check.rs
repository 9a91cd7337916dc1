//! `ha-fetchers check` on files: one line per problem naming the row or
//! template and the field, and a non-zero exit.

use std::process::Command;

use crate::helpers::fixtures::copy_dir;

fn check(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"))
        .arg("check")
        .env("FETCHERS_DIR", dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn shipped_definitions_pass_and_bad_ones_are_named() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    let (ok, out) = check(&shipped);
    assert!(ok, "shipped definitions are valid: {out}");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped, dir.path());
    std::fs::write(dir.path().join("bad_source.toml"), "source = \"magic\"\n").unwrap();
    std::fs::write(dir.path().join("prompts/broken.j2"), "{% for x in %}\n").unwrap();
    std::fs::write(
        dir.path().join("prompts/typo.j2"),
        "{{ fetch(\"ha_lights_of\") }}\n",
    )
    .unwrap();
    // The sources of the past: windows, modes, stats and periods.
    let past = [
        ("bad_window", "source = \"history\"\n[params]\nsince = \"40d\"\ndomain = \"light\"\n", "HISTORY_MAX_WINDOW allows 31 d"),
        ("bad_mode", "source = \"history\"\n[params]\nsince = \"1h\"\ndomain = \"light\"\nmode = \"diary\"\n", "unknown variant `diary`"),
        ("bad_since", "source = \"logbook\"\n[params]\nsince = \"last tuesday\"\n", "since: \"last tuesday\" is not a time"),
        ("bad_stat", "source = \"statistics\"\n[params]\nstatistic_id = \"sensor.energy\"\nstat = \"median\"\n", "unknown variant `median`"),
        ("bad_period", "source = \"statistics\"\n[params]\nstatistic_id = \"sensor.energy\"\nperiod = \"fortnight\"\n", "use today, yesterday"),
    ];
    for (name, body, _) in past {
        std::fs::write(dir.path().join(format!("{name}.toml")), body).unwrap();
    }
    let (ok, out) = check(dir.path());
    assert!(!ok, "problems give a non-zero exit");
    for (name, _, why) in past {
        assert!(
            out.lines()
                .any(|l| l.contains(name) && l.contains("params") && l.contains(why)),
            "{name}: {why}: {out}"
        );
    }
    let out: String = out
        .lines()
        .filter(|l| !past.iter().any(|(name, _, _)| l.contains(name)))
        .map(|l| format!("{l}\n"))
        .collect();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad_source") && l.contains("source")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("broken") && l.contains("body")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("typo") && l.contains("ha_lights_of")),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "one line per problem: {out}");
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn check_prepares_sql_rows_on_the_live_database(pool: sqlx::MySqlPool) {
    crate::helpers::fixtures::reminders_example(&pool).await;
    sqlx::raw_sql(
        r#"INSERT INTO data_fetchers (name, source, params) VALUES
           ('overdue', 'sql', '{"query": "SELECT title FROM remindrs WHERE due_at < NOW()"}'),
           ('writes', 'sql', '{"query": "DELETE FROM reminders"}')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"))
        .arg("check")
        .env(
            "DATABASE_URL",
            crate::helpers::services::mysql_url_of(&pool),
        )
        .env_remove("FETCHERS_SQL_URL")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem: {text}");
    assert!(
        lines.iter().any(
            |l| l.starts_with("fetcher overdue: field params.query: MySQL: Table")
                && l.contains("remindrs")
        ),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fetcher writes: field params.query: DELETE is not a read")),
        "{text}"
    );
    // The registry's own credentials read these rows: check says so.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sql fetcher rows read with DATABASE_URL's credentials")
            && err.contains("set FETCHERS_SQL_URL to a read-only user"),
        "{err}"
    );
}
