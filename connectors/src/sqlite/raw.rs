//! SQLite's C API for the data path. sqlx hands every row between SQLite's
//! thread and the async task as an owned row of reference-counted values,
//! and every bound value likewise; a chunk of a million rows paid for that
//! more than for SQLite's own work. Chunks are read through a read-only
//! handle of Ferry's own on a blocking thread ([`RawDb`]), and written
//! through sqlx's own handle, locked out of its thread
//! (`SqliteConnection::lock_handle`), so the rows join the chunk's
//! transaction ([`Handle::borrowed`]).
//!
//! Every `unsafe` block calls SQLite on a handle (or statement) that is open
//! and used by no other thread meanwhile.

use std::ffi::{c_int, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::Duration;

use ferry_common::errors::{DbFailure, ErrorClass};
use libsqlite3_sys as ffi;

use super::errors::{classify_code, sqlstate};
use crate::bounds::Bind;
use crate::iso;
use crate::value::Value;

/// An open database handle: SQLite's calls go through it.
#[derive(Debug, Clone, Copy)]
pub struct Handle(NonNull<ffi::sqlite3>);

/// An open read-only database handle of Ferry's own, closed when dropped.
pub struct RawDb(Handle);

// SAFETY: the handle is opened with SQLITE_OPEN_NOMUTEX and moved, never
// shared: only the thread holding the `RawDb` calls SQLite with it.
unsafe impl Send for RawDb {}

impl std::ops::Deref for RawDb {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

impl RawDb {
    /// Opens `path` read-only (never creating it), waiting up to `busy` for
    /// a writer's lock.
    pub fn open_read_only(path: &Path, busy: Duration) -> Result<Self, DbFailure> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            DbFailure::permanent(format!(
                "the SQLite path {} holds a NUL byte",
                path.display()
            ))
        })?;
        let mut db: *mut ffi::sqlite3 = ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: c_path is a valid C string; db receives the new handle.
        let rc = unsafe { ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags, ptr::null()) };
        let Some(handle) = NonNull::new(db) else {
            return Err(DbFailure::transient(format!(
                "cannot open {} (SQLite error {rc}: out of memory)",
                path.display()
            )));
        };
        let raw = RawDb(Handle(handle));
        if rc != ffi::SQLITE_OK {
            return Err(raw
                .failure(rc)
                .context(format!("cannot open {}", path.display())));
        }
        let ms = c_int::try_from(busy.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the handle is open.
        unsafe { ffi::sqlite3_busy_timeout(raw.0 .0.as_ptr(), ms) };
        Ok(raw)
    }
}

impl Drop for RawDb {
    fn drop(&mut self) {
        // SAFETY: every statement borrows the handle, so all are finalized.
        unsafe { ffi::sqlite3_close(self.0 .0.as_ptr()) };
    }
}

impl Handle {
    /// Another owner's open handle (sqlx's, locked out of its thread).
    ///
    /// # Safety
    /// `db` stays open, and no other thread uses it, while the `Handle`
    /// and its statements are used.
    pub unsafe fn borrowed(db: NonNull<ffi::sqlite3>) -> Self {
        Handle(db)
    }

    /// Runs statements that return nothing (`BEGIN`, `COMMIT`).
    pub fn exec(&self, sql: &str) -> Result<(), DbFailure> {
        let c_sql = c_string(sql)?;
        // SAFETY: the handle is open and c_sql a valid C string; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0.as_ptr(),
                c_sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.failure(rc))
        }
    }

    /// Compiles one statement.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>, DbFailure> {
        let c_sql = c_string(sql)?;
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        // SAFETY: the handle is open; c_sql is NUL-terminated (-1: read to it).
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                self.0.as_ptr(),
                c_sql.as_ptr(),
                -1,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.failure(rc));
        }
        let stmt = NonNull::new(stmt).ok_or_else(|| {
            DbFailure::permanent("the chunk's SELECT compiled to no statement".to_string())
        })?;
        Ok(Stmt { db: self, stmt })
    }

    /// The failure for result code `rc`, with SQLite's message, classified
    /// by its extended code.
    fn failure(&self, rc: c_int) -> DbFailure {
        // SAFETY: the handle is open; the message is copied before any
        // other call on it.
        let (code, message) = unsafe {
            let code = ffi::sqlite3_extended_errcode(self.0.as_ptr());
            let msg = ffi::sqlite3_errmsg(self.0.as_ptr());
            let text = if msg.is_null() {
                format!("SQLite error {rc}")
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            };
            (code, text)
        };
        let code = if code == 0 { rc } else { code };
        DbFailure {
            class: classify_code(i64::from(code)),
            sqlstate: Some(sqlstate(i64::from(code)).to_string()),
            message: format!("{message} (SQLite error {code})"),
        }
    }
}

