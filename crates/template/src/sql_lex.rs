//! A small SQL lexer per dialect, fed text piece by piece, that tells whether a position is
//! code or inside a literal, a quoted identifier or a comment.
//!
//! It only has to answer one question (is this `{{ }}` in code?), so it tracks just the
//! constructs that can hide code position: quoted strings with each dialect's escapes,
//! quoted identifiers, PostgreSQL's dollar quoting, and comments (nested in PostgreSQL).
//!
//! It fails closed: where the server could read the text in more than one way (a setting the
//! lexer cannot see, a version, a construct it does not model), it enters
//! [`SqlContext::Unmodelled`] for good, and every later hole is refused. The readings it keeps
//! apart are those of `standard_conforming_strings` (PostgreSQL) and of `sql_mode`'s
//! `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES` (MySQL, MariaDB): a string is lexed so that its end
//! is the same under every reading, or the text is unmodelled from there on.

/// The SQL dialect of a target: decides the lexer's rules, the bind-parameter syntax and how
/// `| ident` quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL: `$1` parameters, `"ident"`, `E'...'`, `U&'...'`, `$tag$...$tag$`, nested
    /// `/* */`, `--` comments ended by a line feed or a carriage return. A plain string is read
    /// the same whether `standard_conforming_strings` is on or off, or not at all.
    Postgres,
    /// MySQL and MariaDB: `?` parameters, `` `ident` ``, `'...'` and `"..."` strings (with or
    /// without backslash escapes, `"..."` an identifier under `ANSI_QUOTES`), `#` and `-- `
    /// comments; executable comments (`/*! */`, `/*M! */`) and hints (`/*+ */`) unmodelled.
    Mysql,
    /// SQLite: `?` parameters, `"ident"`, `` `ident` `` and `[ident]`, no backslash escapes;
    /// named variables (`$x`, `:x`, `@x`, `#x`) unmodelled.
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
    /// After a construct the lexer does not model: from there on it cannot tell code from
    /// anything else.
    Unmodelled(Unmodelled),
}

/// A construct after which the lexer no longer knows where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmodelled {
    /// A quote after an odd run of backslashes in a string whose escapes depend on a server
    /// setting: PostgreSQL's `standard_conforming_strings` for a plain `'...'`, MySQL's
    /// `sql_mode` (`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`) for `'...'` and `"..."`.
    BackslashQuote(Dialect),
    /// A PostgreSQL `$` that neither starts a parameter (`$1`) nor a whole dollar-quote tag
    /// (`$tag$`), or that follows a number.
    Dollar,
    /// A MySQL executable comment (`/*!`, `/*!50000`, MariaDB `/*M!`) or optimizer hint
    /// (`/*+`): its text is code or comment depending on the server.
    ExecutableComment,
    /// An SQLite named variable (`$x`, `:x`, `@x`, `#x`), whose `(...)` suffix swallows quotes.
    SqliteVariable,
    /// A NUL character, which servers read as the end of the text or refuse.
    Nul,
    /// A name, number or quote character written right after a value, which would merge into
    /// its placeholder (`$1` followed by `1` is `$11`) or its quoted identifier.
    GluedToValue,
}

impl Unmodelled {
    fn describe(self) -> &'static str {
        match self {
            Unmodelled::BackslashQuote(Dialect::Mysql) => {
                "written after `\\` before a quote in a string, where the string ends depends on \
                 sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)"
            }
            Unmodelled::BackslashQuote(_) => {
                "written after `\\` before a quote in a plain string, where the string ends depends on \
                 standard_conforming_strings"
            }
            Unmodelled::Dollar => {
                "written after a `$` that starts neither a parameter nor a dollar-quote tag \
                 (`$tag$`, the tag a letter, `_` or non-ASCII character, then those or digits)"
            }
            Unmodelled::ExecutableComment => {
                "written after a MySQL executable comment or hint (`/*!`, `/*M!`, `/*+`), whose text the \
                 server may run as code"
            }
            Unmodelled::SqliteVariable => {
                "written after an SQLite named variable (`$x`, `:x`, `@x`)"
            }
            Unmodelled::Nul => "written after a NUL character",
            Unmodelled::GluedToValue => {
                "followed right away by a name, number or quote, which would merge with it"
            }
        }
    }

    fn help(self) -> &'static str {
        match self {
            Unmodelled::BackslashQuote(Dialect::Mysql) => {
                "double the quote instead of escaping it ('it''s'), or move the values before \
                 this string"
            }
            Unmodelled::BackslashQuote(_) => {
                "write E'...' for a backslash escape, or double the quote ('it''s')"
            }
            Unmodelled::Dollar => {
                "write the dollar quote with a whole tag ($$...$$, $body$...$body$), and put a \
                 space between a number and a `$`"
            }
            Unmodelled::ExecutableComment => {
                "write the statement without executable comments; Cairn cannot tell what the \
                 server runs"
            }
            Unmodelled::SqliteVariable => "pass values as `{{ }}`, which binds them",
            Unmodelled::Nul => "remove the NUL character",
            Unmodelled::GluedToValue => "put a space or an operator after the `{{ }}`",
        }
    }
}

