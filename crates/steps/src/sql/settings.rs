//! The server settings Cairn's SQL lexer assumes, checked on the connection right before a
//! templated query (one whose values the lexer placed) runs.
//!
//! The lexer reads a string so that where it ends is the same under every setting that
//! changes it (PostgreSQL's `standard_conforming_strings`, MySQL's `NO_BACKSLASH_ESCAPES` and
//! `ANSI_QUOTES`), and refuses a template where it is not. This check is the second lock: a
//! PostgreSQL session must have `standard_conforming_strings = on`, and a MySQL or MariaDB
//! session only `sql_mode` flags on [`MODELLED_SQL_MODES`]; otherwise the query is refused
//! before anything runs. A query without values does not depend on the lexer and is not
//! checked.

use super::failure::SqlError;

/// The `sql_mode` flags under which the lexer reads MySQL and MariaDB text as the server does:
/// the two that change quoting (which the lexer reads both ways) and those that change no
/// lexing at all. Any other flag (MariaDB's `ORACLE`, `MSSQL`, `DB2`...) refuses templated SQL.
pub const MODELLED_SQL_MODES: &[&str] = &[
    "NO_BACKSLASH_ESCAPES",
    "ANSI_QUOTES",
    "ALLOW_INVALID_DATES",
    "ANSI",
    "EMPTY_STRING_IS_NULL",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "HIGH_NOT_PRECEDENCE",
    "IGNORE_BAD_TABLE_OPTIONS",
    "IGNORE_SPACE",
    "NO_AUTO_CREATE_USER",
    "NO_AUTO_VALUE_ON_ZERO",
    "NO_DIR_IN_CREATE",
    "NO_ENGINE_SUBSTITUTION",
    "NO_FIELD_OPTIONS",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_ZERO_DATE",
    "NO_ZERO_IN_DATE",
    "ONLY_FULL_GROUP_BY",
    "PAD_CHAR_TO_FULL_LENGTH",
    "PIPES_AS_CONCAT",
    "REAL_AS_FLOAT",
    "SIMULTANEOUS_ASSIGNMENT",
    "STRICT_ALL_TABLES",
    "STRICT_TRANS_TABLES",
    "TIME_ROUND_FRACTIONAL",
    "TIME_TRUNCATE_FRACTIONAL",
    "TRADITIONAL",
];

/// A PostgreSQL session's `standard_conforming_strings`, as `current_setting` gives it.
pub(super) fn postgres(standard_conforming_strings: &str) -> Result<(), SqlError> {
    if standard_conforming_strings.eq_ignore_ascii_case("on") {
        return Ok(());
    }
    Err(SqlError::Setting(format!(
        "refused to run templated SQL: this session has standard_conforming_strings = \
         {standard_conforming_strings}, and Cairn places values in SQL for \
         standard_conforming_strings = on; set it on for the role or database \
         (ALTER ROLE … SET standard_conforming_strings = on)"
    )))
}

/// A MySQL or MariaDB session's `@@SESSION.sql_mode`.
pub(super) fn mysql(sql_mode: &str) -> Result<(), SqlError> {
    let unknown: Vec<&str> = sql_mode
        .split(',')
        .map(str::trim)
        .filter(|flag| !flag.is_empty())
        .filter(|flag| {
            !MODELLED_SQL_MODES
                .iter()
                .any(|known| known.eq_ignore_ascii_case(flag))
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(SqlError::Setting(format!(
        "refused to run templated SQL: this session's sql_mode holds {}, which Cairn's SQL \
         lexer does not model (it may change how the server reads quotes and comments); \
         remove it from sql_mode for this user or session",
        unknown.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_standard_conforming_strings_on() {
        assert!(postgres("on").is_ok());
        let Err(SqlError::Setting(why)) = postgres("off") else {
            panic!("off must be refused");
        };
        assert!(why.contains("standard_conforming_strings = off"), "{why}");
    }

    #[test]
    fn mysql_takes_only_modelled_sql_mode_flags() {
        assert!(mysql("").is_ok());
        assert!(
            mysql("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,PIPES_AS_CONCAT").is_ok()
        );
        let Err(SqlError::Setting(why)) = mysql("PIPES_AS_CONCAT,ORACLE,MSSQL") else {
            panic!("ORACLE must be refused");
        };
        assert!(why.contains("sql_mode holds ORACLE, MSSQL"), "{why}");
    }
}
