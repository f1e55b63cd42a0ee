//! The schema's limits, without a server (introspection needs no context).

use super::{schema, sdl};

/// graphql-js's `getIntrospectionQuery()`, as GraphiQL and most clients
/// send it (shared with the e2e tests).
pub(super) const INTROSPECTION: &str = include_str!("introspection.graphql");

#[tokio::test]
async fn a_full_introspection_query_fits_the_limits() {
    let r = schema().execute(INTROSPECTION).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let data = serde_json::to_value(&r.data).unwrap_or_default();
    assert_eq!(data["__schema"]["queryType"]["name"], "AdminQuery");
}

#[tokio::test]
async fn deeper_than_the_limit_is_refused_before_running() {
    let mut q = String::from("{ __schema { types { fields { type { name ");
    let opened = 5 + 20;
    for _ in 0..20 {
        q.push_str("ofType { name ");
    }
    q.push_str(&"}".repeat(opened));
    let r = schema().execute(q.as_str()).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.message.contains("nested too deep")),
        "{:?}",
        r.errors
    );
}

#[test]
fn the_sdl_has_every_category() {
    let sdl = sdl();
    for t in [
        "type AdminQuery",
        "type AdminMutation",
        "type AccountAdminQuery",
        "type SessionAdminMutation",
        "type StanzaAdminMutation",
        "type RosterAdminQuery",
        "type OfflineAdminQuery",
        "type StatAdminQuery",
        "type ServerAdminQuery",
        "c2s: [String!]!",
    ] {
        assert!(sdl.contains(t), "{t} missing from\n{sdl}");
    }
}

/// The parser bounds its own recursion: text nested far deeper than any
/// query (selections, lists, objects) is refused, not a stack overflow of
/// the worker.
#[tokio::test]
async fn very_deep_text_is_refused() {
    let n = 100_000;
    for q in [
        format!("{}{}", "{a".repeat(n), "}".repeat(n)),
        format!("{{ a(x: {}{}) }}", "[".repeat(n), "]".repeat(n)),
        format!("{{ a(x: {}1{}) }}", "{b:".repeat(n), "}".repeat(n)),
    ] {
        let r = schema().execute(q.as_str()).await;
        assert!(!r.errors.is_empty(), "{}", &q[..20]);
    }
}

/// docs/admin-api.md carries the schema; it must be the one served.
#[test]
fn the_documented_schema_is_the_served_one() {
    let doc = include_str!("../../../../docs/admin-api.md");
    let start = doc
        .find("### Schema")
        .and_then(|i| {
            doc[i..]
                .find("```graphql\n")
                .map(|j| i + j + "```graphql\n".len())
        })
        .expect("a ```graphql block under ### Schema in docs/admin-api.md");
    let end = doc[start..]
        .find("\n```")
        .map(|j| start + j)
        .expect("the end of the schema block");
    assert_eq!(
        doc[start..end].trim_end(),
        sdl().trim_end(),
        "docs/admin-api.md's schema differs from `osprey api schema`: paste its output into the block"
    );
}
