//! Runs the built `cvbench-workload` binary the way a launcher does: reads its protocol lines from
//! stdout, stops it with SIGTERM, checks exit statuses and the figures it reports.

// An integration test file is its own crate, compiled only for tests; the workspace lint is meant
// for unit tests mixed into library code.
#![allow(clippy::tests_outside_test_module)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use workload::{parse_line, ProtocolLine, WorkloadResult};

const BIN: &str = env!("CARGO_BIN_EXE_cvbench-workload");
/// Guard against a hung child; never a performance assertion.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running workload whose stdout (and stderr) lines arrive on channels; killed on drop.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn start(program: &str, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the workload");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn workload(args: &[&str]) -> Running {
        Running::start(BIN, args)
    }

    /// The next protocol line on stdout (ordinary lines are skipped).
    fn next_protocol_line(&self) -> ProtocolLine {
        loop {
            let line = self
                .stdout
                .recv_timeout(LINE_TIMEOUT)
                .expect("a line from the workload");
            if let Some(p) = parse_line(&line).expect("well-formed protocol line") {
                return p;
            }
        }
    }

    fn expect_ready(&self, workload: &str) {
        assert_eq!(
            self.next_protocol_line(),
            ProtocolLine::Ready {
                workload: workload.into()
            }
        );
    }

    fn expect_result(&self) -> WorkloadResult {
        match self.next_protocol_line() {
            ProtocolLine::Result(r) => r,
            other => panic!("expected RESULT, got {other:?}"),
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), signal).unwrap();
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn www_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), b"<!doctype html><p>cvbench</p>\n").unwrap();
    for (name, len) in [("1k.bin", 1024usize), ("64k.bin", 64 * 1024), ("1m.bin", 1 << 20)] {
        let bytes: Vec<u8> = (0..len).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn idle_is_ready_and_exits_zero_on_sigterm() {
    let mut w = Running::workload(&["idle"]);
    w.expect_ready("idle");
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait().code(), Some(0));
}

#[test]
fn idle_exits_zero_on_sigint() {
    let mut w = Running::workload(&["idle"]);
    w.expect_ready("idle");
    w.signal(Signal::SIGINT);
    assert_eq!(w.wait().code(), Some(0));
}

#[test]
fn idle_as_pid_1_of_a_pid_namespace_stops_on_sigterm() {
    if testkit::skip_unless_root("to create a pid namespace") {
        return;
    }
    let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        testkit::skip(
            testkit::Requirement::Package("util-linux"),
            "unshare(1) from util-linux not found",
        );
        return;
    };
    let mut w = Running::start(unshare, &["--pid", "--fork", BIN, "idle"]);
    w.expect_ready("idle");
    // unshare's only child is the workload, PID 1 in its namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", w.child.id(), w.child.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    assert_eq!(w.wait().code(), Some(0));
}

#[test]
fn http_selftest_reports_figures_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    www_fixture(&www);
    let mut w = Running::workload(&[
        "http",
        "--port",
        "0",
        "--root",
        www.to_str().unwrap(),
        "--selftest",
        "60,3",
    ]);
    w.expect_ready("http");
    let r = w.expect_result();
    assert_eq!(w.wait().code(), Some(0));
    assert_eq!(r.workload, "http");
    assert_eq!(r.metrics["errors"], 0.0);
    assert_eq!(r.metrics["requests"], 60.0);
    assert!(r.metrics["requests_per_s"] > 0.0);
    let (p50, p99) = (r.metrics["latency_p50_us"], r.metrics["latency_p99_us"]);
    assert!(p50 > 0.0 && p99 >= p50, "p50 {p50} p99 {p99}");
    // 4 files round-robin over 60 requests: 15 of each.
    let expected_bytes = 15.0 * (31.0 + 1024.0 + 65536.0 + 1048576.0);
    let measured = r.metrics["bytes_per_s"] * r.metrics["duration_s"];
    assert!(
        (measured - expected_bytes).abs() / expected_bytes < 1e-6,
        "{measured} vs {expected_bytes}"
    );
}

/// The port the server announced on stderr (it does so when asked for port 0).
fn announced_port(w: &Running) -> u16 {
    loop {
        let line = w.stderr.recv_timeout(LINE_TIMEOUT).expect("a stderr line");
        if let Some(addr) = line.strip_prefix("cvbench-workload: http listening on 0.0.0.0:") {
            return addr.trim().parse().unwrap();
        }
    }
}

