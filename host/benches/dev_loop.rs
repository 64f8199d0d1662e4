//! How long `trellis dev` takes from a saved edit to the new code answering, with the
//! compiler's own part reported apart: a `trellis new` project under `trellis dev` (plain
//! output, each line stamped as it arrives), its response text edited five times; each time the
//! bench polls the page every 2 ms until the new text answers.
//!
//! - save → answer: from the write of `src/lib.rs` to the first response with the new text;
//! - build: from the save to `dev`'s `built` line (the debounce, cargo and the compiler);
//! - swap: from the `built` line to the first new response (copying the build, redeploying,
//!   the host compiling and swapping the component: the goal is 200 ms);
//! - dev's own figure for the swap phase (from the build's end to the host's `component_scaled`
//!   event).
//!
//! `cargo bench -p trellis-host --bench dev_loop` (needs nats-server and the wasm32-wasip2
//! target); see BENCHMARKS.md.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EDITS: usize = 5;
const WAIT: Duration = Duration::from_secs(300);

/// `dev`'s output lines with their arrival times.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let trellis = env!("CARGO_BIN_EXE_trellis");
    let status = Command::new(trellis)
        .args(["new", "demo"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let project = dir.path().join("demo");
    let source = project.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut command = Command::new(trellis);
    command
        .args(["dev", "--address", &format!("127.0.0.1:{port}")])
        .current_dir(&project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The bench's own cargo variables would point the project's build at this workspace.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name == "CARGO" {
            command.env_remove(&name);
        }
    }
    command.env("CARGO_TARGET_DIR", dir.path().join("target"));
    let mut dev = command.spawn().unwrap();
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    wait_line(&lines, "serving http://", 0);
    println!("dev_loop: trellis dev serves the demo project; {EDITS} edits");

    let mut totals = Vec::new();
    let mut builds = Vec::new();
    let mut swaps = Vec::new();
    for edit in 1..=EDITS {
        let text = format!("Edit {edit} from");
        let seen = lines.lock().unwrap().len();
        let saved = Instant::now();
        std::fs::write(&source, original.replace("Hello from", &text)).unwrap();
        let answered = poll(port, &text);
        let (built_at, _) = wait_line(&lines, "built demo", seen);
        let (_, swapped) = wait_line(&lines, "swapped demo", seen);
        let dev_figure = swapped
            .rsplit_once('(')
            .map(|(_, figure)| figure.trim_end_matches(')').to_string())
            .unwrap_or_default();
        println!(
            "  edit {edit}: save → answer {:>5} ms, build {:>5} ms, swap {:>4} ms (dev: {dev_figure})",
            (answered - saved).as_millis(),
            (built_at - saved).as_millis(),
            (answered - built_at).as_millis()
        );
        totals.push(answered - saved);
        builds.push(built_at - saved);
        swaps.push(answered - built_at);
        // Let the previous build's instances go before the next edit.
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "dev_loop median of {EDITS}: save → answer {} ms, build {} ms, swap after the build {} ms",
        median(&mut totals).as_millis(),
        median(&mut builds).as_millis(),
        median(&mut swaps).as_millis()
    );

    // SIGINT, as Ctrl-C: `dev` stops what it started.
    let _ = Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dev.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = dev.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a line containing `what` after the first `after` lines: its time and text.
fn wait_line(lines: &Lines, what: &str, after: usize) -> (Instant, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = lines
            .lock()
            .unwrap()
            .iter()
            .skip(after)
            .find(|(_, line)| line.contains(what))
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no `{what}` line within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `GET /` every 2 ms until its body contains `text`; when it first did.
fn poll(port: u16, text: &str) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.contains(text) {
                return Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "`{text}` never answered");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
