//! `rps probe URL`: an HTTP health check for images without a shell or curl (the image is FROM
//! scratch). GET the URL on plain HTTP with a deadline; success is a 2xx status.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Check that an HTTP endpoint answers 2xx; exit 0 if it does, 1 if not (the reason on stderr).
///
/// Meant for container health checks: `rps probe http://127.0.0.1:8080/ready` (compose
/// `healthcheck`, Kubernetes `exec` probes). Plain `http://` only.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to GET.
    #[arg(default_value = "http://127.0.0.1:8080/ready")]
    pub url: String,
    /// Give up after this many seconds (connect, send and read together).
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("{0}: only plain http://host[:port]/path URLs are supported")]
    Url(String),
    #[error("{url}: {message}")]
    Io { url: String, message: String },
    #[error("{url}: answered {status_line:?}")]
    Status { url: String, status_line: String },
}

/// `(host:port, path)` of a plain HTTP URL.
fn split(url: &str) -> Result<(String, String), ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    if authority.is_empty() {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// GET `args.url`; `Ok` with the status line on 2xx.
pub fn run(args: &Args) -> Result<String, ProbeError> {
    let url = args.url.as_str();
    let io = |e: std::io::Error| ProbeError::Io {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let (authority, path) = split(url)?;
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| ProbeError::Io {
            url: url.to_owned(),
            message: format!("{authority} resolves to no address"),
        })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write: `write!` on a bare socket sends each formatted piece as its own segment.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rps-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'));
    if ok {
        Ok(status_line)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `status_line`.
    fn serve_once(status_line: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ready", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The request may arrive in several reads: read up to the blank line.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the probe closed before the end of its request");
                req.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&req).starts_with("GET /ready HTTP/1.1\r\n"));
            write!(s, "{status_line}\r\ncontent-length: 2\r\n\r\nok").unwrap();
        });
        url
    }

    fn args(url: &str) -> Args {
        Args {
            url: url.to_owned(),
            timeout: 5.0,
        }
    }

    #[test]
    fn a_2xx_answer_is_healthy() {
        let url = serve_once("HTTP/1.1 200 OK");
        assert_eq!(run(&args(&url)).unwrap(), "HTTP/1.1 200 OK");
    }

    #[test]
    fn a_503_is_unhealthy_and_says_so() {
        let url = serve_once("HTTP/1.1 503 Service Unavailable");
        let e = run(&args(&url)).unwrap_err();
        assert!(e.to_string().contains("503 Service Unavailable"), "{e}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = run(&args(&format!("http://127.0.0.1:{port}/ready"))).unwrap_err();
        assert!(matches!(e, ProbeError::Io { .. }), "{e}");
    }

    #[test]
    fn urls_other_than_plain_http_are_refused() {
        for url in ["https://x/ready", "127.0.0.1:8080", "http:///ready"] {
            assert_eq!(split(url), Err(ProbeError::Url(url.to_owned())), "{url}");
        }
        assert_eq!(
            split("http://localhost/ready").unwrap(),
            ("localhost:80".to_owned(), "/ready".to_owned())
        );
        assert_eq!(
            split("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".to_owned(), "/".to_owned())
        );
    }
}
