//! A patient's access history in the console.

use super::rig::*;

/// A patient's access history: a printable report and CSV (with a byte-order mark for
/// spreadsheets, formula cells defused), each on record before it is produced; a physician
/// cannot have one.
#[test]
fn a_patients_access_history_in_the_console() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = g.cert("t3");
        for path in [
            "/api/patients/P-0001/summary",
            "/api/patients/P-0002/summary",
            "/api/patients/P-0001/records",
        ] {
            g.curl(path, &["--cert", &c, "--key", &k]);
        }
        let clerk = sign_in(&g, "t2", "secretary001", "secretariat", dir.path());
        let (s, page) = get(&g, "t2", &clerk, "/.sekisho/console/patient?patient=P-0001");
        assert_eq!(s, 200, "{db:?}: {page}");
        assert!(page.contains("診療情報の利用状況のご報告"), "{page}");
        assert!(page.contains("<td id=\"count\">2("), "{db:?}: {page}");
        assert!(!page.contains("P-0002"), "{page}");

        let (s, text) = fetch(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/patient?patient=P-0001&format=csv",
        );
        assert_eq!(s, 200);
        assert_eq!(header(&text, "content-type"), "text/csv; charset=utf-8");
        assert_eq!(
            header(&text, "content-disposition"),
            "attachment; filename=\"access-history-P-0001.csv\""
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.starts_with("\u{feff}time,decision,reason,"), "{body}");
        assert_eq!(body.split("\r\n").filter(|l| !l.is_empty()).count(), 3);

        let asked: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "access_history")
            .collect();
        assert_eq!(asked.len(), 2, "{db:?}");
        assert_eq!(asked[0]["user"], "secretary001");
        assert_eq!(asked[0]["terminal"], "t2");
        assert!(asked[1]["detail"].as_str().unwrap().contains("as CSV"));

        // A malformed patient id is refused and nothing is recorded as produced.
        let (s, _) = get(&g, "t2", &clerk, "/.sekisho/console/patient?patient=../x");
        assert_eq!(s, 400);
        let after = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "access_history")
            .count();
        assert_eq!(after, 2);
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}
