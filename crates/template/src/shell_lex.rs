//! A focused bash context scanner: where is each `{{ }}` hole of a script, so that it can be
//! rendered as a reference to an environment variable that is safe there, or refused.
//!
//! It follows what changes how a reference is read: quotes (`'…'`, `"…"`, `$'…'`), escapes,
//! command substitution (`$( )`, backticks), subshells, parameter expansion (`${ }`),
//! arithmetic (`$(( ))`, `$[ ]`, `(( ))`, `let`, `declare -i`, array subscripts, the operands
//! of `[[ … -eq … ]]`), comments and here-documents (quoted delimiter or not). It is not a
//! parser: where it cannot tell, it errs towards the context that refuses.

/// Where a hole is, and so how it may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellContext {
    /// A plain word (code): `"$CAIRN_V1"`.
    Word,
    /// Inside double quotes: `${CAIRN_V1}`.
    DoubleQuoted,
    /// In the body of a here-document with an unquoted delimiter: `${CAIRN_V1}`.
    Heredoc,
    /// Inside an arithmetic expression, where bash evaluates a variable's value as an
    /// expression (`a[$(cmd)]` runs `cmd`): only an integer may go there.
    Arithmetic,
    /// Where no reference can be safe or mean what the author meant.
    Refused(Refusal),
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
    /// Inside `${…}`.
    ParameterExpansion,
    /// Right after a backslash or a `$`, which would change the reference itself.
    Escaped,
}

impl Refusal {
    /// What is wrong, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::SingleQuoted => "inside single quotes, where the shell expands nothing",
            Refusal::QuotedHeredoc => {
                "inside a here-document with a quoted delimiter (<<'EOF'), where the shell expands nothing"
            }
            Refusal::HeredocExpansion => "inside an expansion in a here-document body",
            Refusal::HeredocDelimiter => "in a here-document's delimiter",
            Refusal::ParameterExpansion => "inside a ${...} parameter expansion",
            Refusal::Escaped => "right after a `\\` or a `$`",
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
        }
    }
}

/// Where an arithmetic hole is, for messages.
pub const ARITHMETIC: &str = "inside shell arithmetic ($(( )), (( )), let, declare -i, a[…] or [[ … -eq … ]]), where bash evaluates a value as an expression";
/// What to do about an arithmetic hole.
pub const ARITHMETIC_HELP: &str =
    "declare the input `type: int`, or convert with `| int`: an integer is safe there";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// Commands: the script, `$( )`, `( )`, backticks, `[[ ]]`.
    Code(Code),
    Single,
    AnsiC,
    Double,
    /// `${ … }`: brace depth.
    Param(u32),
    /// `$(( … ))`, `(( … ))`, `$[ … ]` (`bracket`): paren depth inside.
    Arith {
        depth: u32,
        bracket: bool,
    },
    /// `name[ … ]`: bracket depth inside.
    Subscript(u32),
    Comment,
    /// A here-document body.
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Code {
    close: Close,
    /// At the start of a command (where `((`, `let`, `[[`, `#` and names mean something).
    cmd_start: bool,
    /// The current word so far (for `let`, `declare`, `name[` and `[[` operators).
    word: String,
    /// A hole is in the current word.
    word_hole: bool,
    /// The command's first word.
    cmd_name: Option<String>,
    /// The current command evaluates its arguments as arithmetic (`let`, `declare -i`).
    cmd_arith: bool,
    /// In `[[ ]]`: holes seen, and whether an arithmetic operator was.
    dbracket: Option<(Vec<usize>, bool)>,
    /// Paren depth of `( )` that are not frames (case patterns, function definitions).
    parens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The whole script.
    End,
    /// `)` of `$(` or `(`.
    Paren,
    Backtick,
    /// `]]`.
    DBracket,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Heredoc {
    delim: String,
    quoted: bool,
    strip_tabs: bool,
    line: String,
    /// Expansions open in the body (`$(`, `${`, backticks), for unquoted bodies.
    nested: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    None,
    /// A backslash: the next character is literal.
    Backslash,
    /// A `$` not yet followed by anything.
    Dollar,
    /// `<<` or `<<-` seen: reading the delimiter word.
    HeredocWord {
        strip_tabs: bool,
        word: String,
        quoted: bool,
        started: bool,
        quote: Option<char>,
    },
}

/// The scanner. Feed script text with [`ShellLexer::feed`] and mark holes with
/// [`ShellLexer::hole`]; [`ShellLexer::finish`] gives each hole's context.
#[derive(Debug, Clone)]
pub struct ShellLexer {
    stack: Vec<Frame>,
    pending: Pending,
    /// Here-documents announced on the current line, read after its end.
    heredocs: Vec<Heredoc>,
    holes: Vec<ShellContext>,
}

impl Default for ShellLexer {
    fn default() -> Self {
        Self::new()
    }
}

fn code(close: Close) -> Frame {
    Frame::Code(Code {
        close,
        cmd_start: true,
        word: String::new(),
        word_hole: false,
        cmd_name: None,
        cmd_arith: false,
        dbracket: (close == Close::DBracket).then(|| (Vec::new(), false)),
        parens: 0,
    })
}

fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const ARITH_OPS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "for", "time", "!", "{", "}", "fi",
    "done",
];