/// A compiled statement of a [`Handle`].
pub struct Stmt<'a> {
    db: &'a Handle,
    stmt: NonNull<ffi::sqlite3_stmt>,
}

impl Stmt<'_> {
    /// Binds the chunk's bounds to parameters 1, 2, …
    pub fn bind_all(&mut self, binds: &[Bind]) -> Result<(), DbFailure> {
        for (i, b) in binds.iter().enumerate() {
            let at = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            let p = self.stmt.as_ptr();
            // SAFETY: the statement is live; text is copied (TRANSIENT).
            let rc = unsafe {
                match b {
                    Bind::Int(v) => ffi::sqlite3_bind_int64(p, at, *v),
                    Bind::Text(t) => {
                        let len = c_int::try_from(t.len()).map_err(|_| {
                            DbFailure::permanent("a chunk bound is over 2 GiB".to_string())
                        })?;
                        ffi::sqlite3_bind_text(
                            p,
                            at,
                            t.as_ptr().cast(),
                            len,
                            ffi::SQLITE_TRANSIENT(),
                        )
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.db.failure(rc));
            }
        }
        Ok(())
    }

    /// Binds `v` to parameter `at` (1-based) in the form SQLite stores
    /// without loss: booleans as 0/1, unsigned integers beyond `i64`,
    /// decimals, times and UUIDs as text. Text and bytes are bound in place
    /// (SQLITE_STATIC): the caller keeps `v` alive until [`Stmt::done`].
    pub fn bind_value(&mut self, at: usize, v: &Value) -> Result<(), DbFailure> {
        if let Value::Float(f) = v {
            not_nan(*f)?;
        }
        let p = self.stmt.as_ptr();
        let at = c_int::try_from(at).unwrap_or(c_int::MAX);
        let formatted = match v {
            Value::UInt(u) => Some(u.to_string()),
            Value::Date(d) => Some(iso::format_date(d)),
            Value::Time(t) => Some(iso::format_time(t)),
            Value::Timestamp(t) => Some(iso::format_timestamp(t, "")),
            Value::TimestampTz(t) => Some(iso::format_timestamp(&t.naive_utc(), "+00:00")),
            Value::Uuid(u) => Some(crate::value::uuid_text(u)),
            _ => None,
        };
        // SAFETY: the statement is live; borrowed text and bytes outlive
        // the step (the caller's promise), formatted text is copied.
        let rc = unsafe {
            match (v, &formatted) {
                (_, Some(t)) => ffi::sqlite3_bind_text(
                    p,
                    at,
                    t.as_ptr().cast(),
                    len(t.len())?,
                    ffi::SQLITE_TRANSIENT(),
                ),
                (Value::Null, _) => ffi::sqlite3_bind_null(p, at),
                (Value::Bool(b), _) => ffi::sqlite3_bind_int64(p, at, i64::from(*b)),
                (Value::Int(i), _) => ffi::sqlite3_bind_int64(p, at, *i),
                (Value::Float(f), _) => ffi::sqlite3_bind_double(p, at, *f),
                (Value::Decimal(t) | Value::Text(t) | Value::Json(t), _) => ffi::sqlite3_bind_text(
                    p,
                    at,
                    t.as_ptr().cast(),
                    len(t.len())?,
                    ffi::SQLITE_STATIC(),
                ),
                (Value::Bytes(b), _) => ffi::sqlite3_bind_blob(
                    p,
                    at,
                    b.as_ptr().cast(),
                    len(b.len())?,
                    ffi::SQLITE_STATIC(),
                ),
                // every other kind was formatted above
                _ => ffi::sqlite3_bind_null(p, at),
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.db.failure(rc))
        }
    }

    /// Runs a statement that returns no rows, then readies it for the
    /// next run (reset, every parameter unbound).
    pub fn run(&mut self) -> Result<(), DbFailure> {
        let stepped = self.step();
        self.done();
        match stepped {
            Ok(false) => Ok(()),
            Ok(true) => Err(DbFailure::permanent(
                "internal error: an INSERT returned rows".to_string(),
            )),
            Err(f) => Err(f),
        }
    }

    /// Resets the statement and unbinds its parameters, so nothing it
    /// holds points into values the caller may now drop.
    pub fn done(&mut self) {
        // SAFETY: the statement is live.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
    }

    /// Steps to the next row: true while there is one.
    pub fn step(&mut self) -> Result<bool, DbFailure> {
        // SAFETY: the statement is live.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => Err(self.db.failure(rc)),
        }
    }

    /// Column `i` of the current row by its storage class (SQLite types
    /// values, not columns).
    pub fn value(&self, i: usize) -> Result<Value, DbFailure> {
        let p = self.stmt.as_ptr();
        let at = c_int::try_from(i).unwrap_or(c_int::MAX);
        // SAFETY: the statement is live and on a row (step returned true);
        // text and blob pointers are read before the next call on it.
        unsafe {
            Ok(match ffi::sqlite3_column_type(p, at) {
                ffi::SQLITE_NULL => Value::Null,
                ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(p, at)),
                ffi::SQLITE_FLOAT => Value::Float(ffi::sqlite3_column_double(p, at)),
                ffi::SQLITE_BLOB => Value::Bytes(column_bytes(p, at, false).to_vec()),
                _ => {
                    let bytes = column_bytes(p, at, true);
                    let text = std::str::from_utf8(bytes).map_err(|_| DbFailure {
                        class: ErrorClass::Data,
                        sqlstate: Some("22021".into()),
                        message: format!("column {} of a source row is not valid UTF-8", i + 1),
                    })?;
                    Value::Text(text.to_owned())
                }
            })
        }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is live and finalized once.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

