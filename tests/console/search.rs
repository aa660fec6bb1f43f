//! The audit search and the statistics.

use super::rig::*;

/// The audit search: filters, 50 a page newest first with a link to older ones, each record
/// checked against its leaf hash and the latest signed checkpoint (an edited record shows as
/// not matching), and every search on record with what was asked.
#[test]
fn the_audit_search_pages_and_checks_each_record() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        // 55 refused requests about P-0009 and two about P-0001, nobody signed in on t3.
        let (c, k) = g.cert("t3");
        for i in 0..55 {
            g.curl(
                &format!("/api/patients/P-0009/summary?n={i}"),
                &["--cert", &c, "--key", &k],
            );
        }
        for path in [
            "/api/patients/P-0001/summary",
            "/api/patients/P-0001/records",
        ] {
            g.curl(path, &["--cert", &c, "--key", &k]);
        }
        let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());

        let (s, page) = get(
            &g,
            "t2",
            &officer,
            "/.sekisho/console/audit?patient=P-0009&all=1",
        );
        assert_eq!(s, 200, "{db:?}: {page}");
        let rows = page.matches("✓ 整合 / consistent").count();
        assert_eq!(rows, 50, "{db:?}: the first page");
        assert!(page.contains("id=\"older\""), "{page}");
        let older = page
            .split("id=\"older\" href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let (s, page2) = get(&g, "t2", &officer, &older);
        assert_eq!(s, 200, "{page2}");
        assert_eq!(page2.matches("✓ 整合 / consistent").count(), 5, "{db:?}");
        assert!(!page2.contains("id=\"older\""));

        // By facility, terminal, decision and reason together.
        let reason = g
            .audit_records()
            .into_iter()
            .find(|r| r["patient"] == "P-0001")
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, page) = get(
            &g,
            "t2",
            &officer,
            &format!(
                "/.sekisho/console/audit?facility=f1&terminal=t3&decision=deny&reason={reason}&patient=P-0001"
            ),
        );
        assert_eq!(page.matches("✓ 整合").count(), 2, "{db:?}: {page}");

        // Statistics: 57 refused requests from f1 about two patients, nobody signed in.
        let (s, stats) = get(&g, "t2", &officer, "/.sekisho/console/stats?days=1");
        assert_eq!(s, 200, "{stats}");
        assert!(
            stats.contains("<tr><td>f1</td><td>0</td><td>57</td><td>2</td></tr>"),
            "{db:?}: {stats}"
        );
        assert!(
            stats.contains("<td>0</td><td>57</td><td>2</td></tr></table>"),
            "{stats}"
        );
        // A bad field is said, and nothing is searched.
        let (s, page) = get(&g, "t2", &officer, "/.sekisho/console/audit?event=nonsense");
        assert_eq!(s, 200);
        assert!(page.contains("unknown event"), "{page}");

        // Every search is on record, with what was asked.
        let searches: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "audit_search")
            .collect();
        assert_eq!(searches.len(), 3, "{db:?}: {searches:#?}");
        assert!(
            g.audit_records()
                .iter()
                .any(|r| r["action"] == "statistics" && r["user"] == "officer0001")
        );
        assert_eq!(searches[0]["user"], "officer0001");
        assert!(
            searches[0]["detail"]
                .as_str()
                .unwrap()
                .contains("patient=P-0009")
        );

        // A record edited in the database no longer matches its leaf: the search says so.
        let idx = &g.sql_rows(
            "SELECT idx FROM audit_records WHERE patient = 'P-0001' ORDER BY idx LIMIT 1",
        )[0][0];
        g.sql(&format!(
            "UPDATE audit_records SET record = REPLACE(record, '\"deny\"', '\"permit\"') WHERE idx = {idx}"
        ));
        let (_, page) = get(&g, "t2", &officer, "/.sekisho/console/audit?patient=P-0001");
        assert_eq!(
            page.matches("✗ 記録が一致しません").count(),
            1,
            "{db:?}: {page}"
        );
        assert_eq!(page.matches("✓ 整合").count(), 1, "{db:?}");
    }
}
