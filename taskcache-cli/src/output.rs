//! Tables with aligned columns, status lines in cargo's style, and the small words
//! they use (sizes, ages, serializer names).

use chrono::{DateTime, Utc};
use std::io::{self, Write};
use std::time::SystemTime;

/// A table: a header row and rows, printed with each column as wide as its widest cell
/// (the last one unpadded), two spaces between columns.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub(crate) fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let last = widths.len().saturating_sub(1);
        let mut line = String::new();
        let mut write_row = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
            line.clear();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i < last {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())
        };
        write_row(&mut self.header.iter().copied())?;
        for row in &self.rows {
            write_row(&mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// A status line as cargo prints them: the verb right-aligned in 12 columns.
pub(crate) fn status(err: &mut dyn Write, quiet: bool, verb: &str, message: &str) {
    if !quiet {
        let _ = writeln!(err, "{verb:>12} {message}");
    }
}

/// The name of a serializer id, as a file's header stores it: 1 bincode, 2 json, the
/// high bit a zstd wrapper around another, 0x7f a blob (a cache record).
pub(crate) fn serializer_name(id: u8) -> String {
    match id {
        1 => "bincode".into(),
        2 => "json".into(),
        0x7f => "blob".into(),
        id if id & 0x80 != 0 => format!("zstd+{}", serializer_name(id & 0x7f)),
        id => format!("unknown ({id})"),
    }
}

/// A size in bytes, as `1.5 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in its largest whole unit: `42s`, `5m`, `3h`, `12d`.
pub(crate) fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// How long ago `time` was, from `now`.
pub(crate) fn age(time: Option<SystemTime>, now: DateTime<Utc>) -> String {
    match time {
        Some(t) => short_duration((now - DateTime::<Utc>::from(t)).num_seconds()),
        None => "-".into(),
    }
}

/// When a record expires, from `now`: `in 55m`, `expired 3d ago`, `never`.
pub(crate) fn expiry(expiration: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match expiration {
        None => "never".into(),
        Some(at) if at > now => format!("in {}", short_duration((at - now).num_seconds())),
        Some(at) => format!("expired {} ago", short_duration((now - at).num_seconds())),
    }
}

/// `time` as RFC 3339, for `--json`.
pub(crate) fn rfc3339(time: Option<SystemTime>) -> Option<String> {
    time.map(|t| DateTime::<Utc>::from(t).to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(serializer_name(1), "bincode");
        assert_eq!(serializer_name(0x81), "zstd+bincode");
        assert_eq!(serializer_name(0x82), "zstd+json");
        assert_eq!(serializer_name(9), "unknown (9)");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(10 << 30), "10.0 GiB");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(3600), "1h");
        assert_eq!(short_duration(3 * 86_400), "3d");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(vec!["A", "LONGER", "C"]);
        t.push(vec!["xyz".into(), "1".into(), "end".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A    LONGER  C\nxyz  1       end\n"
        );
    }
}
