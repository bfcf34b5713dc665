//! The outputs of a run: `result.json`, the SVG chart of throughput and p99 against concurrency, and
//! the summary table of every figure against its target.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// The three service methods, as named in `result.json`.
pub const METHODS: [&str; 3] = ["non_personalized_create", "personalized_create", "verify"];

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct TargetRow {
    /// What is measured.
    pub figure: &'static str,
    /// The measured value, if any.
    pub value: Option<f64>,
    /// Its unit.
    pub unit: &'static str,
    /// The target, in words.
    pub target: &'static str,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_f64()
}

/// Every target checked against `result`: the targets of round 2 (issue "Faster with less"), which
/// tighten those of issue 7, plus the cost per request.
pub fn targets(result: &Value) -> Vec<TargetRow> {
    let at_most = |value: Option<f64>, limit: f64| value.map(|v| v <= limit);
    let at_least = |value: Option<f64>, limit: f64| value.map(|v| v >= limit);
    let svc = |method: &str, field: &str| num(result, &["service", method, "32", field]);
    let verify = svc("verify", "per_s");
    let v_ratio = num(result, &["ratios", "verify"]);
    let np_ratio = num(result, &["ratios", "non_personalized_create"]);
    let personalized = svc("personalized_create", "per_s");
    let v_p99 = svc("verify", "p99_ms");
    let np_p99 = svc("non_personalized_create", "p99_ms");
    let v_cpu = svc("verify", "server_cpu_us_per_request");
    let v_ctx = svc("verify", "ctx_switches_per_request");
    let loss = num(result, &["growth", "verify_loss_100k"]);
    let disk = num(result, &["growth", "disk_bytes_per_activation"]);
    let rss = num(result, &["server_peak_rss_mib"]);
    let row = |figure, value, unit, target, met| TargetRow {
        figure,
        value,
        unit,
        target,
        met,
    };
    vec![
        row(
            "verify (c=32)",
            verify,
            "/s",
            ">= 6000 /s",
            at_least(verify, 6000.0),
        ),
        row(
            "verify / DEK decrypt (c=32)",
            v_ratio,
            "",
            ">= 0.60",
            at_least(v_ratio, 0.60),
        ),
        row(
            "non-personalized create / token sign (c=32)",
            np_ratio,
            "",
            ">= 0.60",
            at_least(np_ratio, 0.60),
        ),
        row(
            "personalized create (c=32)",
            personalized,
            "/s",
            ">= 3400 /s",
            at_least(personalized, 3400.0),
        ),
        row(
            "verify p99 (c=32)",
            v_p99,
            "ms",
            "<= 10 ms",
            at_most(v_p99, 10.0),
        ),
        row(
            "non-personalized create p99 (c=32)",
            np_p99,
            "ms",
            "<= 10 ms",
            at_most(np_p99, 10.0),
        ),
        row(
            "server CPU per verify (c=32)",
            v_cpu,
            "us",
            "<= 150 us",
            at_most(v_cpu, 150.0),
        ),
        row(
            "server context switches per verify (c=32)",
            v_ctx,
            "",
            "(reported)",
            None,
        ),
        row(
            "verify loss, 100k vs 1k activations",
            loss,
            "",
            "<= 0.05",
            at_most(loss, 0.05),
        ),
        row(
            "disk per activation",
            disk,
            "B",
            "<= 1024 B",
            at_most(disk, 1024.0),
        ),
        row(
            "server peak RSS",
            rss,
            "MiB",
            "<= 64 MiB",
            at_most(rss, 64.0),
        ),
    ]
}

