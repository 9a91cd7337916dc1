//! The load client: hyper's HTTP/1.1 client connections (`hyper::client::conn`),
//! kept alive, one request in flight per connection (like `wrk -c N` with one
//! thread); every latency goes into an HDR histogram.
//!
//! A client of our own rather than wrk/oha, so the bench needs nothing beyond
//! cargo, and so the same client measures us and Home Assistant.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
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
    /// hyper's handle on the connection; its driver runs as a task.
    send: http1::SendRequest<Full<Bytes>>,
    /// The `Host` header.
    host: HeaderValue,
    /// The `Authorization` header, if any.
    auth: Option<HeaderValue>,
}

impl Conn {
    pub async fn open(t: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(t.addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the handle is dropped or the peer closes.
            let _ = conn.await;
        });
        Ok(Self {
            send,
            host: HeaderValue::from_str(&t.addr.to_string())?,
            auth: t.auth.as_deref().map(HeaderValue::from_str).transpose()?,
        })
    }

    /// GETs `path`; returns the status and the body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.exchange(Method::GET, path.parse()?, None).await
    }

    /// POSTs a JSON `body` to `path`; returns the status and the body.
    pub async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, Bytes)> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        self.exchange(Method::POST, path.parse()?, Some(body)).await
    }

    /// POSTs a JSON `body` to `path` with `extra` headers besides this
    /// connection's; returns the status, the answer's headers and its body.
    pub async fn post_with(
        &mut self,
        path: &str,
        body: &str,
        extra: &[(&'static str, &str)],
    ) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let mut req = self.request(Method::POST, path.parse()?, Some(body));
        for (name, value) in extra {
            req.headers_mut()
                .insert(*name, HeaderValue::from_str(value)?);
        }
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }

    /// DELETEs `path`; returns the status and the body.
    pub async fn delete(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        self.exchange(Method::DELETE, path.parse()?, None).await
    }

    /// A request with this connection's headers.
    fn request(&self, method: Method, uri: Uri, json: Option<Bytes>) -> Request<Full<Bytes>> {
        let is_json = json.is_some();
        let mut req = Request::new(Full::new(json.unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if let Some(a) = &self.auth {
            h.insert(AUTHORIZATION, a.clone());
        }
        if is_json {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        req
    }

    async fn exchange(
        &mut self,
        method: Method,
        uri: Uri,
        json: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let req = self.request(method, uri, json);
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// GETs `uri` for the load loop: the body is read and dropped, not gathered.
    async fn load_get(&mut self, uri: Uri) -> anyhow::Result<u16> {
        let req = self.request(Method::GET, uri, None);
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(status)
    }
}

/// Latencies in microseconds, 1 µs to 10 min at 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_micros() as u64);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: this cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Percentile `p` (0-100) in milliseconds; NaN when empty.
    pub fn ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.value_at_percentile(p) as f64 / 1000.0
    }
}

/// What a load run measured.
pub struct Load {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (non-200 or I/O).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of every successful request.
    pub lat: Latencies,
    /// CPU time the load thread used (client, runtime and its syscalls).
    pub client_cpu: Duration,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    /// Percentile `p` (0-100) in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        self.lat.ms(p)
    }
    /// The load thread's CPU time per request, in microseconds.
    pub fn client_us_per_req(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / (self.ok + self.errors).max(1) as f64
    }
}

/// CPU time the calling thread has used so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
            let uris: Vec<Uri> = paths.iter().filter_map(|p| p.parse().ok()).collect();
            let cpu0 = thread_cpu();
            let start = Instant::now();
            let deadline = start + dur;
            let mut tasks = Vec::new();
            for c in 0..conns {
                let t = t.clone();
                let uris = uris.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Latencies::default();
                    let mut errors = 0u64;
                    let mut conn = match Conn::open(&t).await {
                        Ok(c) => c,
                        Err(_) => return (lat, 1),
                    };
                    let mut i = c * 7919;
                    while Instant::now() < deadline {
                        let uri = uris[i % uris.len()].clone();
                        i += 1;
                        let t0 = Instant::now();
                        match conn.load_get(uri).await {
                            Ok(200) => lat.record(t0.elapsed()),
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
