//! TLS on the remoting ports against the real clients: the Java 5.5.0 client with its own
//! TLS properties (`-Dtls.enable=true`), the C++ client (plaintext, in permissive mode), and
//! `openssl s_client` to see which certificate the server shows.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use serde_json::Value;
use support::Rocketry;

/// A CA, a server certificate for 127.0.0.1 it signed, and a client certificate it signed,
/// made with the openssl command line.
struct Certificates {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=rocketry-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        let certificates = Certificates { dir };
        certificates.issue(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        certificates.issue("client", "extendedKeyUsage=clientAuth\n");
        certificates
    }

    /// `NAME.key` (PKCS#8) and `NAME.pem`, signed by the CA with `extensions`; a new serial
    /// each time.
    fn issue(&self, name: &str, extensions: &str) {
        let d = self.dir.path();
        std::fs::write(d.join(format!("{name}.ext")), extensions).unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key.new"),
            format!("{name}.csr"),
            format!("{name}.pem.new"),
            format!("{name}.ext"),
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &format!("{}", rand_serial()),
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        // Renamed into place, key first, as a certificate manager would write them.
        std::fs::rename(d.join(&key), d.join(format!("{name}.key"))).unwrap();
        std::fs::rename(d.join(&pem), d.join(format!("{name}.pem"))).unwrap();
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// broker.conf lines for `mode`, with `client_auth`. The broker reaches its own name
    /// server with the client certificate and checks the server's against the CA.
    fn config(&self, mode: &str, client_auth: &str) -> String {
        let ca = self.path("ca.pem");
        format!(
            "tls.server.mode={mode}\ntls.server.certPath={}\ntls.server.keyPath={}\n\
             tls.server.need.client.auth={client_auth}\ntls.server.trustCertPath={}\n\
             tls.client.authServer=true\ntls.client.trustCertPath={}\n\
             tls.client.certPath={}\ntls.client.keyPath={}\n",
            self.path("server.pem").display(),
            self.path("server.key").display(),
            ca.display(),
            ca.display(),
            self.path("client.pem").display(),
            self.path("client.key").display()
        )
    }
}

fn rand_serial() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_000_000
}

/// The Java client's TLS properties: TLS on, and (its default test mode) any server
/// certificate trusted.
const JAVA_TLS: &str = "-Dtls.enable=true";

fn produce(namesrv: &str, topic: &str, count: u32, jvm: &str) -> Value {
    let args = vec![
        "produce".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("count={count}"),
        "sendTimeoutMs=5000".into(),
    ];
    support::java_client_with_jvm_options("5.5.0", &args, jvm)
}

/// GET_BROKER_RUNTIME_INFO over a plaintext connection: its answer code, or `None` when
/// the connection is closed on us.
async fn plaintext_answer(addr: &str) -> Option<i32> {
    let client = Client::connect(addr).await.ok()?;
    let request = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo, &());
    client
        .invoke(request, Duration::from_secs(5))
        .await
        .ok()
        .map(|answer| answer.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcing_mode_serves_the_java_client_over_tls_and_refuses_plaintext() {
    let certificates = Certificates::new();
    let rocketry = Rocketry::standalone(&certificates.config("enforcing", "none"));
    let broker = rocketry.broker_addr.clone().unwrap();
    let n = rocketry.namesrv.clone();
    let sent = tokio::task::spawn_blocking({
        let n = n.clone();
        move || produce(&n, "tls_orders", 20, JAVA_TLS)
    })
    .await
    .unwrap();
    assert_eq!(
        (sent["sent"].as_u64(), sent["failed"].as_u64()),
        (Some(20), Some(0)),
        "{sent}"
    );
    let got = tokio::task::spawn_blocking(move || {
        let args = [
            "consume",
            &format!("namesrv={n}"),
            "topic=tls_orders",
            "group=tls_billing",
            "type=litePull",
            "expect=20",
        ]
        .map(String::from);
        support::java_client_with_jvm_options("5.5.0", &args, JAVA_TLS)
    })
    .await
    .unwrap();
    assert_eq!(got["unique"], 20, "{got}");

    // Plaintext on either port: the handshake fails and the connection is closed.
    assert_eq!(plaintext_answer(&broker).await, None);
    assert_eq!(plaintext_answer(&rocketry.namesrv).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_mode_serves_tls_and_plaintext_clients_on_one_port() {
    let certificates = Certificates::new();
    let rocketry = Rocketry::standalone(&certificates.config("permissive", "none"));
    let broker = rocketry.broker_addr.clone().unwrap();
    let n = rocketry.namesrv.clone();
    let tls = tokio::task::spawn_blocking(move || produce(&n, "tls_mixed", 10, JAVA_TLS))
        .await
        .unwrap();
    assert_eq!(tls["sent"], 10, "{tls}");
    assert_eq!(
        plaintext_answer(&broker).await,
        Some(ResponseCode::Success as i32)
    );
    // The C++ client (through the Python wheel) has no TLS: plaintext, sent and received.
    let n = rocketry.namesrv.clone();
    let cpp = tokio::task::spawn_blocking(move || {
        support::python_cpp_client("cpp_client.py", &[n, "tls_mixed_cpp".into(), "20".into()])
    })
    .await
    .unwrap();
    assert_eq!(
        (cpp["sent"].as_u64(), cpp["unique"].as_u64()),
        (Some(20), Some(20)),
        "{cpp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_auth_required_only_a_client_with_a_certificate_gets_in() {
    let certificates = Certificates::new();
    let rocketry = Rocketry::standalone(&certificates.config("enforcing", "require"));
    let with_certificate = format!(
        "-Dtls.enable=true -Dtls.test.mode.enable=false -Dtls.client.authServer=true \
         -Dtls.client.trustCertPath={} -Dtls.client.certPath={} -Dtls.client.keyPath={}",
        certificates.path("ca.pem").display(),
        certificates.path("client.pem").display(),
        certificates.path("client.key").display()
    );
    let n = rocketry.namesrv.clone();
    let sent =
        tokio::task::spawn_blocking(move || produce(&n, "tls_mutual", 10, &with_certificate))
            .await
            .unwrap();
    assert_eq!(sent["sent"], 10, "{sent}");
    let n = rocketry.namesrv.clone();
    let without = tokio::task::spawn_blocking(move || produce(&n, "tls_mutual", 1, JAVA_TLS))
        .await
        .unwrap();
    assert_eq!(without["sent"], 0, "{without}");
}

/// The serial number of the certificate the server at `port` shows, by `openssl s_client`.
fn served_serial(port: &str) -> String {
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).trim().to_string()
}

fn file_serial(pem: &Path) -> String {
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).trim().to_string()
}

#[test]
fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let certificates = Certificates::new();
    let rocketry = Rocketry::standalone(&certificates.config("enforcing", "none"));
    let port = rocketry
        .broker_addr
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let first = file_serial(&certificates.path("server.pem"));
    assert_eq!(served_serial(&port), first);
    certificates.issue(
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let renewed = file_serial(&certificates.path("server.pem"));
    assert_ne!(renewed, first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_serial(&port) != renewed {
        assert!(
            Instant::now() < deadline,
            "still serving {first} after the renewal"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_tls_mode_without_its_files_stops_the_start_with_the_key_named() {
    let mut rocketry = Rocketry::standalone("");
    rocketry.terminate();
    std::fs::write(
        rocketry.data_dir.join("broker.conf"),
        "tls.server.mode=enforcing\n",
    )
    .unwrap();
    let (status, log) = rocketry.start_expecting_exit();
    assert!(!status.success());
    assert!(log.contains("tls.server.certPath"), "{log}");
}
