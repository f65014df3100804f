//! Structured JSON logs in etcd's shape: one object per line with `level`,
//! `ts`, `caller`, `msg`, then the event's fields, e.g.
//!
//! ```text
//! {"level":"info","ts":"2026-01-02T03:04:05.678901Z","caller":"api/mod.rs:80","msg":"ready to serve client requests"}
//! ```
//!
//! raft-rs logs through `slog`; [`raft_logger`] forwards those records here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Where log lines go.
pub enum Output {
    Stderr,
    Stdout,
    File(Mutex<std::fs::File>),
}

/// Parses etcd's `--log-level` (debug, info, warn, error, panic, fatal).
pub fn parse_level(s: &str) -> Option<Level> {
    match s {
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" => Some(Level::WARN),
        "error" | "dpanic" | "panic" | "fatal" => Some(Level::ERROR),
        _ => None,
    }
}

/// Installs the global logger. `outputs` follows etcd's `--log-outputs`:
/// `default`/`stderr`, `stdout`, or file paths.
pub fn init(level: Level, outputs: &[String]) -> std::io::Result<()> {
    let mut outs = Vec::new();
    for o in outputs {
        outs.push(match o.as_str() {
            "default" | "stderr" => Output::Stderr,
            "stdout" => Output::Stdout,
            path => Output::File(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        });
    }
    if outs.is_empty() {
        outs.push(Output::Stderr);
    }
    let layer = JsonLayer { level, outs };
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second init (e.g. in tests) keeps the first logger.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

struct JsonLayer {
    level: Level,
    outs: Vec<Output>,
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *meta.level() <= self.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"level\":\"");
        line.push_str(level_name(meta.level()));
        line.push_str("\",\"ts\":\"");
        push_timestamp(&mut line, SystemTime::now());
        line.push_str("\",\"caller\":");
        let file = meta.file().unwrap_or("?");
        let file = file.strip_prefix("src/").unwrap_or(file);
        push_json_str(&mut line, &format!("{}:{}", file, meta.line().unwrap_or(0)));
        let mut v = JsonVisitor {
            msg: String::new(),
            fields: String::new(),
        };
        event.record(&mut v);
        line.push_str(",\"msg\":");
        push_json_str(&mut line, &v.msg);
        line.push_str(&v.fields);
        line.push_str("}\n");
        for out in &self.outs {
            let _ = match out {
                Output::Stderr => std::io::stderr().write_all(line.as_bytes()),
                Output::Stdout => std::io::stdout().write_all(line.as_bytes()),
                Output::File(f) => f
                    .lock()
                    .map_or(Ok(()), |mut f| f.write_all(line.as_bytes())),
            };
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "debug",
    }
}

struct JsonVisitor {
    msg: String,
    fields: String,
}

impl JsonVisitor {
    fn key(&mut self, field: &Field) {
        self.fields.push(',');
        push_json_str(&mut self.fields, field.name());
        self.fields.push(':');
    }
}

impl Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.key(field);
            push_json_str(&mut self.fields, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.fields, "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.fields, "{value}");
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.fields, "{value}");
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = format!("{value:?}");
        if field.name() == "message" {
            self.msg.push_str(&s);
        } else {
            self.key(field);
            push_json_str(&mut self.fields, &s);
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC with microseconds, as etcd's zap logger prints.
fn push_timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A slog logger for raft-rs that forwards into the JSON log.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}

struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let mut kv = KvCollector(String::new());
        let _ = slog::KV::serialize(values, record, &mut kv);
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let msg = format!("{}", record.msg());
        let fields = kv.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", raft = %fields, "{msg}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", raft = %fields, "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", raft = %fields, "{msg}"),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::debug!(target: "raft", raft = %fields, "{msg}")
            }
        }
        Ok(())
    }
}

struct KvCollector(String);

impl slog::Serializer for KvCollector {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={val}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_micros() {
        let mut s = String::new();
        push_timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        );
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        let mut s = String::new();
        push_timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn levels_follow_etcd_names() {
        assert_eq!(parse_level("warn"), Some(Level::WARN));
        assert_eq!(parse_level("fatal"), Some(Level::ERROR));
        assert_eq!(parse_level("verbose"), None);
    }
}