/// Send raw bytes, read one response head plus `Content-Length` bytes of body.
fn exchange(stream: &mut TcpStream, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a full response");
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = resp.parse(&buf).unwrap() {
            let code = resp.code.unwrap();
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .unwrap()
                .1
                .parse()
                .unwrap();
            let head_request = request.starts_with("HEAD");
            let body_len = if head_request { 0 } else { len };
            while buf.len() < head_len + body_len {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed inside a body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (code, headers, buf[head_len..head_len + body_len].to_vec());
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[test]
fn http_serves_files_404s_400s_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    www_fixture(&www);
    std::fs::write(tmp.path().join("secret"), b"outside the root").unwrap();
    let mut w = Running::workload(&["http", "--port", "0", "--root", www.to_str().unwrap()]);
    let port = announced_port(&w);
    w.expect_ready("http");

    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Several requests on one keep-alive connection.
    let (code, h, body) = exchange(&mut s, "GET /64k.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(www.join("64k.bin")).unwrap());
    assert_eq!(header(&h, "content-type"), "application/octet-stream");
    assert_eq!(header(&h, "connection"), "keep-alive");
    let (code, h, body) = exchange(&mut s, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (code, header(&h, "content-type")),
        (200, "text/html; charset=utf-8")
    );
    assert_eq!(body, std::fs::read(www.join("index.html")).unwrap());
    let (code, h, body) = exchange(&mut s, "HEAD /1m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (code, header(&h, "content-length"), body.len()),
        (200, "1048576", 0)
    );
    let (code, _, _) = exchange(&mut s, "GET /missing.html HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(code, 404);
    // Still usable after a 404; then traversal is refused and the connection closed.
    let (code, _, _) = exchange(&mut s, "GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(code, 200);
    let (code, h, _) = exchange(&mut s, "GET /../secret HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((code, header(&h, "connection")), (400, "close"));

    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (code, _, _) = exchange(&mut s, "GET /%2e%2e/secret HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(code, 400);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (code, _, _) = exchange(&mut s, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(code, 400);
    // Two pipelined requests in one write, answered in order; the second closes the connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /64k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut stream = Vec::new();
    s.read_to_end(&mut stream).unwrap();
    let mut at = 0;
    for name in ["1k.bin", "64k.bin"] {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = resp.parse(&stream[at..]).unwrap() else {
            panic!("incomplete response head for {name}");
        };
        assert_eq!(resp.code, Some(200));
        let expected = std::fs::read(www.join(name)).unwrap();
        let body = &stream[at + head_len..(at + head_len + expected.len()).min(stream.len())];
        assert!(body == expected.as_slice(), "{name} body differs");
        at += head_len + expected.len();
    }
    assert_eq!(at, stream.len(), "bytes after the last response");

    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait().code(), Some(0));
}

#[test]
fn oltp_loads_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/yet/there");
    let mut w = Running::workload(&[
        "oltp",
        "--dir",
        dir.to_str().unwrap(),
        "--rows",
        "300",
        "--transactions",
        "25",
    ]);
    w.expect_ready("oltp");
    let r = w.expect_result();
    assert_eq!(w.wait().code(), Some(0));
    assert_eq!(r.workload, "oltp");
    assert_eq!(r.metrics["rows"], 300.0);
    assert_eq!(r.metrics["transactions"], 25.0);
    assert!(r.metrics["tps"] > 0.0);
    assert!(r.metrics["latency_p99_us"] >= r.metrics["latency_p50_us"]);
    assert_eq!(r.notes["journal_mode"], "wal");
    assert_eq!(r.notes["synchronous"], "full");
    assert!(r.notes["sqlite_version"].starts_with('3'));
    // The database stays where the harness measures the writable layer.
    let db = dir.join("sbtest.db");
    assert!(
        std::fs::metadata(&db).unwrap().len() > 300 * 180,
        "database too small"
    );
}

#[test]
fn usage_errors_exit_2_and_say_so() {
    for args in [
        &["nginx"][..],
        &[],
        &["http", "--port", "x"],
        &["oltp", "--rows", "0"],
        &["idle", "--what"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().next().unwrap_or("");
        assert!(
            matches!(parse_line(line), Ok(Some(ProtocolLine::Error(_)))),
            "{args:?}: {stdout}"
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn run_errors_exit_1_with_an_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "http",
            "--port",
            "0",
            "--root",
            tmp.path().join("absent").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_line(stdout.lines().next().unwrap_or("")) {
        Ok(Some(ProtocolLine::Error(text))) => assert!(text.contains("absent"), "{text}"),
        other => panic!("expected an ERROR line, got {other:?} from {stdout:?}"),
    }
    // A file where the data directory should be.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = Command::new(BIN)
        .args(["oltp", "--dir", blocker.to_str().unwrap(), "--rows", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CVBENCH ERROR"));
}

#[test]
fn help_and_version_succeed() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cvbench-workload http"));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cvbench-workload "));
}
