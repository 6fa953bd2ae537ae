//! What every driver shares: the time and cancel limits, and turning a result stream into rows.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use serde_json::{Map, Value};
use sqlx::{Column, Either, Row, TypeInfo};
use tokio_util::sync::CancellationToken;

use super::failure::SqlError;

/// The client-side limits of one step: its cancel token and its deadline (timeout + margin).
pub(super) struct Limits {
    deadline: Option<Instant>,
    cancel: CancellationToken,
}

impl Limits {
    pub(super) fn new(
        timeout: Option<Duration>,
        margin: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let deadline = timeout.map(|t| Instant::now() + t + margin);
        Limits { deadline, cancel }
    }

    /// Runs `fut` unless the step is cancelled or its deadline passes first.
    pub(super) async fn guard<F: Future>(&self, fut: F) -> Result<F::Output, SqlError> {
        let deadline = async {
            match self.deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(SqlError::Cancelled),
            () = deadline => Err(SqlError::Timeout),
            out = fut => Ok(out),
        }
    }
}

/// Rows and the server's count of affected rows.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) rows: Vec<Value>,
    pub(super) rows_affected: u64,
    /// What the server said beside the result (PostgreSQL notices, MySQL warnings).
    pub(super) notices: super::notices::Notices,
}

/// Drains a `fetch_many` stream: every row of every statement, affected rows summed.
pub(super) async fn collect<Q, R: Row>(
    mut stream: BoxStream<'_, Result<Either<Q, R>, sqlx::Error>>,
    affected: impl Fn(&Q) -> u64,
    cell: impl Fn(&R, usize) -> Result<Value, String>,
) -> Result<Outcome, SqlError> {
    let mut outcome = Outcome::default();
    while let Some(item) = stream.next().await {
        match item? {
            Either::Left(done) => outcome.rows_affected += affected(&done),
            Either::Right(row) => outcome.rows.push(row_to_json(&row, &cell)?),
        }
    }
    Ok(outcome)
}

/// One row as a JSON object, columns in query order. A repeated column name gets a suffix
/// (`n`, `n_2`) rather than silently replacing the earlier value.
fn row_to_json<R: Row>(
    row: &R,
    cell: &impl Fn(&R, usize) -> Result<Value, String>,
) -> Result<Value, SqlError> {
    let mut map = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = cell(row, i).map_err(|reason| SqlError::Decode {
            column: column.name().to_string(),
            type_name: column.type_info().name().to_string(),
            reason,
        })?;
        let mut name = column.name().to_string();
        let mut n = 2;
        while map.contains_key(&name) {
            name = format!("{}_{n}", column.name());
            n += 1;
        }
        map.insert(name, value);
    }
    Ok(Value::Object(map))
}

/// A float as JSON: a number when finite, else PostgreSQL's spelling as a string.
pub(super) fn float(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// An f32 through its shortest decimal form, so 0.1f32 is 0.1 and not 0.10000000149011612.
pub(super) fn float32(f: f32) -> Value {
    float(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
}

pub(super) fn base64(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `HH:MM:SS` with `.ffffff` only when there is a fraction.
pub(super) fn time(t: chrono::NaiveTime) -> String {
    use chrono::Timelike as _;
    let micros = t.nanosecond() / 1000;
    if micros == 0 {
        t.format("%H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", t.format("%H:%M:%S"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, no offset (the value has none).
pub(super) fn datetime(dt: chrono::NaiveDateTime) -> String {
    format!("{}T{}", dt.date().format("%Y-%m-%d"), time(dt.time()))
}

/// RFC 3339 in UTC with an explicit offset: `2024-05-01T03:00:00.5+00:00`.
pub(super) fn timestamptz(dt: chrono::DateTime<chrono::Utc>) -> String {
    dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}
