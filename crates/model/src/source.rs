//! The one door through which runbooks, `uses` sub-runbooks and report templates are read.
//!
//! A file named by a runbook is hostile input like any other: a FIFO called `x.yaml` would block
//! a plain `read_to_string` forever, `/dev/zero` would fill memory, and a 5 MB file of garbage
//! is not a runbook. So only regular files are read (symbolic links are followed, a loop of
//! links is the kernel's "too many levels of symbolic links"), never more than
//! [`MAX_SOURCE_BYTES`], and text that is not UTF-8 is refused at its line and column.

use std::io::Read as _;
use std::path::Path;

/// The largest runbook, sub-runbook or report template read: 16 MiB. A 10,000-step runbook is
/// about 1 MiB.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a source file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("cannot read {path}: it is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("cannot read {path}: larger than the {} MiB limit", limit / (1024 * 1024))]
    TooLarge { path: String, limit: u64 },
    #[error("{path}:{line}:{col}: not valid UTF-8 (byte 0x{byte:02x})")]
    NotUtf8 {
        path: String,
        /// The text with the bad bytes replaced by U+FFFD, for rendering a located error.
        lossy: String,
        /// Byte offset of the first bad byte (the same in `lossy`).
        offset: usize,
        line: u32,
        col: u32,
        byte: u8,
    },
}

/// Reads a regular file of at most [`MAX_SOURCE_BYTES`] as UTF-8 text.
pub fn read(path: &Path) -> Result<String, ReadError> {
    read_limited(path, MAX_SOURCE_BYTES, true)
}

/// The largest secret file read: 1 MiB. A key, a token or a certificate chain is a few KiB.
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024;

/// Reads a secret file (`secrets.X.file`): a regular file of at most [`MAX_SECRET_BYTES`], as
/// UTF-8 text. A FIFO would block the run's start forever, and a device would fill memory.
pub fn read_secret(path: &Path) -> Result<String, ReadError> {
    read_limited(path, MAX_SECRET_BYTES, true)
}

/// Reads at most [`MAX_SOURCE_BYTES`] of UTF-8 text from a file the user named on the command
/// line (`--inputs`), which may also be a pipe (`--inputs <(vault read …)`): it is read as
/// given, but never past the limit.
pub fn read_any(path: &Path) -> Result<String, ReadError> {
    read_limited(path, MAX_SOURCE_BYTES, false)
}

/// Opens a file for reading only if it is a regular file (symbolic links followed): a FIFO or a
/// device is refused without blocking on it.
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| ReadError::Io {
        path: name.clone(),
        reason: short_reason(&e),
    };
    // Refuse what is not a regular file before opening it: opening a FIFO for reading
    // blocks until a writer comes, and opening some devices has effects of its own.
    check_regular(&name, &std::fs::metadata(path).map_err(io)?)?;
    // Non-blocking, so that a FIFO swapped in after the check cannot block the open
    // either; the opened file is checked again.
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    check_regular(&name, &file.metadata().map_err(io)?)?;
    Ok(file)
}

pub(crate) fn read_limited(path: &Path, limit: u64, regular: bool) -> Result<String, ReadError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| ReadError::Io {
        path: name.clone(),
        reason: short_reason(&e),
    };
    let file = if regular {
        open_regular(path)?
    } else {
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            return Err(ReadError::NotRegular {
                path: name,
                kind: "a folder",
            });
        }
        std::fs::File::open(path).map_err(io)?
    };
    let len = file.metadata().map_err(io)?.len();
    if len > limit {
        return Err(ReadError::TooLarge { path: name, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow after the check: never read past the limit.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: name, limit });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let byte = bytes.get(offset).copied().unwrap_or_default();
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let before = &lossy[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        ReadError::NotUtf8 {
            path: name.clone(),
            lossy,
            offset,
            line: line as u32,
            col: col as u32,
            byte,
        }
    })
}

fn check_regular(path: &str, meta: &std::fs::Metadata) -> Result<(), ReadError> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(ReadError::NotRegular {
        path: path.to_string(),
        kind,
    })
}

/// "permission denied" rather than "Permission denied (os error 13)".
fn short_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text
        .find(" (os error ")
        .map_or(text.as_str(), |i| &text[..i]);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_errors_are_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, b"cairn: 1\nname: d\xc3\xa9mo \xff\n").expect("write");
        match read(&p) {
            Err(ReadError::NotUtf8 {
                line,
                col,
                byte,
                offset,
                lossy,
                ..
            }) => {
                assert_eq!((line, col, byte), (2, 12, 0xff));
                assert_eq!(&lossy[offset..offset + 3], "\u{fffd}");
            }
            other => panic!("expected NotUtf8, got {other:?}"),
        }
    }

    #[test]
    fn the_limit_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big.yaml");
        std::fs::write(&p, vec![b'#'; 101]).expect("write");
        assert!(matches!(
            read_limited(&p, 100, true),
            Err(ReadError::TooLarge { .. })
        ));
        assert!(read_limited(&p, 101, true).is_ok());
    }
}