/// The summary tables (ceilings, service figures, targets) as Markdown.
pub fn table(result: &Value) -> String {
    let mut out = String::new();
    let c = &result["ceilings"];
    let _ = writeln!(out, "{}\n", store_line(&result["settings"]));
    let _ = writeln!(
        out,
        "| Ceiling (no HTTP, same token, pool {}) | 1 caller /s | 32 callers /s |",
        c["pool_size"]
    );
    let _ = writeln!(out, "|---|---:|---:|");
    for (name, key) in [
        ("token-key ECDSA sign", "token_sign_per_s"),
        (
            "unwrap + sign (wrapped activation key)",
            "unwrap_sign_per_s",
        ),
        ("DEK decrypt (AES-GCM factor-key blob)", "kek_decrypt_per_s"),
        (
            "store durable verification commit",
            "store_durable_writes_per_s",
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            fmt(num(c, &[&format!("{key}_1")])),
            fmt(num(c, &[key]))
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "| Service over HTTP | concurrency | /s | p50 ms | p99 ms | p99.9 ms | errors | ratio to ceiling | server CPU us/req | ctx switches/req | load-gen CPU us/req | database CPU us/req | HSM object searches/req | key handle cache hit rate |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for method in METHODS {
        for level in ["1", "32", "128"] {
            let s = &result["service"][method][level];
            if s.is_null() {
                continue;
            }
            let ratio = if level == "32" {
                fmt(num(result, &["ratios", method]))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {method} | {level} | {} | {} | {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} |",
                fmt(num(s, &["per_s"])),
                fmt(num(s, &["p50_ms"])),
                fmt(num(s, &["p99_ms"])),
                fmt(num(s, &["p999_ms"])),
                s["errors"],
                fmt(num(s, &["server_cpu_us_per_request"])),
                fmt(num(s, &["ctx_switches_per_request"])),
                fmt(num(s, &["loadgen_cpu_us_per_request"])),
                fmt(num(s, &["database_cpu_us_per_request"])),
                fmt(num(s, &["hsm_object_searches_per_request"])),
                fmt(num(s, &["hsm_key_handle_cache_hit_rate"])),
            );
        }
    }
    let w = &result["service_window"]["verify_skip_0_19"]["32"];
    if !w.is_null() {
        let _ = writeln!(
            out,
            "| verify, codes 0-19 steps ahead | 32 | {} | {} | {} | {} | {} | | | | | | | |",
            fmt(num(w, &["per_s"])),
            fmt(num(w, &["p50_ms"])),
            fmt(num(w, &["p99_ms"])),
            fmt(num(w, &["p999_ms"])),
            w["errors"]
        );
    }
    if let Some(reason) = result["http_not_run"].as_str() {
        let _ = writeln!(out, "\nHTTP part NOT RUN: {reason}");
    }
    out.push('\n');
    if result["settings"]["store"]
        .as_str()
        .is_some_and(|store| store != "sled")
    {
        let _ = writeln!(
            out,
            "The targets are the sled store's; on PostgreSQL the aim is verify at >= 70 % of sled's figure, measured back to back.\n"
        );
    }
    let _ = writeln!(out, "| Target | value | target | met |");
    let _ = writeln!(out, "|---|---:|---|---|");
    for row in targets(result) {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {met} |",
            row.figure,
            fmt(row.value),
            if row.unit.is_empty() || row.value.is_none() {
                String::new()
            } else {
                format!(" {}", row.unit)
            },
            row.target
        );
    }
    out
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(0.0) => "0".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Four panels against concurrency, one line per method: throughput (requests/s), p99 latency (ms),
/// server CPU per request (µs) and server context switches per request; under them a line per method
/// with the HSM object searches per request and the key-handle cache's hit rate at c = 32.
pub fn svg(result: &Value) -> String {
    const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];
    const LEVELS: [&str; 3] = ["1", "32", "128"];
    let (w, h) = (960.0, 800.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (panel, (field, title)) in [
        ("per_s", "throughput (requests/s)"),
        ("p99_ms", "p99 latency (ms)"),
        ("server_cpu_us_per_request", "server CPU per request (µs)"),
        (
            "ctx_switches_per_request",
            "server context switches per request",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let x0 = 70.0 + (panel % 2) as f64 * 470.0;
        let y0 = 50.0 + (panel / 2) as f64 * 340.0;
        let (pw, ph) = (380.0, 270.0);
        let max = METHODS
            .iter()
            .flat_map(|m| {
                LEVELS
                    .iter()
                    .filter_map(move |l| num(result, &["service", m, l, field]))
            })
            .fold(0.0_f64, f64::max);
        let (step, ticks) = axis(max);
        let max = step * f64::from(ticks);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{title}</text>"#,
            x0 + pw / 2.0,
            y0 - 20.0
        );
        let _ = writeln!(
            out,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for t in 0..=ticks {
            let v = step * f64::from(t);
            let y = y0 + ph - ph * f64::from(t) / f64::from(ticks);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/>"##,
                x0 + pw
            );
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                y + 4.0,
                tick_label(v)
            );
        }
        // Concurrency on a log2 axis: 1 → 0, 32 → 5, 128 → 7.
        let xs: Vec<f64> = [0.0, 5.0, 7.0]
            .iter()
            .map(|l| x0 + 20.0 + (pw - 40.0) * l / 7.0)
            .collect();
        for (x, l) in xs.iter().zip(LEVELS) {
            let _ = writeln!(
                out,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{l}</text>"#,
                y0 + ph + 18.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">concurrency (log scale)</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 36.0
        );
        for (m, method) in METHODS.iter().enumerate() {
            let points: Vec<(f64, f64)> = LEVELS
                .iter()
                .zip(&xs)
                .filter_map(|(l, x)| {
                    num(result, &["service", method, l, field])
                        .map(|v| (*x, y0 + ph - ph * v / max))
                })
                .collect();
            let line: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                line.join(" "),
                COLORS[m]
            );
            for (x, y) in points {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#,
                    COLORS[m]
                );
            }
        }
    }
    for (m, method) in METHODS.iter().enumerate() {
        let at32 = |field| fmt(num(result, &["service", method, "32", field]));
        let _ = writeln!(
            out,
            r#"<text x="70" y="{}" fill="{}">{}, c = 32: HSM object searches/request {}, key handle cache hit rate {}</text>"#,
            h - 80.0 + m as f64 * 18.0,
            COLORS[m],
            method.replace('_', " "),
            at32("hsm_object_searches_per_request"),
            at32("hsm_key_handle_cache_hit_rate"),
        );
    }
    for (m, method) in METHODS.iter().enumerate() {
        let x = 70.0 + m as f64 * 260.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="4" fill="{}"/>"#,
            h - 22.0,
            COLORS[m]
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            h - 16.0,
            method.replace('_', " ")
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A tick value without trailing zeros (`75`, `2.5`, `0.6`).
fn tick_label(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A round tick step (1, 2, 2.5 or 5 times a power of ten) and the number of ticks (1..=5) whose
/// last tick is at or above `max`.
fn axis(max: f64) -> (f64, u32) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 1);
    }
    let raw = max / 5.0;
    let power = 10_f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let ticks = (max / step).ceil().clamp(1.0, 5.0) as u32;
    (step, ticks)
}

