//! The files of `nanopeer tune` — `tune.csv`, `tune.json` and `tune.svg` — rewritten after
//! every measured point, so that an interrupted sweep (Ctrl-C) keeps every point it finished;
//! and the plot, drawn from the CSV text alone, so that `tune --plot-from FILE.csv` redraws a
//! saved sweep with the same code.
//!
//! Nothing here knows what was measured: a sweep's CSV has `shards` and `batch_max` columns,
//! and the plotted [`Figure`] is another column named by the caller (`handshakes_per_sec` for
//! the handshake sweep).

use std::path::{Path, PathBuf};

use super::error::BenchError;
use super::svg::{Chart, Series, XScale, line_chart};

/// The CSV column that holds a point's shard count.
pub const SHARDS_COLUMN: &str = "shards";
/// The CSV column that holds a point's verify batch size.
pub const BATCH_COLUMN: &str = "batch_max";

/// The measured figure a sweep plots: a CSV column and how the axis names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// The CSV column, e.g. `handshakes_per_sec`.
    pub column: String,
    /// The y axis label, e.g. `handshakes/s`.
    pub unit: String,
}

impl Figure {
    /// The figure held in `column`; a `_per_sec` suffix reads `/s` on the axis
    /// (`handshakes_per_sec` → `handshakes/s`), any other name is shown as it is.
    pub fn of_column(column: &str) -> Figure {
        let unit = match column.strip_suffix("_per_sec") {
            Some(what) if !what.is_empty() => format!("{}/s", what.replace('_', " ")),
            _ => column.to_string(),
        };
        Figure {
            column: column.to_string(),
            unit,
        }
    }
}

/// A CSV file as `tune` writes it: a header line of column names, then rows of plain fields
/// (no quoting: every field is a number, a word or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The column names.
    pub header: Vec<String>,
    /// The rows, each with one field per column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses CSV text; blank lines are skipped. Errors name the line: no header, a header
    /// without `shards` / `batch_max`, or a row whose field count differs from the header's.
    pub fn parse(text: &str) -> Result<Table, String> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, head) = lines.next().ok_or("no header line")?;
        let header: Vec<String> = head.split(',').map(|f| f.trim().to_string()).collect();
        for needed in [SHARDS_COLUMN, BATCH_COLUMN] {
            if !header.iter().any(|c| c == needed) {
                return Err(format!("the header has no {needed:?} column"));
            }
        }
        let mut rows = Vec::new();
        for (i, line) in lines {
            let row: Vec<String> = line.split(',').map(|f| f.trim().to_string()).collect();
            if row.len() != header.len() {
                return Err(format!(
                    "line {}: {} fields, the header has {}",
                    i + 1,
                    row.len(),
                    header.len()
                ));
            }
            rows.push(row);
        }
        Ok(Table { header, rows })
    }

    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|c| c == name)
    }
}

/// The plot of `figure` over a sweep. With one shard count the x axis is the batch size (in
/// powers of two) and there is one line; otherwise the x axis is the shard count, one line per
/// batch size. `note` (e.g. the crypto ceiling) ends the title. Rows whose figure is empty
/// (not measured) are left out; a field that is not a number is an error naming its line.
pub fn plot(table: &Table, figure: &Figure, note: Option<&str>) -> Result<String, String> {
    let col = |name: &str| {
        table
            .column(name)
            .ok_or_else(|| format!("no {name:?} column"))
    };
    let (si, bi, fi) = (
        col(SHARDS_COLUMN)?,
        col(BATCH_COLUMN)?,
        col(&figure.column)?,
    );
    // (shards, batch_max, figure) of every measured row
    let mut points: Vec<(usize, usize, f64)> = Vec::with_capacity(table.rows.len());
    for (i, row) in table.rows.iter().enumerate() {
        let line = i + 2;
        let int = |c: usize| {
            row[c]
                .parse::<usize>()
                .map_err(|_| format!("line {line}: {:?} is not a whole number", row[c]))
        };
        if row[fi].is_empty() {
            continue;
        }
        let value: f64 = row[fi]
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("line {line}: {:?} is not a number", row[fi]))?;
        points.push((int(si)?, int(bi)?, value));
    }
    let mut shards: Vec<usize> = points.iter().map(|p| p.0).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut batches: Vec<usize> = points.iter().map(|p| p.1).collect();
    batches.sort_unstable();
    batches.dedup();
    let by_batch = shards.len() == 1;
    let (series, x_label, x_scale, over) = if by_batch {
        let n = shards[0];
        let series = vec![Series {
            name: format!("{n} shard{}", if n == 1 { "" } else { "s" }),
            points: points.iter().map(|p| (p.1 as f64, p.2)).collect(),
        }];
        (
            series,
            "batch_max (verify batch size)",
            XScale::Log2,
            format!("by batch size ({n} shard{})", if n == 1 { "" } else { "s" }),
        )
    } else {
        let series = batches
            .iter()
            .map(|&b| Series {
                name: format!("batch_max {b}"),
                points: points
                    .iter()
                    .filter(|p| p.1 == b)
                    .map(|p| (p.0 as f64, p.2))
                    .collect(),
            })
            .collect();
        (series, "shards", XScale::Linear, "by shards".to_string())
    };
    let mut title = format!("nanopeer tune: {} {over}", figure.unit);
    if let Some(n) = note {
        title.push_str("; ");
        title.push_str(n);
    }
    Ok(line_chart(
        &Chart {
            title: &title,
            x_label,
            y_label: &figure.unit,
            x_scale,
        },
        &series,
    ))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so
