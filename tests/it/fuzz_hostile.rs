//! Grammar-built hostile templates through the real render path: the `demo`
//! binary as its own process, `RENDER_TIMEOUT=1s`, the default memory limits.
//! Templates mix loops up to `range(5000)`, namespaces, nesting by wrapping
//! (thousands deep through a namespace), string and list growth, filters,
//! comparisons, recursive macros and `fetch()` calls; most parse, a few are
//! cut short. One at a time and in batches of 8 at once, so the process-wide
//! totals matter too. Every render answers 200, 422 with a message, or 503
//! `overloaded` for the server's load (every slot taken, or the renders at
//! once holding all of `RENDER_MEMORY_TOTAL`) within the deadline plus slack;
//! the process stays up and its peak RSS grows by less than
//! [`GROWTH_BOUND_MIB`]. A failure prints the template as first found.
//!
//! [`fuzz_templates`](super::fuzz_templates) fuzzes the renderer in-process
//! without limits; this one is what a client can do to the server. A fixed
//! seed and case count keep CI reproducible and bounded.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestError, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::helpers::proc::status_kib;
use crate::helpers::serial;

/// Cases (a single template or a batch); ~a quarter are batches. About 45 s
/// on a 2-core debug build, most of it renders stopped at the deadline.
/// `FUZZ_HOSTILE_CASES` sets another count for a longer run by hand.
const CASES: u32 = 130;
/// Templates sent at once in a batch.
const BATCH: usize = 8;
/// `RENDER_TIMEOUT` (1 s), the wait for room in the render total (250 ms),
/// and the round trip on a 2-core CI machine running other tests beside
/// this one (1.5 s failed once in a whole-suite run; 1.04–1.31 s alone).
const LATENCY_BOUND: Duration = Duration::from_millis(2500);
/// The process-wide render budget (256 MiB by default) plus the server's own.
const GROWTH_BOUND_MIB: u64 = 320;

/// The demo, its own process so `/proc` shows its memory.
struct Demo {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ha-fetchers"))
            .args(["demo", "--bind", "127.0.0.1:0"])
            .env(
                "FETCHERS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/fetchers"),
            )
            .env("RENDER_TIMEOUT", "1s")
            .env_remove("RENDER_MEMORY_LIMIT")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs");
        let base = crate::helpers::proc::demo_address(child.stdout.take().unwrap());
        // A hang shows as a timeout here, not a stuck test.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            child,
            base: base.expect("the demo prints its address"),
            http,
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    async fn render(&self, template: &str) -> Result<(u16, Value, Duration), reqwest::Error> {
        let started = Instant::now();
        let resp = self
            .http
            .post(format!("{}/api/v1/render", self.base))
            .json(&json!({ "body": template }))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body, started.elapsed()))
    }

    async fn healthy(&self) -> bool {
        let resp = self.http.get(format!("{}/api/health", self.base)).send();
        matches!(resp.await, Ok(r) if r.status().is_success())
    }

    fn kib(&self, field: &str) -> u64 {
        status_kib(self.child.id(), field).unwrap_or(0)
    }

    /// Makes the peak RSS start again from the current RSS.
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }
}

/// Names every template may use: undeclared names are refused as unknown
/// fetchers before rendering, so the grammar sticks to these.
const PRELUDE: &str = "{% set ns = namespace(v=[], s='ab', l=[1, 2], n=0) %}\
{% set s = 'ab' %}{% set l = [1, 2, 3] %}{% set d = {'k': 'v'} %}{% set i = 0 %}\
{% macro r(n) %}{% if n > 0 %}[{{ r(n - 1) }}]{% endif %}{% endmacro %}\
{% macro w(x) %}[{{ x }}, {{ x }}]{% endmacro %}";

fn count() -> BoxedStrategy<u32> {
    prop_oneof![4 => 1..20u32, 1 => Just(100), 1 => Just(1000), 1 => Just(5000)].boxed()
}

fn times() -> BoxedStrategy<u32> {
    prop_oneof![
        4 => 2..10u32,
        1 => Just(1000),
        1 => Just(100_000),
        1 => Just(10_000_000)
    ]
    .boxed()
}

/// Depths around the engine's limit of 64 and far past it.
fn depth() -> BoxedStrategy<u32> {
    prop::sample::select(vec![10, 63, 64, 65, 100, 5000, 20000]).boxed()
}

/// What an expression evaluates to, so operators mostly get operands they
/// accept and a render gets as far as the limits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Str,
    List,
    Map,
    Other,
}

type Expr = (Ty, String);

