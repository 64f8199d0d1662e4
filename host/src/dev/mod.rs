//! `trellis dev [DIR]`: the inner loop of a component author. Builds the project, starts what
//! `trellis up` starts (a private nats-server, a host with the built-ins, the deployer), runs
//! the component (an HTTP component served on a printed URL, any export callable with
//! `trellis ctl call`), then rebuilds on every change to the sources and swaps the new build in
//! with no failed request. A failed build is shown once, as the compiler wrote it, and the
//! previous build keeps serving. Ctrl-C stops everything it started.
//!
//! - [`project`]: what to build and how, and running the build;
//! - [`watch`]: which changes count;
//! - [`app`]: the application around the component, and the swap.

mod app;
mod project;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use trellis_host::telemetry::Observability;

use crate::cli::exports::Exports;
use crate::cli::progress::Progress;
use crate::platform::{FileFlags, LatticeFlags, Platform};
use app::{DevApp, Swap};
use project::{Built, Project};
use watch::Watcher;

#[derive(clap::Args)]
#[command(
    after_help = "A Rust crate (a Cargo.toml with crate-type cdylib) is built with \
    `cargo build --release --target wasm32-wasip2`; a project in another language names its \
    build command and the .wasm it writes: `trellis dev --build \"tinygo build …\" --wasm \
    app.wasm`. `trellis new NAME` writes a project this runs unchanged."
)]
pub struct DevArgs {
    /// The component's project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The build command, run by `sh -c` in DIR [default for a Rust crate: cargo build
    /// --release --target wasm32-wasip2].
    #[arg(long, value_name = "COMMAND")]
    build: Option<String>,
    /// The component the build writes, relative to DIR [default for a Rust crate:
    /// TARGET_DIR/wasm32-wasip2/release/LIB_NAME.wasm].
    #[arg(long, value_name = "PATH")]
    wasm: Option<PathBuf>,
    /// Run the component inside this application (its links, config and other components);
    /// only the developed component is updated.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The manifest's component to develop [default: the one whose image is the build's
    /// output, else the only one].
    #[arg(long, value_name = "NAME", requires = "manifest")]
    component: Option<String>,
    /// Where an HTTP component is served (without --manifest).
    #[arg(long, value_name = "HOST:PORT", default_value = app::DEFAULT_ADDRESS, conflicts_with = "manifest")]
    address: String,
    /// Milliseconds without changes before a rebuild starts (an editor's save is several
    /// file events).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce_ms: u64,
    #[command(flatten)]
    lattice: LatticeFlags,
    #[command(flatten)]
    files: FileFlags,
}

impl DevArgs {
    /// The telemetry its host exports.
    pub fn observability(&self) -> Observability {
        Observability::new(self.lattice.observability.clone())
    }
}

pub async fn run(
    args: DevArgs,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let progress = Progress::new("trellis dev");
    let project = Project::find(&args.dir, args.build.clone(), args.wasm.clone())?;
    // Builds, manifests and the private nats-server's data: gone when `dev` stops.
    let session = tempfile::Builder::new()
        .prefix("trellis-dev-")
        .tempdir()
        .context("creating a session directory")?;
    let mut ignored = project.output_dirs.clone();
    ignored.push(session.path().to_path_buf());
    ignored.push(project.wasm.clone());
    let mut watcher = Watcher::start(
        &project.dir,
        ignored,
        Duration::from_millis(args.debounce_ms),
    )?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut loop_state = Loop {
        progress: &progress,
        project: &project,
        last_failure: None,
        serving: false,
    };

    // Nothing runs before the first build that works.
    tokio::select! {
        built = loop_state.first_build(&mut watcher) => built?,
        signal = &mut shutdown => {
            progress.say(format_args!("received {signal}, stopping"));
            return Ok(());
        }
    }
    let serves_http = match &args.manifest {
        Some(_) => None,
        None => {
            let bytes = std::fs::read(&project.wasm)?;
            Some(tokio::task::spawn_blocking(move || {
                Exports::of(&bytes).map(|exports| exports.serves_http())
            }))
        }
    };
    // The host loads the builds (copied into the session) and the manifest's other images.
    let mut roots = vec![session.path().to_path_buf()];
    if let Some(manifest) = &args.manifest {
        let cwd = std::env::current_dir().context("finding the current directory")?;
        roots.extend(trellis_deployer::cli::file_image_dirs(manifest, &cwd)?);
    }
    let platform = Platform::start(
        &progress,
        &args.lattice,
        &session.path().join("nats"),
        &args.files,
        roots,
        "dev",
    )
    .await?;
    let mut app = None;
    let outcome = tokio::select! {
        outcome = loop_state.serve(&platform, &args, session.path(), serves_http, &mut watcher, &mut app) => outcome,
        signal = &mut shutdown => {
            progress.say(format_args!("received {signal}, stopping"));
            Ok(())
        }
    };
    // A lattice that outlives `dev` keeps no trace of the application.
    if platform.joined()
        && let Some(app) = &app
    {
        app.remove().await;
    }
    platform.stop().await?;
    outcome
}

