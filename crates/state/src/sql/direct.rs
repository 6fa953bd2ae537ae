//! Checkpoints written on the caller's thread: a SQLite connection of the store's own, driven
//! through SQLite's C API, for the one statement on every step's path (the fenced upsert of
//! [`super::dialect::upsert_steps_sql`]).
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, and a statement is a hand-off
//! to that thread and back (the command sent, the result sent, the stream's end), each a
//! futex wake-up and a context switch; on a step that runs `/bin/true` those cost more than
//! SQLite's own commit. Here the statement is prepared once per row count and kept, bound and
//! stepped where the engine awaits it: the commit is made when the call returns, as before.
//!
//! It is a fast path only. The connection never waits for SQLite's write lock (no busy
//! timeout): when another writer holds it, or when anything else fails, [`Direct::upsert`]
//! says so and the store makes the same write through sqlx's connection, which waits on its
//! own thread and reports errors as every other write does. A failed statement commits
//! nothing, so writing it again is the same write. Used with `synchronous=NORMAL` only: with
//! `?sync=full` every commit waits for the disk, which the engine's thread must not.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_int};
use std::path::Path;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

use super::dialect::{STEP_PARAMS, upsert_steps_sql};
use super::params::{Value, step_row};
use crate::types::{Claim, StepRecord};

/// An open connection and its prepared upserts.
pub(crate) struct Direct {
    db: NonNull<ffi::sqlite3>,
    /// By row count: the statement, and for each of its parameters (1-based, in SQLite's
    /// order) the `$N` it stands for.
    upserts: HashMap<usize, (NonNull<ffi::sqlite3_stmt>, Vec<usize>)>,
}

// SAFETY: the connection is opened in SQLite's multi-thread mode (SQLITE_OPEN_NOMUTEX): it may
// move between threads as long as one uses it at a time, which `&mut self` on every use
// ensures (the store keeps it behind its writer lock).
unsafe impl Send for Direct {}

impl Direct {
    /// Opens the migrated WAL database at `path` for checkpoint writes; `None` when that fails
    /// (the store then writes every checkpoint through sqlx).
    pub(crate) fn open(path: &Path) -> Option<Direct> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        let mut db = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer; the handle is closed on every failure.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                cpath.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        let direct = Direct {
            db: NonNull::new(db)?,
            upserts: HashMap::new(),
        };
        if rc != ffi::SQLITE_OK {
            return None;
        }
        // The settings of sqlx's connections (schema.rs), but for the busy timeout: none.
        direct
            .exec(c"PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
            .then_some(())?;
        // WAL is a property of the file, set when it was migrated; anything else is not the
        // file this store set up.
        (direct
            .single_text(c"PRAGMA journal_mode")?
            .eq_ignore_ascii_case("wal"))
        .then_some(direct)
    }

    fn exec(&self, sql: &CStr) -> bool {
        // SAFETY: an open connection and a valid C string; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        rc == ffi::SQLITE_OK
    }

