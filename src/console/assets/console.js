// ha-fetchers browser console. Plain DOM, no dependencies; served under a
// strict CSP, so no inline code and no innerHTML with server data.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const VIEWS = ["status", "fetchers", "prompts", "states"];
  const MAX_ROWS = 500;
  const STATUS_EVERY_MS = 2000;
  const AGE_EVERY_MS = 5000;
  const PREVIEW_DEBOUNCE_MS = 300;

  const app = {
    authRequired: false,
    authed: false,
    view: null,
    es: null,
    esRetry: null,
    statusTimer: null,
    statusGen: 0,
    problems: new Map(), // key -> message, shown in #global-error
  };

  // ---------- small helpers ----------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === "text") node.textContent = v;
        else if (k === "class") node.className = v;
        else if (k === "dataset") Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => nf.format(n);
  const plural = (n, one, many = `${one}s`) => `${fmtInt(n)} ${n === 1 ? one : many}`;

  function fmtMs(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "? ms";
    return `${ms >= 100 ? Math.round(ms) : Number(ms.toPrecision(3))} ms`;
  }

  function fmtAge(secs) {
    if (!isFinite(secs)) return "–";
    if (secs < 1) return `${secs < 0 ? 0 : secs.toFixed(1)} s ago`;
    if (secs < 60) return `${secs < 10 ? secs.toFixed(1) : Math.round(secs)} s ago`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
    return `${Math.floor(secs / 86400)} d ago`;
  }

  // Home Assistant timestamps carry microseconds; trim to ms for Date.parse.
  function parseTime(s) {
    if (typeof s !== "string") return NaN;
    return Date.parse(s.replace(/(\.\d{3})\d+/, "$1"));
  }

  function relTime(ms) {
    if (!isFinite(ms)) return "–";
    const secs = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (secs < 60) return `${secs} s ago`;
    return fmtAge(secs);
  }

  const localTime = (epochSecs) => new Date(epochSecs * 1000).toLocaleString();
  const compact = (v) => (v === undefined ? "" : JSON.stringify(v));
  const pretty = (v) => (v === undefined ? "" : JSON.stringify(v, null, 2));

  function setProblem(key, msg) {
    if (msg) app.problems.set(key, msg);
    else app.problems.delete(key);
    const box = $("global-error");
    box.textContent = [...app.problems.values()].join(" · ");
    box.hidden = app.problems.size === 0;
  }

  // ---------- HTTP ----------

  class AuthLost extends Error {}

  class HttpError extends Error {
    constructor(status, data) {
      const e = data && typeof data.error === "object" && data.error ? data.error : {};
      const code = e.code || `http_${status}`;
      super(e.message || (typeof data?.error === "string" ? data.error : `HTTP ${status}`));
      this.status = status;
      this.code = code;
    }
  }

  // Returns {ok, status, data}; never throws for HTTP statuses except 401,
  // which means the session expired: switch to the login view.
  async function api(method, path, body, signal) {
    const init = { method, headers: { Accept: "application/json" }, signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const raw = await res.text();
    let data = null;
    if (raw) {
      try { data = JSON.parse(raw); } catch { data = null; }
    }
    if (res.status === 401 && path !== "api/v1/session") {
      sessionLost();
      throw new AuthLost();
    }
    return { ok: res.ok, status: res.status, data };
  }

  async function getJSON(path) {
    const r = await api("GET", path);
    if (!r.ok) throw new HttpError(r.status, r.data);
    return r.data;
  }

  const isQuiet = (err) => err instanceof AuthLost || err?.name === "AbortError";
  const errText = (err) => (err instanceof HttpError ? `${err.code}: ${err.message}` : String(err?.message || err));

  // Run an async task; report failures under `key` instead of throwing.
  async function guard(key, task) {
    try {
      const out = await task();
      setProblem(key, null);
      return out;
    } catch (err) {
      if (!isQuiet(err)) setProblem(key, `${key}: ${errText(err)}`);
      return undefined;
    }
  }

  // ---------- session ----------

  async function checkSession() {
    try {
      const r = await api("GET", "api/v1/session");
      if (!r.ok || !r.data) throw new HttpError(r.status, r.data);
      applySession(r.data);
      setProblem("session", null);
    } catch (err) {
      setProblem("session", `cannot reach the server: ${errText(err)}`);
      setTimeout(checkSession, 5000);
      return;
    }
    route();
  }

  function applySession(s) {
    app.authRequired = !!s.auth_required;
    app.authed = !s.auth_required || !!s.authenticated;
    $("logout").hidden = !app.authRequired || !app.authed;
    // A scoped login sees only its scope: say which.
    $("scope").hidden = !s.scope;
    $("scope").textContent = s.scope ? `Scoped: ${s.scope}` : "";
    if (app.authed) openStream();
  }

  function sessionLost(message) {
    const wasAuthed = app.authed;
    app.authed = false;
    closeStream();
    stopStatus();
    resetData();
    $("logout").hidden = true;
    $("scope").hidden = true;
    $("login-error").textContent = message ?? (wasAuthed ? "Session expired; sign in again." : "");
    route();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const input = $("login-token");
    const btn = $("login-submit");
    $("login-error").textContent = "";
    btn.disabled = true;
    try {
      const r = await api("POST", "api/v1/session", { token: input.value });
      const d = r.data || {};
      if (r.ok && d.authenticated) {
        input.value = "";
        applySession(d);
        route();
      } else {
        const msg = typeof d.error === "string" ? d.error : d.error?.message || `HTTP ${r.status}`;
        $("login-error").textContent = msg;
        input.select();
      }
    } catch (err) {
      $("login-error").textContent = `Cannot sign in: ${errText(err)}`;
    } finally {
      btn.disabled = false;
    }
  }

  async function onLogout() {
    try {
      await api("DELETE", "api/v1/session");
    } catch (err) {
      setProblem("logout", `logout: ${errText(err)}`);
    }
    sessionLost("");
  }

  // ---------- routing ----------

  function currentView() {
    const name = location.hash.replace(/^#\/?/, "");
    return VIEWS.includes(name) ? name : "status";
  }

  function route() {
    const name = app.authed ? currentView() : "login";
    for (const v of ["login", ...VIEWS]) $(`view-${v}`).hidden = v !== name;
    for (const v of VIEWS) {
      const a = $(`nav-${v}`);
      if (v === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.body.classList.toggle("logged-out", !app.authed);
    const prev = app.view;
    app.view = name;
    if (name !== "status") stopStatus();
    if (name === "login") {
      if (prev !== "login") $("login-token").focus();
      return;
    }
    if (name === "status") startStatus();
    else if (name === "fetchers") showFetchers();
    else if (name === "prompts") showPrompts();
    else if (name === "states") showStates();
  }

  // ---------- event stream ----------

  function setStreamStatus(live) {
    const s = $("stream-status");
    s.hidden = false;
    s.textContent = live ? "live" : "reconnecting…";
    s.classList.toggle("live", live);
  }

  function openStream() {
    if (app.es || !app.authed) return;
    setStreamStatus(false);
    const es = new EventSource("api/v1/events?full=1");
    app.es = es;
    es.addEventListener("open", () => setStreamStatus(true));
    es.addEventListener("error", () => {
      setStreamStatus(false);
      // CLOSED means the browser gave up (e.g. 401 or a non-SSE reply):
      // ask the session route before trying again.
      if (es.readyState === EventSource.CLOSED && app.es === es) {
        app.es = null;
        clearTimeout(app.esRetry);
        app.esRetry = setTimeout(recheckStream, 3000);
      }
    });
    const on = (type, fn) => es.addEventListener(type, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch { return; }
      fn(data);
    });
    on("state", onStateEvent);
    on("removed", (d) => onRemovedEvent(d.entity_id));
    on("resync", () => { if (states.map) loadStates(); });
    on("reload", () => {
      if (fetchers.loaded) loadFetchers();
      if (prompts.loaded) loadPromptList();
    });
  }

  async function recheckStream() {
    if (!app.authed) return;
    try {
      const r = await api("GET", "api/v1/session");
      if (r.ok && r.data && r.data.auth_required && !r.data.authenticated) return sessionLost();
    } catch { /* server down: just retry the stream */ }
    openStream();
  }

  function closeStream() {
    clearTimeout(app.esRetry);
    if (app.es) app.es.close();
    app.es = null;
    $("stream-status").hidden = true;
  }

  // ---------- status view ----------

  // A generation number stops an in-flight poll from starting a second loop.
  function startStatus() {
    if (app.statusTimer !== null) return;
    app.statusTimer = 0;
    pollStatus(++app.statusGen);
  }

  function stopStatus() {
    clearTimeout(app.statusTimer);
    app.statusTimer = null;
    app.statusGen++;
  }

  async function pollStatus(gen) {
    if (!document.hidden) {
      const s = await guard("status", () => getJSON("api/v1/status"));
      if (s && gen === app.statusGen) renderStatus(s);
    }
    if (gen !== app.statusGen) return;
    app.statusTimer = setTimeout(() => pollStatus(gen), STATUS_EVERY_MS);
  }

  function renderStatus(s) {
    const ws = s.websocket || {};
    let link;
    if (ws.configured === false) {
      link = "Home Assistant not configured";
    } else if (ws.connected) {
      link = [
        "connected",
        ws.ha_version ? `HA ${ws.ha_version}` : null,
        typeof ws.last_event_age_secs === "number" ? `last event ${fmtAge(ws.last_event_age_secs)}` : "no events yet",
        plural(ws.reconnects || 0, "reconnect"),
      ].filter(Boolean).join(" · ");
      if (ws.fresh === false) link += " · stale";
    } else {
      link = ["disconnected", ws.last_error].filter(Boolean).join(" · ");
    }
    const linkEl = $("status-link");
    linkEl.textContent = link;
    linkEl.classList.toggle("bad", !ws.connected && ws.configured !== false);

    $("status-ha-version").textContent = ws.ha_version || "–";
    $("status-last-error").textContent = ws.last_error || "none";

    const r = s.redis || {};
    $("status-redis").textContent = [r.backend || (r.configured ? "redis" : "memory"), r.ok ? "ok" : "error", r.error].filter(Boolean).join(" · ");

    const m = s.mysql || {};
    $("status-mysql").textContent = [
      m.backend,
      m.ok ? "ok" : "error",
      typeof m.fetchers === "number" ? plural(m.fetchers, "fetcher") : null,
      typeof m.problems === "number" ? plural(m.problems, "problem") : null,
      m.last_ok_at ? `last ok ${localTime(m.last_ok_at)}` : null,
      m.error,
    ].filter(Boolean).join(" · ");

    $("status-entities").textContent = fmtInt(s.entities ?? 0);
    $("status-domains").textContent = fmtInt(s.domains ?? 0);

    const st = s.stream || {};
    $("status-stream").textContent = [
      plural(st.subscribers || 0, "subscriber"),
      plural(st.overflows || 0, "overflow"),
      typeof st.buffered === "number" ? `${fmtInt(st.buffered)} buffered` : null,
    ].filter(Boolean).join(" · ");

    renderChart(Array.isArray(s.events_per_second) ? s.events_per_second : []);

    const list = $("resyncs");
    const items = (s.resyncs || []).slice().reverse().map((x) => el("li", null,
      el("time", { datetime: new Date(x.at * 1000).toISOString(), text: localTime(x.at) }),
      typeof x.entities === "number" ? ` · ${plural(x.entities, "entity", "entities")}` : null,
      typeof x.removed === "number" ? ` · ${fmtInt(x.removed)} removed` : null));
    if (!items.length) items.push(el("li", { class: "muted", text: "No resyncs yet" }));
    list.replaceChildren(...items);
  }

  const SVG = "http://www.w3.org/2000/svg";

  function renderChart(series) {
    const svg = $("chart-events");
    const W = 300, H = 60;
    const data = series.slice(-300);
    const max = data.reduce((a, b) => Math.max(a, b), 0);
    const now = data.length ? data[data.length - 1] : 0;
    const title = document.createElementNS(SVG, "title");
    title.id = "chart-title";
    title.textContent = `Events per second over the last ${data.length} s: now ${now}, max ${max}`;
    const nodes = [title];
    const bw = W / 300;
    const scale = max > 0 ? H / max : 0;
    // Right-align so the newest second is always at the right edge.
    const offset = 300 - data.length;
    data.forEach((v, i) => {
      if (!v) return;
      const h = Math.max(1, v * scale);
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", ((offset + i) * bw).toFixed(2));
      r.setAttribute("y", (H - h).toFixed(2));
      r.setAttribute("width", bw.toFixed(2));
      r.setAttribute("height", h.toFixed(2));
      nodes.push(r);
    });
    svg.replaceChildren(...nodes);
    $("chart-rate").textContent = fmtInt(now);
    $("chart-max").textContent = fmtInt(max);
  }

  // ---------- fetchers view ----------

  const fetchers = { loaded: false, list: [], runSeq: 0 };

  function showFetchers() {
    if (!fetchers.loaded) loadFetchers();
  }

  async function loadFetchers() {
    const d = await guard("fetchers", () => getJSON("api/v1/fetchers"));
    if (!d) return;
    fetchers.loaded = true;
    fetchers.list = (d.fetchers || []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
    renderFetchers(d);
  }

  function renderFetchers(d) {
    const src = d.source || {};
    $("fetchers-source").textContent = [
      `Definitions from ${src.backend || "?"}`,
      src.ok === false ? "error" : "ok",
      src.last_ok_at ? `last loaded ${localTime(src.last_ok_at)}` : null,
      src.error,
    ].filter(Boolean).join(" · ");

    const rows = fetchers.list.map((f) => {
      const pick = el("button", { type: "button", class: "link", text: f.name, title: "Use in the run form" });
      pick.addEventListener("click", () => pickFetcher(f.name, true));
      return el("tr", { dataset: { name: f.name } },
        el("td", null, pick),
        el("td", { text: f.source ?? "" }),
        el("td", { text: f.origin ?? "" }),
        el("td", { class: "mono", text: compact(f.params ?? {}) }),
        el("td", { text: (f.required_params || []).join(", ") }),
        el("td", { class: "num", text: f.ttl_seconds ?? "" }),
        el("td", { class: "num", text: f.timeout_ms ?? "" }),
        el("td", { text: f.description ?? "" }));
    });
    $("fetchers-table").tBodies[0].replaceChildren(...rows);

    const probs = (d.problems || []).map((p) => el("li", { class: "problem" },
      el("strong", { text: p.name ?? "?" }), ` · ${p.field ?? "?"} · ${p.reason ?? ""}`));
    if (!probs.length) probs.push(el("li", { class: "muted", text: "No problems" }));
    $("problems").replaceChildren(...probs);

    const sel = $("run-name");
    const keep = sel.value;
    sel.replaceChildren(...fetchers.list.map((f) => el("option", { value: f.name, text: f.name })));
    if (fetchers.list.some((f) => f.name === keep)) sel.value = keep;
    else if (fetchers.list.length) pickFetcher(fetchers.list[0].name, false);
  }

  function pickFetcher(name, focus) {
    const f = fetchers.list.find((x) => x.name === name);
    if (!f) return;
    $("run-name").value = name;
    const obj = {};
    for (const k of f.required_params || []) obj[k] = "";
    $("run-params").value = Object.keys(obj).length ? pretty(obj) : "{}";
    if (focus) {
      $("run-form").scrollIntoView({ block: "nearest" });
      $("run-params").focus();
    }
  }

  function setRunMeta(text, bad) {
    const m = $("run-meta");
    m.textContent = text;
    m.classList.toggle("error", !!bad);
  }

  async function onRun(ev) {
    ev.preventDefault();
    const name = $("run-name").value;
    if (!name) return setRunMeta("pick a fetcher first", true);
    let params;
    try {
      params = JSON.parse($("run-params").value.trim() || "{}");
    } catch (err) {
      return setRunMeta(`invalid JSON in params: ${err.message}`, true);
    }
    if (params === null || typeof params !== "object" || Array.isArray(params)) {
      return setRunMeta("params must be a JSON object, e.g. {}", true);
    }
    const seq = ++fetchers.runSeq;
    const btn = $("run-button");
    btn.disabled = true;
    setRunMeta(`running ${name}…`, false);
    try {
      const r = await api("POST", `api/v1/fetchers/${encodeURIComponent(name)}/run?text=true`, params);
      if (seq !== fetchers.runSeq) return;
      const d = r.data || {};
      if (!r.ok || d.error) {
        const e = typeof d.error === "object" && d.error ? d.error : { code: `http_${r.status}`, message: String(d.error ?? "") };
        const parts = [e.code || "error", e.message, r.ok ? null : `HTTP ${r.status}`];
        if (typeof d.elapsed_ms === "number") parts.push(fmtMs(d.elapsed_ms));
        setRunMeta(parts.filter(Boolean).join(" · "), true);
        $("run-json").textContent = pretty(r.data);
        $("run-text").textContent = typeof d.text === "string" ? d.text : "";
      } else {
        setRunMeta(`ok · ${fmtMs(d.elapsed_ms)} · ${d.cached ? "from cache" : "fresh"}`, false);
        $("run-json").textContent = pretty(d.result);
        $("run-text").textContent = typeof d.text === "string" ? d.text : "";
      }
    } catch (err) {
      if (seq === fetchers.runSeq && !isQuiet(err)) setRunMeta(`request failed: ${errText(err)}`, true);
    } finally {
      if (seq === fetchers.runSeq) btn.disabled = false;
    }
  }

  // ---------- prompts view ----------

  const prompts = { loaded: false, seq: 0, ctrl: null, timer: null, pickSeq: 0 };

  function showPrompts() {
    if (!prompts.loaded) loadPromptList();
  }

  async function loadPromptList() {
    const list = await guard("prompts", () => getJSON("api/v1/prompts"));
    if (!Array.isArray(list)) return;
    prompts.loaded = true;
    const sel = $("prompt-pick");
    const keep = sel.value;
    const opts = list.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)))
      .map((p) => el("option", { value: p.name, text: p.enabled === false ? `${p.name} (disabled)` : p.name }));
    sel.replaceChildren(el("option", { value: "", text: "— new template —" }), ...opts);
    sel.value = list.some((p) => p.name === keep) ? keep : "";
  }

  async function onPick() {
    const name = $("prompt-pick").value;
    const seq = ++prompts.pickSeq;
    $("prompt-desc").textContent = "";
    if (!name) {
      $("prompt-editor").value = "";
      return renderPreview();
    }
    const p = await guard("prompt", () => getJSON(`api/v1/prompts/${encodeURIComponent(name)}`));
    if (!p || seq !== prompts.pickSeq) return;
    $("prompt-editor").value = p.body ?? "";
    $("prompt-desc").textContent = [p.description, p.enabled === false ? "disabled" : null,
      p.updated_at ? `updated ${p.updated_at}` : null].filter(Boolean).join(" · ");
    renderPreview();
  }

  function schedulePreview() {
    clearTimeout(prompts.timer);
    prompts.timer = setTimeout(renderPreview, PREVIEW_DEBOUNCE_MS);
  }

  function setPreviewText(text) {
    const chars = [...text].length;
    $("preview-text").textContent = text;
    $("preview-chars").textContent = plural(chars, "character");
    $("preview-tokens").textContent = `≈ ${fmtInt(Math.ceil(chars / 4))} tokens`;
  }

  function setPreviewError(msg) {
    const e = $("preview-error");
    e.textContent = msg || "";
    e.hidden = !msg;
    $("preview-text").classList.toggle("stale", !!msg);
  }

  async function renderPreview() {
    clearTimeout(prompts.timer);
    if (prompts.ctrl) prompts.ctrl.abort();
    prompts.ctrl = null;
    const seq = ++prompts.seq;
    const body = $("prompt-editor").value;
    if (!body.trim()) {
      setPreviewText("");
      setPreviewError(null);
      $("preview-fetchers").replaceChildren();
      $("preview-elapsed").textContent = "";
      return;
    }
    const ctrl = new AbortController();
    prompts.ctrl = ctrl;
    $("preview-elapsed").textContent = "rendering…";
    try {
      const r = await api("POST", "api/v1/render", { body, variables: {} }, ctrl.signal);
      if (seq !== prompts.seq) return; // a newer keystroke won
      if (!r.ok || r.data?.error) {
        setPreviewError(new HttpError(r.status, r.data).message);
        $("preview-elapsed").textContent = "";
        return;
      }
      const d = r.data || {};
      setPreviewError(null);
      setPreviewText(typeof d.text === "string" ? d.text : "");
      $("preview-elapsed").textContent = typeof d.elapsed_ms === "number" ? `rendered in ${fmtMs(d.elapsed_ms)}` : "";
      renderPreviewFetchers(d.fetchers || [], d.errors || []);
    } catch (err) {
      if (seq !== prompts.seq || isQuiet(err)) return;
      setPreviewError(`request failed: ${errText(err)}`);
      $("preview-elapsed").textContent = "";
    } finally {
      if (prompts.ctrl === ctrl) prompts.ctrl = null;
    }
  }

  function renderPreviewFetchers(used, errors) {
    const items = used.map((f) => {
      const params = f.params && Object.keys(f.params).length ? ` ${compact(f.params)}` : "";
      return el("li", { class: f.ok === false ? "error" : null },
        el("strong", { text: f.name ?? "?" }),
        `${params} · ${fmtMs(f.elapsed_ms)} · ${f.cached ? "cached" : "fresh"} · ${f.ok === false ? "failed" : "ok"}`);
    });
    for (const e of errors) {
      items.push(el("li", { class: "error" }, el("strong", { text: e.name ?? "?" }), `: ${e.message ?? ""}`));
    }
    if (!items.length) items.push(el("li", { class: "muted", text: "No fetchers called" }));
    $("preview-fetchers").replaceChildren(...items);
  }

  // ---------- states view ----------

  // map: entity_id -> state object; null until first loaded.
  // pending: events that arrived while a full reload was in flight.
  const states = { map: null, loading: null, pending: null, rows: new Map(), dirty: true, raf: 0, domainKey: "", flash: new Set() };

  function showStates() {
    if (!states.map && !states.loading) loadStates();
    else if (states.dirty) renderStates();
  }

  function loadStates() {
    if (states.loading) return states.loading;
    states.pending = [];
    states.loading = guard("states", () => getJSON("api/v1/states")).then((list) => {
      const pending = states.pending;
      states.loading = null;
      states.pending = null;
      if (!Array.isArray(list)) return;
      const map = new Map();
      for (const s of list) if (s && s.entity_id) map.set(s.entity_id, s);
      states.map = map;
      for (const fn of pending) fn(); // replay, so no live change is lost
      states.dirty = true;
      if (app.view === "states") renderStates();
    });
    return states.loading;
  }

  function onStateEvent(d) {
    if (!d || !d.entity_id) return;
    if (states.pending) states.pending.push(() => applyState(d));
    else applyState(d);
  }

  function onRemovedEvent(id) {
    if (!id) return;
    const fn = () => {
      if (!states.map || !states.map.delete(id)) return;
      scheduleStates();
    };
    if (states.pending) states.pending.push(fn);
    else fn();
  }

  function applyState(d) {
    if (!states.map) return;
    const isNew = !states.map.has(d.entity_id);
    const obj = d.new && typeof d.new === "object" ? d.new
      : { ...(states.map.get(d.entity_id) || { entity_id: d.entity_id, attributes: {} }),
          state: d.new_state, last_changed: d.last_changed, last_updated: d.last_updated };
    states.map.set(d.entity_id, obj);
    if (app.view !== "states") { states.dirty = true; return; }
    const tr = states.rows.get(d.entity_id);
    const match = matches(obj, filterNow());
    if (!isNew && tr && match) {
      fillRow(tr, obj);
      flash(tr);
    } else if (isNew || (!!tr) !== match) {
      scheduleStates(d.entity_id);
    }
  }

  // Batch structural changes (new/removed entities) into one render per frame.
  function scheduleStates(flashId) {
    states.dirty = true;
    if (flashId) states.flash.add(flashId);
    if (app.view !== "states" || states.raf) return;
    states.raf = requestAnimationFrame(() => { states.raf = 0; renderStates(); });
  }

  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the CSS animation
    tr.classList.add("flash");
  }

  const domainOf = (id) => id.slice(0, id.indexOf("."));

  function filterNow() {
    return { q: $("states-search").value.trim().toLowerCase(), domain: $("states-domain").value };
  }

  function stateText(s) {
    const unit = s.attributes?.unit_of_measurement;
    return unit ? `${s.state} ${unit}` : String(s.state ?? "");
  }

  function matches(s, f) {
    if (f.domain && domainOf(s.entity_id) !== f.domain) return false;
    if (!f.q) return true;
    const name = String(s.attributes?.friendly_name ?? "");
    return s.entity_id.toLowerCase().includes(f.q) || name.toLowerCase().includes(f.q)
      || String(s.state ?? "").toLowerCase().includes(f.q);
  }

  function fillRow(tr, s) {
    const [, name, st, changed] = tr.cells;
    name.textContent = s.attributes?.friendly_name ?? "";
    st.textContent = stateText(s);
    const t = parseTime(s.last_changed);
    tr.dataset.changed = String(t);
    changed.textContent = relTime(t);
    changed.title = isFinite(t) ? new Date(t).toLocaleString() : "";
  }

  function renderDomains() {
    const counts = new Map();
    for (const id of states.map.keys()) {
      const d = domainOf(id);
      counts.set(d, (counts.get(d) || 0) + 1);
    }
    const sorted = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    const key = sorted.map(([d, n]) => `${d}:${n}`).join(",");
    if (key === states.domainKey) return;
    states.domainKey = key;
    const sel = $("states-domain");
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "", text: "All domains" }),
      ...sorted.map(([d, n]) => el("option", { value: d, text: `${d} (${fmtInt(n)})` })));
    sel.value = counts.has(keep) ? keep : "";
  }

  function renderStates() {
    if (!states.map) return;
    states.dirty = false;
    renderDomains();
    const f = filterNow();
    const all = [...states.map.values()].filter((s) => matches(s, f))
      .sort((a, b) => (a.entity_id < b.entity_id ? -1 : a.entity_id > b.entity_id ? 1 : 0));
    const shown = all.slice(0, MAX_ROWS);
    states.rows = new Map();
    const toFlash = states.flash;
    states.flash = new Set();
    const rows = shown.map((s) => {
      const tr = el("tr", { dataset: { entityId: s.entity_id } },
        el("td", { class: "mono", text: s.entity_id }), el("td"), el("td", { class: "state" }), el("td", { class: "age" }));
      fillRow(tr, s);
      if (toFlash.has(s.entity_id)) tr.classList.add("flash");
      states.rows.set(s.entity_id, tr);
      return tr;
    });
    $("states-table").tBodies[0].replaceChildren(...rows);
    $("states-count").textContent = `${fmtInt(all.length)} of ${fmtInt(states.map.size)} entities`;
    const more = $("states-more");
    more.hidden = all.length <= MAX_ROWS;
    more.textContent = `… and ${fmtInt(all.length - MAX_ROWS)} more; narrow the search`;
  }

  function refreshAges() {
    if (app.view !== "states") return;
    for (const tr of states.rows.values()) {
      tr.cells[3].textContent = relTime(Number(tr.dataset.changed));
    }
  }

  function resetData() {
    fetchers.loaded = false;
    prompts.loaded = false;
    states.map = null;
    states.rows = new Map();
    states.domainKey = "";
    $("states-table").tBodies[0].replaceChildren();
    $("fetchers-table").tBodies[0].replaceChildren();
    $("run-name").replaceChildren();
    app.problems.clear();
    setProblem("", null);
  }

  // ---------- wiring ----------

  function init() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", onLogout);
    $("run-form").addEventListener("submit", onRun);
    $("run-name").addEventListener("change", (e) => pickFetcher(e.target.value, false));
    $("prompt-pick").addEventListener("change", onPick);
    $("prompt-editor").addEventListener("input", schedulePreview);
    let searchTimer = 0;
    $("states-search").addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(renderStates, 120);
    });
    $("states-domain").addEventListener("change", renderStates);
    $("states-table").addEventListener("animationend", (e) => e.target.closest("tr")?.classList.remove("flash"));
    window.addEventListener("hashchange", () => { if (app.authed) route(); });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && app.view === "status" && app.authed) { stopStatus(); startStatus(); }
    });
    setInterval(refreshAges, AGE_EVERY_MS);
    checkSession();
  }

  init();
})();
