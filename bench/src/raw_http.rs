//! The hand-written HTTP/1.1 keep-alive load client the bench had before it
//! used hyper's (`--client raw`): each request's bytes built once, the
//! response read in place. Kept to compare the two in the same session.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{thread_cpu, Latencies, Load, Target};

/// One keep-alive connection.
pub struct Conn {
    /// The socket.
    stream: TcpStream,
    /// Bytes read past the previous response.
    buf: Vec<u8>,
    /// Request header lines after the request line.
    extra: String,
}

impl Conn {
    pub async fn open(t: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(t.addr).await?;
        stream.set_nodelay(true)?;
        let mut extra = format!("Host: {}\r\n", t.addr);
        if let Some(a) = &t.auth {
            extra.push_str(&format!("Authorization: {a}\r\n"));
        }
        Ok(Self {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            extra,
        })
    }

    /// The bytes of a GET for `path`, built once and sent many times by the load loop.
    pub fn get_request(&self, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\n{}\r\n", self.extra).into_bytes()
    }

    /// Sends `req` and reads the response; returns the status and where the
    /// body sits in `buf`. The caller drains `buf` up to the range's end. The
    /// load loop uses this directly, so the client costs the machine as little
    /// as possible next to the server it measures.
    async fn exchange_in_place(
        &mut self,
        req: &[u8],
    ) -> anyhow::Result<(u16, std::ops::Range<usize>)> {
        self.stream.write_all(req).await?;
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line"))?;
        if let Some(len) = header(head, "content-length") {
            let len: usize = len.parse()?;
            while self.buf.len() < head_end + len {
                self.fill().await?;
            }
            Ok((status, head_end..head_end + len))
        } else if header(head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            self.buf.drain(..head_end);
            let body = self.read_chunked().await?;
            // Put the body back in front, so callers see one shape.
            let n = body.len();
            self.buf.splice(..0, body);
            Ok((status, 0..n))
        } else {
            anyhow::bail!("response without content-length or chunked encoding")
        }
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = find(&self.buf, b"\r\n") {
                    break p;
                }
                self.fill().await?;
            };
            let size_txt = std::str::from_utf8(&self.buf[..line_end])?;
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)?;
            while self.buf.len() < line_end + 2 + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    /// Reads into `buf`'s spare capacity: no zeroed scratch buffer per read.
    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        anyhow::ensure!(n > 0, "connection closed");
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A header's value; `name` is lowercase, the response's may be any case.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Runs `conns` connections for `dur` on a thread of its own (so the client
/// does not share the server's runtime), cycling through `paths`.
pub fn run_load(t: Target, paths: Vec<String>, conns: usize, dur: Duration) -> Load {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async move {
            let cpu0 = thread_cpu();
            let start = Instant::now();
            let deadline = start + dur;
            let mut tasks = Vec::new();
            for c in 0..conns {
                let t = t.clone();
                let paths = paths.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Latencies::default();
                    let mut errors = 0u64;
                    let mut conn = match Conn::open(&t).await {
                        Ok(c) => c,
                        Err(_) => return (lat, 1),
                    };
                    let reqs: Vec<Vec<u8>> = paths.iter().map(|p| conn.get_request(p)).collect();
                    let mut i = c * 7919;
                    while Instant::now() < deadline {
                        let req = &reqs[i % reqs.len()];
                        i += 1;
                        let t0 = Instant::now();
                        let res = conn.exchange_in_place(req).await;
                        if let Ok((_, body)) = &res {
                            conn.buf.drain(..body.end);
                        }
                        match res {
                            Ok((200, _)) => lat.record(t0.elapsed()),
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                match Conn::open(&t).await {
                                    Ok(c) => conn = c,
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut lat = Latencies::default();
            let mut errors = 0;
            for task in tasks {
                if let Ok((l, e)) = task.await {
                    lat.merge(&l);
                    errors += e;
                }
            }
            let elapsed = start.elapsed();
            Load {
                ok: lat.len(),
                errors,
                elapsed,
                lat,
                client_cpu: thread_cpu() - cpu0,
            }
        })
    })
    .join()
    .expect("load thread")
}