/// that a reader (or an interruption) sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), BenchError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            BenchError::File {
                what: "cannot write",
                path: path.to_path_buf(),
                source,
            }
        })
}

/// The outputs of one sweep in one directory: after [`TuneFiles::create`] and after every
/// [`TuneFiles::record`] they hold exactly the points measured so far.
#[derive(Debug)]
pub struct TuneFiles {
    dir: PathBuf,
    header: String,
    figure: Figure,
    note: Option<String>,
    rows: Vec<String>,
}

impl TuneFiles {
    /// The CSV file's name in the output directory.
    pub const CSV: &'static str = "tune.csv";
    /// The JSON file's name.
    pub const JSON: &'static str = "tune.json";
    /// The plot's name.
    pub const SVG: &'static str = "tune.svg";

    /// Creates `dir` if needed and writes the three files with no point yet (the CSV header,
    /// `summary`, empty axes), replacing those of an earlier sweep. `header` is the CSV header
    /// line (it must name `shards`, `batch_max` and the figure's column); `note` ends the plot's
    /// title.
    pub fn create(
        dir: &Path,
        header: &str,
        figure: Figure,
        note: Option<String>,
        summary: &serde_json::Value,
    ) -> Result<TuneFiles, BenchError> {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::File {
            what: "cannot create",
            path: dir.to_path_buf(),
            source,
        })?;
        let files = TuneFiles {
            dir: dir.to_path_buf(),
            header: header.to_string(),
            figure,
            note,
            rows: Vec::new(),
        };
        files.write(summary)?;
        Ok(files)
    }

    /// Adds one measured point (its CSV line, without the newline) and rewrites the three
    /// files, the JSON from `summary` (the sweep so far).
    pub fn record(&mut self, row: String, summary: &serde_json::Value) -> Result<(), BenchError> {
        self.rows.push(row);
        self.write(summary)
    }

    /// Points recorded so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no point was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The path of `name` (one of [`Self::CSV`], [`Self::JSON`], [`Self::SVG`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CSV text of the points so far.
    pub fn csv(&self) -> String {
        let mut out = String::with_capacity(self.header.len() + 1 + self.rows.len() * 96);
        out.push_str(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(r);
            out.push('\n');
        }
        out
    }

    fn write(&self, summary: &serde_json::Value) -> Result<(), BenchError> {
        let csv = self.csv();
        // The plot is drawn from the CSV text, exactly as `--plot-from` draws a saved file.
        let svg = Table::parse(&csv)
            .and_then(|t| plot(&t, &self.figure, self.note.as_deref()))
            .map_err(|reason| BenchError::Input {
                path: self.path(Self::CSV),
                reason,
            })?;
        let json = serde_json::to_string_pretty(summary).unwrap_or_default() + "\n";
        write_atomic(&self.path(Self::CSV), &csv)?;
        write_atomic(&self.path(Self::JSON), &json)?;
        write_atomic(&self.path(Self::SVG), &svg)
    }
}

