//! `sekisho patient import`: patients from CSV or JSON. Imports are all-or-nothing: every row
//! is checked, bad rows are reported with their line, and one bad row means nothing is written.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};

use super::{check, parse_local_ids, record};
use crate::cli::admin_audit::{Operator, change};
use crate::cli::data_dir::open;
use sekisho_store::patients::{self, NewPatient};

/// Reads rows from CSV or JSON (by content), with the line each row came from.
fn read_rows(text: &str) -> Result<Vec<(usize, Result<NewPatient, String>)>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(trimmed).context("not a JSON array of objects")?;
        return Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let get = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let row = (|| {
                    Ok(NewPatient {
                        patient_id: get("patient_id").ok_or("patient_id is missing")?,
                        name: get("name").ok_or("name is missing")?,
                        kana: get("kana"),
                        birth_date: get("birth_date"),
                        sex: get("sex"),
                        consent: get("consent"),
                        local_ids: parse_local_ids(&get("local_ids").unwrap_or_default())?,
                    })
                })();
                (i + 1, row)
            })
            .collect());
    }
    let mut lines = csv_records(text).into_iter();
    let Some((_, header)) = lines.next() else {
        bail!("the file is empty")
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(id_c), Some(name_c)) = (col("patient_id"), col("name")) else {
        bail!("the CSV header needs at least patient_id and name");
    };
    let opt = |rec: &Vec<String>, c: Option<usize>| {
        c.and_then(|c| rec.get(c))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Ok(lines
        .map(|(line, rec)| {
            let row = (|| {
                Ok(NewPatient {
                    patient_id: rec
                        .get(id_c)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                    name: rec
                        .get(name_c)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                    kana: opt(&rec, col("kana")),
                    birth_date: opt(&rec, col("birth_date")),
                    sex: opt(&rec, col("sex")),
                    consent: opt(&rec, col("consent")),
                    local_ids: parse_local_ids(&opt(&rec, col("local_ids")).unwrap_or_default())?,
                })
            })();
            (line, row)
        })
        .collect())
}

/// RFC 4180 records with the line each starts on (quoted fields may hold commas, quotes and
/// newlines).
fn csv_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let (mut rec, mut field, mut quoted, mut line, mut start) =
        (Vec::new(), String::new(), false, 1usize, 1usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c)
            }
            (false, '"') => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                rec.push(std::mem::take(&mut field));
                if rec.iter().any(|f| !f.is_empty()) {
                    out.push((start, std::mem::take(&mut rec)));
                }
                rec.clear();
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push((start, rec));
    }
    out
}

pub(super) async fn run(
    data_dir: &std::path::Path,
    file: &std::path::Path,
    dry_run: bool,
    op: &Operator,
) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = read_rows(&text)?;
    let (dd, cfg, store) = open(data_dir).await?;
    let existing: HashSet<String> = patients::list(&store)
        .await?
        .into_iter()
        .map(|p| p.patient_id)
        .collect();
    let mut seen = HashSet::new();
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for (line, row) in rows {
        let verdict = row.and_then(|p| {
            check(&p)?;
            if existing.contains(&p.patient_id) {
                return Err(format!("patient {} is already registered", p.patient_id));
            }
            if !seen.insert(p.patient_id.clone()) {
                return Err(format!(
                    "patient {} appears twice in the file",
                    p.patient_id
                ));
            }
            Ok(p)
        });
        match verdict {
            Ok(p) => good.push(p),
            Err(e) => bad.push(format!("  {}:{line}: {e}", file.display())),
        }
    }
    if !bad.is_empty() {
        eprintln!("{} bad row(s); nothing was imported:", bad.len());
        for b in &bad {
            eprintln!("{b}");
        }
        return Ok(1);
    }
    if dry_run {
        println!(
            "{} row(s) checked; all can be imported (dry run: nothing written).",
            good.len()
        );
        return Ok(0);
    }
    let rec = record(
        "patients_imported",
        "-",
        Some(format!(
            "{} patients from {}",
            good.len(),
            crate::headers::escape_text(&file.display().to_string(), 200)
        )),
    );
    change(&dd, &cfg, &store, op, rec, async {
        let by = op.actor()?;
        let mut tx = store.begin_write().await?;
        for p in &good {
            patients::insert(&mut tx, p, &by)
                .await
                .with_context(|| format!("cannot import patient {}", p.patient_id))?;
        }
        tx.commit().await?;
        Ok(())
    })
    .await?;
    println!("{} patient(s) imported.", good.len());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_follow_rfc4180() {
        let r = csv_records("a,b\n\"x, \"\"y\"\"\",2\n\n\"multi\nline\",3\r\n");
        assert_eq!(r[0], (1, vec!["a".to_string(), "b".into()]));
        assert_eq!(r[1], (2, vec!["x, \"y\"".to_string(), "2".into()]));
        assert_eq!(r[2], (4, vec!["multi\nline".to_string(), "3".into()]));
    }
}