/// The bytes of column `at` as text or as a blob (empty for a zero-length
/// value, whose pointer SQLite may give as NULL).
///
/// # Safety
/// `p` is a live statement on a row; the slice is valid until the next call
/// on `p`.
unsafe fn column_bytes<'s>(p: *mut ffi::sqlite3_stmt, at: c_int, text: bool) -> &'s [u8] {
    // SAFETY: as the caller promises; the pointer comes before the length,
    // as SQLite's documentation asks.
    unsafe {
        let data: *const u8 = if text {
            ffi::sqlite3_column_text(p, at)
        } else {
            ffi::sqlite3_column_blob(p, at).cast()
        };
        let len = usize::try_from(ffi::sqlite3_column_bytes(p, at)).unwrap_or(0);
        if data.is_null() || len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(data, len)
        }
    }
}

/// Refuses NaN as a data error (22003), so the row is rejected: SQLite
/// stores a bound NaN as NULL without an error.
fn not_nan(f: f64) -> Result<(), DbFailure> {
    if f.is_nan() {
        return Err(DbFailure {
            class: ErrorClass::Data,
            sqlstate: Some("22003".into()),
            message:
                "NaN has no SQLite value (SQLite would store NULL): use a text column to keep it"
                    .into(),
        });
    }
    Ok(())
}

/// A length as SQLite takes it.
fn len(n: usize) -> Result<c_int, DbFailure> {
    c_int::try_from(n).map_err(|_| DbFailure {
        class: ErrorClass::Data,
        sqlstate: Some("22001".into()),
        message: format!("a value of {n} bytes is over SQLite's 2 GiB limit"),
    })
}

fn c_string(sql: &str) -> Result<CString, DbFailure> {
    CString::new(sql).map_err(|_| DbFailure::permanent("a statement holds a NUL byte".to_string()))
}

/// The file a connection has open as its main database (None: in memory).
///
/// # Safety
/// `db` is an open handle that no other thread uses during the call.
pub unsafe fn main_file(db: NonNull<ffi::sqlite3>) -> Option<std::path::PathBuf> {
    // SAFETY: as the caller promises; the name is copied at once.
    unsafe {
        let name = ffi::sqlite3_db_filename(db.as_ptr(), c"main".as_ptr());
        if name.is_null() {
            return None;
        }
        let s = CStr::from_ptr(name).to_str().ok()?;
        (!s.is_empty()).then(|| std::path::PathBuf::from(s))
    }
}
