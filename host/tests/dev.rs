//! `trellis new demo && cd demo && trellis dev`, as a person runs them in a terminal (a
//! pseudo-terminal made by `script`, so `dev` shows its spinners and the compiler its colours):
//! the page answers; under wrk's load, an edit to the response text arrives within the rebuild
//! time plus 2 s with no failed request; a syntax error is shown once while the old code keeps
//! answering; the fix serves; Ctrl-C leaves nothing running. Then the same project inside its
//! own application (`--manifest wadm.yaml`); and a project in "another language" (`--build`,
//! `--wasm`) whose exports `trellis ctl call` reaches.
//!
//! The project is built once from cold (its own target directory under the test's temporary
//! directory; its three dependencies come from cargo's cache as `tests/components` pins them),
//! then incrementally for each step.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cold build and start of the project.
const FIRST_WAIT: Duration = Duration::from_secs(300);
/// One rebuild and swap, or one build failure.
const STEP_WAIT: Duration = Duration::from_secs(120);

/// A command running in a pseudo-terminal, what it shows gathered as it comes.
struct Terminal {
    child: Child,
    keyboard: ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Runs `command_line` in `dir` through `script`, with the environment a person's shell
    /// has: none of this test's cargo variables (they would point the project's build at this
    /// workspace) or `TRELLIS_*` settings.
    fn start(dir: &Path, command_line: &str, target_dir: &Path) -> Self {
        let mut command = Command::new("script");
        command
            .args(["-q", "-f", "-e", "-c", command_line, "/dev/null"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let cargo_own = name.starts_with("CARGO_")
                && ![
                    "CARGO_HOME",
                    "CARGO_NET_",
                    "CARGO_REGISTRIES_",
                    "CARGO_HTTP_",
                ]
                .iter()
                .any(|keep| name.starts_with(keep));
            if cargo_own
                || name == "CARGO"
                || name.starts_with("RUSTFLAGS")
                || name.starts_with("RUSTC_")
                || name.starts_with("TRELLIS_")
                || name == "RUST_LOG"
            {
                command.env_remove(&name);
            }
        }
        command
            .env("CARGO_TARGET_DIR", target_dir)
            .env("TERM", "xterm");
        let mut child = command.spawn().expect("running script (util-linux)");
        let keyboard = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Self {
            child,
            keyboard,
            screen,
        }
    }

    /// What was shown, without colours and cursor movements, each `\r` a line break.
    fn text(&self) -> String {
        plain(&String::from_utf8_lossy(&self.screen.lock().unwrap()))
    }

    /// Waits until the screen shows `what` `times` times; the screen then.
    fn wait_for(&self, what: &str, times: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text();
            if text.matches(what).count() >= times {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{what}` was not shown {times} time(s) within {within:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types Ctrl-C and waits (at most 30 s) for the command to end.
    fn ctrl_c(&mut self) -> std::process::ExitStatus {
        self.keyboard.write_all(&[0x03]).unwrap();
        self.keyboard.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "Ctrl-C did not stop it:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.keyboard.write_all(&[0x03]);
            std::thread::sleep(Duration::from_secs(2));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` without ANSI escape sequences, `\r` made line breaks.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /` (the status must be 200), or `None` when nothing answers.
fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    Some(response)
}

/// Polls `GET /` until its body contains `text`; when it first did.
fn answers(port: u16, text: &str, within: Duration, terminal: &Terminal) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if get(port).is_some_and(|body| body.contains(text)) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "`{text}` was not served within {within:?}:\n{}",
            terminal.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The duration `dev` printed last on a line starting with `✓ built demo (`.
fn last_build_time(screen: &str) -> Duration {
    let line = screen
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("✓ built demo ("))
        .expect("a build line");
    let figure = line.trim_end_matches(')');
    if let Some(ms) = figure.strip_suffix(" ms") {
        Duration::from_millis(ms.parse().unwrap())
    } else if let Some(s) = figure.strip_suffix(" s") {
        Duration::from_secs_f64(s.parse().unwrap())
    } else {
        panic!("unexpected build time `{figure}`")
    }
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let output = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    let children: Vec<u32> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut all = children.clone();
    for child in children {
        all.extend(descendants(child));
    }
    all
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.split_whitespace()
            .nth(2)
            .is_none_or(|state| state != "Z")
    })
}

#[test]
fn new_then_dev_serves_swaps_under_load_and_keeps_serving_through_a_broken_build() {
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not installed: bash .ci/setup-tests"
    );
    let dir = tempfile::tempdir().unwrap();
    let trellis = env!("CARGO_BIN_EXE_trellis");
    let created = Command::new(trellis)
        .args(["new", "demo"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let project = dir.path().join("demo");
    let source = project.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).unwrap();
    assert!(original.contains("Hello from demo at"), "{original}");

    let port = free_port();
    let mut terminal = Terminal::start(
        &project,
        &format!("exec '{trellis}' dev --address 127.0.0.1:{port}"),
        &dir.path().join("target"),
    );
    let screen = terminal.wait_for(&format!("serving http://127.0.0.1:{port}"), 1, FIRST_WAIT);
    assert!(screen.contains("✓ built demo"), "{screen}");
    assert!(screen.contains("✓ demo is deployed"), "{screen}");
    assert!(screen.contains("watching"), "{screen}");
    let body = get(port).expect("the page answers");
    assert!(body.contains("Hello from demo at /"), "{body}");

    // Under load, the new text arrives within the rebuild time plus 2 s; nothing fails.
    let wrk = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t2", "-c8", "-d12s", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("running wrk")
    });
    std::thread::sleep(Duration::from_secs(2));
    let saved = Instant::now();
    std::fs::write(&source, original.replace("Hello from", "Howdy from")).unwrap();
    let arrived = answers(port, "Howdy from demo", STEP_WAIT, &terminal);
    let screen = terminal.wait_for("✓ swapped demo", 1, STEP_WAIT);
    let build = last_build_time(&screen);
    assert!(
        arrived - saved <= build + Duration::from_secs(2),
        "the new text took {:?} after the save, the build {build:?}:\n{screen}",
        arrived - saved
    );
    let wrk = wrk.join().unwrap();
    let report = String::from_utf8_lossy(&wrk.stdout);
    assert!(wrk.status.success(), "{report}");
    assert!(report.contains("requests in"), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");

    // A syntax error: the compiler's message, once; the previous build keeps answering.
    let broken = original
        .replace("Hello from", "Howdy from")
        .replace("let path = ", "let path = = ");
    std::fs::write(&source, &broken).unwrap();
    // The failure line comes first and the compiler's output after it: wait for the output.
    let message = "error: expected expression, found `=`";
    let screen = terminal.wait_for(message, 1, STEP_WAIT);
    assert!(
        screen.contains("build failed; the previous build keeps serving"),
        "{screen}"
    );
    assert_eq!(screen.matches(message).count(), 1, "{screen}");
    assert!(get(port).unwrap().contains("Howdy from demo"));
    // Saved again, still broken: said, not shown again.
    std::fs::write(&source, &broken).unwrap();
    let screen = terminal.wait_for("the build still fails as above", 1, STEP_WAIT);
    assert_eq!(screen.matches(message).count(), 1, "{screen}");
    assert!(get(port).unwrap().contains("Howdy from demo"));

    // Fixed: the new code serves.
    std::fs::write(&source, original.replace("Hello from", "Hi from")).unwrap();
    answers(port, "Hi from demo", STEP_WAIT, &terminal);

    // Ctrl-C: everything it started stops, its temporary files go.
    let session = screen
        .split("JetStream data in ")
        .nth(1)
        .and_then(|rest| rest.split("/nats").next())
        .expect("the session directory is named")
        .to_string();
    let helpers = descendants(terminal.child.id());
    assert!(
        helpers.len() >= 2,
        "trellis and its nats-server run: {helpers:?}"
    );
    let status = terminal.ctrl_c();
    let screen = terminal.text();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(screen.contains("received SIGINT, stopping"), "{screen}");
    for pid in helpers {
        assert!(!alive(pid), "process {pid} outlived trellis dev");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens any more"
    );
    assert!(!Path::new(&session).exists(), "{session} was left behind");

    // The project's own manifest (its address moved to a free port, as a user would): the
    // application of that name runs, and an edit swaps only the component.
    let manifest = project.join("wadm.yaml");
    let port = free_port();
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("127.0.0.1:8000", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let mut terminal = Terminal::start(
        &project,
        &format!("exec '{trellis}' dev --manifest wadm.yaml"),
        &dir.path().join("target"),
    );
    terminal.wait_for(&format!("serving http://127.0.0.1:{port}"), 1, STEP_WAIT);
    assert!(get(port).unwrap().contains("Hi from demo"));
    std::fs::write(&source, original.replace("Hello from", "Hey from")).unwrap();
    answers(port, "Hey from demo", STEP_WAIT, &terminal);
    let screen = terminal.wait_for("✓ swapped demo", 1, STEP_WAIT);
    let status = terminal.ctrl_c();
    assert!(status.success(), "{status}:\n{screen}");
}

/// A project `dev` knows nothing about: its build command copies the `exporter` test
/// component; `dev` runs it (no HTTP), and `trellis ctl call` reaches its exports through the
/// lattice `dev` printed. Plain output, as in a log.
#[test]
fn dev_runs_any_build_and_its_exports_answer_ctl_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("source.txt"), "v1").unwrap();
    let exporter = trellis_tests::component_path("exporter");
    let trellis = env!("CARGO_BIN_EXE_trellis");
    let mut dev = Command::new(trellis)
        .args(["dev", "--wasm", "out/component.wasm", "--build"])
        .arg(format!(
            "mkdir -p out && cp '{}' out/component.wasm",
            exporter.display()
        ))
        .current_dir(dir.path())
        .env_remove("TRELLIS_NATS_URL")
        .env_remove("TRELLIS_LATTICE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let said = Arc::new(Mutex::new(String::new()));
    let sink = said.clone();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut said = sink.lock().unwrap();
            said.push_str(&line);
            said.push('\n');
        }
    });
    let wait_for = |what: &str| {
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            let text = said.lock().unwrap().clone();
            if text.contains(what) {
                return text;
            }
            assert!(Instant::now() < deadline, "no `{what}`:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let text = wait_for("watching");
    // Plain lines, each phase with its timing; no HTTP server for a component without one.
    assert!(text.starts_with("trellis dev: built "), "{text}");
    assert!(!text.contains("serving http"), "{text}");
    let call = text
        .lines()
        .find_map(|line| line.strip_prefix("trellis dev:   call it: trellis ctl call "))
        .expect("the call line");
    let mut words = call.split_whitespace();
    let component = words.next().unwrap().to_string();
    let url = call
        .split("--nats-url ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let output = Command::new(trellis)
        .args([
            "ctl",
            "call",
            &component,
            "add",
            "2",
            "3",
            "--nats-url",
            url,
        ])
        .args(["--lattice", "default"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "5\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A change that builds the same component: said so, nothing swapped.
    std::fs::write(dir.path().join("source.txt"), "v2").unwrap();
    wait_for("the build made no change to the component");

    Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
