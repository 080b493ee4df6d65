//! `--watch`, as a pure type: what to do about each look at the config file.
//!
//! The baseline is the hash of the text the running config was parsed from (the very read of
//! [`crate::config::load`]), never a later read: an edit made at any moment after that read,
//! even during restart recovery, differs from it and is reloaded. The file is compared by
//! content, so an in-place write, a rename over it (editors, `install`) and a ConfigMap symlink
//! swap are all the same change. A new content is acted on only once two looks
//! [`SETTLE`] apart agree (a writer still at work is waited for), a missing file keeps the
//! running config, and each refused content and each absence is reported once.

use std::io::ErrorKind;
use std::time::Duration;

use crate::model::ContentHash;

/// How often `--watch` looks at the config file.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// How soon a new content is looked at again before it is acted on.
pub const SETTLE: Duration = Duration::from_millis(250);

/// One look at the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// It was read; the hash of its bytes.
    Read(ContentHash),
    /// It could not be read.
    Unreadable(ErrorKind),
}

/// What the caller does after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the next look comes after [`INTERVAL`]).
    Nothing,
    /// A new content: look again after [`SETTLE`].
    Settle,
    /// The same new content twice: parse those bytes and report with [`Watch::applied`] or
    /// [`Watch::refused`].
    Load,
    /// The file just became unreadable (log once; the running config stays).
    ReportUnreadable(ErrorKind),
    /// The file is readable again with a content already decided on (log once).
    ReportBack,
}

/// What `--watch` knows about the file.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The running config's content.
    applied: ContentHash,
    /// The last content refused (not tried again until it changes).
    refused: Option<ContentHash>,
    /// A new content seen once, waiting for a second look.
    pending: Option<ContentHash>,
    /// The file is unreadable (reported once).
    unreadable: bool,
}

impl Watch {
    /// Starts from the content the running config was parsed from.
    pub fn new(applied: ContentHash) -> Self {
        Self {
            applied,
            refused: None,
            pending: None,
            unreadable: false,
        }
    }

    /// Decides what one look means.
    pub fn observe(&mut self, look: Look) -> Action {
        let hash = match look {
            Look::Unreadable(kind) => {
                self.pending = None;
                if self.unreadable {
                    return Action::Nothing;
                }
                self.unreadable = true;
                return Action::ReportUnreadable(kind);
            }
            Look::Read(hash) => hash,
        };
        let was_unreadable = std::mem::replace(&mut self.unreadable, false);
        if hash == self.applied || self.refused == Some(hash) {
            self.pending = None;
            return if was_unreadable {
                Action::ReportBack
            } else {
                Action::Nothing
            };
        }
        if self.pending == Some(hash) {
            self.pending = None;
            Action::Load
        } else {
            self.pending = Some(hash);
            Action::Settle
        }
    }

    /// A config of this content now runs (a watched change or SIGHUP).
    pub fn applied(&mut self, hash: ContentHash) {
        self.applied = hash;
        self.refused = None;
        self.pending = None;
    }

    /// This content was refused: it is not tried (nor reported) again until it changes.
    pub fn refused(&mut self, hash: ContentHash) {
        self.refused = Some(hash);
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Look {
        Look::Read([n; 32])
    }

    #[test]
    fn a_new_content_is_loaded_once_two_looks_agree() {
        let mut w = Watch::new([1; 32]);
        assert_eq!(w.observe(h(1)), Action::Nothing);
        assert_eq!(w.observe(h(2)), Action::Settle);
        assert_eq!(w.observe(h(2)), Action::Load);
        w.applied([2; 32]);
        assert_eq!(w.observe(h(2)), Action::Nothing);
    }

    #[test]
    fn a_file_still_being_written_is_waited_for() {
        let mut w = Watch::new([1; 32]);
        assert_eq!(w.observe(h(2)), Action::Settle);
        assert_eq!(w.observe(h(3)), Action::Settle, "it changed again: wait");
        assert_eq!(w.observe(h(3)), Action::Load);
    }

    #[test]
    fn an_edit_made_before_the_first_look_is_a_change() {
        // The baseline is the loaded text, not whatever the file holds at the first look.
        let mut w = Watch::new([1; 32]);
        assert_eq!(w.observe(h(9)), Action::Settle);
        assert_eq!(w.observe(h(9)), Action::Load);
    }

    #[test]
    fn a_refused_content_is_tried_and_reported_once() {
        let mut w = Watch::new([1; 32]);
        w.observe(h(2));
        assert_eq!(w.observe(h(2)), Action::Load);
        w.refused([2; 32]);
        for _ in 0..3 {
            assert_eq!(w.observe(h(2)), Action::Nothing);
        }
        assert_eq!(w.observe(h(3)), Action::Settle);
        assert_eq!(w.observe(h(3)), Action::Load);
    }

    #[test]
    fn a_missing_file_is_reported_once_and_its_return_is_a_change_or_not() {
        let mut w = Watch::new([1; 32]);
        let gone = Look::Unreadable(ErrorKind::NotFound);
        assert_eq!(
            w.observe(gone),
            Action::ReportUnreadable(ErrorKind::NotFound)
        );
        assert_eq!(w.observe(gone), Action::Nothing);
        assert_eq!(w.observe(h(1)), Action::ReportBack, "back as it was");
        assert_eq!(w.observe(h(1)), Action::Nothing);
        assert_eq!(
            w.observe(gone),
            Action::ReportUnreadable(ErrorKind::NotFound)
        );
        assert_eq!(w.observe(h(2)), Action::Settle, "back with a new content");
        assert_eq!(w.observe(h(2)), Action::Load);
    }

    #[test]
    fn a_disappearance_between_two_looks_restarts_the_settling() {
        let mut w = Watch::new([1; 32]);
        assert_eq!(w.observe(h(2)), Action::Settle);
        w.observe(Look::Unreadable(ErrorKind::NotFound));
        assert_eq!(w.observe(h(2)), Action::Settle);
        assert_eq!(w.observe(h(2)), Action::Load);
    }
}