impl SqlContext {
    /// Where the position is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SqlContext::String => "inside a quoted SQL string",
            SqlContext::QuotedIdent => "inside a quoted SQL identifier",
            SqlContext::DollarQuoted => "inside a dollar-quoted SQL body ($$...$$)",
            SqlContext::Comment => "inside an SQL comment",
            SqlContext::Unmodelled(u) => u.describe(),
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
            SqlContext::Unmodelled(u) => u.help(),
        }
    }
}

/// How backslashes act in a quoted string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escapes {
    /// Not at all: only a doubled quote (SQLite, quoted identifiers).
    None,
    /// A backslash escapes the next character (PostgreSQL `E'...'`).
    Backslash,
    /// Either of the two, by a server setting: lexed as [`Escapes::None`], and a quote after an
    /// odd run of backslashes (where the two readings part) is [`Unmodelled::BackslashQuote`].
    Either,
}

/// The kind of word the last code characters form, for what a `$` or a quote after it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    /// Started by a letter, `_` or a non-ASCII character: `$` continues it.
    Name,
    /// Started by a digit or a `$`: a number or a parameter.
    Number,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Code,
    /// In a quoted string or identifier closed by `quote` (doubled to escape it).
    Quoted {
        quote: char,
        escapes: Escapes,
        ctx: SqlContext,
        /// [`Escapes::Backslash`]: the next character is escaped. [`Escapes::Either`]: an odd
        /// run of backslashes is right before it.
        odd: bool,
    },
    /// Right after the quote that closed a [`State::Quoted`]: in code, unless the next
    /// character is the same quote, which makes a doubled quote and goes on with the string.
    Closed {
        quote: char,
        escapes: Escapes,
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
    /// For good: nothing after this is known to be code.
    Unmodelled(Unmodelled),
}

/// The lexer. Feed literal text with [`SqlLexer::feed`]; between feeds, [`SqlLexer::context`]
/// tells where the next character would be, and [`SqlLexer::hole`] records that a value
/// (a parameter or an identifier) was written there.
#[derive(Debug, Clone)]
pub struct SqlLexer {
    dialect: Dialect,
    state: State,
    /// The two characters before the next one (most recent first), for `--`, `/*`, `*/` and
    /// `E'` (a token of its own, not the end of `SOME'`).
    prev: [Option<char>; 2],
    /// The word the code characters before the next one form, if they form one.
    word: Option<Word>,
    /// A value was written right before the next character.
    after_hole: bool,
    /// The text where the lexer gave up, for messages (the author's text, never a value).
    unmodelled_near: Option<String>,
}

/// Continues a name, in every dialect: ASCII letters and digits, `_`, `$`, and any non-ASCII
/// character (PostgreSQL, MySQL and SQLite all take bytes above 0x7F as letters).
fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Starts a name, or a PostgreSQL dollar-quote tag: `[A-Za-z\x80-\xFF_]`.
fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// An (unescaped) hole placeholder stands here in the lexer's memory of what came before.
const HOLE: char = '\u{1}';

