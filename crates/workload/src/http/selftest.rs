//! The load generator behind `http --selftest N,C`: N GET requests over C keep-alive connections to
//! the server in the same process (over loopback, inside the same sandbox), each response checked
//! for status 200 and the file's exact length. Responses are parsed with `httparse`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::latency::LatencySamples;

/// A client gives up on a response after this long (the server is on loopback).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What one self-test measured.
#[derive(Debug, Default)]
pub struct SelftestReport {
    pub ok: u64,
    pub errors: u64,
    pub body_bytes: u64,
    pub elapsed: Duration,
    pub latencies: LatencySamples,
}

/// Which files connection `conn` of `connections` requests, `count` of them: request `i` of that
/// connection is the file `(conn + i * connections) % files.len()`, so together the connections
/// walk the file list round-robin.
fn plan_for(conn: u32, connections: u32, count: u32, files: &[(String, u64)]) -> Vec<(String, u64)> {
    (0..count)
        .map(|i| {
            let global = u64::from(conn) + u64::from(i) * u64::from(connections);
            // Below files.len(), a usize: lossless.
            #[allow(clippy::cast_possible_truncation)]
            let idx = (global % files.len() as u64) as usize;
            let (name, len) = &files[idx];
            (format!("/{name}"), *len)
        })
        .collect()
}

/// Requests per connection: `requests` split as evenly as possible.
fn split_requests(requests: u32, connections: u32) -> Vec<u32> {
    (0..connections)
        .map(|c| requests / connections + u32::from(c < requests % connections))
        .collect()
}

/// Drive the self-test. `files` are `(name, length)` in the served root; must not be empty.
pub fn run(addr: SocketAddr, files: &[(String, u64)], requests: u32, connections: u32) -> SelftestReport {
    let connections = connections.max(1);
    let plans: Vec<_> = (0..connections)
        .zip(split_requests(requests, connections))
        .map(|(c, n)| plan_for(c, connections, n, files))
        .collect();
    let start = Instant::now();
    let reports: Vec<SelftestReport> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .into_iter()
            .map(|plan| s.spawn(move || drive_connection(addr, &plan)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| SelftestReport {
                    errors: 1,
                    ..Default::default()
                })
            })
            .collect()
    });
    let mut total = SelftestReport {
        elapsed: start.elapsed(),
        ..Default::default()
    };
    for r in reports {
        total.ok += r.ok;
        total.errors += r.errors;
        total.body_bytes += r.body_bytes;
        total.latencies.merge(r.latencies);
    }
    total
}

fn drive_connection(addr: SocketAddr, plan: &[(String, u64)]) -> SelftestReport {
    let mut report = SelftestReport {
        latencies: LatencySamples::with_capacity(plan.len()),
        ..Default::default()
    };
    let mut conn: Option<ClientConnection> = None;
    for (path, expected_len) in plan {
        let c = match conn.take() {
            Some(c) => c,
            None => match ClientConnection::connect(addr) {
                Ok(c) => c,
                Err(_) => {
                    report.errors += 1;
                    continue;
                }
            },
        };
        let mut c = c;
        let started = Instant::now();
        match c.get(path) {
            Ok(response) => {
                report.latencies.record(started.elapsed());
                report.body_bytes += response.body_len;
                if response.status == 200 && response.body_len == *expected_len {
                    report.ok += 1;
                } else {
                    report.errors += 1;
                }
                if response.keep_alive {
                    conn = Some(c);
                }
            }
            // The connection's state is unknown: drop it and reconnect for the next request.
            Err(_) => report.errors += 1,
        }
    }
    report
}

/// One parsed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body_len: u64,
    pub keep_alive: bool,
}

/// A response head: status, Content-Length, whether the server keeps the connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub content_length: u64,
    pub keep_alive: bool,
}

/// Parse a response head; `Ok(None)` if incomplete. A response without Content-Length is an error
/// (this server always sends one).
pub fn parse_response_head(buf: &[u8]) -> io::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let status = resp
        .code
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status"))?;
    let mut content_length = None;
    let mut keep_alive = resp.version == Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let content_length =
        content_length.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))?;
    Ok(Some(ResponseHead {
        head_len,
        status,
        content_length,
        keep_alive,
    }))
}

struct ClientConnection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ClientConnection {
    fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, RESPONSE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        Ok(ClientConnection {
            stream,
            buf: vec![0u8; READ_BUFFER_BYTES],
        })
    }

    /// One GET, reading the whole body (and discarding it).
    fn get(&mut self, path: &str) -> io::Result<Response> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: cvbench-selftest\r\n\r\n");
        self.stream.write_all(request.as_bytes())?;
        let mut filled = 0;
        let head = loop {
            if let Some(head) = parse_response_head(&self.buf[..filled])? {
                break head;
            }
            if filled == self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
            }
            match self.stream.read(&mut self.buf[filled..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        };
        let mut body_read = (filled - head.head_len) as u64;
        if body_read > head.content_length {
            // We never pipeline, so nothing may follow the body.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than Content-Length",
            ));
        }
        while body_read < head.content_length {
            let want = usize::try_from(head.content_length - body_read)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            match self.stream.read(&mut self.buf[..want])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => body_read += n as u64,
            }
        }
        Ok(Response {
            status: head.status,
            body_len: body_read,
            keep_alive: head.keep_alive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_split_evenly() {
        assert_eq!(split_requests(10, 3), vec![4, 3, 3]);
        assert_eq!(split_requests(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(split_requests(2000, 4).iter().sum::<u32>(), 2000);
    }

    #[test]
    fn connections_walk_files_round_robin() {
        let files: Vec<(String, u64)> = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
        let p0 = plan_for(0, 2, 3, &files);
        let p1 = plan_for(1, 2, 2, &files);
        let names0: Vec<&str> = p0.iter().map(|(n, _)| n.as_str()).collect();
        let names1: Vec<&str> = p1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names0, ["/a", "/c", "/b"]);
        assert_eq!(names1, ["/b", "/a"]);
        assert_eq!(p0[1].1, 3);
    }

    #[test]
    fn response_heads_parse() {
        let h = parse_response_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            ResponseHead {
                head_len: 45,
                status: 404,
                content_length: 5,
                keep_alive: true
            }
        );
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }
}
