//! `backups.toml` into a validated [`Config`], in the steps the files of this folder are named
//! for:
//!
//! 1. [`pieces`]: the text is cut into pieces and parsed into the [`raw`] structs (a large file's
//!    later pieces on a second thread);
//! 2. [`globals`]: the global settings, `[defaults]`, `[ha]` and `[[plan]]`s ([`plans`]) are
//!    settled first;
//! 3. [`backup`]: each `[[backup]]` becomes its rules, through named passes, with typed value
//!    checks ([`values`]), `select_tags` ([`selection`]) and `copy_to` ([`copy_to`]);
//! 4. the checks that need every rule, then [`Config`].
//!
//! Every problem is collected and reported at once ([`diagnostics`]: file, line, column and
//! field), so an operator fixes a file in one pass. Unknown keys are errors (a typo must not
//! silently turn a setting off). The model it builds, [`crate::model`], imports none of this.

mod backup;
mod copy_to;
mod diagnostics;
mod globals;
mod pieces;
mod plans;
mod raw;
mod restore;
mod selection;
mod values;

pub use diagnostics::{ConfigError, Diagnostic};
pub use globals::{
    DEFAULT_BACKUP_READ_RATE, DEFAULT_DESCRIBE_RATE, DEFAULT_SELECTION_REFRESH,
    DEFAULT_START_BURST, DEFAULT_START_RATE,
};
pub use plans::MIN_START_WINDOW_MINUTES;
pub use values::parse_duration;

use std::path::Path;

use self::backup::AllRules;
use self::diagnostics::Report;
use self::globals::{FileSettings, settle, validate_ha};
use self::pieces::{Reader, TARGETS_PER_CHUNK, chunks};
use self::raw::{RawGlobal, RawTargetAt};
use crate::model::Config;

/// The environment variable that may hold the whole TOML text (ECS: an SSM parameter as a secret).
pub const CONFIG_TOML_ENV: &str = "ORCHESTRATOR_CONFIG_TOML";

/// Loads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    from_bytes(bytes, &file)
}

/// Validates the bytes of a config file already read (`--watch` parses what it compared).
pub fn from_bytes(bytes: Vec<u8>, file: &str) -> Result<Config, ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Read {
        file: file.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    parse(&text, file)
}

/// Loads the config from `path`, or from [`CONFIG_TOML_ENV`] when no path is given.
pub fn load_from(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => load(p),
        None => match std::env::var(CONFIG_TOML_ENV) {
            Ok(text) => parse(&text, &format!("<env {CONFIG_TOML_ENV}>")),
            Err(_) => Err(ConfigError::Invalid(vec![Diagnostic {
                file: "<command line>".into(),
                line: 0,
                column: 0,
                field: "--config".into(),
                message: format!("no config: pass --config FILE or set {CONFIG_TOML_ENV}"),
            }])),
        },
    }
}

/// Parses and validates TOML text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_with(text, file, Read::InHalves).0
}

/// How a file's targets were read and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// In file order, by one thread.
    InOrder,
    /// A large file's later pieces in two halves, one per thread ([`ValidatedRun::join`]).
    InHalves,
}