fn as_list((ty, e): &Expr) -> String {
    match ty {
        Ty::List | Ty::Str => format!("({e} | list)"),
        Ty::Map => format!("({e} | items | list)"),
        Ty::Other => format!("[{e}]"),
    }
}

fn as_str((ty, e): &Expr) -> String {
    match ty {
        Ty::Str => e.clone(),
        _ => format!("({e} | string)"),
    }
}

fn leaf() -> BoxedStrategy<Expr> {
    let fixed = |ty: Ty, es: Vec<&'static str>| {
        prop::sample::select(es).prop_map(move |e| (ty, e.to_string()))
    };
    prop_oneof![
        12 => fixed(Ty::Str, vec!["s", "ns.s", "'ab'", "('a' * 100000)"]),
        3 => prop_oneof![8 => 0..30u32, 1 => depth()].prop_map(|n| (Ty::Str, format!("r({n})"))),
        12 => fixed(Ty::List, vec![
            "l",
            "ns.l",
            "fetch(\"ha_lights_on\").entities",
            "fetch(\"ha_search_pattern\", pattern=\"*\").entities",
            "ha_lights_on.entities",
        ]),
        4 => count().prop_map(|n| (Ty::List, format!("(range({n}) | list)"))),
        8 => fixed(Ty::Map, vec![
            "d",
            "fetch(\"ha_state_summary\")",
            "ha_state_summary",
            "fetch(\"ha_lights_on\")",
            "fetch(\"ha_search_pattern\", pattern=\"*\")",
        ]),
        8 => fixed(Ty::Other, vec!["i", "42", "none", "ns.v"]),
        // A namespace inside a value: refused wherever it is stored.
        1 => fixed(Ty::Other, vec!["ns", "namespace(a=ns)"]),
    ]
    .boxed()
}

/// Expressions: leaves wrapped, filtered, combined and repeated.
fn expr() -> BoxedStrategy<Expr> {
    leaf()
        .prop_recursive(3, 12, 2, |e| {
            let one = |f: fn(&Expr) -> Expr| e.clone().prop_map(move |x| f(&x));
            let typed = prop_oneof![
                one(|x| (Ty::List, format!("[{}]", x.1))),
                one(|x| (Ty::Map, format!("{{'k': {}}}", x.1))),
                one(|x| (Ty::Map, format!("dict(k={})", x.1))),
                one(|x| (Ty::List, format!("({} | batch(1) | list)", as_list(x)))),
                one(|x| (Ty::List, format!("({{'k': {}}} | items | list)", x.1))),
                one(|x| (Ty::Str, format!("({} | tojson)", x.1))),
                one(|x| (Ty::Str, format!("({} | string)", x.1))),
                one(|x| (Ty::Str, format!("({} | pprint)", x.1))),
                one(|x| (Ty::Str, format!("({} | join)", as_list(x)))),
                one(|x| (Ty::List, format!("({} | sort)", as_list(x)))),
                one(|x| (Ty::List, format!("({} | unique | list)", as_list(x)))),
                one(|x| (Ty::List, format!("({} | sort(reverse=true))", as_list(x)))),
                one(|x| (Ty::List, format!("({{'k': {}, 'j': 1}} | dictsort)", x.1))),
                one(|x| (Ty::Other, format!("({} | max)", as_list(x)))),
                one(|x| (Ty::List, format!("expand({})", as_list(x)))),
                one(|x| (Ty::Other, format!("({} | length)", as_list(x)))),
                one(|x| (Ty::Str, format!("({} | replace('a', 'aa'))", as_str(x)))),
                one(|x| (Ty::Str, format!("w({})", x.1))),
                (e.clone(), e.clone()).prop_map(|(a, b)| (Ty::Str, format!("({} ~ {})", a.1, b.1))),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| (Ty::List, format!("({} + {})", as_list(&a), as_list(&b)))),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| (Ty::Other, format!("({} == {})", a.1, b.1))),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| (Ty::Other, format!("({} < {})", as_list(&a), as_list(&b)))),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| (Ty::Other, format!("({} in {})", a.1, as_list(&b)))),
                (e.clone(), times()).prop_map(|(a, n)| match a.0 {
                    Ty::Str | Ty::List => (a.0, format!("({} * {n})", a.1)),
                    _ => (Ty::List, format!("({} * {n})", as_list(&a))),
                }),
                (e.clone(), times()).prop_map(|(a, n)| (Ty::List, format!("([{}] * {n})", a.1))),
            ];
            // Untyped now and then: a type error is a clear error too.
            let untyped =
                (e.clone(), e).prop_map(|(a, b)| (Ty::Other, format!("({} + {})", a.1, b.1)));
            prop_oneof![100 => typed, 1 => untyped]
        })
        .boxed()
}

