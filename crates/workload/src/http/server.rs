//! The HTTP/1.1 server: one thread per connection, keep-alive (and pipelining) per RFC 9112,
//! request heads parsed by `httparse`, bodies sent with `sendfile(2)` straight from the page cache.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;

use super::www::{ServedFile, TargetError, WwwRoot};

/// Largest request head accepted; beyond it the answer is 431 and the connection closes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// The parts of a request head the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    pub keep_alive: bool,
    /// Content-Length > 0 or any Transfer-Encoding: this server takes no request bodies.
    pub has_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    Malformed,
    TooLarge,
}

/// Parse one request head from the start of `buf`: `Ok(None)` if more bytes are needed, otherwise
/// the head and how many bytes it took.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(usize, RequestHead)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let mut keep_alive = version >= 1;
    let mut has_body = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed)?;
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(HeadError::Malformed)?;
            has_body |= len > 0;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    Ok(Some((
        consumed,
        RequestHead {
            method,
            target: target.to_string(),
            keep_alive,
            has_body,
        },
    )))
}

/// Accept connections until the process ends.
pub fn serve(listener: TcpListener, root: Arc<WwwRoot>) {
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let root = Arc::clone(&root);
                // A failed spawn drops (closes) the connection; the server carries on.
                let _ = std::thread::Builder::new()
                    .name("http-conn".into())
                    .spawn(move || handle_connection(stream, &root));
            }
            // Out of descriptors or memory: back off instead of spinning.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM | nix::libc::ENOBUFS)
                ) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {}
        }
    }
}

/// Serve one connection until the client closes it, a request asks to close, or an error.
fn handle_connection(mut stream: TcpStream, root: &WwwRoot) {
    // Heads and bodies are written separately; without NODELAY the body's last segment can wait
    // for the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    loop {
        match parse_request_head(&buf[..filled]) {
            Ok(Some((consumed, head))) => {
                let keep_alive = match respond(&mut stream, root, &head) {
                    Ok(k) => k,
                    Err(_) => return,
                };
                buf.copy_within(consumed..filled, 0);
                filled -= consumed;
                if !keep_alive {
                    return;
                }
            }
            Ok(None) => match stream.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            },
            Err(e) => {
                let status = match e {
                    HeadError::Malformed => Status::BadRequest,
                    HeadError::TooLarge => Status::HeadTooLarge,
                };
                let _ = write_error(&mut stream, status, false);
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Answer one request; returns whether the connection stays open.
fn respond(stream: &mut TcpStream, root: &WwwRoot, head: &RequestHead) -> io::Result<bool> {
    if head.has_body {
        write_error(stream, Status::BadRequest, false)?;
        return Ok(false);
    }
    if head.method == Method::Other {
        write_error(stream, Status::MethodNotAllowed, false)?;
        return Ok(false);
    }
    match root.lookup(&head.target) {
        Ok(file) => {
            write_head(stream, Status::Ok, file.len, file.content_type, head.keep_alive)?;
            if head.method == Method::Get {
                send_body(stream, &file)?;
            }
            Ok(head.keep_alive)
        }
        Err(TargetError::NotFound) => {
            write_error(stream, Status::NotFound, head.keep_alive)?;
            Ok(head.keep_alive)
        }
        Err(TargetError::BadRequest) => {
            write_error(stream, Status::BadRequest, false)?;
            Ok(false)
        }
    }
}

fn write_head(
    stream: &mut TcpStream,
    status: Status,
    len: u64,
    content_type: &str,
    keep_alive: bool,
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {}\r\nServer: cvbench\r\nContent-Length: {len}\r\nContent-Type: {content_type}\r\n\
         {allow}Connection: {connection}\r\n\r\n",
        status.line()
    );
    stream.write_all(head.as_bytes())
}

fn write_error(stream: &mut TcpStream, status: Status, keep_alive: bool) -> io::Result<()> {
    let body = format!("{}\n", status.line());
    write_head(
        stream,
        status,
        body.len() as u64,
        "text/plain; charset=utf-8",
        keep_alive,
    )?;
    stream.write_all(body.as_bytes())
}

fn send_body(stream: &TcpStream, file: &ServedFile) -> io::Result<()> {
    let mut offset: nix::libc::off_t = 0;
    let mut remaining = file.len;
    while remaining > 0 {
        let chunk = usize::try_from(remaining).unwrap_or(usize::MAX).min(1 << 30);
        match nix::sys::sendfile::sendfile(stream, &file.file, Some(&mut offset), chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sending",
                ))
            }
            Ok(n) => remaining = remaining.saturating_sub(n as u64),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keep_alive_rules() {
        let (n, h) = parse_request_head(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b")
            .unwrap()
            .unwrap();
        assert_eq!(n, 28); // the head ends after the blank line; "GET /b" is the next request
        assert_eq!(
            h,
            RequestHead {
                method: Method::Get,
                target: "/a".into(),
                keep_alive: true,
                has_body: false
            }
        );
        let (_, h) = parse_request_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let (_, h) = parse_request_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let (_, h) = parse_request_head(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        assert_eq!(h.method, Method::Head);
    }

    #[test]
    fn partial_malformed_and_oversized_heads() {
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost:"), Ok(None));
        assert_eq!(
            parse_request_head(b"\x01\x02 garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_request_head(&big), Err(HeadError::TooLarge));
    }

    #[test]
    fn bodies_and_methods_are_flagged() {
        let (_, h) = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!((h.method, h.has_body), (Method::Other, true));
        let (_, h) = parse_request_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.has_body);
    }
}