impl ShellLexer {
    /// A scanner at the start of a script.
    pub fn new() -> Self {
        Self {
            stack: vec![code(Close::End)],
            pending: Pending::None,
            heredocs: Vec::new(),
            holes: Vec::new(),
        }
    }

    /// Marks a hole at the current position; returns its index for [`ShellLexer::finish`].
    pub fn hole(&mut self) -> usize {
        let ctx = self.context_now();
        let index = self.holes.len();
        self.holes.push(ctx);
        // The hole is part of the current word (or line, or delimiter).
        match &mut self.pending {
            Pending::HeredocWord { word, started, .. } => {
                word.push('\u{1}');
                *started = true;
            }
            Pending::Backslash | Pending::Dollar => self.pending = Pending::None,
            Pending::None => {}
        }
        match self.stack.last_mut() {
            Some(Frame::Code(c)) => {
                c.word_hole = true;
                c.word.push('\u{1}');
            }
            Some(Frame::Heredoc(h)) => h.line.push('\u{1}'),
            _ => {}
        }
        // Anywhere inside `[[ ]]` (quoted, in `$( )`...), an operand of `-eq` is evaluated.
        if let Some((holes, _)) = self.dbracket() {
            holes.push(index);
        }
        index
    }

    /// The innermost `[[ ]]` being read, if any.
    fn dbracket(&mut self) -> Option<&mut (Vec<usize>, bool)> {
        self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::Code(c) => c.dbracket.as_mut(),
            _ => None,
        })
    }

    /// Every hole's context, in the order they were marked.
    pub fn finish(self) -> Vec<ShellContext> {
        self.holes
    }

    fn context_now(&self) -> ShellContext {
        if matches!(self.pending, Pending::HeredocWord { .. }) {
            return ShellContext::Refused(Refusal::HeredocDelimiter);
        }
        if matches!(self.pending, Pending::Backslash | Pending::Dollar) {
            return ShellContext::Refused(Refusal::Escaped);
        }
        let mut arith = false;
        for f in &self.stack {
            match f {
                Frame::Arith { .. } | Frame::Subscript(_) => arith = true,
                Frame::Code(c) if c.cmd_arith => arith = true,
                _ => {}
            }
        }
        let top = self.stack.last();
        // Quotes that expand nothing win over everything.
        match top {
            Some(Frame::Single | Frame::AnsiC) => {
                return ShellContext::Refused(Refusal::SingleQuoted);
            }
            Some(Frame::Heredoc(h)) if h.quoted => {
                return ShellContext::Refused(Refusal::QuotedHeredoc);
            }
            _ => {}
        }
        if arith {
            return ShellContext::Arithmetic;
        }
        match top {
            Some(Frame::Param(_)) => ShellContext::Refused(Refusal::ParameterExpansion),
            Some(Frame::Heredoc(h)) if h.nested > 0 => {
                ShellContext::Refused(Refusal::HeredocExpansion)
            }
            Some(Frame::Heredoc(_)) => ShellContext::Heredoc,
            Some(Frame::Double) => ShellContext::DoubleQuoted,
            _ => ShellContext::Word,
        }
    }

    /// Scans `text`, which continues what was fed before.
    pub fn feed(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let next2 = chars.get(i + 2).copied();
            i += self.step(c, next, next2);
        }
    }

    /// Handles `c` (with a look at the next two characters); returns how many were consumed.
    fn step(&mut self, c: char, next: Option<char>, next2: Option<char>) -> usize {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Backslash => {
                // `\<newline>` continues the line; anything else is literal.
                if c != '\n' {
                    self.word_char(c);
                }
                return 1;
            }
            Pending::Dollar => {
                // A `$` ended the previous piece: it applies to this character.
                if matches!(
                    self.stack.last(),
                    Some(
                        Frame::Code(_)
                            | Frame::Double
                            | Frame::Param(_)
                            | Frame::Arith { .. }
                            | Frame::Subscript(_)
                    )
                ) {
                    return self.dollar(Some(c), next).saturating_sub(1);
                }
            }
            Pending::HeredocWord {
                strip_tabs,
                mut word,
                mut quoted,
                mut started,
                quote,
            } => {
                if let Some(q) = quote {
                    if c == q {
                        self.pending = Pending::HeredocWord {
                            strip_tabs,
                            word,
                            quoted,
                            started,
                            quote: None,
                        };
                    } else {
                        word.push(c);
                        self.pending = Pending::HeredocWord {
                            strip_tabs,
                            word,
                            quoted,
                            started,
                            quote,
                        };
                    }
                    return 1;
                }
                let ends =
                    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '<' | '>' | '(' | ')');
                if ends && (started || c == '\n') {
                    self.heredocs.push(Heredoc {
                        delim: word,
                        quoted,
                        strip_tabs,
                        line: String::new(),
                        nested: 0,
                    });
                    // Fall through: `c` is handled as code.
                } else if c == ' ' || c == '\t' {
                    self.pending = Pending::HeredocWord {
                        strip_tabs,
                        word,
                        quoted,
                        started,
                        quote,
                    };
                    return 1;
                } else {
                    started = true;
                    let quote = match c {
                        '\'' | '"' => {
                            quoted = true;
                            Some(c)
                        }
                        '\\' => {
                            quoted = true;
                            None
                        }
                        _ => {
                            word.push(c);
                            None
                        }
                    };
                    self.pending = Pending::HeredocWord {
                        strip_tabs,
                        word,
                        quoted,
                        started,
                        quote,
                    };
                    return 1;
                }
            }
            Pending::None => {}
        }
        let Some(top) = self.stack.last_mut() else {
            self.stack.push(code(Close::End));
            return 0;
        };
        match top {
            Frame::Single => {
                if c == '\'' {
                    self.stack.pop();
                }
                1
            }
            Frame::AnsiC => {
                match c {
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => {
                        self.stack.pop();
                    }
                    _ => {}
                }
                1
            }
            Frame::Comment => {
                if c == '\n' {
                    self.stack.pop();
                    return self.code_char(c, next, next2);
                }
                1
            }
            Frame::Double => match c {
                '"' => {
                    self.stack.pop();
                    self.word_char('"');
                    1
                }
                '\\' => {
                    // Only `$`, `` ` ``, `"`, `\` and newline are escaped; others stay. At the
                    // end of a piece a hole follows, which a backslash would break.
                    if matches!(next, None | Some('$' | '`' | '"' | '\\' | '\n')) {
                        self.pending = Pending::Backslash;
                    }
                    1
                }
                '$' => self.dollar(next, next2),
                '`' => {
                    self.stack.push(code(Close::Backtick));
                    1
                }
                _ => 1,
            },
            Frame::Param(depth) => {
                match c {
                    '{' => *depth += 1,
                    '}' if *depth <= 1 => {
                        self.stack.pop();
                    }
                    '}' => *depth -= 1,
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.stack.push(Frame::Single),
                    '"' => self.stack.push(Frame::Double),
                    '$' => return self.dollar(next, next2),
                    '`' => self.stack.push(code(Close::Backtick)),
                    _ => {}
                }
                1
            }
            Frame::Arith { depth, bracket } => {
                match c {
                    '(' => *depth += 1,
                    ')' if !*bracket && *depth == 0 && next == Some(')') => {
                        self.stack.pop();
                        self.word_char(')');
                        return 2;
                    }
                    ')' if *depth > 0 => *depth -= 1,
                    ']' if *bracket && *depth == 0 => {
                        self.stack.pop();
                    }
                    '$' => return self.dollar(next, next2),
                    '`' => self.stack.push(code(Close::Backtick)),
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.stack.push(Frame::Single),
                    '"' => self.stack.push(Frame::Double),
                    _ => {}
                }
                1
            }
            Frame::Subscript(depth) => {
                match c {
                    '[' => *depth += 1,
                    ']' if *depth == 0 => {
                        self.stack.pop();
                        self.word_char(']');
                    }
                    ']' => *depth -= 1,
                    '$' => return self.dollar(next, next2),
                    '`' => self.stack.push(code(Close::Backtick)),
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.stack.push(Frame::Single),
                    '"' => self.stack.push(Frame::Double),
                    _ => {}
                }
                1
            }
            Frame::Heredoc(h) => {
                if c == '\n' {
                    let line = std::mem::take(&mut h.line);
                    let line = if h.strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line.as_str()
                    };
                    if line == h.delim {
                        self.stack.pop();
                        self.start_heredoc();
                    }
                    return 1;
                }
                h.line.push(c);
                if !h.quoted {
                    match c {
                        '\\' if next.is_none() => self.pending = Pending::Backslash,
                        '\\' if matches!(next, Some('$' | '`' | '\\')) => {
                            if let Some(n) = next {
                                h.line.push(n);
                            }
                            return 2;
                        }
                        '$' if matches!(next, Some('(' | '{')) => h.nested += 1,
                        '(' | '{' if h.nested > 0 => h.nested += 1,
                        ')' | '}' if h.nested > 0 => h.nested -= 1,
                        '`' if h.nested > 0 => h.nested -= 1,
                        '`' => h.nested += 1,
                        '$' if next.is_none() => self.pending = Pending::Dollar,
                        _ => {}
                    }
                    if c == '$' && matches!(next, Some('(' | '{')) {
                        // The `(`/`{` opened the expansion: do not count it again.
                        if let Some(n) = next {
                            h.line.push(n);
                        }
                        return 2;
                    }
                }
                1
            }
            Frame::Code(_) => self.code_char(c, next, next2),
        }
    }

    /// After a here-document ends (or a line with some ends), the next one starts.
    fn start_heredoc(&mut self) {
        if !self.heredocs.is_empty() {
            let h = self.heredocs.remove(0);
            self.stack.push(Frame::Heredoc(h));
        }
    }

    /// Adds `c` to the current code word, if the top frame is code.
    fn word_char(&mut self, c: char) {
        if let Some(Frame::Code(code)) = self.stack.last_mut() {
            code.word.push(c);
        }
    }

    /// `$` in code, double quotes, `${ }` or arithmetic.
    fn dollar(&mut self, next: Option<char>, next2: Option<char>) -> usize {
        match (next, next2) {
            (Some('('), Some('(')) => {
                self.stack.push(Frame::Arith {
                    depth: 0,
                    bracket: false,
                });
                3
            }
            (Some('('), _) => {
                self.stack.push(code(Close::Paren));
                2
            }
            (Some('{'), _) => {
                self.stack.push(Frame::Param(1));
                2
            }
            (Some('['), _) => {
                self.stack.push(Frame::Arith {
                    depth: 0,
                    bracket: true,
                });
                2
            }
            (Some('\''), _) if !matches!(self.stack.last(), Some(Frame::Double)) => {
                self.stack.push(Frame::AnsiC);
                2
            }
            (None, _) => {
                self.pending = Pending::Dollar;
                1
            }
            _ => {
                self.word_char('$');
                1
            }
        }
    }

    /// Ends the current word of the code frame on top: `let`, `declare -i`, `[[` operators.
    fn end_word(&mut self) {
        let Some(Frame::Code(c)) = self.stack.last_mut() else {
            return;
        };
        let word = std::mem::take(&mut c.word);
        let had_hole = std::mem::replace(&mut c.word_hole, false);
        if word.is_empty() && !had_hole {
            return;
        }
        if ARITH_OPS.contains(&word.as_str())
            && let Some((_, arith)) = self.dbracket()
        {
            *arith = true;
        }
        let Some(Frame::Code(c)) = self.stack.last_mut() else {
            return;
        };
        if c.cmd_start {
            if KEYWORDS.contains(&word.as_str()) {
                return;
            }
            c.cmd_start = false;
            c.cmd_name = Some(word.clone());
            if word == "let" {
                c.cmd_arith = true;
            }
            return;
        }
        let declares = matches!(
            c.cmd_name.as_deref(),
            Some("declare" | "typeset" | "local" | "export" | "readonly")
        );
        if declares && word.starts_with('-') && word.contains('i') {
            c.cmd_arith = true;
        }
    }

    /// The end of a command (`;`, `&`, `|`, newline).
    fn end_command(&mut self) {
        self.end_word();
        if let Some(Frame::Code(c)) = self.stack.last_mut() {
            c.cmd_start = true;
            c.cmd_name = None;
            c.cmd_arith = false;
        }
    }

    /// Resolves a closing `[[ ]]` frame: with an arithmetic operator, its holes are arithmetic.
    fn close_dbracket(&mut self) {
        if let Some(Frame::Code(c)) = self.stack.pop()
            && let Some((holes, true)) = c.dbracket
        {
            for h in holes {
                if let Some(ctx) = self.holes.get_mut(h)
                    && matches!(ctx, ShellContext::Word | ShellContext::DoubleQuoted)
                {
                    *ctx = ShellContext::Arithmetic;
                }
            }
        }
    }

    fn code_char(&mut self, c: char, next: Option<char>, next2: Option<char>) -> usize {
        let Some(Frame::Code(code_frame)) = self.stack.last() else {
            return 1;
        };
        let close = code_frame.close;
        let at_word_start = code_frame.word.is_empty() && !code_frame.word_hole;
        let cmd_start = code_frame.cmd_start;
        let word_is_name = is_name(&code_frame.word) && !code_frame.word_hole;
        match c {
            '\n' => {
                self.end_command();
                self.start_heredoc();
                1
            }
            ' ' | '\t' => {
                self.end_word();
                1
            }
            ';' | '&' | '|' => {
                self.end_command();
                1
            }
            '\\' => {
                self.pending = Pending::Backslash;
                1
            }
            '\'' => {
                self.stack.push(Frame::Single);
                self.word_char('\'');
                1
            }
            '"' => {
                self.stack.push(Frame::Double);
                self.word_char('"');
                1
            }
            '`' if close == Close::Backtick => {
                self.end_word();
                self.stack.pop();
                self.word_char('`');
                1
            }
            '`' => {
                self.word_char('`');
                self.stack.push(code(Close::Backtick));
                1
            }
            '$' => self.dollar(next, next2),
            '#' if at_word_start => {
                self.stack.push(Frame::Comment);
                1
            }
            // `<<<` is a here-string: a word follows, not a here-document.
            '<' if next == Some('<') && next2 == Some('<') => {
                self.end_word();
                3
            }
            '<' if next == Some('<') => {
                self.end_word();
                let (strip_tabs, n) = if next2 == Some('-') {
                    (true, 3)
                } else {
                    (false, 2)
                };
                self.pending = Pending::HeredocWord {
                    strip_tabs,
                    word: String::new(),
                    quoted: false,
                    started: false,
                    quote: None,
                };
                n
            }
            '(' if next == Some('(') && cmd_start && at_word_start => {
                self.stack.push(Frame::Arith {
                    depth: 0,
                    bracket: false,
                });
                2
            }
            '(' if at_word_start => {
                self.end_command();
                self.stack.push(code(Close::Paren));
                1
            }
            '(' => {
                // `name()` of a function definition, `a=(`, `<(`, `>(`: bookkeeping only.
                if let Some(Frame::Code(f)) = self.stack.last_mut() {
                    f.parens += 1;
                }
                self.end_command();
                1
            }
            ')' => {
                if let Some(Frame::Code(f)) = self.stack.last_mut()
                    && f.parens > 0
                {
                    f.parens -= 1;
                    self.end_word();
                    return 1;
                }
                if close == Close::Paren {
                    self.end_word();
                    self.stack.pop();
                    self.word_char(')');
                }
                1
            }
            '[' if next == Some('[') && cmd_start && at_word_start => {
                self.stack.push(code(Close::DBracket));
                if let Some(Frame::Code(f)) = self.stack.last_mut() {
                    f.cmd_start = false;
                }
                2
            }
            ']' if close == Close::DBracket && next == Some(']') && at_word_start => {
                self.close_dbracket();
                2
            }
            '[' if word_is_name => {
                self.word_char('[');
                self.stack.push(Frame::Subscript(0));
                1
            }
            _ => {
                self.word_char(c);
                1
            }
        }
    }
}

