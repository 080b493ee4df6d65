//! Reading the text into pieces: the TOML of a large file is cut at `[[backup]]` headers and
//! read piece by piece, the later pieces on a second thread while the first is validated.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostics::{Report, join};
use super::raw::{
    GLOBAL_KEYS, HA_KEYS, PLAN_KEYS, POLICY_KEYS, RawGlobal, RawHa, RawPlan, RawPolicy, RawTarget,
    RawTargetAt, TARGET_KEYS, shift, shift_copies, shift_fields,
};

/// Targets parsed in one piece: the TOML parser holds several times a document's size while it
/// works; in pieces of this many `[[backup]]` tables the start-up peak stays small at 100,000
/// targets.
pub(super) const TARGETS_PER_CHUNK: usize = 500;

/// Splits the text before every [`TARGETS_PER_CHUNK`]-th `[[backup]]` header (outside multi-line
/// strings), returning each piece with its byte offset, and the offset of the last table header
/// that is not a target's (`[defaults]`, `[[plan]]`, `[ha]`, …; 0 when there is none): targets
/// can be validated once the piece holding it has been read; and the number of `[[backup]]`s.
pub(super) fn chunks(text: &str) -> (Vec<(usize, &str)>, usize, usize) {
    let mut cuts = vec![0];
    let mut headers = 0usize;
    let mut settled_at = 0;
    // A line at `offset` that starts (after blanks) with `[`, from there to its end.
    let mut header = |offset: usize, trimmed: &str| {
        let target = trimmed.strip_prefix("[[").and_then(|r| {
            let (name, _) = r.split_once("]]")?;
            (name.trim() == "backup").then_some(())
        });
        if target.is_some() {
            if headers > 0 && headers.is_multiple_of(TARGETS_PER_CHUNK) {
                cuts.push(offset);
            }
            headers += 1;
        } else if !is_target_table(trimmed) {
            settled_at = offset;
        }
    };
    let bytes = text.as_bytes();
    let multi_line = ["\"\"\"", "'''"]
        .iter()
        .any(|d| memchr::memmem::find(bytes, d.as_bytes()).is_some());
    if !multi_line {
        // The usual file: every `[` that only blanks precede on its line opens a header.
        for at in memchr::memchr_iter(b'[', bytes) {
            let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
            if text[start..at].trim_start().is_empty() {
                let end = memchr::memchr(b'\n', &bytes[at..]).map_or(text.len(), |i| at + i + 1);
                header(start, &text[at..end]);
            }
        }
    } else {
        let mut in_string: Option<&'static str> = None;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if in_string.is_none() && trimmed.starts_with('[') {
                header(offset, trimmed);
            }
            // Track multi-line string delimiters so that a header-like line inside one is no cut.
            let mut rest = if in_string.is_some() {
                line
            } else {
                line.split('#').next().unwrap_or("")
            };
            while let Some((i, delim)) = triple_quote(rest, in_string) {
                in_string = if in_string.is_some() {
                    None
                } else {
                    Some(delim)
                };
                rest = &rest[i + 3..];
            }
            offset += line.len();
        }
    }
    cuts.push(text.len());
    let pieces = cuts.windows(2).map(|w| (w[0], &text[w[0]..w[1]])).collect();
    (pieces, settled_at, headers)
}

/// The first `"""` or `'''` in `s` (of `only`'s kind when given): its offset and itself.
pub(super) fn triple_quote(s: &str, only: Option<&'static str>) -> Option<(usize, &'static str)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'"', b'\'', &b[from..]).map(|i| i + from) {
        let c = b[i];
        let delim = if c == b'"' { "\"\"\"" } else { "'''" };
        if b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c) && only.is_none_or(|o| o == delim) {
            return Some((i, delim));
        }
        from = i + 1;
    }
    None
}

/// True for a header line of a target's own table (`[[backup.rule]]`, `[backup.x]`). Anything
/// else that starts with `[` counts as another table: at worst, validation waits longer.
pub(super) fn is_target_table(line: &str) -> bool {
    let name = line.trim_start_matches('[');
    let first = name.split(['.', ']']).next().unwrap_or("").trim();
    matches!(first, "backup" | "\"backup\"" | "'backup'")
}

