//! Misbehaving HTTP/1.1 clients on raw TCP, for the services' server-limit
//! tests (`HTTP_HEADER_READ_TIMEOUT_SECONDS`, `HTTP_IDLE_TIMEOUT_SECONDS`,
//! `HTTP_MAX_CONNECTIONS`, `HTTP_REQUEST_TIMEOUT_SECONDS`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the service under test at {addr}: {e}"))
}

/// Whether the peer has closed: a read returns end of file or an error.
/// Waits at most `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Bytes (an error response) before the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request head one header line every `every`, never finishing it,
/// for up to `give_up`. Returns how long the server let it go on before
/// closing the connection, or `None` if it never did.
pub async fn trickle_head(
    addr: SocketAddr,
    every: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let mut s = connect(addr).await;
    let started = Instant::now();
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        .await
        .is_err()
    {
        return Some(started.elapsed());
    }
    let mut n = 0u32;
    while started.elapsed() < give_up {
        if closed_within(&mut s, every).await {
            return Some(started.elapsed());
        }
        n += 1;
        if s.write_all(format!("X-Slow-{n}: {n}\r\n").as_bytes())
            .await
            .is_err()
        {
            return Some(started.elapsed());
        }
    }
    None
}

/// One request on a fresh connection; returns the stream (kept alive) and
/// the response's status code.
pub async fn request(addr: SocketAddr, path: &str) -> (TcpStream, u16) {
    let mut s = connect(addr).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("cannot send GET {path}: {e}"));
    let status = read_response(&mut s)
        .await
        .unwrap_or_else(|| panic!("the connection closed before answering GET {path}"))
        .0;
    (s, status)
}

/// Reads one response with a `Content-Length` body: (status, raw text).
pub async fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..head_end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if raw.len() >= head_end + 4 + length {
            let status = text.split(' ').nth(1)?.parse().ok()?;
            return Some((status, text));
        }
    }
}

/// After one answered request, how long the server keeps the idle
/// connection before closing it (`None`: still open after `give_up`).
pub async fn idle_close(addr: SocketAddr, path: &str, give_up: Duration) -> Option<Duration> {
    let (mut s, _) = request(addr, path).await;
    let answered = Instant::now();
    closed_within(&mut s, give_up)
        .await
        .then(|| answered.elapsed())
}

/// With `cap` connections open, a further client is not served until one
/// of them closes; then it is. Connections the caller already holds (a
/// pooled HTTP client) count against the cap, so this opens connections
/// until one waits, and checks that happened by the cap.
pub async fn assert_connection_cap(addr: SocketAddr, cap: usize, path: &str) {
    let mut open = Vec::new();
    let waiting = loop {
        let mut s = connect(addr).await;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("cannot send GET {path}: {e}"));
        match tokio::time::timeout(Duration::from_secs(1), read_response(&mut s)).await {
            Ok(Some((status, _))) => {
                assert_eq!(status, 200, "GET {path}");
                open.push(s);
                assert!(
                    open.len() <= cap,
                    "{} connections were served at once under a cap of {cap}",
                    open.len()
                );
            }
            Ok(None) => panic!(
                "the server closed connection {} instead of holding it",
                open.len() + 1
            ),
            Err(_) => break s,
        }
    };
    assert!(!open.is_empty(), "not even one connection was served");
    let mut waiting = waiting;
    drop(open.pop());
    let served = tokio::time::timeout(Duration::from_secs(10), read_response(&mut waiting))
        .await
        .unwrap_or_else(|_| panic!("the waiting client was not served after a slot freed"));
    assert_eq!(served.map(|r| r.0), Some(200));
}

/// Sends `POST path` with a complete head announcing `length` body bytes,
/// then one byte every `every`; returns the response the server gave while
/// the body was still arriving (`None` if it gave none within `give_up`).
pub async fn trickle_body(
    addr: SocketAddr,
    path: &str,
    length: usize,
    every: Duration,
    give_up: Duration,
) -> Option<(u16, String)> {
    let mut s = connect(addr).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let (mut read, mut write) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 1..length {
            tokio::time::sleep(every).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut raw = Vec::new();
    let answer = tokio::time::timeout(give_up, async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&raw).contains("\r\n\r\n") {
                // Give the body a moment to follow its head.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(n) = read.try_read(&mut buf) {
                    raw.extend_from_slice(&buf[..n]);
                }
                break;
            }
        }
    })
    .await;
    writer.abort();
    answer.ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}
