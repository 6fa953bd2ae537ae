//! A checkpoint's columns as values, listed once for both ways a checkpoint is written: bound
//! by sqlx, or by the SQLite connection the store drives itself (`direct.rs`).

use super::dialect::STEP_PARAMS;
use crate::codec::{item_key, json_text, ts};
use crate::types::StepRecord;

/// One value bound to a checkpoint statement.
pub(crate) enum Value {
    Text(Option<String>),
    Int(i64),
}

/// A checkpoint's columns after `$1` and `$2`, in the order of `step_columns!()`: the one list
/// both drivers bind.
pub(crate) fn step_row(rec: &StepRecord) -> [Param<'_>; STEP_PARAMS] {
    [
        Param::Text(Some(&rec.run_id)),
        Param::Text(Some(&rec.step_id)),
        Param::Int(item_key(rec.item)),
        Param::Text(Some(rec.status.as_str())),
        Param::Int(i64::from(rec.attempt)),
        Param::Time(rec.started_at),
        Param::Time(rec.finished_at),
        Param::Json(rec.result.as_ref()),
        Param::Json(rec.outputs.as_ref()),
        Param::Text(rec.error.as_deref()),
        Param::Text(rec.log_path.as_deref()),
        Param::Text(Some(&rec.def_hash)),
        Param::Flag(rec.idempotent),
    ]
}

/// What a checkpoint column holds, whichever the driver: [`step_row`] lists a record's
/// columns once, in the order of `step_columns!()`, for sqlx's binding and for the direct SQLite writer.
pub(crate) enum Param<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Flag(bool),
    Time(Option<chrono::DateTime<chrono::Utc>>),
    Json(Option<&'a serde_json::Value>),
}

impl Param<'_> {
    /// The value as SQLite stores it: what the SQLite dialect binds (dialect.rs).
    pub(crate) fn sqlite(self) -> Value {
        match self {
            Param::Text(v) => Value::Text(v.map(str::to_string)),
            Param::Int(v) => Value::Int(v),
            Param::Flag(v) => Value::Int(i64::from(v)),
            Param::Time(v) => Value::Text(v.map(ts)),
            Param::Json(v) => Value::Text(v.map(json_text)),
        }
    }
}