/// Reads the pieces of a config text one at a time ([`chunks`]): the top-level settings,
/// `[defaults]`, `[ha]`, `[[plan]]`s, and each piece's `[[backup]]`s, raw. Targets are handed
/// on piece by piece, so that at most one piece's raw tables are held at once.
pub(super) struct Reader<'a> {
    pub(super) r: Report<'a>,
    pub(super) pieces: std::vec::IntoIter<(usize, &'a str)>,
    pub(super) global: Option<RawGlobal>,
    pub(super) defaults: Option<RawPolicy>,
    pub(super) ha: Option<(Range<usize>, RawHa)>,
    pub(super) plans: Vec<RawPlan>,
    pub(super) saw_backup: bool,
    /// `[[backup]]`s read so far (their numbering in messages).
    pub(super) targets: usize,
}

impl<'a> Reader<'a> {
    /// Reads `pieces`, numbering their targets from `first_target`.
    pub(super) fn new(
        r: Report<'a>,
        pieces: std::vec::IntoIter<(usize, &'a str)>,
        first_target: usize,
    ) -> Self {
        Reader {
            r,
            pieces,
            global: None,
            defaults: None,
            ha: None,
            plans: Vec::new(),
            saw_backup: false,
            targets: first_target,
        }
    }

    /// Reads the next piece: its targets, or `None` after the last.
    pub(super) fn piece(&mut self) -> Option<Vec<RawTargetAt>> {
        let (base, chunk) = self.pieces.next()?;
        self.r.base = base;
        let mut raw_targets = Vec::new();
        let root = match DeTable::parse(chunk) {
            Ok(root) => root,
            Err(e) => {
                self.r.push(
                    e.span().unwrap_or(0..0),
                    "(syntax)",
                    e.message().to_string(),
                );
                return Some(raw_targets);
            }
        };
        let root_span = root.span();
        let root_table = root.get_ref();
        self.r.unknown_keys(root_table, &[GLOBAL_KEYS], "");
        // Top-level settings precede every table header, so they are all in the first piece.
        if self.global.is_none() {
            self.read_globals(root_table, root_span, base);
        }
        for (key, v) in root_table.iter() {
            match key.get_ref().as_ref() {
                "defaults" => self.read_defaults(key, v, base),
                "ha" => self.read_ha(key, v, base),
                "backup" => self.read_backups(v, base, &mut raw_targets),
                "plan" => self.read_plans(v, base),
                _ => {}
            }
        }
        Some(raw_targets)
    }

    /// The top-level settings: every key of the root table that is not a table of ours.
    fn read_globals(&mut self, root: &DeTable<'_>, span: Range<usize>, base: usize) {
        let mut globals = DeTable::new();
        for (k, v) in root.iter() {
            if !matches!(k.get_ref().as_ref(), "backup" | "defaults" | "plan" | "ha") {
                globals.insert(k.clone(), v.clone());
            }
        }
        let value = Spanned::new(span, DeValue::Table(globals));
        let mut g: RawGlobal = self.r.table(&value, "(top level)").unwrap_or_default();
        shift_fields!(g, base; state_machine_arn, region, endpoint_url, timezone,
            poll_interval, max_poll_interval, log_format, listen, start_rate, start_burst,
            describe_rate, backup_read_rate, shutdown_grace, recovery_lookback,
            selection_refresh, restore_state_machine_arn, restore_sweep_interval,
            restore_sweep_grace);
        self.global = Some(g);
    }

    /// `[defaults]`.
    fn read_defaults(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        v: &Spanned<DeValue<'_>>,
        base: usize,
    ) {
        let r = &mut self.r;
        match v.get_ref().as_table() {
            Some(_) if self.defaults.is_some() => {
                r.push(key.span(), "defaults", "duplicate [defaults] table");
            }
            Some(t) => {
                r.unknown_keys(t, &[POLICY_KEYS], "defaults");
                let mut d: RawPolicy = r.table(v, "defaults").unwrap_or_default();
                shift_fields!(d, base; catch_up, starting_deadline, concurrency, jitter,
                    start_window_minutes, complete_window_minutes, delete_after_days,
                    pre_document, post_document, post_hook_when, hook_max_downtime,
                    on_pre_hook_failure, windows_vss, restore, restore_test);
                d.copy_to = shift_copies(d.copy_to.take(), base);
                self.defaults = Some(d);
            }
            None => r.push(v.span(), "defaults", "must be a table: [defaults]"),
        }
    }

    /// `[ha]`.
    fn read_ha(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        v: &Spanned<DeValue<'_>>,
        base: usize,
    ) {
        let r = &mut self.r;
        match v.get_ref().as_table() {
            Some(_) if self.ha.is_some() => {
                r.push(key.span(), "ha", "duplicate [ha] table");
            }
            Some(t) => {
                r.unknown_keys(t, &[HA_KEYS], "ha");
                let mut h: RawHa = r.table(v, "ha").unwrap_or_default();
                shift_fields!(h, base; lease_table, lease_duration, renew_interval, owner_id);
                let span = key.span().start + base..key.span().end + base;
                self.ha = Some((span, h));
            }
            None => r.push(v.span(), "ha", "must be a table: [ha]"),
        }
    }

    /// The `[[backup]]`s of this piece, numbered across pieces: messages name a target's place
    /// in the file.
    fn read_backups(&mut self, v: &Spanned<DeValue<'_>>, base: usize, out: &mut Vec<RawTargetAt>) {
        self.saw_backup = true;
        let r = &mut self.r;
        let Some(items) = v.get_ref().as_array() else {
            r.push(v.span(), "backup", "must be an array of tables: [[backup]]");
            return;
        };
        for item in items.iter() {
            let path = format!("backup[{}]", self.targets);
            self.targets += 1;
            let span = item.span().start + base..item.span().end + base;
            let Some(t) = item.get_ref().as_table() else {
                r.push(item.span(), path.clone(), "must be a table: [[backup]]");
                out.push((path, span, None));
                continue;
            };
            r.unknown_keys(t, &[TARGET_KEYS, POLICY_KEYS], &path);
            let rules = t.get("rule").map(|v| {
                let span = v.span().start + base..v.span().end + base;
                (span, r.rules(v, &path, base))
            });
            let raw = r.table::<RawTarget>(item, &path).map(|mut raw| {
                shift_fields!(raw, base; name, resource_arn, schedule, timezone,
                    state_machine_arn, enabled, pre_command, post_command, catch_up,
                    starting_deadline, concurrency, jitter, start_window_minutes,
                    complete_window_minutes, delete_after_days, pre_document,
                    post_document, post_hook_when, hook_max_downtime,
                    on_pre_hook_failure, windows_vss, plan, select_tags,
                    exclude_tags, restore, restore_test);
                raw.copy_to = shift_copies(raw.copy_to.take(), base);
                (raw, rules)
            });
            out.push((path, span, raw));
        }
    }

    /// The `[[plan]]`s of this piece.
    fn read_plans(&mut self, v: &Spanned<DeValue<'_>>, base: usize) {
        let r = &mut self.r;
        let Some(items) = v.get_ref().as_array() else {
            r.push(v.span(), "plan", "must be an array of tables: [[plan]]");
            return;
        };
        for item in items.iter() {
            let path = format!("plan[{}]", self.plans.len());
            let span = item.span().start + base..item.span().end + base;
            let Some(t) = item.get_ref().as_table() else {
                r.push(item.span(), path.clone(), "must be a table: [[plan]]");
                continue;
            };
            r.unknown_keys(t, &[PLAN_KEYS], &path);
            let name = t.get("name").and_then(|n| match n.get_ref().as_str() {
                Some(s) => Some(Spanned::new(
                    n.span().start + base..n.span().end + base,
                    s.to_string(),
                )),
                None => {
                    r.push(n.span(), join(&path, "name"), "must be a string");
                    None
                }
            });
            let rules = match t.get("rule") {
                Some(v) => r.rules(v, &path, base),
                None => Vec::new(),
            };
            let restore = r
                .table::<super::raw::RawPlanRestores>(item, &path)
                .unwrap_or_default();
            self.plans.push(RawPlan {
                path,
                span,
                name,
                rules,
                restore: shift(restore.restore, base),
                restore_test: shift(restore.restore_test, base),
            });
        }
    }
}
