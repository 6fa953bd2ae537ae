//! Binding JSON values as PostgreSQL parameters, typed the way the query needs them.
//!
//! Numbers and booleans bind as `int8`, `float8` (or exact `numeric` above `i64::MAX`) and
//! `bool`. Strings, NULLs, arrays and objects bind like SQL literals: their parameter type is
//! left for the server to infer from the query, so `WHERE id = {{ uuid }}`,
//! `created_at < {{ cutoff }}` or `state = {{ enum_label }}` work without casts. A string whose
//! parameter turns out not to be text is parsed by the server itself (`$1::text::uuid`), so
//! every PostgreSQL input syntax is accepted and errors are PostgreSQL's own. An array bound
//! to an array parameter (`id = ANY({{ ids }})`) becomes a PostgreSQL array; arrays and
//! objects otherwise bind as `jsonb`/`json`. Where the server cannot infer a type at all
//! (`SELECT $1 IS NULL`), strings bind as `text` and the rest as `jsonb`.

use bigdecimal::BigDecimal;
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnection, PgTypeInfo, PgTypeKind, Postgres,
};
use sqlx::{
    Arguments, AssertSqlSafe, Either, Encode, Executor, Row, SqlSafeStr, Statement, Type, TypeInfo,
};

use super::failure::{self, SqlError};

const UNSPECIFIED: Oid = Oid(0);
const TEXT: Oid = Oid(25);
const JSON: Oid = Oid(114);
const JSONB: Oid = Oid(3802);

/// One bound value and the parameter type it is sent as.
#[derive(Debug, Clone)]
struct Param {
    value: Bound,
    oid: Oid,
}

#[derive(Debug, Clone)]
enum Bound {
    Null,
    Bool(bool),
    Int(i64),
    Big(BigDecimal),
    Float(f64),
    Text(String),
    Json(Value),
    /// Already in the parameter type's binary form (converted by the server).
    Raw(Vec<u8>),
}

impl Type<Postgres> for Param {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(UNSPECIFIED)
    }
}

impl Encode<'_, Postgres> for Param {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<IsNull, sqlx::error::BoxDynError> {
        match &self.value {
            Bound::Null => Ok(IsNull::Yes),
            Bound::Bool(b) => e(b, buf),
            Bound::Int(i) => e(i, buf),
            Bound::Big(n) => e(n, buf),
            Bound::Float(f) => e(f, buf),
            Bound::Text(s) => e(&s.as_str(), buf),
            // Writes jsonb's version byte, which sqlx blanks when the parameter is `json`.
            Bound::Json(v) => e(&sqlx::types::Json(v), buf),
            Bound::Raw(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(PgTypeInfo::with_oid(self.oid))
    }
}

/// `Encode` for PostgreSQL, spelled once (the crate also links the MySQL and SQLite drivers).
fn e<'q, T: Encode<'q, Postgres>>(
    value: &T,
    buf: &mut PgArgumentBuffer,
) -> Result<IsNull, sqlx::error::BoxDynError> {
    value.encode_by_ref(buf)
}

fn initial(value: &Value) -> Param {
    let (value, oid) = match value {
        Value::Null => (Bound::Null, UNSPECIFIED),
        Value::Bool(b) => (Bound::Bool(*b), Oid(16)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => (Bound::Int(i), Oid(20)),
            (None, Some(u), _) => (Bound::Big(BigDecimal::from(u)), Oid(1700)),
            (_, _, f) => (Bound::Float(f.unwrap_or(f64::NAN)), Oid(701)),
        },
        Value::String(s) => (Bound::Text(s.clone()), UNSPECIFIED),
        Value::Array(_) | Value::Object(_) => (Bound::Json(value.clone()), UNSPECIFIED),
    };
    Param { value, oid }
}

fn arguments(params: Vec<Param>) -> Result<PgArguments, SqlError> {
    let mut args = PgArguments::default();
    for p in params {
        args.add(p)
            .map_err(|e| SqlError::Param(format!("cannot bind a parameter: {e}")))?;
    }
    Ok(args)
}

fn textual(oid: Oid) -> bool {
    // text, varchar, bpchar, name, unknown
    matches!(oid.0, 25 | 1043 | 1042 | 19 | 705)
}