/// `tune --plot-from FILE.csv`: draws the plot of `figure` (default: the CSV's third column,
/// the measured rate in tune's CSVs) from a saved sweep and writes it beside the CSV, with the
/// extension `.svg`. Returns the path written.
pub fn plot_csv_file(csv: &Path, figure: Option<&str>) -> Result<PathBuf, BenchError> {
    let text = std::fs::read_to_string(csv).map_err(|source| BenchError::File {
        what: "cannot read",
        path: csv.to_path_buf(),
        source,
    })?;
    let input = |reason: String| BenchError::Input {
        path: csv.to_path_buf(),
        reason,
    };
    let table = Table::parse(&text).map_err(input)?;
    let column = match figure {
        Some(c) => c.to_string(),
        None => table
            .header
            .get(2)
            .cloned()
            .ok_or_else(|| input("no third column to plot; name one with --figure".into()))?,
    };
    let svg = plot(&table, &Figure::of_column(&column), None).map_err(input)?;
    let out = csv.with_extension("svg");
    write_atomic(&out, &svg)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "shards,batch_max,handshakes_per_sec,failures\n\
                       1,1,12942.5,0\n1,16,12921.4,0\n1,64,13458.8,0\n1,256,13426.2,0\n";

    fn fig() -> Figure {
        Figure::of_column("handshakes_per_sec")
    }

    #[test]
    fn figure_unit_comes_from_the_column_name() {
        assert_eq!(fig().unit, "handshakes/s");
        assert_eq!(
            Figure::of_column("valid_votes_per_sec").unit,
            "valid votes/s"
        );
        assert_eq!(Figure::of_column("efficiency").unit, "efficiency");
        assert_eq!(Figure::of_column("_per_sec").unit, "_per_sec");
    }

    #[test]
    fn one_shard_count_plots_against_batch_size() {
        let t = Table::parse(CSV).unwrap();
        assert_eq!(t.rows.len(), 4);
        let svg = plot(&t, &fig(), Some("ceiling 31351/s")).unwrap();
        assert!(
            svg.contains(">nanopeer tune: handshakes/s by batch size (1 shard); ceiling 31351/s<"),
            "{svg}"
        );
        assert!(svg.contains(">batch_max (verify batch size)<"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        // four markers plus one in the legend, ticks at the batch sizes
        assert_eq!(svg.matches("<circle").count(), 5);
        for b in ["1", "16", "64", "256"] {
            assert!(svg.contains(&format!(">{b}</text>")), "{b}: {svg}");
        }
        assert!(svg.contains("<title>1 shard, batch_max (verify batch size) 64: 13.5k</title>"));
    }

    #[test]
    fn several_shard_counts_plot_against_shards_per_batch() {
        let csv = "shards,batch_max,handshakes_per_sec\n1,1,8000\n2,1,9000\n1,64,12000\n2,64,\n";
        let svg = plot(&Table::parse(csv).unwrap(), &fig(), None).unwrap();
        assert!(
            svg.contains(">nanopeer tune: handshakes/s by shards<"),
            "{svg}"
        );
        assert!(svg.contains(">shards<"));
        assert!(svg.contains(">batch_max 1<") && svg.contains(">batch_max 64<"));
        // batch 64 has one measured point (the other is empty): a marker, no line
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3 + 2);
    }

    #[test]
    fn bad_csv_is_an_error_naming_the_line() {
        assert_eq!(Table::parse(""), Err("no header line".into()));
        let e = Table::parse("a,b,c\n1,2,3\n").unwrap_err();
        assert!(e.contains("\"shards\""), "{e}");
        let e = Table::parse("shards,batch_max,x\n1,2,3\n1,2\n").unwrap_err();
        assert_eq!(e, "line 3: 2 fields, the header has 3");
        let t = Table::parse("shards,batch_max,x\n1,2,3\n1,two,3\n").unwrap();
        let e = plot(&t, &Figure::of_column("x"), None).unwrap_err();
        assert_eq!(e, "line 3: \"two\" is not a whole number");
        let t = Table::parse("shards,batch_max,x\n1,2,NaN\n").unwrap();
        let e = plot(&t, &Figure::of_column("x"), None).unwrap_err();
        assert_eq!(e, "line 2: \"NaN\" is not a number");
        let e = plot(&t, &Figure::of_column("votes_per_sec"), None).unwrap_err();
        assert_eq!(e, "no \"votes_per_sec\" column");
    }

    #[test]
    fn files_hold_every_recorded_point_after_each_record() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let header = "shards,batch_max,handshakes_per_sec,failures";
        let summary = |n: usize| serde_json::json!({ "points": vec![n; n], "complete": false });
        let mut files =
            TuneFiles::create(&out, header, fig(), Some("note".into()), &summary(0)).unwrap();
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
        assert_eq!(read(TuneFiles::CSV), format!("{header}\n"));
        assert!(read(TuneFiles::SVG).contains("</svg>"));
        let rows: Vec<&str> = CSV.lines().skip(1).collect();
        for (i, row) in rows.iter().enumerate() {
            files.record((*row).to_string(), &summary(i + 1)).unwrap();
            assert_eq!(files.len(), i + 1);
            // what is on disk now is the header and every point so far, nothing else
            let csv = read(TuneFiles::CSV);
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines[0], header);
            assert_eq!(&lines[1..], &rows[..=i]);
            let json: serde_json::Value = serde_json::from_str(&read(TuneFiles::JSON)).unwrap();
            assert_eq!(json["points"].as_array().unwrap().len(), i + 1);
            // one marker per point plus the legend's
            assert_eq!(read(TuneFiles::SVG).matches("<circle").count(), i + 2);
        }
        // no temporary file is left behind
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tune.csv", "tune.json", "tune.svg"]);
        // --plot-from draws the same plot from the saved CSV (without the note)
        let csv = out.join(TuneFiles::CSV);
        let svg = plot_csv_file(&csv, None).unwrap();
        assert_eq!(svg, out.join("tune.svg"));
        let want = plot(&Table::parse(CSV).unwrap(), &fig(), None).unwrap();
        assert_eq!(std::fs::read_to_string(&svg).unwrap(), want);
        // a missing file and a bad figure column are errors, not panics
        assert!(matches!(
            plot_csv_file(&out.join("missing.csv"), None),
            Err(BenchError::File { .. })
        ));
        let e = plot_csv_file(&csv, Some("votes_per_sec")).unwrap_err();
        assert!(e.to_string().contains("no \"votes_per_sec\" column"), "{e}");
    }
}
