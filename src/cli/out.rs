//! Standard output of the commands a person pipes into `head` or `less`: once the reader is
//! gone (EPIPE), the rest of the output is dropped quietly and the command ends with its own
//! exit code. (Rust ignores SIGPIPE, so `println!` would panic there.)

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the pipe closed: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to standard output; after a broken pipe (or any write error) writes nothing.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `print!` that stops quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*)) };
}

/// `println!` that stops quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
