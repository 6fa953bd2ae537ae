//! Every Memory System runbook run for real against a Memory System of the test's own: a
//! database created for the test (dropped at the end), its own Chroma server, and the drill's
//! API stand-ins (runbooks/drill/standins.py) on free ports. Approvals are answered with
//! `--auto-approve`; the service's stop, start and restart commands are stand-ins that leave a
//! marker, so each remedy is seen to have run only after its approval.

use super::common::{Run, Sandbox, pg, unique};
use super::drill::{chroma_bin, free_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn book(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../runbooks")
        .join(rel)
        .canonicalize()
        .unwrap_or_else(|e| panic!("runbooks/{rel}: {e}"))
        .display()
        .to_string()
}

/// A database, a Chroma server and the API stand-ins, all the test's own.
struct MemorySystem {
    db: String,
    chroma_url: String,
    apis: [String; 3],
    state: PathBuf,
    children: Vec<Child>,
}

impl Drop for MemorySystem {
    fn drop(&mut self) {
        let _ = std::fs::write(self.state.join("stop"), "");
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        pg(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
    }
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what} did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl MemorySystem {
    fn start(sb: &Sandbox) -> MemorySystem {
        let db = unique("cairn_ms");
        pg(&format!("CREATE DATABASE {db}"));
        let state = sb.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(state.join("key.pem"))
            .arg("-out")
            .arg(state.join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl made no certificate");
        let chroma_port = free_port();
        let ports = [free_port(), free_port(), free_port()];
        let chroma = Command::new(chroma_bin())
            .args([
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                &chroma_port.to_string(),
                "--path",
            ])
            .arg(sb.path().join("chroma"))
            .env("ANONYMIZED_TELEMETRY", "False")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chroma");
        let apis = Command::new("python3")
            .arg(book("drill/standins.py"))
            .arg(&state)
            .arg(state.join("cert.pem"))
            .arg(state.join("key.pem"))
            .args(ports.map(|p| p.to_string()))
            .stdout(Stdio::null())
            .spawn()
            .expect("stand-ins");
        let ms = MemorySystem {
            db,
            chroma_url: format!("http://127.0.0.1:{chroma_port}"),
            apis: [
                format!("http://127.0.0.1:{}", ports[0]),
                format!("https://127.0.0.1:{}", ports[1]),
                format!("http://127.0.0.1:{}", ports[2]),
            ],
            state,
            children: vec![chroma, apis],
        };
        for port in [chroma_port, ports[0], ports[2]] {
            wait_until("a server", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        ms
    }

    /// `cairn run` of a shipped runbook against this system, approvals answered.
    fn run(&self, sb: &Sandbox, rel: &str, sets: &[(&str, &str)]) -> Run {
        let mut args: Vec<String> = vec!["--auto-approve".into()];
        for (k, v) in sets {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = sb.command(&book(rel), &args);
        for var in ["DB_USER", "DB_HOST", "DB_PORT", "DB_PASSWORD"] {
            cmd.env_remove(var);
        }
        cmd.env("DB_NAME", &self.db)
            .env("CHROMA_URL", &self.chroma_url);
        sb.run_with(cmd)
    }

    fn apis(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("internal_api", self.apis[0].as_str()),
            ("external_api", self.apis[1].as_str()),
            ("mcp_api", self.apis[2].as_str()),
        ]
    }

    fn access_log(&self) -> String {
        self.state.join("access.log").display().to_string()
    }

    fn marker(&self, name: &str) -> String {
        format!("touch {}", self.state.join(name).display())
    }
}

#[test]
fn every_memory_system_runbook_runs_against_real_services() {
    let sb = Sandbox::new();
    let ms = MemorySystem::start(&sb);
    let log = ms.access_log();
    let backups = sb.file("backups");

    // Sample data: the manual's tables and one collection of 8-dimension vectors.
    let run = ms.run(&sb, "demo-data.yaml", &[("entities", "120")]);
    run.expect_code(0);

    // Monitoring.
    let mut sets = ms.apis();
    sets.push(("access_log", &log));
    sets.push(("process_pattern", "standins.py"));
    let run = ms.run(&sb, "monitoring/health-check.yaml", &sets);
    run.expect_code(0);
    assert_eq!(run.outputs()["largest_collection"], 120, "{run}");
    assert_eq!(run.summary("error_rate")["state"], "ok", "{run}");
    assert!(
        run.outputs()["memory_used_pct"]
            .as_f64()
            .is_some_and(|m| m > 0.0),
        "{run}"
    );
    // A threshold crossed (memory above a warning level of 0.001 %): the run succeeds with
    // warnings, naming the check; nothing else changes.
    let mut low = sets.clone();
    low.push(("memory_warning_pct", "0.001"));
    let run = ms.run(&sb, "monitoring/health-check.yaml", &low);
    run.expect_code(0);
    assert_eq!(run.outcome(), "succeeded_with_warnings", "{run}");
    let warnings = run.run_finished()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w["step"] == "memory_usage" && w["state"] == "warning"),
        "{run}"
    );
    assert_eq!(run.summary("memory_usage")["status"], "succeeded", "{run}");
    // The manual's benchmark is the Memory System's own script: a stand-in in its folder.
    let app = sb.file("app");
    sb.write(
        "app/tests/memory_validation/run_performance_benchmarks.py",
        "import sys\nassert sys.argv[1:] == ['--quick-check']\nprint('quick check: 12 ms median')\n",
    );
    let mut perf = sets[..3].to_vec();
    perf.extend([
        ("app_dir", app.as_str()),
        (
            "benchmark_command",
            "python3 tests/memory_validation/run_performance_benchmarks.py --quick-check",
        ),
    ]);
    let run = ms.run(&sb, "monitoring/performance.yaml", &perf);
    run.expect_code(0);
    assert_eq!(run.outputs()["long_queries"], 0, "{run}");
    assert_eq!(run.outputs()["benchmark"], "succeeded", "{run}");
    assert_eq!(
        run.outputs()["benchmark_tail"],
        "quick check: 12 ms median",
        "{run}"
    );
    // Without the Memory System's checkout, the benchmark cannot run: a warning naming it.
    let run = ms.run(&sb, "monitoring/performance.yaml", &sets[..3]);
    run.expect_code(0);
    assert_eq!(run.outcome(), "succeeded_with_warnings", "{run}");
    assert_eq!(run.outputs()["benchmark"], "failed", "{run}");

    // Backup, then the RPO check and the daily maintenance read it.
    let run = ms.run(&sb, "backup/backup.yaml", &[("backup_dir", &backups)]);
    run.expect_code(0);
    assert_eq!(run.outputs()["vectors"], 120, "{run}");
    assert_eq!(run.outputs()["consistent"], true, "{run}");
    let run = ms.run(&sb, "backup/rpo-check.yaml", &[("backup_dir", &backups)]);
    run.expect_code(0);
    assert_eq!(run.summary("backup_age")["state"], "ok", "{run}");
    let folders = format!("[\"{}\"]", sb.path().display());
    let errors = "printf 'ERROR one\\nERROR two\\n'".to_string();
    let mut daily = sets.clone();
    daily.retain(|(k, _)| *k != "process_pattern");
    daily.extend([
        ("folders", folders.as_str()),
        ("backup_dir", &backups),
        ("log_command", &errors),
    ]);
    let run = ms.run(&sb, "maintenance/daily.yaml", &daily);
    run.expect_code(0);
    assert_eq!(run.outputs()["error_lines"], 2, "{run}");

    // Troubleshooting: diagnosis, then each remedy after its approval.
    let restart = ms.marker("db-pool.restarted");
    let run = ms.run(
        &sb,
        "troubleshooting/db-connection.yaml",
        &[("restart_command", &restart)],
    );
    run.expect_code(0);
    assert!(ms.state.join("db-pool.restarted").exists(), "{run}");
    assert!(
        run.outputs()["pg_isready"]
            .as_str()
            .is_some_and(|s| s.contains("accepting")),
        "{run}"
    );

    let run = ms.run(&sb, "troubleshooting/slow-queries.yaml", &[]);
    run.expect_code(0);
    // pg_stat_statements is not loaded on the test server: the runbook says why and falls back.
    let why = run.outputs()["pg_stat_statements"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.starts_with("not "), "{why}");
    assert_eq!(run.status("slowest_statements"), "skipped", "{run}");
    assert_eq!(run.status("running_now"), "succeeded", "{run}");

    let crash_log = sb.write(
        "service.log",
        "started\nout of memory: killed\nMemoryError in worker\n",
    );
    let log_cmd = format!("cat {}", crash_log.display());
    let restarted = ms.marker("service.restarted");
    let run = ms.run(
        &sb,
        "troubleshooting/service-crash.yaml",
        &[
            ("process_pattern", "standins.py"),
            ("log_command", &log_cmd),
            ("samples", "2"),
            ("interval_s", "1"),
            ("restart_command", &restarted),
        ],
    );
    run.expect_code(0);
    assert_eq!(run.outputs()["oom_lines"], 2, "{run}");
    assert!(ms.state.join("service.restarted").exists(), "{run}");

    let chroma_restarted = ms.marker("chroma.restarted");
    let run = ms.run(
        &sb,
        "troubleshooting/chroma-issues.yaml",
        &[
            ("expected_dimension", "16"),
            ("restart_command", &chroma_restarted),
        ],
    );
    run.expect_code(0);
    // demo-data's vectors have 8 dimensions: against a 16-dimension model that is MEM-005.
    assert_eq!(
        run.outputs()["dimension_mismatches"],
        serde_json::json!(["memory_entities"]),
        "{run}"
    );
    assert_eq!(run.summary("dimensions")["state"], "critical", "{run}");
    assert!(ms.state.join("chroma.restarted").exists(), "{run}");

    // Maintenance.
    let run = ms.run(&sb, "maintenance/weekly.yaml", &[]);
    run.expect_code(0);
    // VACUUM VERBOSE's statistics, from the server's INFO notices, one text per table.
    let stats = run.outputs()["vacuum_stats"].clone();
    assert_eq!(stats.as_array().map(Vec::len), Some(3), "{run}");
    assert!(
        stats[0]
            .as_str()
            .is_some_and(|s| s.contains("vacuuming") && s.contains("memory_entities")),
        "{run}"
    );
    assert_eq!(
        run.outputs()["vacuumed"],
        serde_json::json!(["memory_entities", "memory_relationships", "object_schemas"]),
        "{run}"
    );
    let run = ms.run(&sb, "maintenance/index-maintenance.yaml", &[]);
    run.expect_code(0);
    let names = run.outputs()["indexes"].to_string();
    assert!(
        names.contains("idx_entities_actor_created") && names.contains("idx_entities_type_grade"),
        "{names}"
    );
    assert_eq!(run.status("reindex"), "succeeded", "{run}");
    let baselines = sb.file("baselines");
    let mut monthly = sets.clone();
    monthly.retain(|(k, _)| *k != "process_pattern");
    monthly.extend([
        ("baseline_dir", baselines.as_str()),
        ("updates_command", "echo none pending"),
    ]);
    let run = ms.run(&sb, "maintenance/monthly.yaml", &monthly);
    run.expect_code(0);
    let baseline = run.outputs()["baseline"]
        .as_str()
        .expect("baseline path")
        .to_string();
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline).expect("baseline written"))
            .expect("JSON");
    assert_eq!(recorded["largest_collection"], 120, "{recorded}");

    let conf = sb.write(
        "logrotate.conf",
        format!(
            "{}/*.log {{\n    daily\n    missingok\n    rotate 14\n    compress\n    delaycompress\n    notifempty\n    create 0644 root root\n    sharedscripts\n    postrotate\n        true\n    endscript\n}}\n",
            sb.path().display()
        ),
    );
    let conf = conf.display().to_string();
    let dir = sb.path().display().to_string();
    let run = ms.run(
        &sb,
        "maintenance/log-rotation.yaml",
        &[("config", &conf), ("log_dir", &dir), ("owner", "root root")],
    );
    run.expect_code(0);

    // Outage response: the whole response, and the incident report from the run's data.
    let reports = sb.file("incidents");
    let mut outage = sets.clone();
    outage.retain(|(k, _)| *k != "process_pattern");
    let outage_restart = ms.marker("outage.restarted");
    outage.extend([
        ("severity", "critical"),
        ("deployments_command", "echo deploy 1.2.3"),
        ("log_command", &log_cmd),
        ("restart_command", &outage_restart),
        ("report_dir", &reports),
        ("stability_samples", "3"),
        ("stability_window_s", "1"),
    ]);
    let run = ms.run(&sb, "emergency/outage-response.yaml", &outage);
    run.expect_code(0);
    let id = run.outputs()["incident_id"]
        .as_str()
        .expect("incident id")
        .to_string();
    let report = std::fs::read_to_string(format!("{reports}/{id}.md")).expect("incident report");
    assert!(
        report.contains(&format!("**Incident ID:** {id}")),
        "{report}"
    );
    assert!(report.contains("**Severity:** Critical"), "{report}");
    assert!(report.contains("On-call -> Team Lead -> CTO"), "{report}");
    assert!(report.contains("service restored and stable"), "{report}");
    assert!(report.contains("- [x] Immediate fixes applied"), "{report}");
    // The manual's template: the duration in minutes, who approved, the data lost (counted).
    assert!(report.contains("**Duration:** 1 minute\n"), "{report}");
    assert!(
        report.contains("- Fix or rollback, restart: approved by auto:"),
        "{report}"
    );
    assert!(
        report.contains("- Data loss (if any): none in the database ("),
        "{report}"
    );
    assert!(report.contains("3 samples of the three APIs"), "{report}");
}

#[test]
fn the_incident_report_is_written_when_the_response_fails() {
    let sb = Sandbox::new();
    let ms = MemorySystem::start(&sb);
    let reports = sb.file("incidents");
    // The service stays down: every API answers 503, so the recovery cannot be verified.
    std::fs::write(ms.state.join("memory-service.stopped"), "").expect("stop the stand-in");
    let log = ms.access_log();
    let mut sets = ms.apis();
    sets.extend([
        ("access_log", log.as_str()),
        ("deployments_command", "true"),
        (
            "log_command",
            "echo ERROR MEM-001 database connection timeout",
        ),
        ("restart_command", "true"),
        ("report_dir", reports.as_str()),
    ]);
    let run = ms.run(&sb, "emergency/outage-response.yaml", &sets);
    run.expect_code(1);
    assert_eq!(run.status("verify_functionality"), "failed", "{run}");
    assert_eq!(run.status("incident_report"), "succeeded", "{run}");
    let id = run.outputs()["incident_id"]
        .as_str()
        .expect("incident id")
        .to_string();
    let report = std::fs::read_to_string(format!("{reports}/{id}.md")).expect("incident report");
    assert!(
        report.contains("service NOT confirmed restored"),
        "{report}"
    );
    assert!(report.contains("verification: failed"), "{report}");
    assert!(report.contains("- [ ] Immediate fixes applied"), "{report}");
    assert!(report.contains("503"), "{report}");
    // The failed steps with their errors, read through steps.X.error.
    assert!(
        report.contains("What failed during the response:"),
        "{report}"
    );
    assert!(
        report.contains("- verify_functionality: sub-run "),
        "{report}"
    );
    assert!(report.contains("; memory used "), "{report}");
    // A step that never ran has no time: the timeline says so.
    assert!(
        report.contains("- --:--:-- - Monitoring confirmed stability (skipped)"),
        "{report}"
    );
}

#[test]
fn a_damaged_backup_is_refused_before_the_service_is_stopped() {
    let sb = Sandbox::new();
    let ms = MemorySystem::start(&sb);
    let backups = sb.file("backups");
    ms.run(&sb, "demo-data.yaml", &[("entities", "40")])
        .expect_code(0);
    let run = ms.run(&sb, "backup/backup.yaml", &[("backup_dir", &backups)]);
    run.expect_code(0);
    let dump = run.outputs()["dump"].as_str().expect("dump").to_string();
    // One byte changed in the dump.
    let mut bytes = std::fs::read(&dump).expect("dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).expect("damage");
    let stop = ms.marker("stopped");
    let run = ms.run(
        &sb,
        "recovery/restore-database.yaml",
        &[
            ("backup_dir", &backups),
            ("stop_command", &stop),
            ("start_command", "true"),
        ],
    );
    run.expect_code(1);
    assert_eq!(run.status("check_dump"), "failed", "{run}");
    assert!(
        !ms.state.join("stopped").exists(),
        "the service was stopped for a damaged backup"
    );
    assert_eq!(run.status("pg_restore"), "skipped", "{run}");
}

fn entity_count(db: &str) -> i64 {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM memory_entities",
        ])
        .arg(format!("--dbname=postgres://postgres@127.0.0.1:5432/{db}"))
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("count: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The application writing without pause: one insert per transaction, as fast as psql goes,
/// until the service is stopped (the `stopped` marker), then it says it is done.
struct Writer(Child);

impl Writer {
    fn start(ms: &MemorySystem) -> Writer {
        let url = format!("postgres://postgres@127.0.0.1:5432/{}", ms.db);
        let insert = "INSERT INTO memory_entities (actor_id, entity_type, payload) \
                      VALUES ('writer', 'note', '{\"text\": \"written during the backup\"}')";
        Writer(
            Command::new("bash")
                .args([
                    "-c",
                    r#"while [ ! -e "$3/stopped" ] && psql -X -q --dbname="$1" -c "$2"; do :; done
                       touch "$3/writer.done""#,
                ])
                .args(["writer", &url, insert])
                .arg(&ms.state)
                .stdout(Stdio::null())
                .spawn()
                .expect("writer"),
        )
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_backup_taken_while_the_application_writes_restores_verified() {
    let sb = Sandbox::new();
    let ms = MemorySystem::start(&sb);
    let backups = sb.file("backups");
    ms.run(&sb, "demo-data.yaml", &[("entities", "200")])
        .expect_code(0);
    let writer = Writer::start(&ms);
    let seeded = entity_count(&ms.db);
    wait_until("the writer", || entity_count(&ms.db) > seeded + 5);

    let before = entity_count(&ms.db);
    let run = ms.run(&sb, "backup/backup.yaml", &[("backup_dir", &backups)]);
    let after = entity_count(&ms.db);
    run.expect_code(0);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.outputs()["manifest"].as_str().expect("manifest"))
            .expect("manifest file"),
    )
    .expect("manifest JSON");
    let in_backup = manifest["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "memory_entities"))
        .and_then(|t| t["rows"].as_i64())
        .unwrap_or_else(|| panic!("{manifest}"));
    // The snapshot was taken while rows were being written, and rows were written after it, while
    // the dump ran: the manifest counts exactly what the dump holds, neither end.
    assert!(
        before < in_backup && in_backup < after,
        "{before} < {in_backup} < {after}"
    );
    assert_eq!(manifest["consistent"], true, "{manifest}");
    assert!(
        manifest["schema"]
            .as_array()
            .is_some_and(|s| s.iter().any(|o| o["kind"] == "index")),
        "{manifest}"
    );

    // The application keeps writing until the service is stopped (the stop command returns once
    // it has); then the restore verifies every table's rows, checksums and schema against the
    // manifest.
    let stop = format!(
        "touch {0}/stopped; until [ -e {0}/writer.done ]; do sleep 0.05; done",
        ms.state.display()
    );
    let run = ms.run(
        &sb,
        "recovery/restore-database.yaml",
        &[
            ("backup_dir", &backups),
            ("stop_command", &stop),
            ("start_command", "true"),
        ],
    );
    drop(writer);
    run.expect_code(0);
    assert_eq!(run.status("verify"), "succeeded", "{run}");
    assert_eq!(entity_count(&ms.db), in_backup);
}

#[test]
fn a_recovery_is_judged_by_the_requests_since_it_not_by_the_outage() {
    let sb = Sandbox::new();
    let ms = MemorySystem::start(&sb);
    ms.run(&sb, "demo-data.yaml", &[("entities", "20")])
        .expect_code(0);
    let log = ms.access_log();
    let mut sets = ms.apis();
    sets.push(("access_log", &log));
    sets.push(("process_pattern", "standins.py"));

    // The outage: the service stopped, its APIs answer 503 to the traffic.
    let stopped = ms.state.join("memory-service.stopped");
    std::fs::write(&stopped, "").expect("stop");
    for _ in 0..20 {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}/health", ms.apis[0]))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&status.stdout), "503");
    }
    // The recovery.
    std::fs::remove_file(&stopped).expect("start");
    std::thread::sleep(Duration::from_millis(1100));
    let recovered = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    let recovered = String::from_utf8_lossy(&recovered.stdout)
        .trim()
        .to_string();

    // Over the last 15 minutes the outage's 503s are most of the requests: critical.
    let run = ms.run(&sb, "monitoring/health-check.yaml", &sets);
    run.expect_code(1);
    assert_eq!(run.summary("error_rate")["state"], "critical", "{run}");
    assert!(run.summary("api_health")["status"] == "succeeded", "{run}");

    // Since the recovery, only the health check's own requests count, and they all succeed.
    let mut since = sets.clone();
    since.push(("errors_since", &recovered));
    let run = ms.run(&sb, "monitoring/health-check.yaml", &since);
    run.expect_code(0);
    assert_eq!(run.summary("error_rate")["state"], "ok", "{run}");
    assert_eq!(run.outputs()["error_pct"], 0.0, "{run}");
}
