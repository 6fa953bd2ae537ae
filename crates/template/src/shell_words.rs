//! Which commands the shell scanner knows: builtins that take plain data (an allowlist within
//! bash's finite set of builtins), declarations, and the programs that hand text to a shell.
//! Also the `argv` rule: once an argv runs a shell, only whole-element holes pass.

/// Builtins whose arguments are plain data (`test` and `[` without `-v`/`-R`, `printf`
/// without `-v`): the only builtins a hole may be an argument of. `((` and `[[` stand for the
/// compound commands, whose holes the scanner judges itself.
pub(crate) const DATA_BUILTINS: &[&str] = &[
    "echo", "printf", "cd", "pwd", "test", "[", "true", "false", ":", "exit", "return", "shift",
    "set", "((", "[[", "(",
];

/// Declaration builtins: a hole may be the value of a `NAME=value` argument, nothing else.
pub(crate) const DECLARATIONS: &[&str] = &["declare", "typeset", "local", "export", "readonly"];

/// Every other bash builtin: a hole in their arguments is refused.
pub(crate) const OTHER_BUILTINS: &[&str] = &[
    "let",
    "eval",
    "source",
    ".",
    "trap",
    "read",
    "unset",
    "mapfile",
    "readarray",
    "getopts",
    "wait",
    "kill",
    "ulimit",
    "alias",
    "unalias",
    "bind",
    "complete",
    "compgen",
    "compopt",
    "enable",
    "fc",
    "hash",
    "help",
    "history",
    "jobs",
    "disown",
    "logout",
    "popd",
    "pushd",
    "dirs",
    "shopt",
    "suspend",
    "times",
    "type",
    "umask",
    "caller",
    "break",
    "continue",
    "bg",
    "fg",
    "exec",
    "command",
    "builtin",
];

/// Words that only prefix the command that follows (with their options).
pub(crate) const PREFIXES: &[&str] = &["command", "builtin", "exec", "time", "!"];

/// Reserved words that do not end the search for a command name.
pub(crate) const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "for", "{", "}", "fi", "done", "function",
];

/// Programs that run a shell or hand their arguments or input to one (a word's last path
/// component is compared): shells, and wrappers that run a command line or a remote one.
pub(crate) const SHELL_RUNNERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "pdksh",
    "yash",
    "ash",
    "rbash",
    "posh",
    "busybox",
    "fish",
    "csh",
    "tcsh",
    "env",
    "timeout",
    "nice",
    "nohup",
    "su",
    "sudo",
    "doas",
    "runuser",
    "xargs",
    "flock",
    "setsid",
    "stdbuf",
    "ionice",
    "chroot",
    "ssh",
    "watch",
    "parallel",
    "script",
    "unshare",
    "nsenter",
    "systemd-run",
    "chrt",
    "taskset",
    "numactl",
    "setpriv",
    "sg",
    "newgrp",
    "eval",
    "source",
    ".",
    "trap",
];

/// The name of what `word` runs, if it runs a shell: a shell or wrapper (by its last path
/// component).
pub(crate) fn runs_shell(word: &str) -> Option<&'static str> {
    let base = word.rsplit('/').next().unwrap_or(word);
    SHELL_RUNNERS.iter().find(|n| **n == base).copied()
}

/// [`runs_shell`], or an option that gives a command string (`-c`, `-ec`, `--command`). In an
/// argv only: in a script, `grep -c` and `tr -dc` are far more common than a shell's `-c`, and
/// the shell itself is named in the command.
fn argv_runs_shell(word: &str) -> Option<&'static str> {
    if let Some(name) = runs_shell(word) {
        return Some(name);
    }
    let cluster = word
        .strip_prefix('-')
        .filter(|f| !f.starts_with('-') && f.chars().all(|c| c.is_ascii_alphabetic()));
    if cluster.is_some_and(|f| f.contains('c')) {
        return Some("-c");
    }
    if word == "--command" || word.starts_with("--command=") {
        return Some("--command");
    }
    None
}

/// The static name of a builtin, if `word` is one.
pub(crate) fn builtin(word: &str) -> Option<&'static str> {
    DATA_BUILTINS
        .iter()
        .chain(DECLARATIONS)
        .chain(OTHER_BUILTINS)
        .find(|n| **n == word)
        .copied()
}

/// Whether `word` starts with `NAME=` or `NAME+=` (an assignment, or a declaration's value).
pub(crate) fn is_assignment(word: &str) -> bool {
    let Some(eq) = word.find('=') else {
        return false;
    };
    let name = word[..eq].strip_suffix('+').unwrap_or(&word[..eq]);
    is_name(name)
}

/// A shell name: a letter or `_`, then letters, digits and `_`.
pub(crate) fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A hole in an `argv` element that cannot be passed as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgvRefusal {
    /// The element that holds the hole.
    pub element: usize,
    /// The element that makes the argv run a shell (`bash`, `env`, `-c`...), or `None` when
    /// the program itself is templated.
    pub runner: Option<usize>,
    /// What that element runs (`bash`, `-c`), or `a templated program`.
    pub what: String,
}

impl ArgvRefusal {
    /// One line, without location.
    pub fn message(&self) -> String {
        format!(
            "a `{{{{ }}}}` inside a larger argv element, in an argv that runs a shell ({}): the value could become script text",
            self.what
        )
    }

    /// What to write instead.
    pub const HELP: &'static str = "make the value a whole element by itself ('{{ x }}') and refer to it as \"$1\" \
         in the script, or pass it through `env:` and use \"$VAR\"";
}

/// The `argv` rule. An argv runs a shell when an element names a shell or a wrapper that runs
/// one (`bash`, `env`, `timeout`, `sudo`, `xargs`, `ssh`...), gives a `-c`/`--command` option,
/// or when its program is templated (it could be any of them). From that element on, an
/// element with a template in it must be exactly one `{{ expression }}`: its value is then one
/// argument, never pasted into script text. The script of a known shell (`[bash, -c, SCRIPT]`,
/// at [`crate::shell_script_index`]) is exempt: it is scanned as a shell template, and
/// `script_at` names it.
///
/// `whole(i)` tells whether element `i` is one `{{ expression }}` alone.
pub fn argv_refusals<S: AsRef<str>>(
    argv: &[S],
    script_at: Option<usize>,
    whole: impl Fn(usize) -> bool,
) -> Vec<ArgvRefusal> {
    let templated = |s: &str| s.contains("{{") || s.contains("{%");
    let mut runner: Option<(Option<usize>, String)> = None;
    let mut out = Vec::new();
    for (i, element) in argv.iter().enumerate() {
        let element = element.as_ref();
        if templated(element) {
            if let Some((at, what)) = &runner
                && Some(i) != script_at
                && !whole(i)
            {
                out.push(ArgvRefusal {
                    element: i,
                    runner: *at,
                    what: what.clone(),
                });
            }
            if i == 0 && runner.is_none() {
                runner = Some((None, "a templated program".to_string()));
            }
            continue;
        }
        if runner.is_none()
            && let Some(what) = argv_runs_shell(element)
        {
            runner = Some((Some(i), what.to_string()));
        }
    }
    out
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
