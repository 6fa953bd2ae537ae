//! What Cairn and its spawner process say to each other.
//!
//! A spawn request is one datagram on their socket pair holding its id, with five descriptors
//! attached: a memfd holding the [`Spec`] (arguments and environment may be megabytes, more
//! than a datagram can carry), the child's stdin, stdout and stderr, and the write end of the
//! request's status pipe. Replies are fixed-size records on that pipe (smaller than
//! `PIPE_BUF`, so each is written whole): `Spawned` or `Failed`, then `Exited`, then the
//! spawner closes it. A release request (no descriptors, no reply) names processes a detached
//! step left running: the spawner must not stop them when Cairn goes away.

/// Most processes one release request names (a datagram is well under 64 KiB).
pub(super) const MAX_RELEASED: usize = 4096;

/// What Cairn asks of the spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    /// Start the process described by the attached descriptors; answer on its status pipe.
    Spawn { id: u64 },
    /// Leave these processes (pid and start time) running when Cairn goes away.
    Release { processes: Vec<(i32, u64)> },
}

impl Request {
    /// `[0][u64 id]`, or `[1]` then `[i32 pid][u64 start]` per process.
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Request::Spawn { id } => std::iter::once(0u8).chain(id.to_le_bytes()).collect(),
            Request::Release { processes } => {
                let mut out = vec![1u8];
                for (pid, start) in processes.iter().take(MAX_RELEASED) {
                    out.extend(pid.to_le_bytes());
                    out.extend(start.to_le_bytes());
                }
                out
            }
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Request> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            0 => Some(Request::Spawn {
                id: u64::from_le_bytes(rest.try_into().ok()?),
            }),
            1 if rest.len() % 12 == 0 => Some(Request::Release {
                processes: rest
                    .chunks_exact(12)
                    .map(|c| {
                        let (pid, start) = c.split_at(4);
                        Some((
                            i32::from_le_bytes(pid.try_into().ok()?),
                            u64::from_le_bytes(start.try_into().ok()?),
                        ))
                    })
                    .collect::<Option<_>>()?,
            }),
            _ => None,
        }
    }
}

/// Bytes of a reply: tag, a pid or errno, then an id or a wait status.
pub(super) const REPLY_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// Request `id` started process `pid` (the leader of a new session).
    Spawned { id: u64, pid: i32 },
    /// Request `id` failed with `errno` (ENOENT, EACCES... from the exec).
    Failed { id: u64, errno: i32 },
    /// Process `pid` ended; `status` is the raw wait status.
    Exited { pid: i32, status: i32 },
}

impl Reply {
    pub(super) fn encode(self) -> [u8; REPLY_LEN] {
        let (tag, a, b) = match self {
            Reply::Spawned { id, pid } => (1u32, pid, id),
            Reply::Failed { id, errno } => (2, errno, id),
            Reply::Exited { pid, status } => (3, pid, u64::from(status as u32)),
        };
        let mut out = [0u8; REPLY_LEN];
        out[..4].copy_from_slice(&tag.to_le_bytes());
        out[4..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Reply> {
        let bytes: &[u8; REPLY_LEN] = bytes.try_into().ok()?;
        let tag = u32::from_le_bytes(bytes[..4].try_into().ok()?);
        let a = i32::from_le_bytes(bytes[4..8].try_into().ok()?);
        let b = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        match tag {
            1 => Some(Reply::Spawned { id: b, pid: a }),
            2 => Some(Reply::Failed { id: b, errno: a }),
            3 => Some(Reply::Exited {
                pid: a,
                status: u32::try_from(b).ok()? as i32,
            }),
            _ => None,
        }
    }
}

/// A process to start: the resolved program path, argv (argv[0] included), the whole
/// environment as `KEY=VALUE`, and the working folder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Spec {
    pub(super) program: Vec<u8>,
    pub(super) args: Vec<Vec<u8>>,
    pub(super) env: Vec<Vec<u8>>,
    pub(super) cwd: Option<Vec<u8>>,
}

impl Spec {
    /// `[u32 n_args][u32 n_env][u8 has_cwd]` then every string as `[u32 len][bytes]`:
    /// program, cwd (when present), args, env.
    pub(super) fn encode(&self) -> Vec<u8> {
        let strings = std::iter::once(&self.program)
            .chain(self.cwd.as_ref())
            .chain(&self.args)
            .chain(&self.env);
        let mut out = Vec::new();
        out.extend((self.args.len() as u32).to_le_bytes());
        out.extend((self.env.len() as u32).to_le_bytes());
        out.push(u8::from(self.cwd.is_some()));
        for s in strings {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s);
        }
        out
    }

    pub(super) fn decode(mut bytes: &[u8]) -> Option<Spec> {
        let u32_at = |bytes: &mut &[u8]| -> Option<usize> {
            let (n, rest) = bytes.split_first_chunk::<4>()?;
            *bytes = rest;
            usize::try_from(u32::from_le_bytes(*n)).ok()
        };
        let n_args = u32_at(&mut bytes)?;
        let n_env = u32_at(&mut bytes)?;
        let (&has_cwd, rest) = bytes.split_first()?;
        bytes = rest;
        let string = |bytes: &mut &[u8]| -> Option<Vec<u8>> {
            let len = u32_at(bytes)?;
            if len > bytes.len() {
                return None;
            }
            let (s, rest) = bytes.split_at(len);
            *bytes = rest;
            Some(s.to_vec())
        };
        let program = string(&mut bytes)?;
        let cwd = if has_cwd == 1 {
            Some(string(&mut bytes)?)
        } else {
            None
        };
        // Counts come from our own encoder, but a bound keeps a garbled memfd harmless.
        if n_args.saturating_add(n_env) > bytes.len() / 4 {
            return None;
        }
        let args = (0..n_args)
            .map(|_| string(&mut bytes))
            .collect::<Option<_>>()?;
        let env = (0..n_env)
            .map(|_| string(&mut bytes))
            .collect::<Option<_>>()?;
        bytes.is_empty().then_some(Spec {
            program,
            args,
            env,
            cwd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips() {
        let spec = Spec {
            program: b"/bin/sh".to_vec(),
            args: vec![b"sh".to_vec(), b"-c".to_vec(), vec![0xff; 3], Vec::new()],
            env: vec![b"A=1".to_vec(), vec![b'x'; 1 << 20]],
            cwd: Some(b"/tmp".to_vec()),
        };
        assert_eq!(Spec::decode(&spec.encode()), Some(spec.clone()));
        let none = Spec { cwd: None, ..spec };
        assert_eq!(Spec::decode(&none.encode()), Some(none.clone()));
        let bytes = none.encode();
        assert_eq!(Spec::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Spec::decode(&[0xff; 9]), None);
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Spawn { id: 7 },
            Request::Spawn { id: u64::MAX },
            Request::Release {
                processes: vec![(1, 2), (i32::MAX, u64::MAX)],
            },
            Request::Release {
                processes: Vec::new(),
            },
        ] {
            assert_eq!(Request::decode(&request.encode()), Some(request));
        }
        assert_eq!(Request::decode(&[]), None);
        assert_eq!(Request::decode(&[0, 1, 2]), None);
        assert_eq!(Request::decode(&[1, 1, 2]), None);
        assert_eq!(Request::decode(&[9; 9]), None);
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Spawned {
                id: u64::MAX,
                pid: 7,
            },
            Reply::Failed { id: 3, errno: 2 },
            Reply::Exited { pid: 9, status: -1 },
            Reply::Exited {
                pid: 9,
                status: 0x0f00,
            },
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
        assert_eq!(Reply::decode(&[0; 3]), None);
    }
}