/// The fields issue 7 requires in `result.json`, as paths.
pub fn required_fields() -> Vec<Vec<String>> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    let path = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    for c in [
        "token_sign_per_s",
        "unwrap_sign_per_s",
        "kek_decrypt_per_s",
        "store_durable_writes_per_s",
    ] {
        paths.push(path(&["ceilings", c]));
    }
    for method in METHODS {
        for level in ["1", "32", "128"] {
            for field in [
                "per_s",
                "p50_ms",
                "p99_ms",
                "p999_ms",
                "server_cpu_us_per_request",
                "ctx_switches_per_request",
            ] {
                paths.push(path(&["service", method, level, field]));
            }
        }
        paths.push(path(&["ratios", method]));
    }
    for g in [
        "verify_per_s_1k",
        "verify_per_s_100k",
        "disk_bytes_per_activation",
    ] {
        paths.push(path(&["growth", g]));
    }
    paths.push(path(&["server_peak_rss_mib"]));
    paths
}

/// The required fields (see [`required_fields`]) that `result` lacks or holds as something other
/// than a number, each as `a.b.c`.
pub fn missing_fields(result: &Value) -> Vec<String> {
    required_fields()
        .into_iter()
        .filter(|p| {
            let parts: Vec<&str> = p.iter().map(String::as_str).collect();
            num(result, &parts).is_none_or(|v| !v.is_finite())
        })
        .map(|p| p.join("."))
        .collect()
}

/// Which store and how many instances a run measured (older results: one sled instance).
pub fn store_line(settings: &Value) -> String {
    let store = settings["store"].as_str().unwrap_or("sled");
    let instances = settings["instances"].as_u64().unwrap_or(1);
    let noun = if instances == 1 {
        "instance"
    } else {
        "instances"
    };
    format!("Store: {store}, {instances} server {noun}.")
}

