//! `trellis new NAME`: writes a minimal HTTP component project that `trellis dev` runs
//! unchanged: `Cargo.toml`, `src/lib.rs` (a `wasi:http` handler on the `wasip2` bindings, so no
//! WIT files are needed), a `wadm.yaml` for running it as an application, a `Cargo.lock` and a
//! `.gitignore`.
//!
//! The lock file pins the versions Trellis's own test components build with, so a first build
//! downloads three small crates at most, and none when they are in cargo's cache already.

use std::path::PathBuf;

use anyhow::Context as _;

#[derive(clap::Args)]
#[command(after_help = "Then: `cd NAME && trellis dev` builds it, serves it on \
    http://127.0.0.1:8000 and swaps in every change you save (needs the wasm32-wasip2 Rust \
    target: `rustup target add wasm32-wasip2`).")]
pub struct NewArgs {
    /// The project's directory; its last component is the crate's name.
    path: PathBuf,
}

const CARGO_TOML: &str = include_str!("new/Cargo.toml.in");
const LIB_RS: &str = include_str!("new/lib.rs.in");
const MANIFEST: &str = include_str!("new/wadm.yaml.in");
const LOCK: &str = include_str!("new/Cargo.lock.in");
const GITIGNORE: &str = include_str!("new/gitignore.in");

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let name = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_name(&name)?;
    if args.path.exists()
        && std::fs::read_dir(&args.path).map_or(true, |mut entries| entries.next().is_some())
    {
        anyhow::bail!(
            "{} already exists and is not empty: pick another name",
            args.path.display()
        );
    }
    for (path, text) in files(&name) {
        let path = args.path.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created the HTTP component `{name}` in {}\n  next: cd {} && trellis dev",
        args.path.display(),
        args.path.display()
    );
    Ok(())
}

/// Every file of the project, by path relative to its directory.
fn files(name: &str) -> Vec<(&'static str, String)> {
    let lib = name.replace('-', "_");
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{lib}}", &lib);
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("wadm.yaml", fill(MANIFEST)),
        ("Cargo.lock", lock(name)),
        (".gitignore", GITIGNORE.to_string()),
    ]
}

/// The lock file with the project's own entry where cargo sorts it (by name), so that cargo
/// has no reason to rewrite it (a rewrite would be a change `trellis dev` rebuilds for).
fn lock(name: &str) -> String {
    let (head, packages) = LOCK.split_once("[[package]]").unwrap_or((LOCK, ""));
    let mut entries: Vec<String> = packages
        .split("[[package]]")
        .map(|entry| format!("[[package]]{}", entry.trim_end()).replace("{{name}}", name))
        .collect();
    entries.sort_by_key(|entry| package_name(entry).to_string());
    format!("{head}{}\n", entries.join("\n\n"))
}

/// The `name = "…"` of a lock entry.
fn package_name(entry: &str) -> &str {
    entry
        .lines()
        .find_map(|line| line.strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_default()
}

/// A name cargo and the deployer both take: ASCII letters, digits, `-` and `_`, starting with
/// a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "`{name}` cannot name a component: use ASCII letters, digits, `-` and `_`, starting with \
         a letter"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_named_throughout_and_its_lock_is_sorted() {
        let files = files("my-demo");
        let text = |path: &str| &files.iter().find(|(p, _)| *p == path).unwrap().1;
        assert!(text("Cargo.toml").contains("name = \"my-demo\""));
        assert!(text("src/lib.rs").contains("Hello from my-demo at"));
        assert!(text("wadm.yaml").contains("release/my_demo.wasm"));
        let parsed = trellis_deployer::manifest::parse(text("wadm.yaml").as_bytes()).unwrap();
        assert_eq!(parsed.manifest.name, "my-demo");
        let names: Vec<&str> = text("Cargo.lock")
            .split("[[package]]")
            .skip(1)
            .map(package_name)
            .collect();
        assert_eq!(names, ["bitflags", "my-demo", "wasip2", "wit-bindgen"]);
        assert!(!text("Cargo.lock").contains("{{"));
        assert!(check_name("9lives").is_err() && check_name("a/b").is_err());
    }
}
