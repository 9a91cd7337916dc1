//! The results table: figure, value, reference, ratio, target, met.

use std::fmt::Write as _;

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
        "| # | figure | value | reference (same run) | ratio | target | met |"
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
