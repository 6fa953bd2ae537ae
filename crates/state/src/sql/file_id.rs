//! Which file a SQLite store has open, so that a write notices when the file at its path is no
//! longer that file (deleted, or replaced by a copy or a restore): SQLite itself would go on
//! committing into the unlinked file, and the run would end with nothing recorded anywhere.

use std::path::{Path, PathBuf};

use crate::error::StateError;

/// The device and inode of a database file when it was opened.
#[derive(Clone, Debug)]
pub(crate) struct FileId {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now; `None` where it cannot be known (off Unix), and
    /// then nothing is checked.
    pub(crate) fn of(path: &Path) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).ok()?;
            Some(FileId {
                path: path.to_path_buf(),
                dev: m.dev(),
                ino: m.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    /// `Ok` while the path still names the file that was opened. One `stat`: cheap beside the
    /// write it guards.
    pub(crate) fn still_there(&self) -> Result<(), StateError> {
        let what = match FileId::of(&self.path) {
            None => "deleted",
            Some(now) if (now.dev, now.ino) != (self.dev, self.ino) => "replaced by another file",
            Some(_) => return Ok(()),
        };
        tracing::error!(path = %self.path.display(), what, "state database gone from its path");
        Err(StateError::FileReplaced {
            path: self.path.display().to_string(),
            what,
        })
    }
}
