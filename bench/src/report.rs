//! A run's block: one line saying when, on what commit, under what load and
//! in which mode it ran, then the table (figure, value, same-run reference,
//! ratio, target, verdict). `scripts/bench.sh --write` splices it into
//! BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Command;

/// Whether a figure met its target.
pub enum Met {
    Yes,
    No,
    /// Not measured, with the reason.
    Skipped(String),
    /// A figure shown for context, without a target.
    Info,
}

/// One line of the table.
pub struct Row {
    /// What was measured.
    pub figure: String,
    /// Our value, with its unit.
    pub value: String,
    /// The same-run reference, with its unit, or `–`.
    pub reference: String,
    /// Ours against the reference, `×` meaning better when above 1.
    pub ratio: String,
    /// The target.
    pub target: String,
    /// Verdict.
    pub met: Met,
}

impl Row {
    pub fn new(figure: &str, value: String, target: &str, met: bool) -> Self {
        Self {
            figure: figure.into(),
            value,
            reference: "–".into(),
            ratio: "–".into(),
            target: target.into(),
            met: if met { Met::Yes } else { Met::No },
        }
    }

    pub fn with_ref(mut self, reference: String, ratio: f64) -> Self {
        self.reference = reference;
        self.ratio = if ratio.is_finite() {
            format!("{ratio:.2}×")
        } else {
            "–".into()
        };
        self
    }

    pub fn skipped(figure: &str, target: &str, why: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            value: "not measured".into(),
            reference: "–".into(),
            ratio: "–".into(),
            target: target.into(),
            met: Met::Skipped(why.into()),
        }
    }

    pub fn info(mut self) -> Self {
        self.met = Met::Info;
        self
    }
}

/// A markdown table, readable as plain text too.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| # | figure | value | same-run reference | ratio | target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let met = match &r.met {
            Met::Yes => "met".to_string(),
            Met::No => "**NOT MET**".to_string(),
            Met::Skipped(why) => format!("skipped: {why}"),
            Met::Info => "(context)".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            r.figure,
            r.value,
            r.reference,
            r.ratio,
            r.target,
            met
        );
    }
    out
}

/// When, where and how a run ran: the first line of its block.
pub struct Stamp {
    /// When the run started.
    pub started: chrono::DateTime<chrono::Utc>,
    /// `git rev-parse --short HEAD`, `+dirty` when the tree has changes.
    pub commit: String,
    /// The 1-minute load average at the start of the run.
    pub load_start: Option<f64>,
    /// The number of CPUs this process may run on.
    pub cpus: usize,
    /// `full` or `quick`, then `--only …` and `--no-ha` when given.
    pub mode: String,
}

impl Stamp {
    /// Takes the stamp at the start of a run.
    pub fn now(mode: String) -> Self {
        Self {
            started: chrono::Utc::now(),
            commit: commit(),
            load_start: load1(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mode,
        }
    }
}

/// The commit checked out, `+dirty` when `git status --porcelain` lists
/// anything, `unknown` without git or outside a repository.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        _ => "unknown".into(),
    }
}

/// The 1-minute load average from `/proc/loadavg`.
pub fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A run's block: the stamp's line, the load at its end, the verdicts'
/// count, then the table.
pub fn block(stamp: &Stamp, load_end: Option<f64>, rows: &[Row]) -> String {
    let load = |l: Option<f64>| l.map_or_else(|| "?".to_string(), |l| format!("{l:.2}"));
    let met = rows.iter().filter(|r| matches!(r.met, Met::Yes)).count();
    let judged = rows
        .iter()
        .filter(|r| matches!(r.met, Met::Yes | Met::No))
        .count();
    let skipped = match rows
        .iter()
        .filter(|r| matches!(r.met, Met::Skipped(_)))
        .count()
    {
        0 => String::new(),
        n => format!(", {n} not measured"),
    };
    format!(
        "**{}**, commit `{}`, load {} at start and {} at end (1-minute average, {} CPUs), mode: {}; {met} of {judged} targets met{skipped}.\n\n{}",
        stamp.started.format("%Y-%m-%d %H:%M UTC"),
        stamp.commit,
        load(stamp.load_start),
        load(load_end),
        stamp.cpus,
        stamp.mode,
        table(rows)
    )
}