/// Builds `ns.v` `n` deep in a loop, then prints, serialises or compares it.
fn deep_form() -> BoxedStrategy<String> {
    let wrap = prop_oneof![
        6 => prop::sample::select(vec![
            "[ns.v]",
            "{'k': ns.v}",
            "dict(k=ns.v)",
            "[ns.v] | batch(1) | list",
            "{'k': ns.v} | items | list",
            "[ns.v, ns.v]",
        ]),
        1 => prop::sample::select(vec!["[ns]", "namespace(a=ns.v)"]),
    ];
    let consume = prop::sample::select(vec![
        "{{ ns.v }}",
        "{{ ns.v | tojson }}",
        "{{ ns.v | string }}",
        "{{ ns.v | pprint }}",
        "{{ ns.v == ns.v }}",
        "{{ ns.v | length }}",
        "{{ ns }}",
        "",
    ]);
    (depth(), wrap, consume)
        .prop_map(|(n, w, c)| {
            format!(
                "{{% set ns.v = [] %}}{{% for i in range({n}) %}}{{% set ns.v = {w} %}}{{% endfor %}}{c}"
            )
        })
        .boxed()
}

fn stmt() -> BoxedStrategy<String> {
    let set = (expr(), any::<bool>()).prop_map(|((ty, e), local)| {
        let target = match (ty, local) {
            (Ty::Str, true) => "s",
            (Ty::Str, false) => "ns.s",
            (Ty::List, true) => "l",
            (Ty::List, false) => "ns.l",
            (Ty::Map, true) => "d",
            _ => "ns.v",
        };
        format!("{{% set {target} = {e} %}}")
    });
    let leaf = prop_oneof![
        12 => expr().prop_map(|(_, e)| format!("{{{{ {e} }}}}")),
        9 => set,
        6 => deep_form(),
        2 => Just("{% set ns.s = ns.s ~ ns.s %}".to_string()),
        2 => Just("{% set ns.l = ns.l + ns.l %}".to_string()),
        2 => times().prop_map(|n| format!("{{% set ns.l = [ns.l] * {n} %}}")),
        2 => times().prop_map(|n| format!("{{% set ns.s = ns.s * {n} %}}")),
        1 => prop::sample::select(vec![
            "{% set ns.v = ns %}",
            "{% set inner = namespace(a=ns) %}{{ inner }}",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 16, 3, |body| {
        let block = prop::collection::vec(body, 1..4).prop_map(|b| b.concat());
        prop_oneof![
            3 => (count(), block.clone())
                .prop_map(|(n, b)| format!("{{% for i in range({n}) %}}{b}{{% endfor %}}")),
            1 => (expr(), block.clone()).prop_map(|(e, b)| {
                format!("{{% for x in {} %}}{{{{ x }}}}{b}{{% endfor %}}", as_list(&e))
            }),
            1 => (expr(), block.clone(), block.clone()).prop_map(|(e, a, b)| {
                format!("{{% if {} %}}{a}{{% else %}}{b}{{% endif %}}", e.1)
            }),
            1 => (block, expr()).prop_map(|(b, e)| {
                format!("{{% macro mk(a) %}}{b}{{{{ a }}}}{{% endmacro %}}{{{{ mk({}) }}}}", e.1)
            }),
        ]
    })
    .boxed()
}

/// A template: the prelude and a few statements, now and then cut short.
fn template() -> BoxedStrategy<String> {
    let whole =
        prop::collection::vec(stmt(), 1..4).prop_map(|s| format!("{PRELUDE}{}", s.concat()));
    prop_oneof![
        11 => whole.clone(),
        1 => (whole, any::<prop::sample::Index>()).prop_map(|(t, cut)| {
            let mut at = PRELUDE.len() + cut.index(t.len() - PRELUDE.len());
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t[..at].to_string()
        }),
    ]
    .boxed()
}

/// What the run saw.
#[derive(Default)]
struct Tally {
    renders: usize,
    by_status: BTreeMap<u16, usize>,
    by_error: BTreeMap<&'static str, usize>,
    max_latency: Duration,
    restarts: usize,
    /// The first failure, before any shrinking: template and what happened.
    first_failure: Option<String>,
}

fn kind(message: &str) -> &'static str {
    [
        ("memory limit", "memory limit"),
        ("time limit", "time limit"),
        ("out of fuel", "fuel"),
        ("nested more than", "too deep"),
        ("cannot hold another namespace", "namespace in namespace"),
        ("syntax error", "syntax"),
        ("recursion", "recursion"),
        ("bytes of output", "output cap"),
    ]
    .iter()
    .find(|(needle, _)| message.contains(needle))
    .map_or("other", |(_, k)| k)
}

/// Sends the batch at once; `Err` names the first template answered badly.
async fn run_batch(demo: &Demo, batch: &[String], tally: &RefCell<Tally>) -> Result<(), String> {
    let answers = futures::future::join_all(batch.iter().map(|t| demo.render(t))).await;
    let mut failure = None;
    for (template, answer) in batch.iter().zip(answers) {
        let mut tally = tally.borrow_mut();
        tally.renders += 1;
        let bad = match answer {
            Err(e) => Some(format!("no answer (crash or hang?): {e}")),
            Ok((status, body, took)) => {
                *tally.by_status.entry(status).or_default() += 1;
                tally.max_latency = tally.max_latency.max(took);
                let message = body["error"]["message"].as_str().unwrap_or_default();
                if status == 422 {
                    *tally.by_error.entry(kind(message)).or_default() += 1;
                }
                let clear = match status {
                    200 => body["text"].is_string(),
                    422 => !message.is_empty(),
                    // Shed, or stopped because the renders at once hold all of
                    // RENDER_MEMORY_TOTAL: the server's load, not the template.
                    503 => body["error"]["code"] == "overloaded",
                    _ => false,
                };
                if !clear {
                    Some(format!("{status} {body}"))
                } else if took > LATENCY_BOUND {
                    Some(format!("{status} after {took:?} ({message})"))
                } else {
                    None
                }
            }
        };
        if let (Some(what), None) = (bad, &failure) {
            failure = Some(format!("{what}\ntemplate: {template}"));
        }
    }
    if failure.is_none() && !demo.healthy().await {
        failure = Some(format!(
            "/api/health failed after the batch\nbatch: {batch:#?}"
        ));
    }
    match failure {
        Some(f) => {
            tally
                .borrow_mut()
                .first_failure
                .get_or_insert_with(|| f.clone());
            Err(f)
        }
        None => Ok(()),
    }
}

#[test]
fn hostile_templates_through_the_real_render_path() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _alone = rt.block_on(serial::alone());
    let demo = RefCell::new(Demo::start());
    let tally = RefCell::new(Tally::default());
    let before_kib = {
        let d = demo.borrow();
        d.reset_peak();
        d.kib("VmRSS:")
    };
    let cases_n: u32 = std::env::var("FUZZ_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let config = ProptestConfig {
        cases: cases_n,
        failure_persistence: None,
        // Shrinking re-renders; bounded so a failing run still ends.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    };
    // CI's seed is fixed; `FUZZ_HOSTILE_SEED` (a number) explores another
    // corner by hand.
    let rng = match std::env::var("FUZZ_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(n) => {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&n.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let cases = prop_oneof![
        3 => template().prop_map(|t| vec![t]),
        1 => prop::collection::vec(template(), BATCH),
    ];
    let started = Instant::now();
    let result = runner.run(&cases, |batch| {
        // After a crash, a fresh process, so shrinking still means something.
        let exited = demo.borrow_mut().exited();
        if let Some(status) = exited {
            eprintln!("the demo exited ({status}); restarting it");
            tally.borrow_mut().restarts += 1;
            *demo.borrow_mut() = Demo::start();
        }
        let d = demo.borrow();
        rt.block_on(run_batch(&d, &batch, &tally))
            .map_err(TestCaseError::fail)
    });
    let took = started.elapsed();
    let d = demo.borrow();
    let peak_kib = d.kib("VmHWM:");
    let grew_mib = peak_kib.saturating_sub(before_kib) / 1024;
    let t = tally.borrow();
    eprintln!(
        "fuzz_hostile: {cases_n} cases, {} renders in {took:?}; by status {:?}; 422s by cause {:?}; \
         max latency {:?}; peak RSS +{grew_mib} MiB (RSS before {} MiB, peak {} MiB); restarts {}",
        t.renders,
        t.by_status,
        t.by_error,
        t.max_latency,
        before_kib / 1024,
        peak_kib / 1024,
        t.restarts,
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, minimal)) => panic!(
            "first failure:\n{}\n\nshrunk to: {why}\nbatch: {minimal:#?}",
            t.first_failure.as_deref().unwrap_or("?")
        ),
        Err(e) => panic!("{e}"),
    }
    assert!(
        grew_mib < GROWTH_BOUND_MIB,
        "peak RSS grew {grew_mib} MiB over the run"
    );
}