impl SqlLexer {
    /// A lexer at the start of a statement.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            state: State::Code,
            prev: [None, None],
            word: None,
            after_hole: false,
            unmodelled_near: None,
        }
    }

    /// `None` in code, otherwise where the next character is.
    pub fn context(&self) -> Option<SqlContext> {
        match &self.state {
            State::Code | State::Closed { .. } => None,
            State::Quoted { ctx, .. } => Some(*ctx),
            State::Bracket => Some(SqlContext::QuotedIdent),
            State::LineComment | State::Block { .. } => Some(SqlContext::Comment),
            State::Dollar(_) => Some(SqlContext::DollarQuoted),
            State::Unmodelled(u) => Some(SqlContext::Unmodelled(*u)),
        }
    }

    /// When a hole at the current position must be refused: the message (starting with
    /// `what`, "a `{{ }}` value") and what to write instead.
    pub fn refusal(&self, what: &str) -> Option<(String, &'static str)> {
        let place = self.context()?;
        let mut message = format!("{what} is {}", place.describe());
        if let (SqlContext::Unmodelled(_), Some(near)) = (place, &self.unmodelled_near) {
            message.push_str(&format!(" (near `{near}`)"));
        }
        Some((message, place.help()))
    }

    /// A value was written at the current position: in code it is one word (a parameter
    /// or a quoted identifier), so it ends any `-`, `/` or name before it; a name, number or
    /// quote right after it would merge with it, and is unmodelled.
    pub fn hole(&mut self) {
        if self.context().is_none() {
            self.state = State::Code;
            self.prev = [Some(HOLE), None];
            self.word = None;
            self.after_hole = true;
        }
    }

    /// An `| ident` hole: `quoted` (the dialect's quoted identifier) was written at the
    /// current position.
    pub fn ident(&mut self, quoted: &str) {
        self.feed(quoted);
        self.hole();
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
            each(i, c, self.context().is_none());
            let rest = &text[i..];
            let next = chars.peek().map(|&(_, n)| n);
            let [p1, _] = self.prev;
            let mut skip = 0;
            let mut forget = false;
            let glued = std::mem::take(&mut self.after_hole);
            let state = std::mem::replace(&mut self.state, State::Code);
            self.state = if c == '\0' {
                State::Unmodelled(Unmodelled::Nul)
            } else if glued && (ident_char(c) || matches!(c, '\'' | '"' | '`')) {
                State::Unmodelled(Unmodelled::GluedToValue)
            } else {
                match state {
                    State::Code => self.code(c, next, rest, &mut skip, &mut forget),
                    State::Closed {
                        quote,
                        escapes,
                        ctx,
                    } if c == quote => State::Quoted {
                        quote,
                        escapes,
                        ctx,
                        odd: false,
                    },
                    State::Closed { .. } => self.code(c, next, rest, &mut skip, &mut forget),
                    State::Quoted {
                        quote,
                        escapes,
                        ctx,
                        odd,
                    } => self.quoted(c, quote, escapes, ctx, odd),
                    State::Bracket if c == ']' => State::Code,
                    State::Bracket => State::Bracket,
                    State::LineComment
                        if c == '\n' || (c == '\r' && self.dialect == Dialect::Postgres) =>
                    {
                        State::Code
                    }
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
                            // Characters, not bytes: a tag may hold `€`.
                            skip = tag.chars().count() - 1;
                            State::Code
                        } else {
                            State::Dollar(tag)
                        }
                    }
                    State::Unmodelled(u) => State::Unmodelled(u),
                }
            };
            if matches!(self.state, State::Unmodelled(_)) && self.unmodelled_near.is_none() {
                // From the character before (`\'`, `/*!`) to a few after.
                let from = text[..i].char_indices().next_back().map_or(i, |(j, _)| j);
                let near = text[from..].chars().take(12).flat_map(|c| {
                    let shown: Vec<char> = if c.is_control() {
                        c.escape_debug().collect()
                    } else {
                        vec![c]
                    };
                    shown
                });
                self.unmodelled_near = Some(near.collect());
            }
            self.word = match (&self.state, self.word) {
                (State::Code, Some(Word::Name)) if ident_char(c) => Some(Word::Name),
                (State::Code, Some(Word::Number)) if ident_char(c) && c != '$' => {
                    Some(Word::Number)
                }
                (State::Code, _) if ident_start(c) => Some(Word::Name),
                (State::Code, _) if c.is_ascii_digit() || c == '$' => Some(Word::Number),
                _ => None,
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

    fn quoted(&self, c: char, quote: char, escapes: Escapes, ctx: SqlContext, odd: bool) -> State {
        let stay = |odd| State::Quoted {
            quote,
            escapes,
            ctx,
            odd,
        };
        match escapes {
            Escapes::Backslash if odd => stay(false),
            Escapes::Backslash | Escapes::Either if c == '\\' => stay(!odd),
            Escapes::Either if c == quote && odd => {
                State::Unmodelled(Unmodelled::BackslashQuote(self.dialect))
            }
            _ if c == quote => State::Closed {
                quote,
                escapes,
                ctx,
            },
            _ => stay(false),
        }
    }

    fn code(
        &self,
        c: char,
        next: Option<char>,
        rest: &str,
        skip: &mut usize,
        forget: &mut bool,
    ) -> State {
        let [p1, p2] = self.prev;
        let quoted = |quote, escapes, ctx| State::Quoted {
            quote,
            escapes,
            ctx,
            odd: false,
        };
        match (self.dialect, c) {
            (_, '\'') => {
                let escapes = match self.dialect {
                    // Backslashes escape, or not, by sql_mode's NO_BACKSLASH_ESCAPES.
                    Dialect::Mysql => Escapes::Either,
                    // E'...' is a token of its own (not the end of `SOME'`); a plain string
                    // (U&'...' included) reads a backslash by standard_conforming_strings.
                    Dialect::Postgres
                        if matches!(p1, Some('E' | 'e')) && !p2.is_some_and(ident_char) =>
                    {
                        Escapes::Backslash
                    }
                    Dialect::Postgres => Escapes::Either,
                    Dialect::Sqlite => Escapes::None,
                };
                quoted('\'', escapes, SqlContext::String)
            }
            // A string, or an identifier under ANSI_QUOTES: a hole is refused in both.
            (Dialect::Mysql, '"') => quoted('"', Escapes::Either, SqlContext::String),
            (_, '"') => quoted('"', Escapes::None, SqlContext::QuotedIdent),
            (Dialect::Mysql | Dialect::Sqlite, '`') => {
                quoted('`', Escapes::None, SqlContext::QuotedIdent)
            }
            (Dialect::Sqlite, '[') => State::Bracket,
            (Dialect::Mysql, '#') => State::LineComment,
            // `a$b` and `1$` are one token; `:x`, `@x`, `#x` and a leading `$x` are variables.
            (Dialect::Sqlite, '$' | ':' | '@' | '#')
                if (c != '$' || self.word.is_none()) && next.is_some_and(ident_char) =>
            {
                State::Unmodelled(Unmodelled::SqliteVariable)
            }
            (Dialect::Mysql, '-') if p1 == Some('-') => {
                // `-- ` needs a space or control character after it; `--1` is minus minus one.
                // At the end of a piece (a value follows) it is not a comment either.
                match next {
                    Some(n) if n.is_whitespace() || n.is_control() => State::LineComment,
                    _ => State::Code,
                }
            }
            (_, '-') if p1 == Some('-') => State::LineComment,
            (Dialect::Mysql, '*') if p1 == Some('/') => {
                let after = &rest[1..];
                if after.starts_with('!') || after.starts_with("M!") || after.starts_with('+') {
                    State::Unmodelled(Unmodelled::ExecutableComment)
                } else {
                    *forget = true;
                    State::Block { depth: 1 }
                }
            }
            (_, '*') if p1 == Some('/') => {
                *forget = true;
                State::Block { depth: 1 }
            }
            (Dialect::Postgres, '$') => match self.word {
                // `a$b`: part of the name.
                Some(Word::Name) => State::Code,
                // `1$a$`: the number ends, and a tag may start: PostgreSQL versions part here.
                Some(Word::Number) => State::Unmodelled(Unmodelled::Dollar),
                None if next.is_some_and(|n| n.is_ascii_digit()) => State::Code,
                None => match dollar_tag(rest) {
                    Some(tag) => {
                        // Characters, not bytes: a tag may hold `€`.
                        *skip = tag.chars().count() - 1;
                        State::Dollar(tag)
                    }
                    None => State::Unmodelled(Unmodelled::Dollar),
                },
            },
            _ => State::Code,
        }
    }
}

/// The dollar-quote tag starting at `rest` (`$$`, `$tag$`), by PostgreSQL's grammar:
/// `\$([A-Za-z\x80-\xFF_][A-Za-z\x80-\xFF_0-9]*)?\$`.
fn dollar_tag(rest: &str) -> Option<String> {
    let body = rest.get(1..)?;
    let end = body.find('$')?;
    let tag = &body[..end];
    let valid = tag.chars().enumerate().all(|(i, c)| {
        if i == 0 {
            ident_start(c)
        } else {
            ident_start(c) || c.is_ascii_digit()
        }
    });
    valid.then(|| format!("${tag}$"))
}
