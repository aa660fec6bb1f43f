//! `docs/gateway.md`'s table of refusal reasons is generated from [`Reason`]: this test fails
//! when the two differ. `SEKISHO_BLESS_DOCS=1 cargo test -p sekisho-protocol --test
//! reasons_doc` rewrites the table.

use sekisho_protocol::Reason;

const BEGIN: &str = "<!-- reasons:begin (generated from sekisho_protocol::Reason) -->\n";
const END: &str = "<!-- reasons:end -->";

fn table() -> String {
    let mut t = String::from(
        "| code | status | what the person is told (English; Japanese on the page first) |\n|---|---|---|\n",
    );
    for r in Reason::ALL {
        t.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.code(),
            r.status().as_u16(),
            r.en().replace('|', "\\|")
        ));
    }
    t
}

#[test]
fn the_reason_table_in_the_docs_is_the_enum() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/gateway.md");
    let doc = std::fs::read_to_string(&path).expect("docs/gateway.md");
    let start = doc.find(BEGIN).expect("the begin marker") + BEGIN.len();
    let end = doc[start..].find(END).expect("the end marker") + start;
    let want = table();
    if doc[start..end] != want {
        if std::env::var_os("SEKISHO_BLESS_DOCS").is_some() {
            let new = format!("{}{}{}", &doc[..start], want, &doc[end..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        panic!(
            "docs/gateway.md's reason table differs from sekisho_protocol::Reason; \
             run SEKISHO_BLESS_DOCS=1 cargo test -p sekisho-protocol --test reasons_doc"
        );
    }
}
