//! Hostile input files, the state store's location and the exit codes, through the real `cairn`
//! binary: real FIFOs, real symbolic-link loops, `/dev/zero`, real child processes.

mod inputs {
    pub mod common;

    mod exits;
    mod files;
    mod location;
    mod uses;
}