/// The index of the script in an argv that runs a known shell with `-c` (`[bash, -c, SCRIPT]`,
/// `[/bin/sh, -euc, SCRIPT]`, `[bash, -o, pipefail, -c, SCRIPT, name, args…]`).
pub fn shell_script_index<S: AsRef<str>>(argv: &[S]) -> Option<usize> {
    let program = argv.first()?.as_ref();
    let name = program.rsplit('/').next().unwrap_or(program);
    if !matches!(name, "sh" | "bash" | "dash" | "zsh" | "ksh") {
        return None;
    }
    let mut c_flag = false;
    let mut i = 1;
    while let Some(arg) = argv.get(i).map(AsRef::as_ref) {
        if arg == "--" || arg == "-" {
            i += 1;
            break;
        }
        let is_option = (arg.starts_with('-') || arg.starts_with('+')) && arg.len() > 1;
        if !is_option {
            break;
        }
        if arg.starts_with("--") {
            // Long options (`--norc`, `--login`) take no argument, except these two.
            if matches!(arg, "--rcfile" | "--init-file") {
                i += 1;
            }
            i += 1;
            continue;
        }
        let flags = &arg[1..];
        if arg.starts_with('-') && flags.contains('c') {
            c_flag = true;
        }
        // `-o NAME` / `+o NAME` (also at the end of a cluster: `-euo pipefail`), `-O NAME`.
        if flags.ends_with('o') || flags.ends_with('O') {
            i += 1;
        }
        i += 1;
    }
    (c_flag && i < argv.len()).then_some(i)
}
