//! The configuration from Git: real repositories on disk, changed with the `git` command and
//! pushed to a bare remote, and a real etcd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_testkit::Etcd;

mod common;
use common::Reconciler;

const POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [10.250.0.100-10.250.0.103]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: lab\n";
const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n";
const SECRET: &str = "s3cret";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=ferrolb-test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Repo {
    work: PathBuf,
    remote: PathBuf,
}

impl Repo {
    fn new(root: &Path) -> Repo {
        let remote = root.join("remote.git");
        let work = root.join("work");
        std::fs::create_dir_all(&remote).expect("mkdir");
        std::fs::create_dir_all(work.join("pools")).expect("mkdir");
        git(&remote, &["init", "--bare", "-q"]);
        git(&work, &["init", "-q"]);
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().expect("path")],
        );
        Repo { work, remote }
    }

    /// Writes `pools/lab.yaml`, commits and pushes; returns the commit id.
    fn push(&self, file: &str, text: &str) -> String {
        std::fs::write(self.work.join("pools").join(file), text).expect("write");
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", "change"]);
        git(&self.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// The reconciler on a Git remote, with a webhook secret.
fn start(etcd: &Etcd, repo: &Repo, root: &Path, interval: &str) -> Reconciler {
    let services = root.join("services");
    std::fs::create_dir_all(&services).expect("mkdir");
    std::fs::write(services.join("web.yaml"), SERVICE).expect("write");
    std::fs::write(root.join("secret"), format!("{SECRET}\n")).expect("write");
    let a = common::args(&[
        "--config-git",
        &format!("file://{}", repo.remote.display()),
        "--git-ref",
        "main",
        "--git-path",
        "pools",
        "--git-interval",
        interval,
        "--git-cache",
        root.join("cache").to_str().expect("path"),
        "--webhook-secret-file",
        root.join("secret").to_str().expect("path"),
        "--services",
        services.to_str().expect("path"),
        "--etcd-endpoints",
        &etcd.endpoints(),
        "--lease-ttl",
        "2",
    ]);
    Reconciler::spawn(&a, root, "reconciler")
}

/// POSTs to the webhook; returns the HTTP status code.
fn hook(r: &Reconciler, signature: Option<&str>, body: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}/hooks/git", r.port);
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "--data-binary",
        body,
    ]);
    if let Some(sig) = signature {
        cmd.args(["-H", &format!("X-Hub-Signature-256: {sig}")]);
    }
    let out = cmd.arg(&url).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn web_ip(etcd: &Etcd) -> Option<String> {
    let out = etcd
        .ctl(&[
            "get",
            "--prefix",
            "/ferrolb/announcements/",
            "--print-value-only",
        ])
        .ok()?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|a| a["services"][0] == "default/web")
        .and_then(|a| a["ip"].as_str().map(str::to_string))
}

