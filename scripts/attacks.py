#!/usr/bin/env python3
"""Hostile-client scenarios against the release binary, with figures.

Usage: python3 scripts/attacks.py target/release/ha-fetchers [SCENARIO ...]

Runs each scenario (1-10, or those named) against a fresh `demo` process (the
stdio one against `mcp`) and prints one figure line per scenario (two for the
scenarios with two parts). Python 3.11 standard library only.

Pinning: this client pins itself to CPU 1 and the server to CPU 0 (on a
machine with at least 2 CPUs), so the load generator and the service do not
share a core. PIN=0 in the environment turns that off. Pinned, the server's
tokio runtime sizes itself to the one CPU it may use (one worker thread;
renders still run on the blocking pool). In scenario 5 the health, /metrics
and summary probes run in a separate process (also on CPU 1), so the flood's
event loop does not delay them.

Scenarios 1 and 2 (second part) use a copy of fetchers/ with `hold.toml` (a
template fetcher holding 20 MB) and `prompts/deep.j2` (the deep-nesting
template, for MCP's prompts/get) added; the rest use fetchers/ as shipped.
Scenarios 7 and 10 run with RUST_LOG unset (info, the default) to count log
lines; the others with RUST_LOG=warn.

Memory is read from /proc/PID/status: VmRSS, and VmHWM after the peak was
reset by writing "5" to /proc/PID/clear_refs. "peak +N MiB" is VmHWM during the
scenario minus VmRSS just before it. CPU is utime+stime from /proc/PID/stat.
"""

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIPPED = os.path.join(ROOT, "fetchers")
PIN = os.environ.get("PIN", "1") != "0" and (os.cpu_count() or 1) >= 2
CLIENT_CPU, SERVER_CPU = 1, 0
TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Settings the demo must not inherit from the caller's shell.
SCRUB = [
    "HA_URL", "HA_TOKEN", "REDIS_URL", "DATABASE_URL", "FETCHERS_SQL_URL", "API_TOKEN",
    "RUST_LOG", "LOG_FORMAT", "BIND", "ALLOWED_HOSTS", "MCP_ALLOWED_HOSTS", "MAX_CONNECTIONS",
    "MAX_CONCURRENT_REQUESTS", "RENDER_MEMORY_LIMIT", "RENDER_MEMORY_TOTAL", "RENDER_TIMEOUT",
    "HEADER_READ_TIMEOUT", "MAX_BODY_BYTES", "MCP_MAX_SESSIONS", "FETCHERS_DIR",
    "REQUEST_TIMEOUT", "TOKIO_WORKER_THREADS",
]


