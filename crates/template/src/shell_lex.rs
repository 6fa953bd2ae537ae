//! A focused bash context scanner: where is each `{{ }}` hole of a script, so that it can be
//! rendered as a reference to an environment variable that is safe there, or refused.
//!
//! It fails closed. A hole is accepted only where the scanner positively knows it stands: a
//! plain word or plain double-quoted text of a command whose name is a fixed word and is not a
//! builtin that evaluates names, arithmetic or code; an unquoted here-document body; or, for an
//! integer, arithmetic that reads no variable. A command or pipeline that hands text to a shell
//! (`bash`, `sudo`, `ssh`, `xargs`, a `-c` option...) takes a hole only as a whole word. Any
//! construct it does not model ([`Construct`]: `case`, `let`, `declare -i`, `$[ ]`, subscripts,
//! `${s:n}`, `a=(…)`, a comment in backticks, a here-document in `$( )`, a quote left open...)
//! refuses every hole of the script, naming the construct and where it starts: a value given
//! anywhere may reach it through a variable.

use crate::shell_refusal::{Construct, Refusal, ShellContext};
use crate::shell_words::{
    DATA_BUILTINS, DECLARATIONS, KEYWORDS, PREFIXES, builtin, is_assignment, is_name, runs_shell,
};

/// Stands for a hole in the words the scanner keeps.
const MARK: char = '\u{1}';

const ARITH_OPS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// Commands: the script, `$( )`, `( )`, backticks, `[[ ]]`.
    Code(Box<Code>),
    Single,
    AnsiC,
    Double,
    /// `${ … }`: brace depth.
    Param(u32),
    /// `$(( … ))`, `(( … ))`, `$[ … ]` (`bracket`): paren depth inside; `number`: in a numeric
    /// literal (whose letters, `0x1f`, `16#ff`, are not names).
    Arith {
        depth: u32,
        bracket: bool,
        number: bool,
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
    /// No command name found yet in the current command.
    cmd_start: bool,
    /// The current word as written, quotes included, holes as [`MARK`].
    word: String,
    /// Where the current word starts.
    word_start: usize,
    /// Holes in the current word: index, and whether it is nested in something inside the
    /// word (`$( )`, `${ }`...) rather than directly in it.
    word_holes: Vec<(usize, bool)>,
    cmd: Command,
    pipeline: Pipeline,
    /// In `[[ ]]`.
    dbracket: Option<DBracket>,
    /// Paren depth of a function definition's `()`.
    parens: u32,
}

