//! A small HTTP/1.1 keep-alive load client: one request in flight per
//! connection (like `wrk -c N` with one thread), every latency recorded.
//!
//! Written here rather than installing wrk/oha so the bench needs nothing
//! beyond cargo, and so the same client measures us and Home Assistant.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where to send requests.
#[derive(Clone)]
pub struct Target {
    /// Host and port.
    pub addr: SocketAddr,
    /// `Authorization` header value, if any.
    pub auth: Option<String>,
}

impl Target {
    /// From `http://host:port` (loopback only, no TLS).
    pub fn parse(url: &str, auth: Option<String>) -> anyhow::Result<Self> {
        let u = url::Url::parse(url)?;
        let host = u.host_str().unwrap_or("127.0.0.1");
        let port = u.port_or_known_default().unwrap_or(80);
        let addr = format!("{host}:{port}").parse()?;
        Ok(Self { addr, auth })
    }
}

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

    /// GETs `path`; returns the status and the body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let req = self.get_request(path);
        self.exchange(&req).await
    }

    /// The bytes of a GET for `path`, built once and sent many times by the load loop.
    pub fn get_request(&self, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\n{}\r\n", self.extra).into_bytes()
    }

    /// POSTs a JSON `body` to `path`; returns the status and the body.
    pub async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let req = format!(
            "POST {path} HTTP/1.1\r\n{}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.extra,
            body.len()
        );
        self.exchange(req.as_bytes()).await
    }

    /// DELETEs `path`; returns the status and the body.
    pub async fn delete(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let req = format!("DELETE {path} HTTP/1.1\r\n{}\r\n", self.extra);
        self.exchange(req.as_bytes()).await
    }

    async fn exchange(&mut self, req: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let (status, range) = self.exchange_in_place(req).await?;
        let body = self.buf[range.clone()].to_vec();
        self.buf.drain(..range.end);
        Ok((status, body))
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

/// What a load run measured.
pub struct Load {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (non-200 or I/O).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of every successful request, sorted, in microseconds.
    pub lat_us: Vec<u32>,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    /// Percentile `p` (0-100) in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        pct_us(&self.lat_us, p) / 1000.0
    }
}

/// Percentile of sorted microsecond samples.
pub fn pct_us(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
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
            let start = Instant::now();
            let deadline = start + dur;
            let mut tasks = Vec::new();
            for c in 0..conns {
                let t = t.clone();
                let paths = paths.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(1 << 16);
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
                            Ok((200, _)) => lat.push(t0.elapsed().as_micros() as u32),
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
            let mut lat_us = Vec::new();
            let mut errors = 0;
            for task in tasks {
                if let Ok((l, e)) = task.await {
                    lat_us.extend(l);
                    errors += e;
                }
            }
            let elapsed = start.elapsed();
            lat_us.sort_unstable();
            Load {
                ok: lat_us.len() as u64,
                errors,
                elapsed,
                lat_us,
            }
        })
    })
    .join()
    .expect("load thread")
}
