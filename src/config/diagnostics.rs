//! Where a problem is: [`Diagnostic`] (file:line:column, field, message), the error a load
//! returns, and the [`Report`] every step pushes its problems to (all of them, at once).

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::*;

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// The file (or `<env ORCHESTRATOR_CONFIG_TOML>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as a path: `backup[2].schedule`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// Why a config could not be loaded: every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The path.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and is wrong.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Collects diagnostics against one source text.
pub(super) struct Report<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    /// Offset of the piece being parsed (its spans count from its own start).
    pub(super) base: usize,
    pub(super) diags: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Report {
            file,
            text,
            base: 0,
            diags: Vec::new(),
        }
    }

    pub(super) fn push(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_col(self.text, self.base + span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Reports every key of `table` that is not in `known` (all of them, not just the first).
    pub(super) fn unknown_keys(&mut self, table: &DeTable<'_>, known: &[&[&str]], path: &str) {
        for key in table.keys() {
            if !known.iter().any(|k| k.contains(&key.get_ref().as_ref())) {
                let mut all: Vec<&str> = known.iter().flat_map(|k| k.iter().copied()).collect();
                all.sort_unstable();
                self.push(
                    key.span(),
                    join(path, key.get_ref()),
                    format!("unknown key (expected one of: {})", all.join(", ")),
                );
            }
        }
    }

    /// Deserializes one table, reporting a type error at its own span.
    pub(super) fn table<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
        let mut owned = value.clone();
        owned.get_mut().make_owned();
        match T::deserialize(ValueDeserializer::from(owned)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(value.span());
                // Name the key whose value holds the error, not only the table.
                let field = value
                    .get_ref()
                    .as_table()
                    .and_then(|t| {
                        t.iter()
                            .find(|(_, v)| v.span().start <= span.start && span.end <= v.span().end)
                    })
                    .map_or_else(|| path.to_string(), |(k, _)| join(path, k.get_ref()));
                self.push(span, field, e.message().to_string());
                None
            }
        }
    }
}

impl Report<'_> {
    /// Reads a `rule` array of tables (of a target or a plan at `path`); spans made absolute.
    pub(super) fn rules(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        path: &str,
        base: usize,
    ) -> Vec<(String, Range<usize>, RawRule)> {
        let Some(items) = v.get_ref().as_array() else {
            self.push(
                v.span(),
                join(path, "rule"),
                "must be an array of tables: [[…rule]]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let rpath = format!("{path}.rule[{i}]");
            let span = item.span().start + base..item.span().end + base;
            let Some(t) = item.get_ref().as_table() else {
                self.push(item.span(), rpath, "must be a table: [[…rule]]");
                continue;
            };
            self.unknown_keys(t, &[RULE_KEYS], &rpath);
            if let Some(raw) = self.table::<RawRule>(item, &rpath) {
                out.push((rpath, span, raw.shifted(base)));
            }
        }
        out
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
