//! The etcd connection both daemons and the CLI share (`ferrolb-etcd`): TLS with CA verification
//! and a client certificate, and a user name with a password from a file, against a real etcd
//! that requires them. Exercised through `ferrolb status`, which uses the same flags and code.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl.
fn certificates(dir: &Path) {
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferrolb-test-ca -keyout ca.key -out ca.crt 2>/dev/null",
    );
    sh(
        dir,
        "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf",
    );
    for name in ["server", "client"] {
        sh(
            dir,
            &format!(
                "openssl req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key -out {name}.csr 2>/dev/null && \
                 openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out {name}.crt 2>/dev/null"
            ),
        );
    }
}

fn ctl(dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args([
            "--cacert",
            "ca.crt",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--dial-timeout=1s",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("etcdctl")
}

fn start_tls_etcd(dir: &Path) -> (Etcd, String) {
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client}");
    let child = Command::new("etcd")
        .args(["--name", "tls", "--data-dir", "data"])
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=tls=http://127.0.0.1:{peer}"))
        .args(["--cert-file", "server.crt", "--key-file", "server.key"])
        .args(["--client-cert-auth", "--trusted-ca-file", "ca.crt"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log")).expect("log"))
        .spawn()
        .expect("spawn etcd");
    let etcd = Etcd(child);
    let end = Instant::now() + Duration::from_secs(20);
    while !ctl(dir, &endpoint, &["endpoint", "health"])
        .status
        .success()
    {
        assert!(
            Instant::now() < end,
            "TLS etcd never became healthy: {}",
            std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (etcd, endpoint)
}

fn status(dir: &Path, endpoint: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["status", "--etcd-endpoints", endpoint, "--format", "json"])
        .args(extra)
        .current_dir(dir)
        .output()
        .expect("ferrolb status")
}

#[test]
fn tls_with_a_client_certificate_is_verified_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let (_etcd, endpoint) = start_tls_etcd(dir.path());
    let put = ctl(
        dir.path(),
        &endpoint,
        &["put", "/ferrolb/reconciler/leader", "tls-test"],
    );
    assert!(put.status.success());

    let ok = status(
        dir.path(),
        &endpoint,
        &[
            "--etcd-cacert",
            "ca.crt",
            "--etcd-cert",
            "client.crt",
            "--etcd-key",
            "client.key",
        ],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["leader"], "tls-test");

    // Without a client certificate etcd refuses the connection.
    let no_cert = status(dir.path(), &endpoint, &["--etcd-cacert", "ca.crt"]);
    assert_eq!(no_cert.status.code(), Some(2));
    // A server certificate from another CA is refused by the client.
    sh(
        dir.path(),
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other -keyout other.key -out other.crt 2>/dev/null",
    );
    let wrong_ca = status(
        dir.path(),
        &endpoint,
        &[
            "--etcd-cacert",
            "other.crt",
            "--etcd-cert",
            "client.crt",
            "--etcd-key",
            "client.key",
        ],
    );
    assert_eq!(wrong_ca.status.code(), Some(2));
    // Plain HTTP to a TLS endpoint does not work either.
    let plain = status(dir.path(), &endpoint.replace("https", "http"), &[]);
    assert_eq!(plain.status.code(), Some(2));
}

#[test]
fn a_user_and_a_password_from_a_file_authenticate() {
    let etcd = ferrolb_testkit::Etcd::start().expect("etcd");
    etcd.ctl(&["user", "add", "root:s3cret"]).expect("user add");
    etcd.ctl(&["auth", "enable"]).expect("auth enable");
    etcd.ctl(&[
        "--user=root:s3cret",
        "put",
        "/ferrolb/reconciler/leader",
        "auth-test",
    ])
    .expect("put");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good"), "s3cret\n").expect("write");
    std::fs::write(dir.path().join("bad"), "guess\n").expect("write");
    let ok = status(
        dir.path(),
        &etcd.endpoints(),
        &["--etcd-username", "root", "--etcd-password-file", "good"],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["leader"], "auth-test");
    let bad = status(
        dir.path(),
        &etcd.endpoints(),
        &["--etcd-username", "root", "--etcd-password-file", "bad"],
    );
    assert_eq!(bad.status.code(), Some(2));
    for out in [&ok, &bad] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("s3cret") && !text.contains("guess"),
            "a password was printed: {text}"
        );
    }
    let none = status(dir.path(), &etcd.endpoints(), &[]);
    assert_eq!(
        none.status.code(),
        Some(2),
        "anonymous reads are refused once auth is on"
    );
}