/// The arguments for `sql`. May leave `sql` prepared in the connection's statement cache, where
/// the query then finds it; the caller clears the cache after the step.
pub(super) async fn bind(
    conn: &mut PgConnection,
    sql: &str,
    values: &[Value],
) -> Result<PgArguments, SqlError> {
    let mut params: Vec<Param> = values.iter().map(initial).collect();
    let flexible = |p: &Param| matches!(p.value, Bound::Text(_) | Bound::Json(_));
    if !params.iter().any(flexible) {
        return arguments(params);
    }
    let types: Vec<PgTypeInfo> = params.iter().map(|p| PgTypeInfo::with_oid(p.oid)).collect();
    let statement = match conn
        .prepare_with(AssertSqlSafe(sql.to_string()).into_sql_str(), &types)
        .await
    {
        Ok(statement) => statement,
        // 42P18: "could not determine data type of parameter $n".
        Err(e) if failure::code(&e).as_deref() == Some("42P18") => {
            for p in &mut params {
                p.oid = match p.value {
                    Bound::Json(_) => JSONB,
                    _ => TEXT,
                };
            }
            return arguments(params);
        }
        Err(e) => return Err(e.into()),
    };
    let inferred: Vec<PgTypeInfo> = match statement.parameters() {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    let mut convert = Vec::new();
    for (i, p) in params.iter_mut().enumerate() {
        let Some(ty) = inferred.get(i) else { continue };
        let oid = ty.oid().unwrap_or(TEXT);
        match &p.value {
            Bound::Null => p.oid = oid,
            Bound::Text(_) if textual(oid) => p.oid = oid,
            Bound::Json(_) if oid == JSON || oid == JSONB => p.oid = oid,
            Bound::Json(v) if textual(oid) => {
                p.value = Bound::Text(v.to_string());
                p.oid = oid;
            }
            Bound::Text(_) => convert.push((i, oid)),
            Bound::Json(Value::Array(_)) if matches!(ty.kind(), PgTypeKind::Array(_)) => {
                convert.push((i, oid))
            }
            Bound::Json(_) => {
                return Err(SqlError::Param(format!(
                    "parameter ${} is a JSON {} but the query needs {}",
                    i + 1,
                    if p.value_is_array() {
                        "array"
                    } else {
                        "object"
                    },
                    TypeInfo::name(ty)
                )));
            }
            _ => {}
        }
    }
    if !convert.is_empty() {
        server_convert(conn, &mut params, &convert).await?;
    }
    arguments(params)
}

impl Param {
    fn value_is_array(&self) -> bool {
        matches!(self.value, Bound::Json(Value::Array(_)))
    }
}

/// Has the server parse each value into its parameter's type, exactly as it would parse a
/// quoted literal, and keeps the binary result to bind.
async fn server_convert(
    conn: &mut PgConnection,
    params: &mut [Param],
    convert: &[(usize, Oid)],
) -> Result<(), SqlError> {
    let oids: Vec<i64> = convert.iter().map(|(_, oid)| i64::from(oid.0)).collect();
    // format_type() quotes and qualifies names as needed, so its output is valid SQL.
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT format_type(t::oid, NULL) FROM unnest($1::int8[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
    )
    .bind(&oids)
    .fetch_all(&mut *conn)
    .await?;
    let mut select = Vec::new();
    let mut args = PgArguments::default();
    for (k, ((i, _), name)) in convert.iter().zip(&names).enumerate() {
        let n = k + 1;
        let bound = match params.get(*i).map(|p| &p.value) {
            Some(Bound::Text(s)) => {
                select.push(format!("${n}::text::{name}"));
                args.add(s.clone())
            }
            Some(Bound::Json(v)) => {
                select.push(format!(
                    "COALESCE((SELECT array_agg(e) FROM jsonb_array_elements_text(${n}::jsonb) AS e), '{{}}')::{name}"
                ));
                args.add(sqlx::types::Json(v.clone()))
            }
            _ => continue,
        };
        bound.map_err(|e| SqlError::Param(format!("cannot bind a parameter: {e}")))?;
    }
    let sql = format!("SELECT {}", select.join(", "));
    let row = sqlx::query_with(AssertSqlSafe(sql), args)
        .fetch_one(&mut *conn)
        .await?;
    for (k, (i, oid)) in convert.iter().enumerate() {
        let raw = row.try_get_raw(k)?;
        let bytes = raw.as_bytes().map_err(|e| SqlError::Param(e.to_string()))?;
        if let Some(p) = params.get_mut(*i) {
            p.value = Bound::Raw(bytes.to_vec());
            p.oid = *oid;
        }
    }
    Ok(())
}
