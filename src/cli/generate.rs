//! What a package ships beside the binary, generated from the clap definitions: the man pages
//! and the bash, zsh and fish completions (`orchestrator generate --out-dir DIR`, a hidden
//! subcommand run by `scripts/package-deb.sh`). Nothing generated is checked in.

use std::io;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;

use super::args::{Cli, EXIT_FAILURE};

/// The shells whose completions are generated, and where Debian's packages of them look.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash-completion/completions/orchestrator"),
    (Shell::Zsh, "zsh/vendor-completions/_orchestrator"),
    (Shell::Fish, "fish/vendor_completions.d/orchestrator.fish"),
];

/// The command line as users see it: `Cli` without its hidden subcommands (clap_complete would
/// offer them; clap_mangen already leaves them out).
pub fn documented_command() -> Command {
    let full = Cli::command();
    let mut cmd = Command::new("orchestrator")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    if let Some(long) = full.get_long_about() {
        cmd = cmd.long_about(long.clone());
    }
    cmd
}

/// Writes `man/orchestrator.1` (and one page per subcommand, `orchestrator-check.1` …) and
/// `completions/<path of SHELLS>` under `out_dir`; returns the files written.
pub fn generate(out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out_dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(documented_command(), &man)?;
    for entry in std::fs::read_dir(&man)? {
        written.push(entry?.path());
    }
    for (shell, rel) in SHELLS {
        let path = out_dir.join("completions").join(rel);
        std::fs::create_dir_all(path.parent().expect("a relative path with a parent"))?;
        let mut file = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut documented_command(), "orchestrator", &mut file);
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// `generate --out-dir DIR`: writes the files and prints their paths.
pub(super) fn run(out_dir: &Path) -> i32 {
    match generate(out_dir) {
        Ok(files) => {
            files.iter().for_each(|f| println!("{}", f.display()));
            0
        }
        Err(e) => {
            eprintln!("generate: {}: {e}", out_dir.display());
            EXIT_FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_subcommands(cmd: &Command) -> Vec<String> {
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_owned())
            .collect()
    }

    #[test]
    fn documented_command_is_the_cli_without_hidden_subcommands() {
        let full = Cli::command();
        let doc = documented_command();
        assert!(full.get_subcommands().any(|s| s.get_name() == "generate"));
        assert_eq!(visible_subcommands(&doc), visible_subcommands(&full));
        assert!(!doc.get_subcommands().any(|s| s.get_name() == "generate"));
        let ids = |c: &Command| {
            c.get_arguments()
                .map(|a| a.get_id().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&doc), ids(&full));
        assert_eq!(doc.get_about(), full.get_about());
        doc.debug_assert();
    }

    #[test]
    fn generates_man_pages_and_completions_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert!(
            names.contains(&"man/orchestrator.1".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"man/orchestrator-run-now.1".to_owned()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        for (_, rel) in SHELLS {
            assert!(names.contains(&format!("completions/{rel}")), "{names:?}");
        }

        let main = std::fs::read_to_string(dir.path().join("man/orchestrator.1")).unwrap();
        assert!(
            main.starts_with(".ie"),
            "not roff: {}",
            &main[..40.min(main.len())]
        );
        assert!(main.contains(env!("CARGO_PKG_VERSION")));
        assert!(main.contains("healthcheck"));
        for (_, rel) in SHELLS {
            let text = std::fs::read_to_string(dir.path().join("completions").join(rel)).unwrap();
            for sub in ["check", "run-now", "config", "dry-run"] {
                assert!(text.contains(sub), "{rel} lacks {sub}");
            }
            assert!(
                !text.contains("generate"),
                "{rel} offers the hidden subcommand"
            );
        }
    }
}
