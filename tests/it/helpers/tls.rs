//! Real TLS endpoints made by the test run: a CA of its own (and a second,
//! wrong one) from the `openssl` command, a TLS-terminating `socat` proxy,
//! `redis-server --tls-port` and a MariaDB with `ssl_cert`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, a server certificate it signed for `localhost` and `127.0.0.1`,
/// and another CA that signed nothing here.
pub struct Pki {
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that did not: trusting it alone must fail.
    pub wrong_ca: PathBuf,
    /// The server's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA named `name` in `dir`: `{name}.pem` and `{name}.key`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
             -subj /CN={name} -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign -keyout {name}.key -out {name}.pem"
        ),
    );
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    ca(d, "ca");
    ca(d, "wrong-ca");
    std::fs::write(
        d.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        d,
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
         -keyout server.key -out server.csr",
    );
    openssl(
        d,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile server.ext -out server.pem",
    );
    // The servers may run as another user (mariadbd drops to `mysql`).
    use std::os::unix::fs::PermissionsExt;
    for f in ["server.key", "server.pem", "ca.pem"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    Pki {
        ca: d.join("ca.pem"),
        wrong_ca: d.join("wrong-ca.pem"),
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        dir,
    }
}

/// A free loopback port (free when asked; the server binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed on drop.
pub struct Server {
    /// The process.
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits until `port` takes connections.
fn serve(mut cmd: Command, port: u16, what: &str) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let mut server = Server { child, port };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{what} exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A TLS-terminating proxy (`socat`) in front of `upstream`, as a reverse
/// proxy in front of Home Assistant is.
pub fn proxy(pki: &Pki, upstream: u16) -> Server {
    let port = free_port();
    let mut cmd = Command::new("socat");
    cmd.arg(format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        pki.cert.display(),
        pki.key.display()
    ))
    .arg(format!("TCP:127.0.0.1:{upstream}"));
    serve(cmd, port, "socat")
}

/// `redis-server` with only a TLS port, clients not asked for certificates.
pub fn redis(pki: &Pki) -> Server {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
    .arg("--tls-cert-file")
    .arg(&pki.cert)
    .arg("--tls-key-file")
    .arg(&pki.key)
    .arg("--tls-ca-cert-file")
    .arg(&pki.ca)
    .arg("--dir")
    .arg(pki.dir.path());
    serve(cmd, port, "redis-server --tls-port")
}

/// A MariaDB of its own with `ssl_cert`/`ssl_key`/`ssl_ca`, a fresh data
/// directory, and logins not checked (the test is about the transport).
pub fn mariadb(pki: &Pki) -> Server {
    let data = pki.dir.path().join("mysql-data");
    std::fs::create_dir_all(&data).unwrap();
    let out = Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=root", "--skip-test-db"])
        .arg(format!("--datadir={}", data.display()))
        .output()
        .expect("mariadb-install-db runs");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut cmd = Command::new("mariadbd");
    cmd.args(["--no-defaults", "--user=root", "--skip-grant-tables"])
        .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", data.join("sock").display()))
        .arg(format!("--ssl-cert={}", pki.cert.display()))
        .arg(format!("--ssl-key={}", pki.key.display()))
        .arg(format!("--ssl-ca={}", pki.ca.display()));
    serve(cmd, port, "mariadbd with ssl_cert")
}
