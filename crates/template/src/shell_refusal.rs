//! What the shell scanner says about a hole: the context it stands in, or why it is refused.

/// Where a hole is, and so how it may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellContext {
    /// A plain word (code): `"$CAIRN_V1"`.
    Word,
    /// Inside double quotes: `${CAIRN_V1}`.
    DoubleQuoted,
    /// In the body of a here-document with an unquoted delimiter: `${CAIRN_V1}`.
    Heredoc,
    /// Inside an arithmetic expression that reads no variable, where bash evaluates a
    /// variable's value as an expression (`a[$(cmd)]` runs `cmd`): only an integer may go there.
    Arithmetic,
    /// Where no reference can be safe or mean what the author meant.
    Refused(Refusal),
}

impl ShellContext {
    /// Whether the scanner accepts a hole here (an arithmetic hole still needs an integer).
    pub fn is_accepted(self) -> bool {
        !matches!(self, ShellContext::Refused(_))
    }
}

/// Why a hole cannot be written where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// In `'…'` or `$'…'`: a reference would stay literal text.
    SingleQuoted,
    /// In the body of a here-document whose delimiter is quoted (`<<'EOF'`): same.
    QuotedHeredoc,
    /// In an expansion inside a here-document body (`$(…)`, `${…}`, backticks).
    HeredocExpansion,
    /// In a here-document's delimiter word.
    HeredocDelimiter,
    /// Inside `${…}`, at any depth (also inside quotes within it).
    ParameterExpansion,
    /// Right after a backslash or a `$`, which would change the reference itself.
    Escaped,
    /// In a command or pipeline that hands text to a shell (`bash`, `sudo`, `ssh`, `xargs`, a
    /// `-c` option...), named here, and not a whole word of that command by itself.
    RunsShell(&'static str),
    /// An argument of a builtin, named here, that evaluates names, arithmetic or code, or is
    /// not known to take plain data (`read`, `unset`, `printf -v`, `test -v`, `eval`...).
    Builtin(&'static str),
    /// In a command whose name is not a fixed word (`$cmd {{ x }}`, `{{ cmd }} {{ x }}`): it
    /// could name any builtin.
    UnknownCommand,
    /// The script holds a construct the scanner does not model, starting at byte `at` (of the
    /// template source for an analysis, of the fed script for a rendering): no hole of the
    /// script is accepted, since a value given anywhere may reach it through a variable.
    Unmodelled {
        /// The construct.
        construct: Construct,
        /// Where it starts.
        at: usize,
    },
}

/// A construct the shell scanner does not model completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// `case … esac`: its patterns and `)` are not followed.
    Case,
    /// `select`.
    Select,
    /// `coproc`.
    Coproc,
    /// `let`, which evaluates its arguments as arithmetic (also after `command`, `builtin`...).
    Let,
    /// `declare`/`typeset`/`local`/`export`/`readonly` with `-i`: every later assignment to the
    /// name is evaluated as arithmetic.
    IntegerAttribute,
    /// Arithmetic (`$(( ))`, `(( ))`, `[[ … -eq … ]]`) that reads a variable or an expansion,
    /// whose value bash evaluates as an expression again.
    ArithmeticReadsVariable,
    /// `$[ … ]`.
    DollarBracket,
    /// An array subscript `name[…]`, evaluated as arithmetic.
    Subscript,
    /// `${…}` with a subscript, an indirection (`${!x}`) or a substring offset (`${s:n:m}`).
    ExpansionOperator,
    /// A compound assignment `a=(…)`.
    CompoundAssignment,
    /// A comment inside backticks, which bash ends at the backtick.
    BacktickComment,
    /// A here-document inside `$( )`, `( )` or backticks.
    HeredocInSubstitution,
    /// A `(` that is not a subshell, a function definition or a process substitution
    /// (an extended glob such as `@(a|b)`).
    Paren,
    /// A `)` that closes nothing the scanner opened.
    UnbalancedClose,
    /// A quote, bracket, expansion or here-document still open at the end of the script.
    Unclosed,
}

