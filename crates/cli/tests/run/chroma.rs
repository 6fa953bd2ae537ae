//! Chroma through `cairn run`, against a real server (`chroma run`): heartbeat, create, add,
//! count with a check, export to a file, delete, import, count again.
//!
//! The binary is `$CAIRN_CHROMA_BIN`, else `~/.cache/cairn/chroma-venv/bin/chroma`; when it is
//! missing the test fails (it never passes without running).

use super::common::{Sandbox, unique};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Chroma {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Chroma {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("CAIRN_CHROMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cairn/chroma-venv/bin/chroma")
        });
    if path.is_file() {
        return Some(path);
    }
    // A missing server fails the tests: a test that passes without running proves nothing.
    panic!(
        "Chroma binary {} not found: run .ci/chroma-venv.sh (scripts/test.sh does) or set CAIRN_CHROMA_BIN",
        path.display()
    );
}

fn start() -> Option<Chroma> {
    let bin = binary()?;
    let mut last = String::new();
    // A port picked free can be taken before Chroma binds it: try a few.
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("chroma.log")).expect("log");
        let mut child = Command::new(&bin)
            .args(["run", "--path"])
            .arg(dir.path().join("data"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("ANONYMIZED_TELEMETRY", "False")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if heartbeat(port) {
                return Some(Chroma {
                    url: format!("http://127.0.0.1:{port}"),
                    child,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        last = std::fs::read_to_string(dir.path().join("chroma.log")).unwrap_or_default();
    }
    panic!("chroma did not start:\n{last}");
}

fn heartbeat(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /api/v2/heartbeat HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

#[test]
fn chroma_backup_and_restore_through_cairn_run() {
    let Some(server) = start() else { return };
    let collection = unique("cairn_run");
    let sb = Sandbox::new();
    let run = sb.run_yaml(
        &format!(
            r#"
cairn: 1
name: chroma
inputs:
  collection: {{ default: {collection} }}
targets:
  chroma: {{ chroma: "{url}" }}
steps:
  - id: heartbeat
    chroma: {{ target: chroma, heartbeat: {{}} }}
    outputs: {{ api: "{{{{ result.api }}}}" }}
  - id: create
    chroma: {{ target: chroma, create: {{ name: "{{{{ inputs.collection }}}}", metadata: {{ team: memory }}, hnsw: {{ space: cosine }} }} }}
  - id: add
    chroma:
      target: chroma
      add:
        collection: "{{{{ inputs.collection }}}}"
        ids: [m1, m2, m3, m4]
        embeddings: [[0.1, 0.2, 0.3], [0.2, 0.1, 0.0], [0.9, 0.8, 0.7], [0.5, 0.5, 0.5]]
        documents: [one, two, three, four]
        metadatas: [{{ k: 1 }}, {{ k: 2 }}, {{ k: 3 }}, {{ k: 4 }}]
  - id: count
    chroma: {{ target: chroma, count: {{ collection: "{{{{ inputs.collection }}}}" }} }}
    outputs: {{ n: "{{{{ result.count }}}}" }}
  - id: enough
    check: {{ value: "{{{{ steps.count.outputs.n }}}}", critical: "< 3", unit: vectors }}
  - id: export
    chroma: {{ target: chroma, export: {{ collections: ["{{{{ inputs.collection }}}}"], to: export.jsonl, batch_size: 2 }} }}
    outputs: {{ records: "{{{{ result.records }}}}" }}
  - id: delete
    chroma: {{ target: chroma, delete: {{ name: "{{{{ inputs.collection }}}}" }} }}
  - id: listed
    chroma: {{ target: chroma, list: {{}} }}
    outputs: {{ present: "{{{{ inputs.collection in (result.collections | map(attribute='name') | list) }}}}" }}
  - id: import
    chroma: {{ target: chroma, import: {{ from: export.jsonl }} }}
    outputs: {{ records: "{{{{ result.records }}}}" }}
  - id: recount
    chroma: {{ target: chroma, count: {{ collection: "{{{{ inputs.collection }}}}" }} }}
    outputs: {{ n: "{{{{ result.count }}}}" }}
    expect:
      - result.count == steps.count.outputs.n
  - id: cleanup
    chroma: {{ target: chroma, delete: {{ name: "{{{{ inputs.collection }}}}", missing_ok: true }} }}
outputs:
  api: "{{{{ steps.heartbeat.outputs.api }}}}"
  before: "{{{{ steps.count.outputs.n }}}}"
  exported: "{{{{ steps.export.outputs.records }}}}"
  present_after_delete: "{{{{ steps.listed.outputs.present }}}}"
  imported: "{{{{ steps.import.outputs.records }}}}"
  after: "{{{{ steps.recount.outputs.n }}}}"
"#,
            url = server.url
        ),
        &[],
    );
    run.expect_code(0);
    assert_eq!(
        run.outputs(),
        &serde_json::json!({
            "api": "v2", "before": 4, "exported": 4, "present_after_delete": false,
            "imported": 4, "after": 4,
        }),
        "{run}"
    );
    assert_eq!(run.summary("enough")["state"], "ok");
    let export = sb.read("export.jsonl");
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 6, "header, 4 records, end: {export}");
    assert_eq!(lines[0]["type"], "collection");
    assert_eq!(lines[0]["name"], collection.as_str());
    assert_eq!(lines[0]["count"], 4);
    assert_eq!(
        lines[5],
        serde_json::json!({ "type": "end", "collections": 1, "records": 4 })
    );
}
