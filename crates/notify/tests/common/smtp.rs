//! A real SMTP server: aiosmtpd (from PyPI, in the virtualenv `.ci/aiosmtpd-venv.sh` installs)
//! on 127.0.0.1, writing each mail it receives, parsed by Python's `email` package, as a JSON
//! file. The Python is `$CAIRN_AIOSMTPD_PYTHON`, else the venv's in `~/.cache/cairn`; a
//! missing one fails the test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
import email, email.policy, json, os, sys, time
from aiosmtpd.controller import Controller

out = sys.argv[2]

class Keep:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        mail = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "body": msg.get_content(),
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        tmp = os.path.join(out, f"{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(mail, f)
        os.rename(tmp, os.path.join(out, f"{n}.json"))
        return "250 OK"

c = Controller(Keep(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

pub fn python() -> PathBuf {
    let p = std::env::var_os("CAIRN_AIOSMTPD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cairn/aiosmtpd-venv/bin/python")
        });
    assert!(
        p.exists(),
        "the aiosmtpd Python {} is missing: run `bash .ci/aiosmtpd-venv.sh` or set CAIRN_AIOSMTPD_PYTHON",
        p.display()
    );
    p
}

pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER).expect("write server.py");
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).expect("mails dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(python())
            .arg(&script)
            .arg(port.to_string())
            .arg(&mails)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpServer { port, dir, child }
    }

    /// The mails received, waiting up to `wait` for `n` of them.
    pub fn mails(&self, n: usize, wait: Duration) -> Vec<serde_json::Value> {
        let dir = self.dir.path().join("mails");
        let until = Instant::now() + wait;
        loop {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("mails dir")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            if names.len() >= n || Instant::now() > until {
                names.sort();
                return names
                    .iter()
                    .map(|p| {
                        serde_json::from_slice(&std::fs::read(p).expect("read mail"))
                            .expect("mail JSON")
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
