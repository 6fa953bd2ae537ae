//! The names of every filter, function and test the environments define: what
//! [`crate::Templates::analyze`] checks against and `filter_names` offers for hints.
//!
//! The builtin lists mirror minijinja's (with the `builtins`, `json` and `urlencode` features);
//! tests/template/analyze.rs renders every name to prove that the engine agrees.

/// minijinja's builtin filters, sorted.
#[rustfmt::skip]
pub(crate) const BUILTIN_FILTERS: &[&str] = &[
    "abs", "attr", "batch", "bool", "capitalize", "chain", "count", "d", "default", "dictsort",
    "e", "escape", "first", "float", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "lines", "list", "lower", "map", "max", "min", "pprint", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort",
    "split", "string", "sum", "title", "tojson", "trim", "unique", "upper", "urlencode", "zip",
];

/// Cairn's own filters, sorted.
#[rustfmt::skip]
pub(crate) const CAIRN_FILTERS: &[&str] = &[
    "b64decode", "b64encode", "basename", "dirname", "duration", "from_json", "ident", "raw",
    "strftime", "to_json",
];

/// Global functions (minijinja's builtins plus `now`), sorted.
pub(crate) const FUNCTIONS: &[&str] = &["debug", "dict", "namespace", "now", "range"];

/// minijinja's builtin tests (`x is defined`...), sorted.
#[rustfmt::skip]
pub(crate) const TESTS: &[&str] = &[
    "!=", "<", "<=", "==", ">", ">=", "boolean", "defined", "divisibleby", "endingwith", "eq",
    "equalto", "escaped", "even", "false", "filter", "float", "ge", "greaterthan", "gt", "in",
    "int", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
    "number", "odd", "safe", "sameas", "sequence", "startingwith", "string", "test", "true",
    "undefined", "upper",
];