/// [`parse`], reading as `read` says, and how it was read. When the halves cannot be joined as
/// they are (a name taken in both, or a file odd enough that the second half would number its
/// targets apart) the file is parsed again in order, so that every message is the one reading
/// in order gives.
fn parse_with(text: &str, file: &str, read: Read) -> (Result<Config, ConfigError>, Read) {
    let (pieces, settled_at, headers) = chunks(text);
    let piece_count = pieces.len();
    let mut reader = Reader::new(Report::new(file, text), pieces.into_iter(), 0);
    // `[defaults]`, `[[plan]]`s and `[ha]` may follow the targets: read up to the last of them
    // before validating any target (in the usual file, where they come first, that is the first
    // piece); the targets of the later pieces are then read and validated one piece at a time.
    let mut pending: Vec<RawTargetAt> = Vec::new();
    while reader
        .pieces
        .as_slice()
        .first()
        .is_some_and(|(at, _)| *at <= settled_at)
    {
        pending.extend(reader.piece().unwrap_or_default());
    }
    let syntax = |r: &Report<'_>| r.diags.iter().any(|d| d.field == "(syntax)");
    if syntax(&reader.r) {
        // What follows a syntax error would only be noise.
        return (Err(ConfigError::Invalid(reader.r.diags)), Read::InOrder);
    }
    let global = reader.global.take().unwrap_or_default();
    let defaults = reader.defaults.take().unwrap_or_default();
    let plans = std::mem::take(&mut reader.plans);
    let ha = reader.ha.take();
    // From here on every span is absolute.
    let mut r = Report::new(file, text);
    let settled = settle(&mut r, global, defaults, plans);
    let usable = |(path, span, raw): RawTargetAt| raw.map(|raw| (path, span, raw));
    let (all, read) = if reader.pieces.len() == 0 || read == Read::InOrder {
        let later = std::iter::from_fn(|| reader.piece()).flatten();
        let targets = pending.into_iter().chain(later).filter_map(usable);
        (
            settled.context(headers).take(&mut r, targets).all(),
            Read::InOrder,
        )
    } else {
        let halves = Halves {
            file,
            text,
            headers,
            piece_count,
        };
        match halves.read(&mut reader, pending, &settled, &mut r) {
            Some(all) => (all, Read::InHalves),
            None => return parse_with(text, file, Read::InOrder),
        }
    };
    if syntax(&reader.r) {
        return (Err(ConfigError::Invalid(reader.r.diags)), read);
    }
    if !reader.saw_backup {
        reader.r.push(0..0, "backup", "no [[backup]] targets");
    }
    let mut config = settled.finish(&mut r, all);
    config.ha = ha.and_then(|(span, h)| validate_ha(&mut r, span, h));
    // The pieces' own problems first, then the values', as a reader meets them.
    let mut diags = reader.r.diags;
    diags.append(&mut r.diags);
    if diags.is_empty() {
        return (Ok(config), read);
    }
    // A target's bad value is met once per rule of it: report it once.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert(d.clone()));
    (Err(ConfigError::Invalid(diags)), read)
}

/// A large file read in two halves, one per thread.
struct Halves<'t> {
    file: &'t str,
    text: &'t str,
    /// `[[backup]]` headers in the file.
    headers: usize,
    /// Pieces in the file.
    piece_count: usize,
}

impl<'t> Halves<'t> {
    /// Two cores at work on a large file: this thread reads and validates the first half of
    /// the targets (`reader`'s, after `pending`), a second one the other half, each one piece at
    /// a time. `None` when the halves cannot be joined as they are (then the file is read again
    /// in order, so that every message is the one reading in order gives).
    fn read(
        &self,
        reader: &mut Reader<'t>,
        pending: Vec<RawTargetAt>,
        settled: &FileSettings,
        r: &mut Report<'t>,
    ) -> Option<AllRules> {
        let (file, text) = (self.file, self.text);
        let usable = |(path, span, raw): RawTargetAt| raw.map(|raw| (path, span, raw));
        let mut first = reader.pieces.as_slice().to_vec();
        let to_first = (first.len() * TARGETS_PER_CHUNK).saturating_sub(pending.len())
            / (2 * TARGETS_PER_CHUNK);
        let second = first.split_off(to_first);
        reader.pieces = first.into_iter();
        // Every piece but the first starts at a multiple of TARGETS_PER_CHUNK `[[backup]]`s
        // ([`chunks`]): the second half numbers its targets from there, checked below against
        // the count the first half reaches.
        let second_from = (self.piece_count - second.len()) * TARGETS_PER_CHUNK;
        let mut later = Reader::new(Report::new(file, text), second.into_iter(), second_from);
        later.global = Some(RawGlobal::default());
        let first_count = pending.len() + reader.pieces.len() * TARGETS_PER_CHUNK;
        let headers = self.headers;
        let (mine, (theirs, theirs_diags)) = std::thread::scope(|scope| {
            let later = &mut later;
            let second = scope.spawn(move || {
                let mut r = Report::new(file, text);
                let targets = std::iter::from_fn(|| later.piece()).flatten();
                let count = headers.saturating_sub(first_count);
                let taken = settled
                    .context(count)
                    .take(&mut r, targets.filter_map(usable));
                (taken, r.diags)
            });
            let more = std::iter::from_fn(|| reader.piece()).flatten();
            let targets = pending.into_iter().chain(more).filter_map(usable);
            let mine = settled.context(first_count).take(r, targets);
            let theirs = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (mine, theirs)
        });
        let numbered_alike = reader.targets == second_from
            && later.defaults.is_none()
            && later.ha.is_none()
            && later.plans.is_empty();
        let all = numbered_alike.then(|| mine.join(theirs)).flatten()?;
        reader.r.diags.append(&mut later.r.diags);
        reader.saw_backup |= later.saw_backup;
        r.diags.extend(theirs_diags);
        Some(all)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