impl Construct {
    /// The construct, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Construct::Case => "a `case` statement",
            Construct::Select => "a `select` loop",
            Construct::Coproc => "a `coproc`",
            Construct::Let => "`let`, which evaluates its arguments as arithmetic",
            Construct::IntegerAttribute => "an integer attribute (`declare -i`, `local -i`...)",
            Construct::ArithmeticReadsVariable => {
                "arithmetic that reads a variable or an expansion (bash evaluates its value as an expression)"
            }
            Construct::DollarBracket => "`$[ ]` arithmetic",
            Construct::Subscript => "an array subscript `name[…]`, evaluated as arithmetic",
            Construct::ExpansionOperator => {
                "a `${…}` with a subscript, an indirection or a substring offset"
            }
            Construct::CompoundAssignment => "a compound array assignment `name=(…)`",
            Construct::BacktickComment => "a comment inside backticks",
            Construct::HeredocInSubstitution => "a here-document inside `$( )`, `( )` or backticks",
            Construct::Paren => "a `(` that is not a subshell (an extended glob?)",
            Construct::UnbalancedClose => "a `)` that closes nothing",
            Construct::Unclosed => "a quote, bracket or here-document left open",
        }
    }
}

/// The hint for every hole refused because of an unmodelled construct.
pub const UNMODELLED_HELP: &str = "pass the value through `env:` and use \"$VAR\" in the script, \
     or move the construct to a step of its own";

impl Refusal {
    /// What is wrong, for messages (an unmodelled construct's place is added by the caller).
    pub fn describe(self) -> String {
        match self {
            Refusal::SingleQuoted => {
                "inside single quotes, where the shell expands nothing".to_string()
            }
            Refusal::QuotedHeredoc => {
                "inside a here-document with a quoted delimiter (<<'EOF'), where the shell expands nothing".to_string()
            }
            Refusal::HeredocExpansion => "inside an expansion in a here-document body".to_string(),
            Refusal::HeredocDelimiter => "in a here-document's delimiter".to_string(),
            Refusal::ParameterExpansion => "inside a ${...} parameter expansion".to_string(),
            Refusal::Escaped => "right after a `\\` or a `$`".to_string(),
            Refusal::RunsShell(what) => format!(
                "part of a larger word in a command that hands text to a shell (`{what}`), where it could become script text"
            ),
            Refusal::Builtin(name) => format!(
                "an argument of `{name}`, which evaluates names, arithmetic or code"
            ),
            Refusal::UnknownCommand => {
                "in a command whose name is not a fixed word, which could name any builtin".to_string()
            }
            Refusal::Unmodelled { construct, .. } => format!(
                "in a script that holds {}, which the shell scanner does not model",
                construct.describe()
            ),
        }
    }

    /// What to write instead.
    pub fn help(self) -> &'static str {
        match self {
            Refusal::SingleQuoted => {
                "remove the quotes around it: the value arrives as one word, never parsed; \
                 inside text, use double quotes (\"prefix-{{ x }}\")"
            }
            Refusal::QuotedHeredoc => {
                "use an unquoted delimiter (<<EOF), where the value is expanded and never parsed"
            }
            Refusal::HeredocExpansion => {
                "put the value in the body itself, or in a variable set before the here-document"
            }
            Refusal::HeredocDelimiter => "write the delimiter as a fixed word",
            Refusal::ParameterExpansion => {
                "set a variable first (v={{ x }}) and expand that: ${v:-default}"
            }
            Refusal::Escaped => "remove the `\\` or `$` before it",
            Refusal::RunsShell(_) => {
                "make the value a whole word by itself and refer to it as \"$1\" in the inner \
                 script (`sh -c 'echo \"$1\"' sh {{ x }}`), or pass it through `env:` and use \"$VAR\""
            }
            Refusal::Builtin(_) | Refusal::UnknownCommand | Refusal::Unmodelled { .. } => {
                UNMODELLED_HELP
            }
        }
    }

    /// Where the construct that caused the refusal starts, if it is an unmodelled construct.
    pub fn construct_at(self) -> Option<usize> {
        match self {
            Refusal::Unmodelled { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// Where an arithmetic hole is, for messages.
pub const ARITHMETIC: &str = "inside shell arithmetic ($(( )), (( )) or [[ … -eq … ]]), where bash evaluates a value as an expression";
/// What to do about an arithmetic hole.
pub const ARITHMETIC_HELP: &str =
    "declare the input `type: int`, or convert with `| int`: an integer is safe there";
