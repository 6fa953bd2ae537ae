//! Terminal conventions: colour only on a TTY, never with `NO_COLOR` (or `CLICOLOR=0`,
//! `TERM=dumb`), always with `CLICOLOR_FORCE`: anstream's reading of the conventions, decided
//! here once for everything Cairn writes on stderr. JSON on stdout.

use std::io::Write;

/// Whether stderr gets colour.
pub fn color_stderr() -> bool {
    static CHOICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
    })
}

/// `style` as an escape sequence when stderr gets colour, else nothing.
pub fn on(style: anstyle::Style) -> String {
    if color_stderr() {
        style.render().to_string()
    } else {
        String::new()
    }
}

/// The start of an error's label (`error:`), as diagnostics print it.
pub fn red() -> String {
    on(cairn_model::diag::ERROR)
}

/// The end of a styled span.
pub fn reset() -> String {
    if color_stderr() {
        anstyle::Reset.render().to_string()
    } else {
        String::new()
    }
}

pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    // Buffered: stdout is line-buffered, and a 10,000-step plan is 170,000 lines. 64 KiB
    // chunks: 3.4 MB of plan in about 50 writes instead of 420 with the default 8 KiB.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

pub use cairn_model::escape_controls;

/// `error: MESSAGE` on stderr, the message escaped: an error quotes steps' output and values.
pub fn error(message: impl std::fmt::Display) {
    eprint_line(&format!(
        "{}error{}: {}",
        red(),
        reset(),
        escape_controls(&message.to_string())
    ));
}

/// One line on stderr in one `write(2)`: stderr is unbuffered, and `eprintln!` of a formatted
/// value writes it piece by piece (a 10,000-row summary table was 10,000s of system calls).
pub fn eprint_line(text: &str) {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Text on stdout (a plan, a run's history, a step's log, a plugin answer), control
/// characters escaped: it quotes steps' output and values, and stdout is often a terminal.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(escape_controls(text).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `cairn plan x | head` must not report an error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