def ms(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def mib(kb):
    return kb / 1024


def short(text, n=160):
    text = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return text if len(text) <= n else text[:n] + f"…(+{len(text) - n})"


def visible(text, n=300):
    """`text` as it is, control characters shown as <0xNN> (a backslash stays one)."""
    return short("".join(c if c.isprintable() else f"<0x{ord(c):02x}>" for c in text), n)


def out(line):
    print(line, flush=True)


# ---------------------------------------------------------------- processes


def proc_status(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                vals[k] = int(v.split()[0])
    return vals


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _server_preexec():
    os.setsid()
    if PIN:
        os.sched_setaffinity(0, {SERVER_CPU})


class Server:
    """A `demo` process: started, its port read from stdout, stderr kept."""

    def __init__(self, binary, env=None, fetchers_dir=SHIPPED, rust_log="warn"):
        self.binary = binary
        e = {k: v for k, v in os.environ.items() if k not in SCRUB}
        e["FETCHERS_DIR"] = fetchers_dir
        if rust_log is not None:
            e["RUST_LOG"] = rust_log
        e.update(env or {})
        self.errlog = tempfile.NamedTemporaryFile(prefix="attacks-stderr-", suffix=".log", delete=False)
        started = time.monotonic()
        self.p = subprocess.Popen(
            [binary, "demo", "--bind", "127.0.0.1:0"],
            cwd=ROOT, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.errlog, preexec_fn=_server_preexec,
        )
        self.pid = self.p.pid
        self.port = None
        ready = threading.Event()

        def read():
            for raw in self.p.stdout:
                line = raw.decode("utf-8", "replace")
                if line.startswith("API: "):
                    self.port = int(line.strip().rsplit(":", 1)[1])
                if "Serving until Ctrl-C" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(90) or self.port is None or self.p.poll() is not None:
            raise RuntimeError(f"demo did not start (rc={self.p.poll()}): {self.stderr()[-2000:]}")
        self.startup = time.monotonic() - started
        time.sleep(1.0)  # let the first snapshot's garbage settle

    def status(self):
        return proc_status(self.pid)

    def rss_kb(self):
        return self.status()["VmRSS"]

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")
        return self.rss_kb()

    def peak_kb(self):
        return self.status()["VmHWM"]

    def alive(self):
        return self.p.poll() is None

    def stderr(self):
        self.errlog.flush()
        with open(self.errlog.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        rc = self.p.poll()
        if rc is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                rc = self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                rc = f"killed after 20 s (SIGTERM ignored)"
        try:
            os.unlink(self.errlog.name)
        except OSError:
            pass
        return rc

    def verdict(self):
        """`alive`, or how it ended, and any panic or ERROR line in its log."""
        text = self.stderr()
        bad = [l for l in text.splitlines() if "panicked" in l or " ERROR " in l or "memory allocation" in l]
        state = "alive" if self.alive() else f"DIED rc={self.p.returncode}"
        if bad:
            state += f"; log: {len(bad)} panic/ERROR lines, first: {short(bad[0], 200)!r}"
        return state


# ---------------------------------------------------------------- HTTP client


class Resp:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def err(self):
        """`status code "message"` for an error body, else `status`."""
        j = self.json()
        if isinstance(j, dict) and isinstance(j.get("error"), dict):
            e = j["error"]
            return f'{self.status} {e.get("code")} {json.dumps(short(str(e.get("message")), 200), ensure_ascii=False)}'
        return f"{self.status}"


async def read_head(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed before a status line")
    status = int(line.split()[1])
    headers = {}
    while True:
        l = await reader.readline()
        if l in (b"\r\n", b"\n"):
            break
        if not l:
            raise ConnectionError("closed inside the headers")
        k, _, v = l.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, {k: v if len(v) > 1 else v[0] for k, v in headers.items()}


async def read_body(reader, headers, method="GET", status=200):
    if method == "HEAD" or status in (204, 304):
        return b""
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if "chunked" in str(headers.get("transfer-encoding", "")).lower():
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()
    return await reader.read()


def request_bytes(method, path, body=None, headers=None, host="127.0.0.1"):
    h = {"host": host}
    for k, v in (headers or {}).items():
        h[k.lower()] = v
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("content-type", "application/json")
        body = body.encode() if isinstance(body, str) else body
        h["content-length"] = str(len(body))
    elif method in ("POST", "PUT", "DELETE"):
        h["content-length"] = "0"
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    async def request(self, method, path, body=None, headers=None, host=None):
        if self.w is None:
            await self.open()
        data = request_bytes(method, path, body, headers, host or f"127.0.0.1:{self.port}")
        t = time.monotonic()
        self.w.write(data)
        await self.w.drain()
        status, h = await read_head(self.r)
        b = await read_body(self.r, h, method, status)
        if str(h.get("connection", "")).lower() == "close":
            self.close()
        return Resp(status, h, b, time.monotonic() - t)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


async def http(port, method, path, body=None, headers=None, timeout=60, host=None):
    """One request on a fresh connection; the time includes the connect."""
    t = time.monotonic()
    c = Conn(port)
    try:
        async def go():
            await c.open()
            return await c.request(method, path, body, headers, host)
        r = await asyncio.wait_for(go(), timeout)
        r.elapsed = time.monotonic() - t
        return r
    finally:
        c.close()


async def timed_health(port, path="/api/health", timeout=10):
    t = time.monotonic()
    try:
        r = await http(port, "GET", path, timeout=timeout)
        return r.status, time.monotonic() - t
    except Exception as e:  # noqa: BLE001 - a failure is a figure
        return f"{type(e).__name__}", time.monotonic() - t


def counts(items):
    d = {}
    for i in items:
        d[i] = d.get(i, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def lat_stats(samples):
    """max / median of successful samples, and the failures."""
    ok = [t for s, t in samples if s == 200]
    bad = [(s, t) for s, t in samples if s != 200]
    if not ok:
        return f"n={len(samples)}, none answered 200 ({counts(s for s, _ in bad)})"
    line = f"n={len(samples)}, max {ms(max(ok))}, median {ms(statistics.median(ok))}"
    line += f", failures {len(bad)}" + (f" ({counts(s for s, _ in bad)})" if bad else "")
    return line


MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def rpc(method, id=None, params=None):
    m = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        m["id"] = id
    if params is not None:
        m["params"] = params
    return m


INIT = rpc("initialize", 1, {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "attacks", "version": "0"}})


def sse_or_json(body):
    """The JSON-RPC message of a `/mcp` answer (JSON or a one-event SSE stream)."""
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        for line in text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                try:
                    return json.loads(line[5:])
                except ValueError:
                    pass
    return None


async def mcp_open(c):
    """initialize + notifications/initialized on `c`: (session id, statuses)."""
    r = await c.request("POST", "/mcp", INIT, MCP_HEADERS)
    sid = r.headers.get("mcp-session-id")
    h = dict(MCP_HEADERS, **{"mcp-session-id": sid or "", "mcp-protocol-version": "2025-06-18"})
    r2 = await c.request("POST", "/mcp", rpc("notifications/initialized"), h)
    return sid, r.status, r2.status


def mcp_headers(sid):
    return dict(MCP_HEADERS, **{"mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"})


def rpc_answer(r):
    m = sse_or_json(r.body)
    if m is None:
        return f"{r.status} {short(r.body, 120)!r}"
    if "error" in m:
        e = m["error"]
        return f'{r.status} JSON-RPC error {e.get("code")} "{short(str(e.get("message")), 200)}"'
    return f"{r.status} result"


# ---------------------------------------------------------------- fixtures


HOLD_TOML = '''description = "Holds 20 MB."
source = "template"
timeout_ms = 5000
ttl_seconds = 0
template = \'\'\'{% set s = "a" * 20000000 %}{% for i in range(20000) %}{% endfor %}{{ s | length }}{{ n }}\'\'\'
params = { n = 0 }
'''

DEEP = ("{% set ns = namespace(v=[]) %}{% for i in range(20000) %}"
        "{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}")


def fixture_dir():
    d = tempfile.mkdtemp(prefix="attacks-fetchers-")
    dst = os.path.join(d, "fetchers")
    shutil.copytree(SHIPPED, dst)
    with open(os.path.join(dst, "hold.toml"), "w") as f:
        f.write(HOLD_TOML)
    os.makedirs(os.path.join(dst, "prompts"), exist_ok=True)
    with open(os.path.join(dst, "prompts", "deep.j2"), "w") as f:
        f.write("{# Nests a list 20,000 deep. #}\n" + DEEP + "\n")
    return d, dst


# ---------------------------------------------------------------- scenarios


async def s1(binary, fx):
    s = Server(binary, fetchers_dir=fx)
    try:
        port = s.port
        before = s.reset_peak()
        r = await http(port, "POST", "/api/v1/render", {"body": DEEP})
        hs, ht = await timed_health(port)
        peak = s.peak_kb()
        line = (f"S1 deep nesting (REST): render {r.err()} in {ms(r.elapsed)}; /api/health {hs} in {ms(ht)}; "
                f"peak RSS +{mib(peak - before):.1f} MiB")
        out(line)
        c = Conn(port)
        try:
            sid, st_init, st_note = await mcp_open(c)
            h = mcp_headers(sid or "")
            lst = await c.request("POST", "/mcp", rpc("prompts/list", 2), h)
            names = [p.get("name") for p in ((sse_or_json(lst.body) or {}).get("result") or {}).get("prompts", [])]
            before = s.reset_peak()
            g = await c.request("POST", "/mcp", rpc("prompts/get", 3, {"name": "deep", "arguments": {}}), h)
            ping = await c.request("POST", "/mcp", rpc("ping", 4), h)
        finally:
            c.close()
        hs2, ht2 = await timed_health(port)
        out(f"S1 deep nesting (MCP): initialize {st_init}, initialized {st_note}, prompts/list {lst.status} {names}; "
            f"prompts/get deep -> {rpc_answer(g)} in {ms(g.elapsed)}; ping {rpc_answer(ping)}; "
            f"/api/health {hs2} in {ms(ht2)}; peak RSS +{mib(s.peak_kb() - before):.1f} MiB; server {s.verdict()}")
    finally:
        s.stop()


HOLD25 = '{% set s = "a" * 25000000 %}{% for i in range(30000) %}{% endfor %}{{ s | length }}'


async def s2(binary, fx):
    s = Server(binary)
    try:
        port = s.port
        before = s.reset_peak()
        stop = asyncio.Event()
        probes = []

        async def probe():
            while not stop.is_set():
                probes.append(await timed_health(port))
                await asyncio.sleep(0.2)

        async def one():
            try:
                return await http(port, "POST", "/api/v1/render", {"body": HOLD25}, timeout=60)
            except Exception as e:  # noqa: BLE001
                return e

        t = time.monotonic()
        prober = asyncio.create_task(probe())
        rs = await asyncio.gather(*[one() for _ in range(60)])
        wall = time.monotonic() - t
        stop.set()
        await prober
        peak = s.peak_kb()
        good = [r for r in rs if isinstance(r, Resp)]
        by = {}
        for r in good:
            key = r.err() if r.status != 200 else "200"
            by.setdefault(key, []).append(r.elapsed)
        parts = [f"{len(v)}× {k} (slowest {ms(max(v))})" for k, v in sorted(by.items(), key=lambda kv: -len(kv[1]))]
        fails = [f"{type(r).__name__}" for r in rs if not isinstance(r, Resp)]
        ok_text = {r.json().get("text") for r in good if r.status == 200 and r.json()}
        out(f"S2a memory total: 60 parallel 25 MB renders -> {'; '.join(parts)}"
            + (f"; client errors {counts(fails)}" if fails else "")
            + f"; texts {sorted(ok_text)[:2]}; all answered in {ms(wall)}; "
            f"peak RSS +{mib(peak - before):.0f} MiB (VmHWM {mib(peak):.0f} MiB); RSS after {mib(s.rss_kb()):.0f} MiB; "
            f"/api/health meanwhile {lat_stats(probes)}; server {s.verdict()}")
    finally:
        s.stop()

    s = Server(binary, fetchers_dir=fx)
    try:
        port = s.port
        body = "".join(f'{{{{ fetch("hold", n={i}) }}}}' for i in range(64))
        before = s.reset_peak()
        r = await http(port, "POST", "/api/v1/render", {"body": body}, timeout=120)
        peak = s.peak_kb()
        hs, ht = await timed_health(port)
        j = r.json() or {}
        if r.status == 200:
            errs = j.get("errors", [])
            ran = j.get("fetchers", [])
            msgs = counts(short(str(e.get("message")), 140) for e in errs)
            what = (f"200, {len(ran)} fetchers reported, {len(errs)} stopped (errors: {msgs or 'none'}), "
                    f"output {len(j.get('text', ''))} chars")
        else:
            what = r.err()
        out(f"S2b 64 template fetchers of 20 MB in one render: {what}; in {ms(r.elapsed)}; "
            f"peak RSS +{mib(peak - before):.0f} MiB; /api/health {hs} in {ms(ht)}; server {s.verdict()}")
    finally:
        s.stop()


async def s3(binary):
    s = Server(binary)
    try:
        port = s.port
        before = s.reset_peak()
        c = Conn(port)
        statuses = []
        t = time.monotonic()
        try:
            for i in range(400):
                body = ('{{ fetch("ha_search_pattern", pattern="*", state=("Zn_" * 1000000 ~ "'
                        + str(i) + '")) | length }}')
                try:
                    r = await asyncio.wait_for(c.request("POST", "/api/v1/render", {"body": body}), 30)
                    statuses.append(r.status if r.status == 200 else r.err())
                except Exception as e:  # noqa: BLE001
                    statuses.append(type(e).__name__)
                    c.close()
        finally:
            c.close()
        took = time.monotonic() - t
        after = s.rss_kb()
        peak = s.peak_kb()
        await asyncio.sleep(35)
        later = s.rss_kb()
        out(f"S3 fetch-value cache: 400 renders with distinct 3 MB params in {took:.1f} s -> {counts(statuses)}; "
            f"RSS {mib(before):.0f} -> {mib(after):.0f} MiB (+{mib(after - before):.0f}), peak +{mib(peak - before):.0f} MiB, "
            f"after 35 s idle {mib(later):.0f} MiB (+{mib(later - before):.0f}); server {s.verdict()}")
    finally:
        s.stop()


async def s4(binary, total=20000, conns=16):
    s = Server(binary)
    try:
        port = s.port
        before = s.rss_kb()
        s.reset_peak()
        init_st, note_st, errors = [], [], []
        sids = [None] * total
        nxt = iter(range(total))

        async def worker():
            c = Conn(port)
            for i in nxt:
                try:
                    sid, a, b = await mcp_open(c)
                    sids[i] = sid
                    init_st.append(a)
                    note_st.append(b)
                except Exception as e:  # noqa: BLE001
                    errors.append(type(e).__name__)
                    c.close()
            c.close()

        t = time.monotonic()
        # the first session is opened alone, so "first" is well defined
        c = Conn(port)
        sids[next(nxt)], a, b = await mcp_open(c)
        init_st.append(a)
        note_st.append(b)
        c.close()
        await asyncio.gather(*[worker() for _ in range(conns)])
        took = time.monotonic() - t
        after = s.rss_kb()
        peak = s.peak_kb()
        t0, c0 = time.monotonic(), cpu_ticks(s.pid)
        await asyncio.sleep(10)
        idle = (cpu_ticks(s.pid) - c0) / TCK / (time.monotonic() - t0) * 100
        idle_rss = s.rss_kb()
        first, last = sids[0], next(x for x in reversed(sids) if x)
        c = Conn(port)
        try:
            rf = await c.request("POST", "/mcp", rpc("tools/list", 5), mcp_headers(first))
            c.close()
            rl = await c.request("POST", "/mcp", rpc("tools/list", 6), mcp_headers(last))
        finally:
            c.close()
        tools = len(((sse_or_json(rl.body) or {}).get("result") or {}).get("tools", []))
        m = await http(port, "GET", "/metrics")
        gauge = [l for l in m.body.decode().splitlines() if l.startswith(("mcp_sessions ", "mcp_sessions_evicted_total"))]
        # which of the 20,000 ids still open a session (a ping on each)
        live = []
        ids = iter(x for x in sids if x)

        async def pinger():
            c = Conn(port)
            for sid in ids:
                try:
                    r = await c.request("POST", "/mcp", rpc("ping", 7), mcp_headers(sid))
                    live.append(r.status)
                except Exception as e:  # noqa: BLE001
                    live.append(type(e).__name__)
                    c.close()
            c.close()

        await asyncio.gather(*[pinger() for _ in range(conns)])
        await asyncio.sleep(max(0.0, 35 - (time.monotonic() - t0)))  # past a malloc_trim (every 30 s)
        trimmed = s.rss_kb()
        out(f"S4 MCP sessions: {total} × (initialize + initialized) on {conns} keep-alive connections in {took:.1f} s "
            f"({total / took:.0f}/s) -> initialize {counts(init_st)}; initialized {counts(note_st)}"
            + (f"; client errors {counts(errors)}" if errors else "")
            + f"; RSS {mib(before):.0f} -> {mib(after):.0f} MiB (+{mib(after - before):.0f}), peak +{mib(peak - before):.0f}, "
            f"after 10 s idle {mib(idle_rss):.0f} MiB, after 35 s {mib(trimmed):.0f} MiB; CPU over 10 s idle {idle:.1f} % of a core; "
            f"first session -> {rf.status} {short(rf.body, 80)!r}; last session tools/list -> {rl.status} ({tools} tools); "
            f"{'; '.join(gauge)}; a ping on every one of the {len(live)} ids then -> {counts(live)} "
            f"(MCP_MAX_SESSIONS 256); server {s.verdict()}")
    finally:
        s.stop()


HALF = b"GET /api/v1/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def s5(binary, flooders=1024, secs=30):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * flooders + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    s = Server(binary)
    try:
        port = s.port
        before = s.reset_peak()
        stop = asyncio.Event()
        st = {"connects": 0, "connect_fail": 0, "cut": 0, "bytes": 0}
        cut_how = {}
        lifetimes = []

        async def flooder():
            while not stop.is_set():
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    st["connect_fail"] += 1
                    await asyncio.sleep(0.1)
                    continue
                st["connects"] += 1
                born = time.monotonic()
                gone = asyncio.Event()
                how = []

                async def watch():
                    try:
                        data = await r.read(4096)
                        how.append(data.split(b"\r\n", 1)[0].decode("latin-1")[:40] if data else "EOF")
                    except OSError as e:
                        how.append(type(e).__name__)
                    gone.set()

                watcher = asyncio.create_task(watch())
                try:
                    w.write(HALF)
                    while not stop.is_set() and not gone.is_set():
                        await asyncio.sleep(0.1)
                        w.write(b"a")
                        st["bytes"] += 1
                        await w.drain()
                except OSError as e:
                    how.append(type(e).__name__)
                if not stop.is_set():
                    await asyncio.sleep(0)
                    st["cut"] += 1
                    lifetimes.append(time.monotonic() - born)
                    k = how[0] if how else "write failed"
                    cut_how[k] = cut_how.get(k, 0) + 1
                watcher.cancel()
                w.close()

        fds = []

        async def fd_watch():
            while not stop.is_set():
                fds.append(fd_count(s.pid))
                await asyncio.sleep(1)

        tasks = [asyncio.create_task(flooder()) for _ in range(flooders)]
        await asyncio.sleep(1)  # the flood is at the cap before the first probe
        c0, t0 = cpu_ticks(s.pid), time.monotonic()
        w = asyncio.create_task(fd_watch())
        samples = await run_prober(port, secs - 1, ["/api/health", "/metrics"])
        cpu = (cpu_ticks(s.pid) - c0) / TCK / (time.monotonic() - t0) * 100
        stop.set()
        await w
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        peak = s.peak_kb()
        med_life = statistics.median(lifetimes) if lifetimes else 0
        out(f"S5a connection flood: {flooders} header tricklers (1 byte/100 ms, reconnect when cut) for {secs} s: "
            f"{st['connects']} connects, {st['cut']} cut by the server (median life {ms(med_life)}; "
            f"{counts([k for k, v in cut_how.items() for _ in range(v)])}), {st['connect_fail']} connects refused; "
            f"/api/health {lat_stats(by_path(samples, '/api/health'))}; /metrics {lat_stats(by_path(samples, '/metrics'))}"
            f"{failures_at(samples)}; server CPU {cpu:.0f} % of a core, fds max {max(fds) if fds else '?'}; "
            f"peak RSS +{mib(peak - before):.0f} MiB; server {s.verdict()}")
    finally:
        s.stop()

    await asyncio.sleep(1)
    s = Server(binary)
    try:
        port = s.port
        before = s.reset_peak()
        stop = asyncio.Event()
        results = []
        head = (b"POST /api/v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"content-length: 100\r\n\r\n{\"body\": \"")

        async def slow_body():
            while not stop.is_set():
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.5)
                    continue
                born = time.monotonic()
                got = []

                async def watch():
                    try:
                        got.append(await r.read(4096))
                    except OSError as e:
                        got.append(type(e).__name__.encode())

                watcher = asyncio.create_task(watch())
                try:
                    w.write(head)
                    await w.drain()
                    while not stop.is_set() and not got:
                        await asyncio.sleep(1)
                        if got:
                            break
                        w.write(b"x")
                        await w.drain()
                except OSError:
                    pass
                if got:
                    await asyncio.sleep(0)
                    line = got[0].split(b"\r\n", 1)[0].decode("latin-1")[:40] or "EOF"
                    code = ""
                    if b"\r\n\r\n" in got[0]:
                        try:
                            code = json.loads(got[0].split(b"\r\n\r\n", 1)[1]).get("error", {}).get("code", "")
                        except (ValueError, AttributeError):
                            pass
                    results.append((f"{line} {code}".strip(), time.monotonic() - born))
                watcher.cancel()
                w.close()

        tasks = [asyncio.create_task(slow_body()) for _ in range(64)]
        await asyncio.sleep(0.5)
        samples = await run_prober(port, 30, ["/api/v1/summary", "/api/health"])
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cut = counts(k for k, _ in results)
        when = [t for _, t in results]
        out(f"S5b slow bodies: 64 bodies at 1 byte/s for 30 s (reconnect when cut): {len(results)} cut "
            f"({cut or 'none'}"
            + (f"; after {min(when):.1f}–{max(when):.1f} s" if when else "")
            + f"); GET /api/v1/summary {lat_stats(by_path(samples, '/api/v1/summary'))}; "
            f"/api/health {lat_stats(by_path(samples, '/api/health'))}{failures_at(samples)}; "
            f"peak RSS +{mib(s.peak_kb() - before):.0f} MiB; server {s.verdict()}")
    finally:
        s.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def s6(binary):
    s = Server(binary)
    try:
        port = s.port
        a = await http(port, "GET", "/api/v1/states/lock.front_door", host="attacker.example:8080")
        b = await http(port, "GET", "/api/v1/states/lock.front_door", headers={"origin": "http://attacker.example"})
        c = await http(port, "GET", "/api/v1/states/lock.front_door")
        m = await http(port, "POST", "/mcp", INIT, MCP_HEADERS, host="attacker.example:8080")
        out(f"S6 DNS rebinding: Host attacker.example:8080 -> {a.status} {short(a.body, 220)}; "
            f"Origin http://attacker.example -> {b.status} {short(b.body, 220)}; "
            f"/mcp initialize with that Host -> {m.status} {short(m.body, 120)}; "
            f"control (Host 127.0.0.1:{port}) -> {c.status}; server {s.verdict()}")
    finally:
        s.stop()


async def s7(binary, secs=5, conns=4):
    s = Server(binary, env={"API_TOKEN": "s3cret"}, rust_log=None)
    try:
        port = s.port
        log0 = len(s.stderr().splitlines())
        seen, retry, errs, msgs = [], [], [], set()
        stop_at = time.monotonic() + secs
        n = [0]

        async def guesser():
            c = Conn(port)
            while time.monotonic() < stop_at:
                i = n[0]
                n[0] += 1
                try:
                    r = await c.request("POST", "/api/v1/session", {"token": f"guess{i}"})
                except Exception as e:  # noqa: BLE001
                    errs.append(type(e).__name__)
                    c.close()
                    continue
                j = r.json() or {}
                if r.status == 200:
                    seen.append(f"200 authenticated={j.get('authenticated')} error={j.get('error')!r}")
                else:
                    seen.append(f"{r.status} {(j.get('error') or {}).get('code')}")
                    msgs.add(r.err())
                if "retry-after" in r.headers:
                    retry.append(int(r.headers["retry-after"]))
            c.close()

        t = time.monotonic()
        await asyncio.gather(*[guesser() for _ in range(conns)])
        took = time.monotonic() - t
        await asyncio.sleep(0.3)
        lines = s.stderr().splitlines()[log0:]
        login_lines = [l for l in lines if "api::session" in l or "login" in l.lower()]
        other_kinds = [l.split(": ", 1)[1].split(" ", 3)[0:3] if ": " in l else l for l in lines if l not in login_lines]
        other_kinds = [" ".join(k) if isinstance(k, list) else k for k in other_kinds]
        right = await http(port, "POST", "/api/v1/session", {"token": "s3cret"})
        out(f"S7 login rate limit: {len(seen)} wrong tokens in {took:.1f} s on {conns} keep-alive connections "
            f"({len(seen) / took:.0f}/s) -> {counts(seen)}"
            + (f"; client errors {counts(errs)}" if errs else "")
            + (f"; Retry-After {min(retry)}–{max(retry)} s" if retry else "; no Retry-After")
            + (f" (e.g. {sorted(msgs)[0]})" if msgs else "")
            + f"; server log lines meanwhile (RUST_LOG unset: info): {len(lines)}, of which {len(login_lines)} about logins"
            + "".join(f"; [{i + 1}] {visible(l.strip(), 230)}" for i, l in enumerate(login_lines[:4]))
            + (f"; the rest: {counts(other_kinds)}" if other_kinds else "")
            + f"; right token from the same address then -> {right.err()} Retry-After {right.headers.get('retry-after')}; "
            f"server {s.verdict()}")
    finally:
        s.stop()


async def sse_events(reader, sink, closed):
    """Reads a chunked SSE body, appending (time, event name) for each event."""
    buf = b""
    try:
        while True:
            size_line = await reader.readline()
            if not size_line:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            buf += await reader.readexactly(size)
            await reader.readline()
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                ls = ev.decode("utf-8", "replace").splitlines()
                if any(l.startswith("data:") for l in ls):
                    name = next((l[6:].strip() for l in ls if l.startswith("event:")), "message")
                    sink.append((time.monotonic(), name))
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass
    closed.append(time.monotonic())


async def s8(binary):
    s = Server(binary, env={"API_TOKEN": "s3cret"})
    try:
        port = s.port
        login = await http(port, "POST", "/api/v1/session", {"token": "s3cret"})
        sc = login.headers.get("set-cookie", "")
        sc = sc[0] if isinstance(sc, list) else sc
        cookie = sc.split(";", 1)[0]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request_bytes("GET", "/api/v1/events", headers={"cookie": cookie, "accept": "text/event-stream"},
                              host=f"127.0.0.1:{port}"))
        await w.drain()
        status, h = await read_head(r)
        events, closed = [], []
        reader = asyncio.create_task(sse_events(r, events, closed))
        await asyncio.sleep(4)
        n_before = len(events)
        t_out = time.monotonic()
        out_r = await http(port, "DELETE", "/api/v1/session", headers={"cookie": cookie})
        try:
            await asyncio.wait_for(asyncio.shield(reader), 6)
        except asyncio.TimeoutError:
            pass
        after = [(t, n) for t, n in events if t > t_out]
        end = (f"closed {ms(closed[0] - t_out)} after the DELETE was sent (its answer took {ms(out_r.elapsed)})"
               if closed else "still open 6 s after the logout")
        again = await http(port, "GET", "/api/v1/events", headers={"cookie": cookie}, timeout=5)
        reader.cancel()
        w.close()
        out(f"S8 logout ends streams: login {login.status} ({'cookie set' if cookie.startswith('hf_session=') else 'NO cookie'}); "
            f"stream {status}, {n_before} events in the 4 s before logout ({counts(n for _, n in events[:n_before])}); "
            f"logout {out_r.status}; {len(after)} events in the 6 s after it was sent"
            + (f" ({counts(n for _, n in after)})" if after else "")
            + f"; stream {end}; the old cookie on /api/v1/events then -> {again.err()}; server {s.verdict()}")
    finally:
        s.stop()


async def s9(binary, big=100_000_000):
    e = {k: v for k, v in os.environ.items() if k not in SCRUB}
    e["FETCHERS_DIR"] = SHIPPED
    e["RUST_LOG"] = "warn"
    errlog = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = await asyncio.create_subprocess_exec(
        binary, "mcp", cwd=ROOT, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog,
        preexec_fn=_server_preexec, limit=1 << 24)
    notes = []

    async def ask(data, what, timeout=60, expect=True):
        t = time.monotonic()
        p.stdin.write(data)
        await p.stdin.drain()
        wrote = time.monotonic() - t
        if not expect:
            return
        try:
            line = await asyncio.wait_for(p.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            notes.append(f"{what} -> no answer in {timeout} s")
            return
        took = time.monotonic() - t
        if not line:
            notes.append(f"{what} -> stdout closed (rc={p.returncode})")
            return
        try:
            m = json.loads(line)
            if "error" in m:
                ans = f'id {m.get("id")} error {m["error"].get("code")} "{short(str(m["error"].get("message")), 160)}"'
            else:
                ans = f'id {m.get("id")} result {short(json.dumps(m.get("result")), 60)}'
        except ValueError:
            ans = f"not JSON: {short(line, 100)!r}"
        notes.append(f"{what} -> {ans} in {ms(took)}" + (f" (written in {ms(wrote)})" if wrote > 0.05 else ""))

    try:
        await ask((json.dumps(INIT) + "\n").encode(), "initialize", timeout=30)
        await ask((json.dumps(rpc("notifications/initialized")) + "\n").encode(), "initialized", expect=False)
        with open(f"/proc/{p.pid}/clear_refs", "w") as f:
            f.write("5")
        rss0 = proc_status(p.pid)["VmRSS"]
        pad = big - len('{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":""}}\n')
        line = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"' + b"a" * pad + b'"}}\n'
        await ask(line, f"a {len(line) / 1e6:.0f} MB ping line (id 2)")
        hwm = proc_status(p.pid)["VmHWM"]
        await ask(b"{not json\n", "`{not json`")
        await ask((json.dumps(rpc("ping", 3)) + "\n").encode(), "ping id 3")
        alive = p.returncode is None
        p.stdin.close()
        try:
            rc = await asyncio.wait_for(p.wait(), 15)
        except asyncio.TimeoutError:
            p.kill()
            rc = "did not exit 15 s after stdin closed"
        errlog.seek(0)
        log = errlog.read().decode("utf-8", "replace").splitlines()
        out(f"S9 stdio MCP (`mcp`, no HA_URL): {'; '.join(notes)}; peak RSS over the big line +{mib(hwm - rss0):.0f} MiB; "
            f"{'alive' if alive else 'DIED'} before stdin closed, exit {rc} after; stderr {len(log)} lines"
            + (f" (first: {short(log[0], 160)!r})" if log else ""))
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()


async def s10(binary):
    s = Server(binary, rust_log=None)
    try:
        port = s.port
        log0 = len(s.stderr())
        name = "x\\nFAKE LOG LINE\\u001b[2J"  # a Jinja string literal: a newline and an ESC
        body = '{{ fetch("ha_search_pattern", pattern="*", **{"' + name + '": 1}) }}'
        r1 = await http(port, "POST", "/api/v1/render", {"body": body})
        j = r1.json() or {}
        what1 = (r1.err() if r1.status != 200 else
                 f"200, errors (JSON as sent) {json.dumps([short(e.get('message', ''), 120) for e in j.get('errors', [])])}")
        r2 = await http(port, "POST", "/api/v1/fetchers/ha_search_pattern/run",
                        {"pattern": "*", "y\nFAKE LOG LINE 2\u001b[2J": 1})
        await asyncio.sleep(0.3)
        log = s.stderr()[log0:]
        lines = log.splitlines()
        forged = [l for l in lines if l.startswith("FAKE") or l.lstrip().startswith("FAKE")]
        esc = "\x1b" in log
        fail = [l for l in lines if "FAKE LOG LINE" in l]
        out(f"S10 log forging: render -> {what1}; /fetchers/ha_search_pattern/run -> {r2.err()}; "
            f"log: {len(lines)} new lines, {len(fail)} naming the param, {len(forged)} starting with FAKE, "
            f"raw ESC {'PRESENT' if esc else 'absent'} (control characters below shown as <0xNN>)"
            + "".join(f"; [{i + 1}] {visible(l, 300)}" for i, l in enumerate(fail[:3]))
            + f"; server {s.verdict()}")
    finally:
        s.stop()


# ---------------------------------------------------------------- prober


def probe_main(port, secs, paths, every=1.0):
    """A separate process (so the flood's event loop does not delay it): each
    `every` s, each path on a fresh connection, timed; JSON samples on stdout."""
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        tick = time.monotonic()
        for path in paths:
            t = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                    c.settimeout(10)
                    c.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while b"\r\n" not in data:
                        chunk = c.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed before a status line")
                        data += chunk
                    status = int(data.split()[1])
                    while True:  # the whole body (Connection: close)
                        if not c.recv(65536):
                            break
            except Exception as e:  # noqa: BLE001
                status = f"{type(e).__name__}"
            samples.append([round(t - t0, 3), path, status, time.monotonic() - t])
        time.sleep(max(0.0, every - (time.monotonic() - tick)))
    print(json.dumps(samples))


async def run_prober(port, secs, paths):
    p = await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), "--probe", str(port), str(secs), ",".join(paths),
        stdout=subprocess.PIPE)
    data, _ = await p.communicate()
    return json.loads(data or b"[]")