fn sign(body: &str) -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("printf %s '{body}' | openssl dgst -sha256 -hmac {SECRET} | sed 's/.*= //'"),
        ])
        .output()
        .expect("openssl");
    format!("sha256={}", String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn a_push_is_applied_and_a_broken_push_is_not() {
    let etcd = Etcd::start().expect("etcd");
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let r = start(&etcd, &repo, root.path(), "1s");
    r.wait("first commit in force", Duration::from_secs(10), |s| {
        s["revision"] == first.as_str() && s["ready"] == true
    });
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).as_deref() != Some("10.250.0.100") {
        assert!(Instant::now() < end, "web not announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A pool change: applied within the interval plus a second.
    let second = repo.push(
        "lab.yaml",
        &POOLS.replace("10.250.0.100-10.250.0.103", "10.250.0.110-10.250.0.113"),
    );
    // Polled every second (timing itself is measured in the benchmark, not asserted here).
    r.wait("second commit in force", Duration::from_secs(5), |s| {
        s["revision"] == second.as_str()
    });
    let end = Instant::now() + Duration::from_secs(2);
    while web_ip(&etcd).as_deref() != Some("10.250.0.110") {
        assert!(Instant::now() < end, "web did not move\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken push: nothing changes, the error is visible.
    repo.push(
        "lab.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: [oops\n",
    );
    r.wait("the error", Duration::from_secs(3), |s| {
        s["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("pools/lab.yaml"))
    });
    assert_eq!(r.status()["revision"], second.as_str());
    assert_eq!(web_ip(&etcd).as_deref(), Some("10.250.0.110"));
    // Hostile files: an alias bomb and a file over 4 MiB; still the last good configuration.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    repo.push("bomb.yaml", &bomb);
    repo.push("huge.yaml", &"#".repeat(5 << 20));
    r.wait("the hostile files refused", Duration::from_secs(3), |s| {
        s["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than 4 MiB") && e.contains("alias bomb"))
    });
    assert_eq!(r.status()["revision"], second.as_str());
    // A force-push back to the first commit: valid again, and web moves back.
    git(&repo.work, &["reset", "-q", "--hard", &first]);
    git(&repo.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
    r.wait("the first commit again", Duration::from_secs(3), |s| {
        s["revision"] == first.as_str() && s["config_error"].is_null()
    });
}

#[test]
fn the_webhook_fetches_at_once_and_only_when_signed() {
    let etcd = Etcd::start().expect("etcd");
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let r = start(&etcd, &repo, root.path(), "10m");
    r.wait("first commit", Duration::from_secs(10), |s| {
        s["revision"] == first.as_str()
    });
    let second = repo.push("lab.yaml", &POOLS.replace("10.250.0.103", "10.250.0.104"));
    let body = r#"{"ref":"refs/heads/main"}"#;
    assert_eq!(hook(&r, None, body), 401, "unsigned");
    assert_eq!(hook(&r, Some("sha256=00"), body), 401, "wrongly signed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        r.status()["revision"],
        first.as_str(),
        "no fetch without a valid call"
    );
    assert_eq!(hook(&r, Some(&sign(body)), body), 202);
    // The interval is ten minutes: only the call can have fetched it.
    r.wait("second commit", Duration::from_secs(5), |s| {
        s["revision"] == second.as_str()
    });
    assert_eq!(hook(&r, Some(&sign(body)), body), 429, "one call a second");
}

#[test]
fn an_unreachable_remote_keeps_the_configuration_in_force() {
    let etcd = Etcd::start().expect("etcd");
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let r = start(&etcd, &repo, root.path(), "1s");
    r.wait("first commit", Duration::from_secs(10), |s| {
        s["revision"] == first.as_str()
    });
    // The Service files apply once they have stayed the same for --config-quiet.
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).is_none() {
        assert!(Instant::now() < end, "web not announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = root.path().join("elsewhere.git");
    std::fs::rename(&repo.remote, &moved).expect("move the remote away");
    r.wait("the fetch error", Duration::from_secs(4), |s| {
        s["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot fetch"))
    });
    assert_eq!(r.status()["revision"], first.as_str());
    assert!(web_ip(&etcd).is_some(), "still announced");
    std::fs::rename(&moved, &repo.remote).expect("move it back");
    r.wait("recovered", Duration::from_secs(5), |s| {
        s["config_error"].is_null()
    });
}

#[test]
fn a_commit_deleting_every_pool_is_a_valid_change_that_withdraws_the_addresses() {
    let etcd = Etcd::start().expect("etcd");
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let r = start(&etcd, &repo, root.path(), "1s");
    r.wait("first commit", Duration::from_secs(10), |s| {
        s["revision"] == first.as_str()
    });
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).is_none() {
        assert!(Instant::now() < end, "web not announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(repo.work.join("pools/lab.yaml")).expect("rm");
    git(&repo.work, &["add", "-A"]);
    git(&repo.work, &["commit", "-q", "-m", "remove every pool"]);
    git(&repo.work, &["push", "-q", "origin", "HEAD:main"]);
    r.wait(
        "the empty configuration in force",
        Duration::from_secs(5),
        |s| s["revision"] != first.as_str() && s["config_error"].is_null(),
    );
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).is_some() {
        assert!(Instant::now() < end, "web still announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real OpenSSH server on a free loopback port, serving the bare repositories under a
/// directory to one client key; killed on drop.
struct SshServer {
    child: std::process::Child,
    port: u16,
    host_key_pub: String,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SshServer {
    /// Starts `sshd` accepting `client_pub`; needs root (sshd's privilege separation).
    fn start(root: &Path, client_pub: &Path) -> SshServer {
        let host_key = root.join("host_key");
        keygen(&host_key);
        std::fs::create_dir_all("/run/sshd").expect("privilege separation directory");
        let port = common::free_port();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nPidFile {}\n",
                host_key.display(),
                client_pub.display(),
                root.join("sshd.pid").display()
            ),
        )
        .expect("write sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stderr(std::fs::File::create(root.join("sshd.log")).expect("log"))
            .spawn()
            .expect("start sshd");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key_pub = std::fs::read_to_string(host_key.with_extension("pub"))
            .expect("host key")
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        SshServer {
            child,
            port,
            host_key_pub,
        }
    }
}

/// The reconciler on `url` (every second) with the credentials in `auth` and extra environment
/// variables; the Service `web` in file mode.
fn start_remote(
    etcd: &Etcd,
    root: &Path,
    name: &str,
    url: &str,
    auth: &[&str],
    env: &[(&str, &Path)],
) -> Reconciler {
    let services = root.join("services");
    std::fs::create_dir_all(&services).expect("mkdir");
    std::fs::write(services.join("web.yaml"), SERVICE).expect("write");
    let cache = root.join(format!("{name}-cache"));
    let mut a = common::args(&[
        "--config-git",
        url,
        "--git-ref",
        "main",
        "--git-path",
        "pools",
        "--git-interval",
        "1s",
        "--git-cache",
        cache.to_str().expect("path"),
        "--services",
        services.to_str().expect("path"),
        "--etcd-endpoints",
        &etcd.endpoints(),
        "--lease-ttl",
        "2",
    ]);
    a.extend(common::args(auth));
    Reconciler::spawn_with_env(&a, root, name, env)
}

/// The reconciler on `url` over SSH with `client_key`, checking host keys against `known_hosts`.
fn start_ssh(
    etcd: &Etcd,
    root: &Path,
    name: &str,
    url: &str,
    client_key: &Path,
    known_hosts: &str,
) -> Reconciler {
    let known = root.join(format!("{name}-known_hosts"));
    std::fs::write(&known, known_hosts).expect("write");
    let auth = [
        "--git-ssh-key",
        client_key.to_str().expect("path"),
        "--git-known-hosts",
        known.to_str().expect("path"),
    ];
    start_remote(etcd, root, name, url, &auth, &[])
}

#[test]
fn over_ssh_a_known_host_key_is_fetched_plain_or_hashed_and_an_unknown_one_refused() {
    ferrolb_testkit::require_root!();
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let client_key = root.path().join("client_key");
    keygen(&client_key);
    let ssh = SshServer::start(root.path(), &client_key.with_extension("pub"));
    let url = format!("ssh://root@127.0.0.1:{}{}", ssh.port, repo.remote.display());
    let listed = format!("[127.0.0.1]:{} {}\n", ssh.port, ssh.host_key_pub);

    // Another host's key under the right name: the fetch is refused, nothing is applied.
    let etcd_wrong = Etcd::start().expect("etcd");
    let other = root.path().join("other_host_key");
    keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("key");
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let wrong = format!("[127.0.0.1]:{} {}\n", ssh.port, other_pub.join(" "));
    let r = start_ssh(&etcd_wrong, root.path(), "wrong", &url, &client_key, &wrong);
    r.wait("the host key refused", Duration::from_secs(15), |s| {
        s["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("hostkey") || e.contains("host key"))
    });
    assert!(
        web_ip(&etcd_wrong).is_none(),
        "nothing applied\n{}",
        r.log()
    );
    drop(r);

    // The server's own key: fetched and applied.
    let etcd = Etcd::start().expect("etcd");
    let r = start_ssh(&etcd, root.path(), "right", &url, &client_key, &listed);
    r.wait("the commit over SSH", Duration::from_secs(15), |s| {
        s["revision"] == first.as_str() && s["config_error"].is_null()
    });
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).is_none() {
        assert!(Instant::now() < end, "web not announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(r);

    // The same line hashed by OpenSSH (`ssh-keygen -H`, as `HashKnownHosts yes` writes it).
    let file = root.path().join("hashed_known_hosts");
    std::fs::write(&file, &listed).expect("write");
    let out = Command::new("ssh-keygen")
        .args(["-H", "-f", file.to_str().expect("path")])
        .output()
        .expect("ssh-keygen -H");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashed = std::fs::read_to_string(&file).expect("read");
    assert!(
        hashed.starts_with("|1|") && !hashed.contains("127.0.0.1"),
        "{hashed}"
    );
    let etcd_hashed = Etcd::start().expect("etcd");
    let r = start_ssh(
        &etcd_hashed,
        root.path(),
        "hashed",
        &url,
        &client_key,
        &hashed,
    );
    r.wait(
        "the commit over SSH, hashed name",
        Duration::from_secs(15),
        |s| s["revision"] == first.as_str() && s["config_error"].is_null(),
    );
}

/// A Git smart-HTTP server over TLS (Python's http.server in front of `git http-backend`) that
/// asks for HTTP basic authentication with one token; killed on drop.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GIT_HTTPS_SERVER: &str = r#"
import base64, http.server, os, ssl, subprocess, sys
root, port, cert, key, token = sys.argv[1:6]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self): self.git()
    def do_POST(self): self.git()
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
    def git(self):
        body = self.body()
        auth = self.headers.get("Authorization", "")
        given = base64.b64decode(auth[6:]).decode().split(":", 1)[-1] if auth.startswith("Basic ") else None
        if given != token:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER="ferrolb",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, content = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl HttpsServer {
    /// Serves the repositories under `root` with a certificate for 127.0.0.1 signed by
    /// `root/ca.crt` (made here), to callers presenting `token`.
    fn start(root: &Path, token: &str) -> HttpsServer {
        sh(
            root,
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferrolb-git-ca -keyout ca.key -out ca.crt 2>/dev/null && \
             printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
             openssl req -newkey rsa:2048 -nodes -subj /CN=git -keyout https.key -out https.csr 2>/dev/null && \
             openssl x509 -req -in https.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out https.crt 2>/dev/null",
        );
        std::fs::write(root.join("server.py"), GIT_HTTPS_SERVER).expect("write");
        let port = common::free_port();
        let child = Command::new("python3")
            .arg(root.join("server.py"))
            .arg(root)
            .arg(port.to_string())
            .arg(root.join("https.crt"))
            .arg(root.join("https.key"))
            .arg(token)
            .stderr(std::fs::File::create(root.join("https.log")).expect("log"))
            .spawn()
            .expect("start the HTTPS server");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "the HTTPS server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpsServer { child, port }
    }
}

/// The reconciler on `url` with the token in `token_file`; `ca` as OpenSSL's trust store when
/// given (the system's otherwise).
fn start_https(
    etcd: &Etcd,
    root: &Path,
    name: &str,
    url: &str,
    token_file: &Path,
    ca: Option<&Path>,
) -> Reconciler {
    let auth = ["--git-token-file", token_file.to_str().expect("path")];
    let env: Vec<(&str, &Path)> = ca.map(|c| ("SSL_CERT_FILE", c)).into_iter().collect();
    start_remote(etcd, root, name, url, &auth, &env)
}

#[test]
fn over_https_a_trusted_server_and_the_right_token_are_needed() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new(root.path());
    let first = repo.push("lab.yaml", POOLS);
    let https = HttpsServer::start(root.path(), "t0ken");
    let url = format!("https://127.0.0.1:{}/remote.git", https.port);
    let ca = root.path().join("ca.crt");
    let right = root.path().join("token");
    std::fs::write(&right, "t0ken\n").expect("write");
    let wrong = root.path().join("wrong-token");
    std::fs::write(&wrong, "guess\n").expect("write");
    let refused = |name: &str, token: &Path, ca: Option<&Path>, what: &str| {
        let etcd = Etcd::start().expect("etcd");
        let r = start_https(&etcd, root.path(), name, &url, token, ca);
        r.wait(what, Duration::from_secs(15), |s| {
            !s["config_error"].is_null() && s["revision"].is_null()
        });
        assert!(
            web_ip(&etcd).is_none(),
            "{what}: nothing applied\n{}",
            r.log()
        );
        r.status()["config_error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // A certificate from a CA the machine does not trust: refused.
    let e = refused(
        "untrusted",
        &right,
        None,
        "an untrusted certificate refused",
    );
    assert!(e.contains("certificate") || e.contains("SSL"), "{e}");
    // A trusted server, the wrong token: refused.
    let e = refused("bad-token", &wrong, Some(&ca), "a wrong token refused");
    assert!(!e.contains("certificate"), "{e}");

    let etcd = Etcd::start().expect("etcd");
    let r = start_https(&etcd, root.path(), "right", &url, &right, Some(&ca));
    r.wait("the commit over HTTPS", Duration::from_secs(15), |s| {
        s["revision"] == first.as_str() && s["config_error"].is_null()
    });
    let end = Instant::now() + Duration::from_secs(5);
    while web_ip(&etcd).is_none() {
        assert!(Instant::now() < end, "web not announced\n{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["untrusted", "bad-token", "right"] {
        let log = std::fs::read_to_string(root.path().join(format!("{name}.log"))).expect("log");
        assert!(
            !log.contains("t0ken") && !log.contains("guess"),
            "a token was logged by {name}:\n{log}"
        );
    }
}
