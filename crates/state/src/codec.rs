//! Conversions between the records and database columns, shared by the SQL backends.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::StateError;

/// A time as SQLite stores it: RFC 3339 in UTC with exactly six fractional digits, so that text
/// order is time order and `max()` on the column works.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StateError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StateError::Corrupt(format!("bad timestamp `{s}`: {e}")))
}

pub(crate) fn json_text(v: &serde_json::Value) -> String {
    // Serialising a Value cannot fail: its map keys are strings by construction.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(s).map_err(|e| StateError::Corrupt(format!("bad JSON column: {e}")))
}

/// A stored integer that must fit a u32 (pid, attempt, item).
pub(crate) fn to_u32(v: i64, what: &str) -> Result<u32, StateError> {
    u32::try_from(v).map_err(|_| StateError::Corrupt(format!("{what} out of range: {v}")))
}

/// `item` is part of the step key, and NULL cannot be in a primary key: -1 stands for "the
/// step as a whole".
pub(crate) fn item_key(item: Option<u32>) -> i64 {
    item.map_or(-1, i64::from)
}

pub(crate) fn item_from_key(key: i64) -> Result<Option<u32>, StateError> {
    if key < 0 {
        Ok(None)
    } else {
        to_u32(key, "step item").map(Some)
    }
}

pub(crate) fn parse_enum<T: std::str::FromStr<Err = crate::types::ParseStatusError>>(
    s: &str,
) -> Result<T, StateError> {
    s.parse()
        .map_err(|e: crate::types::ParseStatusError| StateError::Corrupt(e.to_string()))
}

/// Ids whose text starts with `prefix`, or with its upper-case form (ULIDs are upper case but
/// people type them in lower case).
pub(crate) fn prefix_forms(prefix: &str) -> (String, String) {
    (prefix.to_string(), prefix.to_ascii_uppercase())
}

/// Resolves a prefix lookup: none, one, or an ambiguity error naming the candidates.
pub(crate) fn pick_unique(
    prefix: &str,
    mut ids: Vec<String>,
) -> Result<Option<String>, StateError> {
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.pop()),
        _ => Err(StateError::AmbiguousRunId {
            prefix: prefix.to_string(),
            candidates: ids,
        }),
    }
}

/// How many candidates an ambiguity error lists at most.
pub(crate) const MAX_CANDIDATES: i64 = 10;

/// Whether a driver error is a foreign-key violation (a step or approval for an unknown run).
pub(crate) fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// A write for a run that does not exist is `RunNotFound`; any other error is the query's.
pub(crate) fn not_found_or(
    run_id: &str,
    action: String,
) -> impl FnOnce(sqlx::Error) -> crate::StateError {
    let run_id = run_id.to_string();
    move |e| {
        if is_fk_violation(&e) {
            crate::StateError::RunNotFound(run_id)
        } else {
            crate::StateError::Query { action, source: e }
        }
    }
}

/// Whether a driver error is a unique violation (a run id created twice).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let a = parse_ts("2024-01-02T03:04:05.000006Z").ok();
        let b = parse_ts("2024-01-02T03:04:05.5Z").ok();
        assert_eq!(a.map(ts).as_deref(), Some("2024-01-02T03:04:05.000006Z"));
        assert!(a.map(ts) < b.map(ts));
    }

    #[test]
    fn items_use_minus_one_for_the_whole_step() {
        assert_eq!(item_key(None), -1);
        assert!(matches!(item_from_key(-1), Ok(None)));
        assert!(matches!(item_from_key(7), Ok(Some(7))));
    }
}