/// The edit → build → swap loop.
struct Loop<'a> {
    progress: &'a Progress,
    project: &'a Project,
    /// The output of the last failed build, shown once.
    last_failure: Option<String>,
    /// Whether a build runs (and keeps running when the next one fails).
    serving: bool,
}

impl Loop<'_> {
    /// Builds until a build works.
    async fn first_build(&mut self, watcher: &mut Watcher) -> anyhow::Result<()> {
        let name = &self.project.name;
        let command = format!(" ({})", self.project.build_command());
        let mut built = self.build(&format!("building {name}"), &command).await?;
        while !built {
            self.progress
                .say("nothing runs yet: fix the build and save, and it builds again");
            let changed = watcher.changed().await?;
            built = self
                .build(&format!("building {name}"), &describe(&changed))
                .await?;
        }
        Ok(())
    }

    /// Runs the application, then swaps in every build that works.
    async fn serve(
        &mut self,
        platform: &Platform,
        args: &DevArgs,
        session: &Path,
        serves_http: Option<tokio::task::JoinHandle<anyhow::Result<bool>>>,
        watcher: &mut Watcher,
        slot: &mut Option<DevApp>,
    ) -> anyhow::Result<()> {
        let project = self.project;
        let serves_http = match serves_http {
            Some(inspect) => inspect.await?.context("reading the component's exports")?,
            None => false,
        };
        let app = DevApp::new(
            platform,
            args.manifest.as_deref(),
            args.component.as_deref(),
            &project.name,
            &project.wasm,
            serves_http,
            &args.address,
            session,
        );
        let app = slot.insert(app.await?);
        let phase = self.progress.phase(format!("deploying {}", app.name));
        let addresses = app.deploy_first(&project.wasm).await?;
        phase.done(format_args!("{} is deployed", app.name));
        self.serving = true;
        for address in &addresses {
            self.progress
                .say(format_args!("  serving http://{address}"));
        }
        self.progress.say(format_args!(
            "  call it: trellis ctl call {} INTERFACE.FUNCTION ARGS… --nats-url {} --lattice {}",
            app.component_id, platform.nats_url, platform.lattice
        ));
        self.progress.say(format_args!(
            "watching {} for changes (Ctrl-C stops)",
            project.dir.display()
        ));
        loop {
            let changed = watcher.changed().await?;
            let what = format!("rebuilding {}", project.name);
            if !self.build(&what, &describe(&changed)).await? {
                continue;
            }
            let phase = self
                .progress
                .phase(format!("swapping {}", app.component_id));
            match app.swap(&project.wasm).await {
                Ok(Swap::Swapped) => phase.done(format_args!(
                    "swapped {}: new requests get the new build",
                    app.component_id
                )),
                Ok(Swap::Unchanged) => phase.done("the build made no change to the component"),
                Err(error) => phase.failed(format_args!(
                    "the new build did not start ({error:#}); the previous build keeps serving"
                )),
            };
        }
    }

    /// Runs one build; true when it worked. A failure shows the build's output, once: the same
    /// failure again only says so.
    async fn build(&mut self, what: &str, why: &str) -> anyhow::Result<bool> {
        let project = self.project;
        let phase = self.progress.phase(format!("{what}{why}"));
        match project.build(self.progress.is_terminal()).await? {
            Built::Ok => {
                self.last_failure = None;
                phase.done(format_args!("built {}", project.name));
                Ok(true)
            }
            Built::Failed(output) => {
                if self.last_failure.as_deref() == Some(output.as_str()) {
                    phase.failed("the build still fails as above");
                } else {
                    let keeps = if self.serving {
                        "; the previous build keeps serving"
                    } else {
                        ""
                    };
                    phase.failed(format_args!("build failed{keeps}"));
                    self.progress.raw(&output);
                }
                self.last_failure = Some(output);
                Ok(false)
            }
        }
    }
}

/// ` (src/lib.rs changed)`.
fn describe(changed: &[PathBuf]) -> String {
    match changed {
        [] => String::new(),
        [one] => format!(" ({} changed)", one.display()),
        [first, rest @ ..] => format!(" ({} and {} more changed)", first.display(), rest.len()),
    }
}
