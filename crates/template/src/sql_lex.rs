//! A small SQL lexer per dialect, fed text piece by piece, that tells whether a position is
//! code or inside a literal, a quoted identifier or a comment.
//!
//! It only has to answer one question (is this `{{ }}` in code?), so it tracks just the
//! constructs that can hide code position: quoted strings with each dialect's escapes,
//! quoted identifiers, PostgreSQL's dollar quoting, and comments (nested in PostgreSQL).
//! Where a construct is ambiguous the lexer errs towards "not code", which refuses a hole
//! rather than mis-place one.

/// The SQL dialect of a target: decides the lexer's rules, the bind-parameter syntax and how
/// `| ident` quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL: `$1` parameters, `"ident"`, `E'...'`, `U&'...'`, `$tag$...$tag$`, nested
    /// `/* */`. Assumes `standard_conforming_strings = on` (the default since 9.1).
    Postgres,
    /// MySQL and MariaDB: `?` parameters, `` `ident` ``, `'...'` and `"..."` strings with
    /// backslash escapes, `#` and `-- ` comments.
    Mysql,
    /// SQLite: `?` parameters, `"ident"`, `` `ident` `` and `[ident]`, no backslash escapes.
    Sqlite,
}

impl Dialect {
    /// Quotes `name` as an identifier of this dialect (`"a""b"`, or `` `a``b` `` in MySQL).
    pub fn quote_ident(self, name: &str) -> String {
        let q = match self {
            Dialect::Mysql => '`',
            Dialect::Postgres | Dialect::Sqlite => '"',
        };
        let mut out = String::with_capacity(name.len() + 2);
        out.push(q);
        for c in name.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }
}

/// Where a position in SQL text is, when it is not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlContext {
    /// Inside a string literal (`'...'`, `E'...'`, MySQL `"..."`).
    String,
    /// Inside a quoted identifier (`"..."`, `` `...` ``, `[...]`).
    QuotedIdent,
    /// Inside a PostgreSQL dollar-quoted string (`$$...$$`, `$body$...$body$`).
    DollarQuoted,
    /// Inside a comment.
    Comment,
}

impl SqlContext {
    /// Where the position is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SqlContext::String => "inside a quoted SQL string",
            SqlContext::QuotedIdent => "inside a quoted SQL identifier",
            SqlContext::DollarQuoted => "inside a dollar-quoted SQL body ($$...$$)",
            SqlContext::Comment => "inside an SQL comment",
        }
    }

    /// What to write instead.
    pub fn help(self) -> &'static str {
        match self {
            SqlContext::String => {
                "remove the quotes: the value is sent as a bind parameter, already a string; \
                 to build text, concatenate outside the quotes ('prefix-' || {{ x }})"
            }
            SqlContext::QuotedIdent => {
                "remove the quotes and write `{{ x | ident }}`, which quotes the name itself"
            }
            SqlContext::DollarQuoted => {
                "a $$ body cannot take parameters: pass the value in a session setting \
                 (SELECT set_config('cairn.x', {{ x }}, false)) and read current_setting('cairn.x') in the body"
            }
            SqlContext::Comment => "move it out of the comment",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Code,
    /// In a quoted string or identifier closed by `quote` (doubled to escape it).
    Quoted {
        quote: char,
        /// Backslash escapes the next character (E'...', MySQL strings).
        backslash: bool,
        ctx: SqlContext,
    },
    /// Right after a backslash in a [`State::Quoted`] with backslash escapes.
    Escaped {
        quote: char,
        ctx: SqlContext,
    },
    /// SQLite `[ident]`: no escape, ends at `]`.
    Bracket,
    LineComment,
    /// `/* ... */`, `depth` levels deep (PostgreSQL nests them).
    Block {
        depth: u32,
    },
    Dollar(String),
}