def by_path(samples, path):
    return [(s, t) for _, p, s, t in samples if p == path]


def failures_at(samples):
    bad = [f"{p} {s} at {t0:.1f} s after {ms(t)}" for t0, p, s, t in samples if s != 200]
    return f" [{'; '.join(bad[:4])}]" if bad else ""


# ---------------------------------------------------------------- main


async def main(binary, which):
    tmp, fx = fixture_dir()
    try:
        runs = {
            1: lambda: s1(binary, fx), 2: lambda: s2(binary, fx), 3: lambda: s3(binary), 4: lambda: s4(binary),
            5: lambda: s5(binary), 6: lambda: s6(binary), 7: lambda: s7(binary), 8: lambda: s8(binary),
            9: lambda: s9(binary), 10: lambda: s10(binary),
        }
        for n in which:
            t = time.monotonic()
            try:
                await runs[n]()
            except Exception as e:  # noqa: BLE001 - report and go on
                out(f"S{n} could not be completed: {type(e).__name__}: {short(str(e), 400)}")
            sys.stderr.write(f"(scenario {n}: {time.monotonic() - t:.0f} s)\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        probe_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(","))
        sys.exit(0)
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    which = [int(a) for a in sys.argv[2:]] or list(range(1, 11))
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    load = open("/proc/loadavg").read().split()[:3]
    out(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; nproc {os.cpu_count()}; load {' '.join(load)}; "
        + (f"client pinned to CPU {CLIENT_CPU}, server to CPU {SERVER_CPU}" if PIN else "unpinned")
        + f"; RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    t = time.monotonic()
    asyncio.run(main(binary, which))
    out(f"# total {time.monotonic() - t:.0f} s; load at the end {' '.join(open('/proc/loadavg').read().split()[:3])}")
