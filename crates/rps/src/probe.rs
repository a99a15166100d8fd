//! `rps probe URL`: an HTTP health check for images without a shell or curl (the image is FROM
//! scratch). GET the URL on plain HTTP with a deadline; success is a 2xx status.
//! `rps probe --file PATH --max-age SECS`: the same for a process that serves no HTTP (`rps stream
//! consume --heartbeat-file PATH`): success is a file modified at most SECS ago.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Check that an HTTP endpoint answers 2xx, or that a heartbeat file is fresh; exit 0 if so,
/// 1 if not (the reason on stderr).
///
/// Meant for container health checks: `rps probe http://127.0.0.1:8080/ready` (compose
/// `healthcheck`, Kubernetes `exec` probes; plain `http://` only), or for the stream consumer
/// `rps probe --file /tmp/rps-heartbeat --max-age 120`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to GET.
    #[arg(default_value = "http://127.0.0.1:8080/ready")]
    pub url: String,
    /// Give up after this many seconds (connect, send and read together).
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Check this heartbeat file instead of a URL (what `rps stream consume --heartbeat-file`
    /// writes).
    #[arg(long, conflicts_with = "url")]
    pub file: Option<std::path::PathBuf>,
    /// With --file: the file must have been modified at most this many seconds ago.
    #[arg(long, default_value_t = 120.0, requires = "file")]
    pub max_age: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("{0}: only plain http://host[:port]/path URLs are supported")]
    Url(String),
    #[error("{url}: {message}")]
    Io { url: String, message: String },
    #[error("{url}: answered {status_line:?}")]
    Status { url: String, status_line: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// `Ok` when `path` was modified at most `max_age` seconds ago.
fn check_file(path: &std::path::Path, max_age: f64) -> Result<String, ProbeError> {
    let err = |message: String| ProbeError::File {
        path: path.display().to_string(),
        message,
    };
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| err(e.to_string()))?;
    // A clock step back makes the file look new: treat it as fresh rather than restart a pod.
    let age = modified.elapsed().map_or(0.0, |d| d.as_secs_f64());
    if age <= max_age {
        Ok(format!("{}: modified {age:.0} s ago", path.display()))
    } else {
        Err(err(format!(
            "last modified {age:.0} s ago, more than --max-age {max_age} s: the process stopped beating"
        )))
    }
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

/// GET `args.url` (`Ok` with the status line on 2xx), or with `--file` check the file's age.
pub fn run(args: &Args) -> Result<String, ProbeError> {
    if let Some(path) = &args.file {
        return check_file(path, args.max_age);
    }
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
            file: None,
            max_age: 120.0,
        }
    }

    fn file_args(path: &std::path::Path, max_age: f64) -> Args {
        Args {
            file: Some(path.to_owned()),
            max_age,
            ..args("http://unused/")
        }
    }

    #[test]
    fn a_fresh_heartbeat_file_is_healthy_a_stale_or_missing_one_is_not() {
        let dir = std::env::temp_dir().join(format!("rps-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("heartbeat");
        let e = run(&file_args(&path, 120.0)).unwrap_err();
        assert!(matches!(e, ProbeError::File { .. }), "a missing file: {e}");
        std::fs::write(&path, "1\n").unwrap();
        assert!(run(&file_args(&path, 120.0)).is_ok());
        // Ten minutes old.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let e = run(&file_args(&path, 120.0)).unwrap_err();
        assert!(e.to_string().contains("stopped beating"), "{e}");
        assert!(run(&file_args(&path, 900.0)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_and_url_are_exclusive_on_the_command_line() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            probe: Args,
        }
        let cli = Cli::try_parse_from(["probe", "--file", "/tmp/hb", "--max-age", "60"]).unwrap();
        assert_eq!(
            cli.probe.file.as_deref(),
            Some(std::path::Path::new("/tmp/hb"))
        );
        assert!(Cli::try_parse_from(["probe", "http://x/ready", "--file", "/tmp/hb"]).is_err());
        assert!(Cli::try_parse_from(["probe", "--max-age", "60"]).is_err());
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