/// The lexer. Feed literal text with [`SqlLexer::feed`]; between feeds, [`SqlLexer::context`]
/// tells where the next character would be, and [`SqlLexer::hole`] records that a value
/// (a parameter or an identifier) was written there.
#[derive(Debug, Clone)]
pub struct SqlLexer {
    dialect: Dialect,
    state: State,
    /// The two characters before the next one (most recent first), for `--`, `/*`, `*/`,
    /// `E'` (a token of its own, not the end of `SOME'`) and `word$`.
    prev: [Option<char>; 2],
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl SqlLexer {
    /// A lexer at the start of a statement.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            state: State::Code,
            prev: [None, None],
        }
    }

    /// `None` in code, otherwise where the next character is.
    pub fn context(&self) -> Option<SqlContext> {
        match &self.state {
            State::Code => None,
            State::Quoted { ctx, .. } | State::Escaped { ctx, .. } => Some(*ctx),
            State::Bracket => Some(SqlContext::QuotedIdent),
            State::LineComment | State::Block { .. } => Some(SqlContext::Comment),
            State::Dollar(_) => Some(SqlContext::DollarQuoted),
        }
    }

    /// A value was written at the current position: in code it is one word (a parameter
    /// or a quoted identifier), so it ends any `-`, `/` or name before it.
    pub fn hole(&mut self) {
        if self.state == State::Code {
            self.push_prev('0');
        }
    }

    fn push_prev(&mut self, c: char) {
        self.prev = [Some(c), self.prev[0]];
    }

    /// Lexes `text`, which continues what was fed before.
    pub fn feed(&mut self, text: &str) {
        self.feed_each(text, |_, _, _| {});
    }

    /// Lexes `text` like [`SqlLexer::feed`], calling `each(offset, char, in_code)` for every
    /// character, `in_code` telling whether the lexer was in code before it.
    pub fn feed_each(&mut self, text: &str, mut each: impl FnMut(usize, char, bool)) {
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            each(i, c, self.state == State::Code);
            let rest = &text[i..];
            let next = chars.peek().map(|&(_, n)| n);
            let [p1, p2] = self.prev;
            let mut skip = 0;
            let mut forget = false;
            self.state = match std::mem::replace(&mut self.state, State::Code) {
                State::Code => self.code(c, [p1, p2], next, rest, &mut skip, &mut forget),
                State::Quoted {
                    quote,
                    backslash,
                    ctx,
                } => {
                    if c == quote {
                        // A doubled quote closes and reopens at once, which comes to the same.
                        State::Code
                    } else if backslash && c == '\\' {
                        State::Escaped { quote, ctx }
                    } else {
                        State::Quoted {
                            quote,
                            backslash,
                            ctx,
                        }
                    }
                }
                State::Escaped { quote, ctx } => State::Quoted {
                    quote,
                    backslash: true,
                    ctx,
                },
                State::Bracket if c == ']' => State::Code,
                State::Bracket => State::Bracket,
                State::LineComment if c == '\n' => State::Code,
                State::LineComment => State::LineComment,
                State::Block { depth } => {
                    if p1 == Some('*') && c == '/' {
                        // The `*` that closes cannot also open or close again.
                        forget = true;
                        if depth <= 1 {
                            State::Code
                        } else {
                            State::Block { depth: depth - 1 }
                        }
                    } else if p1 == Some('/') && c == '*' && self.dialect == Dialect::Postgres {
                        forget = true;
                        State::Block { depth: depth + 1 }
                    } else {
                        State::Block { depth }
                    }
                }
                State::Dollar(tag) => {
                    if c == '$' && rest.starts_with(tag.as_str()) {
                        skip = tag.len() - 1;
                        State::Code
                    } else {
                        State::Dollar(tag)
                    }
                }
            };
            if forget {
                self.prev = [None, None];
            } else {
                self.push_prev(c);
            }
            for _ in 0..skip {
                if let Some((j, c)) = chars.next() {
                    each(j, c, false);
                    self.push_prev(c);
                }
            }
        }
    }

    fn code(
        &self,
        c: char,
        [p1, p2]: [Option<char>; 2],
        next: Option<char>,
        rest: &str,
        skip: &mut usize,
        forget: &mut bool,
    ) -> State {
        let starts_token = |p: Option<char>| !p.is_some_and(ident_char);
        let quoted = |quote, backslash, ctx| State::Quoted {
            quote,
            backslash,
            ctx,
        };
        match (self.dialect, c) {
            (_, '\'') => {
                let backslash = match self.dialect {
                    Dialect::Mysql => true,
                    // E'...' (not U&'...', whose `\` starts a Unicode escape only).
                    Dialect::Postgres => matches!(p1, Some('E' | 'e')) && starts_token(p2),
                    Dialect::Sqlite => false,
                };
                quoted('\'', backslash, SqlContext::String)
            }
            (Dialect::Mysql, '"') => quoted('"', true, SqlContext::String),
            (_, '"') => quoted('"', false, SqlContext::QuotedIdent),
            (Dialect::Mysql | Dialect::Sqlite, '`') => quoted('`', false, SqlContext::QuotedIdent),
            (Dialect::Sqlite, '[') => State::Bracket,
            (Dialect::Mysql, '#') => State::LineComment,
            (Dialect::Mysql, '-') if p1 == Some('-') => {
                // `-- ` needs a space or control character after it; `--1` is minus minus one.
                // At the end of a piece (a value follows) it is not a comment either.
                match next {
                    Some(n) if n.is_whitespace() || n.is_control() => State::LineComment,
                    _ => State::Code,
                }
            }
            (_, '-') if p1 == Some('-') => State::LineComment,
            (_, '*') if p1 == Some('/') => {
                *forget = true;
                State::Block { depth: 1 }
            }
            (Dialect::Postgres, '$') if starts_token(p1) => match dollar_tag(rest) {
                Some(tag) => {
                    *skip = tag.len() - 1;
                    State::Dollar(tag)
                }
                None => State::Code,
            },
            _ => State::Code,
        }
    }
}

/// The dollar-quote tag starting at `rest` (`$$`, `$tag$`); `$1` is a parameter, not a tag.
fn dollar_tag(rest: &str) -> Option<String> {
    let body = rest.get(1..)?;
    let end = body.find('$')?;
    let tag = &body[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    valid.then(|| format!("${tag}$"))
}