/// The command being read in a code frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Command {
    /// The command's name, quotes removed, once found (after assignments and prefixes).
    name: Option<String>,
    /// A prefix (`command`, `builtin`, `exec`) was seen: its options are skipped.
    prefixed: bool,
    /// Its arguments, quotes removed.
    args: Vec<String>,
    /// A word of it runs a shell.
    runner: Option<&'static str>,
    holes: Vec<CmdHole>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CmdHole {
    index: usize,
    /// The hole is its word, alone (`{{ x }}`, `"{{ x }}"`).
    alone: bool,
    /// Its word is an assignment `NAME=…` (the hole in the value).
    assign: bool,
    /// Its word is the command's name.
    is_name: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pipeline {
    /// Holes of its commands, and whether their command runs a shell itself.
    holes: Vec<(usize, bool)>,
    runner: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DBracket {
    holes: Vec<usize>,
    /// An arithmetic operator (`-eq`...) was seen.
    arith: bool,
    /// `-v` or `-R`, which evaluate a name.
    names: bool,
    /// An operand that is not a number or a hole (a name, an expansion).
    reads: bool,
    at: usize,
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
    /// The pipeline that announced it, and whether that pipeline feeds a shell.
    pipeline: u64,
    runner: Option<&'static str>,
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

/// The scanner. Feed script text with [`ShellLexer::feed`] (or [`ShellLexer::feed_at`]) and
/// mark holes with [`ShellLexer::hole`]; [`ShellLexer::finish`] gives each hole's context.
#[derive(Debug, Clone)]
pub struct ShellLexer {
    stack: Vec<Frame>,
    /// Where each frame of `stack` opened.
    starts: Vec<usize>,
    pending: Pending,
    /// Here-documents announced on the current line, read after its end.
    heredocs: Vec<Heredoc>,
    holes: Vec<ShellContext>,
    /// Offset of the character being read, and the end of what was fed.
    pos: usize,
    end: usize,
    /// Pipelines ended so far (names the current one).
    pipelines: u64,
    /// The first construct met that the scanner does not model.
    poison: Option<(Construct, usize)>,
}

impl Default for ShellLexer {
    fn default() -> Self {
        Self::new()
    }
}

fn code(close: Close, at: usize) -> Frame {
    Frame::Code(Box::new(Code {
        close,
        cmd_start: close != Close::DBracket,
        word: String::new(),
        word_start: 0,
        word_holes: Vec::new(),
        cmd: Command::default(),
        pipeline: Pipeline::default(),
        dbracket: (close == Close::DBracket).then_some(DBracket {
            holes: Vec::new(),
            arith: false,
            names: false,
            reads: false,
            at,
        }),
        parens: 0,
    }))
}

fn taint(poison: &mut Option<(Construct, usize)>, construct: Construct, at: usize) {
    if poison.is_none() {
        *poison = Some((construct, at));
    }
}

/// Marks hole `index` refused, unless it is refused already.
fn refuse(holes: &mut [ShellContext], index: usize, why: Refusal) {
    if let Some(ctx) = holes.get_mut(index)
        && ctx.is_accepted()
    {
        *ctx = ShellContext::Refused(why);
    }
}

fn unquoted(word: &str) -> String {
    word.chars().filter(|c| !matches!(c, '"' | '\'')).collect()
}

impl ShellLexer {
    /// A scanner at the start of a script.
    pub fn new() -> Self {
        Self {
            stack: vec![code(Close::End, 0)],
            starts: vec![0],
            pending: Pending::None,
            heredocs: Vec::new(),
            holes: Vec::new(),
            pos: 0,
            end: 0,
            pipelines: 0,
            poison: None,
        }
    }

    fn push(&mut self, frame: Frame) {
        self.stack.push(frame);
        self.starts.push(self.pos);
    }

    fn pop(&mut self) -> Option<Frame> {
        self.starts.pop();
        self.stack.pop()
    }

    fn taint(&mut self, construct: Construct, at: usize) {
        taint(&mut self.poison, construct, at);
    }

    /// Marks a hole at the current position; returns its index for [`ShellLexer::finish`].
    pub fn hole(&mut self) -> usize {
        self.pos = self.end;
        let ctx = self.context_now();
        let index = self.holes.len();
        self.holes.push(ctx);
        // The hole is part of the current word (or line, or delimiter).
        match &mut self.pending {
            Pending::HeredocWord { word, started, .. } => {
                word.push(MARK);
                *started = true;
            }
            Pending::Backslash | Pending::Dollar => self.pending = Pending::None,
            Pending::None => {}
        }
        // Every command around it takes it as part of its current word: directly (through
        // double quotes only) for the innermost, nested for the others.
        let at = self.pos;
        let mut direct = true;
        for f in self.stack.iter_mut().rev() {
            match f {
                Frame::Double => {}
                Frame::Code(c) => {
                    if c.word.is_empty() && c.word_holes.is_empty() {
                        c.word_start = at;
                    }
                    if direct {
                        c.word.push(MARK);
                    }
                    c.word_holes.push((index, !direct));
                    if let Some(d) = &mut c.dbracket {
                        d.holes.push(index);
                    }
                    direct = false;
                }
                Frame::Heredoc(h) => {
                    h.line.push(MARK);
                    break;
                }
                Frame::Comment => break,
                Frame::Arith { number, .. } => {
                    // It stands for a number.
                    *number = true;
                    direct = false;
                }
                _ => direct = false,
            }
        }
        index
    }

    /// Every hole's context, in the order they were marked.
    pub fn finish(mut self) -> Vec<ShellContext> {
        self.pos = self.end;
        if matches!(self.stack.last(), Some(Frame::Comment)) {
            self.pop();
        }
        // A here-document whose delimiter is the script's last line, without a newline.
        if let Some(Frame::Heredoc(h)) = self.stack.last() {
            let line = if h.strip_tabs {
                h.line.trim_start_matches('\t')
            } else {
                h.line.as_str()
            };
            if line == h.delim {
                self.pop();
            }
        }
        if self.stack.len() == 1 {
            self.end_pipeline();
        }
        let open = self.stack.len() != 1
            || matches!(self.pending, Pending::HeredocWord { .. })
            || !self.heredocs.is_empty();
        if open {
            let at = self.starts.get(1).copied().unwrap_or(self.end);
            self.taint(Construct::Unclosed, at);
        }
        if let Some((construct, at)) = self.poison {
            for i in 0..self.holes.len() {
                refuse(&mut self.holes, i, Refusal::Unmodelled { construct, at });
            }
        }
        self.holes
    }

    fn context_now(&self) -> ShellContext {
        if matches!(self.pending, Pending::HeredocWord { .. }) {
            return ShellContext::Refused(Refusal::HeredocDelimiter);
        }
        if matches!(self.pending, Pending::Backslash | Pending::Dollar) {
            return ShellContext::Refused(Refusal::Escaped);
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
        if self.stack.iter().any(|f| matches!(f, Frame::Param(_))) {
            return ShellContext::Refused(Refusal::ParameterExpansion);
        }
        if self
            .stack
            .iter()
            .any(|f| matches!(f, Frame::Arith { .. } | Frame::Subscript(_)))
        {
            return ShellContext::Arithmetic;
        }
        match top {
            Some(Frame::Heredoc(h)) => match h.runner {
                Some(r) => ShellContext::Refused(Refusal::RunsShell(r)),
                None if h.nested > 0 => ShellContext::Refused(Refusal::HeredocExpansion),
                None => ShellContext::Heredoc,
            },
            Some(Frame::Double) => ShellContext::DoubleQuoted,
            _ => ShellContext::Word,
        }
    }

    /// Scans `text`, which continues what was fed before.
    pub fn feed(&mut self, text: &str) {
        self.feed_at(text, self.end);
    }

    /// Scans `text`, which continues what was fed before and starts at byte `origin` of the
    /// source that positions are reported in.
    pub fn feed_at(&mut self, text: &str, origin: usize) {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (offset, c) = chars[i];
            self.pos = origin + offset;
            let next = chars.get(i + 1).map(|x| x.1);
            let next2 = chars.get(i + 2).map(|x| x.1);
            i += self.step(c, next, next2);
        }
        self.end = origin + text.len();
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
                    if c != q {
                        word.push(c);
                    }
                    self.pending = Pending::HeredocWord {
                        strip_tabs,
                        word,
                        quoted,
                        started,
                        quote: (c != q).then_some(q),
                    };
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
                        pipeline: self.pipelines,
                        runner: None,
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
        let pos = self.pos;
        let Some(top) = self.stack.last_mut() else {
            self.push(code(Close::End, pos));
            return 0;
        };
        match top {
            Frame::Single => {
                if c == '\'' {
                    self.pop();
                }
                self.word_char(c);
                1
            }
            Frame::AnsiC => {
                match c {
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => {
                        self.pop();
                    }
                    _ => {}
                }
                self.word_char(c);
                1
            }
            Frame::Comment => {
                if c == '\n' {
                    self.pop();
                    return self.code_char(c, next, next2);
                }
                1
            }
            Frame::Double => match c {
                '"' => {
                    self.pop();
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
                    self.word_char('`');
                    self.push(code(Close::Backtick, pos));
                    1
                }
                _ => {
                    self.word_char(c);
                    1
                }
            },
            Frame::Param(depth) => {
                match c {
                    '{' => *depth += 1,
                    '}' if *depth <= 1 => {
                        self.pop();
                    }
                    '}' => *depth -= 1,
                    // A subscript, or a substring offset (`:` not followed by `-`, `=`, `?`, `+`).
                    '[' => self.taint(Construct::ExpansionOperator, pos),
                    ':' if *depth == 1 && !matches!(next, Some('-' | '=' | '?' | '+')) => {
                        self.taint(Construct::ExpansionOperator, pos);
                    }
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.push(Frame::Single),
                    '"' => self.push(Frame::Double),
                    '$' => return self.dollar(next, next2),
                    '`' => self.push(code(Close::Backtick, pos)),
                    _ => {}
                }
                1
            }
            Frame::Arith {
                depth,
                bracket,
                number,
            } => {
                let was_number = std::mem::replace(number, false);
                match c {
                    '(' => *depth += 1,
                    ')' if !*bracket && *depth == 0 && next == Some(')') => {
                        self.pop();
                        self.word_char(')');
                        return 2;
                    }
                    ')' if *depth > 0 => *depth -= 1,
                    ']' if *bracket && *depth == 0 => {
                        self.pop();
                    }
                    // Special parameters are integers; anything else expands to text that is
                    // evaluated again.
                    '$' if matches!(next, Some('#' | '?' | '$' | '!')) => return 2,
                    '$' => {
                        self.taint(Construct::ArithmeticReadsVariable, pos);
                        return self.dollar(next, next2);
                    }
                    '`' => {
                        self.taint(Construct::ArithmeticReadsVariable, pos);
                        self.push(code(Close::Backtick, pos));
                    }
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.push(Frame::Single),
                    '"' => self.push(Frame::Double),
                    '0'..='9' => *number = true,
                    c if c.is_ascii_alphanumeric() || matches!(c, '_' | '#' | '@') => {
                        if was_number {
                            *number = true;
                        } else {
                            self.taint(Construct::ArithmeticReadsVariable, pos);
                        }
                    }
                    _ => {}
                }
                1
            }
            Frame::Subscript(depth) => {
                match c {
                    '[' => *depth += 1,
                    ']' if *depth == 0 => {
                        self.pop();
                        self.word_char(']');
                    }
                    ']' => *depth -= 1,
                    '$' => return self.dollar(next, next2),
                    '`' => self.push(code(Close::Backtick, pos)),
                    '\\' => self.pending = Pending::Backslash,
                    '\'' => self.push(Frame::Single),
                    '"' => self.push(Frame::Double),
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
                        self.pop();
                        self.start_heredoc();
                    }
                    return 1;
                }
                h.line.push(c);
                if h.quoted {
                    return 1;
                }
                match c {
                    '\\' if next.is_none() => self.pending = Pending::Backslash,
                    '\\' if matches!(next, Some('$' | '`' | '\\')) => {
                        if let Some(n) = next {
                            h.line.push(n);
                        }
                        return 2;
                    }
                    '$' if next == Some('[') => {
                        taint(&mut self.poison, Construct::DollarBracket, pos);
                    }
                    '$' if next == Some('(') && next2 == Some('(') => {
                        taint(&mut self.poison, Construct::ArithmeticReadsVariable, pos);
                        h.nested += 1;
                    }
                    '$' if matches!(next, Some('(' | '{')) => h.nested += 1,
                    '[' if h.nested > 0 => {
                        taint(&mut self.poison, Construct::ExpansionOperator, pos);
                    }
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
                1
            }
            Frame::Code(_) => self.code_char(c, next, next2),
        }
    }

    /// After a here-document ends (or a line with some ends), the next one starts.
    fn start_heredoc(&mut self) {
        if !self.heredocs.is_empty() {
            let h = self.heredocs.remove(0);
            self.push(Frame::Heredoc(h));
        }
    }

    /// Adds `c` to the current word of the innermost code frame, through quotes.
    fn word_char(&mut self, ch: char) {
        let pos = self.pos;
        for f in self.stack.iter_mut().rev() {
            match f {
                Frame::Single | Frame::AnsiC | Frame::Double => {}
                Frame::Code(c) => {
                    if c.word.is_empty() && c.word_holes.is_empty() {
                        c.word_start = pos;
                    }
                    c.word.push(ch);
                    return;
                }
                _ => return,
            }
        }
    }

    /// `$` in code, double quotes, `${ }` or arithmetic.
    fn dollar(&mut self, next: Option<char>, next2: Option<char>) -> usize {
        let pos = self.pos;
        match (next, next2) {
            (Some('('), Some('(')) => {
                self.word_char('$');
                self.push(Frame::Arith {
                    depth: 0,
                    bracket: false,
                    number: false,
                });
                3
            }
            (Some('('), _) => {
                self.word_char('$');
                self.push(code(Close::Paren, pos));
                2
            }
            (Some('{'), next2) => {
                self.word_char('$');
                if next2 == Some('!') {
                    self.taint(Construct::ExpansionOperator, pos);
                }
                self.push(Frame::Param(1));
                2
            }
            (Some('['), _) => {
                self.word_char('$');
                self.taint(Construct::DollarBracket, pos);
                self.push(Frame::Arith {
                    depth: 0,
                    bracket: true,
                    number: false,
                });
                2
            }
            (Some('\''), _) if !matches!(self.stack.last(), Some(Frame::Double)) => {
                self.word_char('$');
                self.push(Frame::AnsiC);
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

    /// Ends the current word of the code frame on top, and files it in its command.
    fn end_word(&mut self) {
        let Some(Frame::Code(c)) = self.stack.last_mut() else {
            return;
        };
        let word = std::mem::take(&mut c.word);
        let holes = std::mem::take(&mut c.word_holes);
        let start = c.word_start;
        if word.is_empty() && holes.is_empty() {
            return;
        }
        let bare = unquoted(&word);
        if let Some(d) = &mut c.dbracket {
            if ARITH_OPS.contains(&bare.as_str()) {
                d.arith = true;
            } else if bare == "-v" || bare == "-R" {
                d.names = true;
            } else if !bare.starts_with('-')
                && bare
                    .chars()
                    .any(|ch| matches!(ch, '$' | '`' | '_') || ch.is_ascii_alphabetic())
            {
                d.reads = true;
            }
            return;
        }
        let mut construct = None;
        let mut is_cmd_name = false;
        if c.cmd_start {
            construct = match word.as_str() {
                "case" => Some(Construct::Case),
                "select" => Some(Construct::Select),
                "coproc" => Some(Construct::Coproc),
                _ => None,
            };
            let skipped = KEYWORDS.contains(&word.as_str())
                || (is_assignment(&word) && !c.cmd.prefixed)
                || (c.cmd.prefixed && bare.starts_with('-'));
            if !skipped {
                if PREFIXES.contains(&bare.as_str()) {
                    c.cmd.prefixed = true;
                } else {
                    c.cmd_start = false;
                    is_cmd_name = true;
                    if bare == "let" {
                        construct = Some(Construct::Let);
                    }
                    c.cmd.name = Some(bare.clone());
                }
            }
        } else {
            let declares = c
                .cmd
                .name
                .as_deref()
                .is_some_and(|n| DECLARATIONS.contains(&n));
            if declares && (bare.starts_with('-') || bare.starts_with('+')) && bare.contains('i') {
                construct = Some(Construct::IntegerAttribute);
            }
            c.cmd.args.push(bare.clone());
        }
        if let Some(r) = runs_shell(&bare) {
            c.cmd.runner.get_or_insert(r);
        }
        let alone = holes.len() == 1 && !holes[0].1 && bare == MARK.to_string();
        let assign = is_assignment(&word);
        c.cmd.holes.extend(holes.iter().map(|&(index, _)| CmdHole {
            index,
            alone,
            assign,
            is_name: is_cmd_name,
        }));
        if let Some(construct) = construct {
            self.taint(construct, start);
        }
    }

    /// The end of a command (`|`, and everything that ends a pipeline).
    fn end_command(&mut self) {
        self.end_word();
        let Some(Frame::Code(c)) = self.stack.last_mut() else {
            return;
        };
        let cmd = std::mem::take(&mut c.cmd);
        c.cmd_start = c.close != Close::DBracket;
        for h in &cmd.holes {
            if let Some(why) = judge(&cmd, h) {
                refuse(&mut self.holes, h.index, why);
            }
            c.pipeline.holes.push((h.index, cmd.runner.is_some()));
        }
        if let Some(r) = cmd.runner {
            c.pipeline.runner.get_or_insert(r);
        }
    }

    /// The end of a pipeline (`;`, `&`, `&&`, `||`, newline, the end of a frame).
    fn end_pipeline(&mut self) {
        self.end_command();
        let Some(Frame::Code(c)) = self.stack.last_mut() else {
            return;
        };
        let p = std::mem::take(&mut c.pipeline);
        if let Some(r) = p.runner {
            // `echo {{ x }} | bash`, `cat <<EOF | sh`: what the others write becomes script.
            for (index, in_runner) in p.holes {
                if !in_runner {
                    refuse(&mut self.holes, index, Refusal::RunsShell(r));
                }
            }
            for h in &mut self.heredocs {
                if h.pipeline == self.pipelines {
                    h.runner = Some(r);
                }
            }
        }
        self.pipelines += 1;
    }

    /// Resolves a closing `[[ ]]` frame: with an arithmetic operator, its holes are arithmetic.
    fn close_dbracket(&mut self) {
        self.end_word();
        if let Some(Frame::Code(c)) = self.pop()
            && let Some(d) = c.dbracket
        {
            if d.arith && d.reads {
                self.taint(Construct::ArithmeticReadsVariable, d.at);
            }
            for h in d.holes {
                if d.names {
                    refuse(&mut self.holes, h, Refusal::Builtin("[[ -v"));
                } else if let Some(ctx) = self.holes.get_mut(h)
                    && d.arith
                    && matches!(ctx, ShellContext::Word | ShellContext::DoubleQuoted)
                {
                    *ctx = ShellContext::Arithmetic;
                }
            }
        }
    }

    /// Names the current command of the code frame on top (`((`, `[[`, `(`).
    fn compound(&mut self, name: &str) {
        if let Some(Frame::Code(f)) = self.stack.last_mut() {
            f.cmd_start = false;
            f.cmd.name = Some(name.to_string());
        }
    }

    fn code_char(&mut self, c: char, next: Option<char>, next2: Option<char>) -> usize {
        let pos = self.pos;
        let Some(Frame::Code(code_frame)) = self.stack.last() else {
            return 1;
        };
        let close = code_frame.close;
        let at_word_start = code_frame.word.is_empty() && code_frame.word_holes.is_empty();
        let cmd_start = code_frame.cmd_start;
        let word_is_name = is_name(&code_frame.word);
        let word_is_assign = is_assignment(&code_frame.word) && code_frame.word.ends_with('=');
        let after_redirect = code_frame.word.ends_with(['<', '>']);
        match c {
            '\n' => {
                self.end_pipeline();
                self.start_heredoc();
                1
            }
            ' ' | '\t' => {
                self.end_word();
                1
            }
            // `[[ ( a ) ]]`: grouping.
            '(' | ')' if close == Close::DBracket => {
                self.end_word();
                1
            }
            '&' if next == Some('>') || after_redirect => {
                self.word_char('&');
                1
            }
            '&' | '|' if next == Some(c) => {
                self.end_pipeline();
                2
            }
            '|' => {
                self.end_command();
                if next == Some('&') { 2 } else { 1 }
            }
            ';' | '&' => {
                self.end_pipeline();
                1
            }
            '\\' => {
                self.pending = Pending::Backslash;
                1
            }
            '\'' => {
                self.word_char('\'');
                self.push(Frame::Single);
                1
            }
            '"' => {
                self.word_char('"');
                self.push(Frame::Double);
                1
            }
            '`' if close == Close::Backtick => {
                self.end_pipeline();
                self.pop();
                self.word_char('`');
                1
            }
            '`' => {
                self.word_char('`');
                self.push(code(Close::Backtick, pos));
                1
            }
            '$' => self.dollar(next, next2),
            '#' if at_word_start => {
                let in_backticks = self
                    .stack
                    .iter()
                    .any(|f| matches!(f, Frame::Code(c) if c.close == Close::Backtick));
                if in_backticks {
                    self.taint(Construct::BacktickComment, pos);
                }
                self.push(Frame::Comment);
                1
            }
            // `<<<` is a here-string: a word follows, not a here-document.
            '<' if next == Some('<') && next2 == Some('<') => {
                self.end_word();
                3
            }
            '<' if next == Some('<') => {
                self.end_word();
                if self.stack.len() > 1 {
                    self.taint(Construct::HeredocInSubstitution, pos);
                }
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
                self.compound("((");
                self.push(Frame::Arith {
                    depth: 0,
                    bracket: false,
                    number: false,
                });
                2
            }
            '(' if at_word_start => {
                if cmd_start {
                    self.compound("(");
                } else {
                    self.taint(Construct::Paren, pos);
                }
                self.push(code(Close::Paren, pos));
                1
            }
            '(' if word_is_name => {
                // `name()` of a function definition.
                if let Some(Frame::Code(f)) = self.stack.last_mut() {
                    f.parens += 1;
                }
                self.end_pipeline();
                1
            }
            '(' => {
                // `<(…)`, `>(…)` are commands; `a=(…)` and `@(…)` are not modelled.
                if word_is_assign {
                    self.taint(Construct::CompoundAssignment, pos);
                } else if !after_redirect {
                    self.taint(Construct::Paren, pos);
                }
                self.word_char('(');
                self.push(code(Close::Paren, pos));
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
                    self.end_pipeline();
                    self.pop();
                    self.word_char(')');
                } else {
                    self.taint(Construct::UnbalancedClose, pos);
                }
                1
            }
            '[' if next == Some('[') && cmd_start && at_word_start => {
                self.compound("[[");
                self.push(code(Close::DBracket, pos));
                2
            }
            ']' if close == Close::DBracket && next == Some(']') && at_word_start => {
                self.close_dbracket();
                2
            }
            '[' if word_is_name => {
                self.taint(Construct::Subscript, pos);
                self.word_char('[');
                self.push(Frame::Subscript(0));
                1
            }
            _ => {
                self.word_char(c);
                1
            }
        }
    }
}

/// Why a hole of `cmd` is refused, if it is: by the command's name (a builtin that is not on
/// the data allowlist, a name that is not fixed), then by a shell run by the command.
fn judge(cmd: &Command, hole: &CmdHole) -> Option<Refusal> {
    if let Some(name) = &cmd.name
        && !hole.is_name
    {
        if name.contains([MARK, '$', '`']) {
            return Some(Refusal::UnknownCommand);
        }
        let has = |flags: &[&str]| {
            cmd.args
                .iter()
                .any(|a| flags.iter().any(|f| a.starts_with(f)))
        };
        match builtin(name) {
            Some("printf") if has(&["-v"]) => return Some(Refusal::Builtin("printf -v")),
            Some(b @ ("test" | "[")) if has(&["-v", "-R"]) => return Some(Refusal::Builtin(b)),
            Some(b) if DECLARATIONS.contains(&b) => {
                // `export NAME={{ x }}`, `local -r NAME="{{ x }}"`: the value only.
                let plain_options = cmd
                    .args
                    .iter()
                    .filter(|a| a.starts_with(['-', '+']))
                    .all(|a| a[1..].chars().all(|f| matches!(f, 'r' | 'x' | 'g')));
                if !(hole.assign && plain_options) {
                    return Some(Refusal::Builtin(b));
                }
            }
            Some(b) if !DATA_BUILTINS.contains(&b) => return Some(Refusal::Builtin(b)),
            _ => {}
        }
    }
    match cmd.runner {
        Some(r) if !hole.alone => Some(Refusal::RunsShell(r)),
        _ => None,
    }
}