/// `numerator / denominator` when both are known and the denominator is positive.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Value {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => json!(n / d),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_store_and_the_instances() {
        assert_eq!(store_line(&Value::Null), "Store: sled, 1 server instance.");
        assert_eq!(
            store_line(&json!({"store": "postgres", "instances": 2})),
            "Store: postgres, 2 server instances."
        );
        let postgres = table(&json!({"settings": {"store": "postgres", "instances": 1}}));
        assert!(postgres.starts_with("Store: postgres, 1 server instance."));
        assert!(postgres.contains(">= 70 % of sled's figure"));
        assert!(!table(&Value::Null).contains("70 %"));
    }

    fn sample() -> Value {
        let point = |per_s: f64, p99: f64| json!({"per_s": per_s, "p50_ms": 1.0, "p99_ms": p99, "p999_ms": p99 * 2.0, "errors": 0, "server_cpu_us_per_request": 140.0, "ctx_switches_per_request": 9.5, "hsm_object_searches_per_request": 0.0, "hsm_key_handle_cache_hit_rate": 1.0});
        json!({
            "ceilings": {"pool_size": 2, "token_sign_per_s": 10000.0, "token_sign_per_s_1": 8000.0},
            "service": {
                "non_personalized_create": {"1": point(1000.0, 2.0), "32": point(5000.0, 30.0), "128": point(5100.0, 90.0)},
                "personalized_create": {"32": point(800.0, 60.0)},
                "verify": {"32": point(2000.0, 10.0)}
            },
            "ratios": {"non_personalized_create": 0.5, "personalized_create": 0.4, "verify": null},
            "growth": {"verify_loss_100k": 0.1, "disk_bytes_per_activation": 5000.0},
            "server_peak_rss_mib": 100.0
        })
    }

    #[test]
    fn targets_are_judged_and_unknowns_are_not_measured() {
        let rows = targets(&sample());
        let met = |figure: &str| {
            rows.iter()
                .find(|r| r.figure.starts_with(figure))
                .map(|r| r.met)
        };
        assert_eq!(met("non-personalized create /"), Some(Some(false)));
        assert_eq!(met("non-personalized create p99"), Some(Some(false)));
        assert_eq!(met("personalized create"), Some(Some(false)));
        assert_eq!(met("verify (c=32)"), Some(Some(false)));
        assert_eq!(met("verify /"), Some(None));
        assert_eq!(met("verify p99"), Some(Some(true)));
        assert_eq!(met("server CPU per verify"), Some(Some(true)));
        assert_eq!(met("server context switches"), Some(None));
        assert_eq!(met("verify loss"), Some(Some(false)));
        assert_eq!(met("disk"), Some(Some(false)));
        assert_eq!(met("server peak"), Some(Some(false)));
    }

    #[test]
    fn table_and_chart_show_the_numbers() {
        let t = table(&sample());
        assert!(
            t.contains(
                "| non_personalized_create | 32 | 5000 | 1.00 | 30.00 | 60.00 | 0 | 0.500 | 140 | 9.50 | – | – | 0 | 1.00 |"
            ),
            "{t}"
        );
        let mut on_postgres = sample();
        on_postgres["service"]["verify"]["32"]["database_cpu_us_per_request"] = json!(210.0);
        let t = table(&on_postgres);
        assert!(
            t.contains("| verify | 32 | 2000 | 1.00 | 10.00 | 20.00 | 0 | – | 140 | 9.50 | – | 210 | 0 | 1.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| non-personalized create p99 (c=32) | 30.00 ms | <= 10 ms | **NO** |"),
            "{t}"
        );
        let s = svg(&sample());
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 12);
        assert!(s.contains("server CPU per request"), "{s}");
        assert!(
            s.contains(
                "verify, c = 32: HSM object searches/request 0, key handle cache hit rate 1.00"
            ),
            "{s}"
        );
    }

    #[test]
    fn the_required_shape_is_checked_field_by_field() {
        let mut full = json!({});
        for p in required_fields() {
            let mut v = &mut full;
            for part in &p {
                v = &mut v[part.as_str()];
            }
            *v = json!(1.5);
        }
        assert_eq!(missing_fields(&full), Vec::<String>::new());
        assert_eq!(required_fields().len(), 4 + 3 * (3 * 6 + 1) + 3 + 1);
        full["service"]["verify"]["128"]["p999_ms"] = Value::Null;
        full["growth"]["verify_per_s_100k"] = json!(f64::NAN);
        full["ceilings"]
            .as_object_mut()
            .expect("an object")
            .remove("kek_decrypt_per_s");
        assert_eq!(
            missing_fields(&full),
            vec![
                "ceilings.kek_decrypt_per_s",
                "service.verify.128.p999_ms",
                "growth.verify_per_s_100k"
            ]
        );
        assert!(missing_fields(&sample()).contains(&"ratios.verify".to_owned()));
    }

    #[test]
    fn chart_axes_end_on_round_ticks() {
        assert_eq!(axis(4937.0), (1000.0, 5));
        assert_eq!(axis(118.0), (25.0, 5));
        assert_eq!(axis(100.0), (20.0, 5));
        assert_eq!(axis(0.9), (0.2, 5));
        assert_eq!(axis(3.0), (1.0, 3));
        assert_eq!(axis(0.0), (1.0, 1));
        assert_eq!(axis(f64::NAN), (1.0, 1));
        assert_eq!(
            [75.0, 2.5, 0.2 * 3.0, 1000.0, 0.0].map(tick_label),
            ["75", "2.5", "0.6", "1000", "0"]
        );
    }

    #[test]
    fn ratio_needs_both_sides() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), json!(0.25));
        assert_eq!(ratio(None, Some(4.0)), Value::Null);
        assert_eq!(ratio(Some(1.0), Some(0.0)), Value::Null);
    }
}
