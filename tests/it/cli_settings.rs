//! Every command reads the same settings the same way (flags, environment,
//! `.env`), and a setting that can never work ends any of them at start:
//! a non-zero exit and one `error:` line naming the setting and the fix.

use std::process::{Command, Stdio};

use crate::helpers::proc::demo_address;
use crate::helpers::tls::free_port;

/// The binary in an empty folder (no `.env` to read), with no service
/// settings from the test run's environment.
fn binary(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .env(
            "FETCHERS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fetchers"),
        );
    for name in [
        "HA_URL",
        "HA_TOKEN",
        "REDIS_URL",
        "DATABASE_URL",
        "FETCHERS_SQL_URL",
        "API_TOKEN",
        "BIND",
    ] {
        cmd.env_remove(name);
    }
    cmd
}

/// The `error:` lines a failed run printed, after checking it failed.
fn errors(cmd: &mut Command) -> Vec<String> {
    let out = cmd.stdin(Stdio::null()).output().expect("the binary runs");
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_stops_at_a_setting_that_can_never_work() {
    let commands: [&[&str]; 7] = [
        &["serve"],
        &["mcp"],
        &["render", "--inline", "x"],
        &["fetch", "ha_lights_on"],
        &["check"],
        &["migrate"],
        &["seed"],
    ];
    for args in commands {
        let lines = errors(
            binary(args)
                .env("HA_URL", "https://ha.example:8123")
                .env("HA_TOKEN", "t")
                .env("HA_CA_FILE", "/nonexistent/ca.pem"),
        );
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(
            lines[0].starts_with("error: HA_CA_FILE: cannot read /nonexistent/ca.pem")
                && lines[0].contains("point it at a readable PEM file"),
            "{args:?}: {}",
            lines[0]
        );
    }
    let cases = [
        (
            "REDIS_URL",
            "http://:secret@127.0.0.1:6379",
            "error: REDIS_URL: unknown scheme http://; use redis://",
        ),
        (
            "DATABASE_URL",
            "postgres://u:secret@h/db",
            "error: DATABASE_URL: unknown scheme postgres://; use mysql://",
        ),
        (
            "HA_URL",
            "ftp://ha.example",
            "error: HA_URL must start with http:// or https://",
        ),
    ];
    for (name, value, said) in cases {
        let lines = errors(binary(&["serve"]).env(name, value).env("HA_TOKEN", "t"));
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].starts_with(said), "{name}: {}", lines[0]);
        assert!(
            !lines[0].contains("secret"),
            "{name}: the URL's password shown"
        );
    }
}

#[test]
fn demo_takes_bind_from_the_environment_as_serve_does() {
    let port = free_port();
    let mut child = binary(&["demo"])
        .env("BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = demo_address(child.stdout.take().unwrap());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(address, Some(format!("http://127.0.0.1:{port}")));
}