    fn single_text(&self, sql: &CStr) -> Option<String> {
        let mut stmt = ptr::null_mut();
        // SAFETY: an open connection; the statement is finalized before returning.
        unsafe {
            if ffi::sqlite3_prepare_v2(
                self.db.as_ptr(),
                sql.as_ptr(),
                -1,
                &mut stmt,
                ptr::null_mut(),
            ) != ffi::SQLITE_OK
            {
                ffi::sqlite3_finalize(stmt);
                return None;
            }
            let text = if ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
                let p = ffi::sqlite3_column_text(stmt, 0);
                (!p.is_null()).then(|| CStr::from_ptr(p.cast()).to_string_lossy().into_owned())
            } else {
                None
            };
            ffi::sqlite3_finalize(stmt);
            text
        }
    }

    /// The statement for `rows` rows, prepared on first use.
    fn upsert_statement(&mut self, rows: usize) -> Option<(NonNull<ffi::sqlite3_stmt>, &[usize])> {
        if !self.upserts.contains_key(&rows) {
            let sql = upsert_steps_sql(rows, "");
            let len = c_int::try_from(sql.len()).ok()?;
            let mut stmt = ptr::null_mut();
            // SAFETY: an open connection and `len` bytes of SQL; the statement is kept until
            // `Drop` finalizes it (or finalized here when it cannot be used).
            let stmt = unsafe {
                let rc = ffi::sqlite3_prepare_v3(
                    self.db.as_ptr(),
                    sql.as_ptr().cast(),
                    len,
                    ffi::SQLITE_PREPARE_PERSISTENT,
                    &mut stmt,
                    ptr::null_mut(),
                );
                if rc != ffi::SQLITE_OK {
                    ffi::sqlite3_finalize(stmt);
                    return None;
                }
                NonNull::new(stmt)?
            };
            // sqlx's `$N` are SQLite named parameters ("$3" first: they are numbered in the
            // order they appear); each is bound by the number in its name, as sqlx does.
            // SAFETY: a prepared statement; names are C strings owned by it.
            let order: Option<Vec<usize>> = unsafe {
                (1..=ffi::sqlite3_bind_parameter_count(stmt.as_ptr()))
                    .map(|i| {
                        let name = ffi::sqlite3_bind_parameter_name(stmt.as_ptr(), i);
                        if name.is_null() {
                            return None;
                        }
                        CStr::from_ptr(name)
                            .to_str()
                            .ok()?
                            .strip_prefix('$')?
                            .parse()
                            .ok()
                    })
                    .collect()
            };
            let Some(order) = order.filter(|o| o.len() == 2 + rows * STEP_PARAMS) else {
                // SAFETY: the statement just prepared, used nowhere else.
                unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
                return None;
            };
            self.upserts.insert(rows, (stmt, order));
        }
        self.upserts.get(&rows).map(|(s, o)| (*s, o.as_slice()))
    }

    /// Writes `recs` as one fenced autocommit statement: `Some(true)` written, `Some(false)`
    /// fenced (the run is not held by `claim`: nothing written), `None` not done (the write
    /// lock was taken, or anything failed), to be made through sqlx.
    pub(crate) fn upsert(&mut self, claim: &Claim, recs: &[&StepRecord]) -> Option<bool> {
        let mut values = Vec::with_capacity(2 + recs.len() * STEP_PARAMS);
        values.push(Value::Text(Some(claim.run_id.clone())));
        values.push(Value::Int(i64::from(claim.attempt)));
        for rec in recs {
            values.extend(step_row(rec).map(|p| p.sqlite()));
        }
        let db = self.db.as_ptr();
        let (stmt, order) = self.upsert_statement(recs.len())?;
        let stmt = stmt.as_ptr();
        // SAFETY: a prepared statement of this connection; every text is copied by SQLite
        // (SQLITE_TRANSIENT); the statement is reset and its bindings cleared before returning.
        unsafe {
            let mut ok = true;
            for (i, n) in (1..).zip(order) {
                let rc = match values.get(n.wrapping_sub(1)) {
                    Some(Value::Int(v)) => ffi::sqlite3_bind_int64(stmt, i, *v),
                    Some(Value::Text(None)) => ffi::sqlite3_bind_null(stmt, i),
                    Some(Value::Text(Some(s))) => ffi::sqlite3_bind_text64(
                        stmt,
                        i,
                        s.as_ptr().cast(),
                        s.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    None => ffi::SQLITE_RANGE,
                };
                if rc != ffi::SQLITE_OK {
                    ok = false;
                    break;
                }
            }
            let out = if ok && ffi::sqlite3_step(stmt) == ffi::SQLITE_DONE {
                Some(ffi::sqlite3_changes64(db) > 0)
            } else {
                None
            };
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
            out
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // SAFETY: statements of this connection, then the connection (which every statement
        // being finalized lets close at once); none is used again.
        unsafe {
            for (stmt, _) in self.upserts.values() {
                ffi::sqlite3_finalize(stmt.as_ptr());
            }
            ffi::sqlite3_close(self.db.as_ptr());
        }
    }
}
