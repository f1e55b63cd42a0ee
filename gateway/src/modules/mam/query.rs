//! The `urn:xmpp:mam:2` IQs: the query form (get), a query (set) and the
//! preferences (get and set of `<prefs/>`).
//!
//! A query is answered with one `<message><result><forwarded/></result>`
//! per archived message, oldest first, then the IQ result with `<fin/>`:
//! `complete='true'` when the page reaches the end of the matching
//! messages in the direction paged, and RSM `<first/>`/`<last/>`. RSM
//! `<count/>` is not given (it would cost a scan of the archive) and
//! `<index/>` is refused (`feature-not-implemented`), as XEP-0059 allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{id_at, id_time_us, Mam, NS_MAM, NS_RSM};
use crate::errors::{StanzaCondition, StanzaError};
use crate::hooks::IqHandler;
use crate::jid::Jid;
use crate::modules::carbons::{forwardable, NS_FORWARD};
use crate::modules::offline::NS_DELAY;
use crate::modules::roster::internal;
use crate::modules::{IqRequest, IqResult, Target};
use crate::router;
use crate::storage::ArchiveQuery;
use crate::xml::El;

const NS_DATA: &str = "jabber:x:data";

/// How long a query waits for the writer to write what was queued before
/// it (longer only while storage is failing).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Gets: the query form, or the preferences.
pub struct Get(pub Arc<Mam>);

/// Sets: a query, or new preferences.
pub struct Set(pub Arc<Mam>);

fn own_archive(req: &IqRequest<'_>) -> Result<(), StanzaError> {
    match req.target {
        Target::OwnAccount => Ok(()),
        Target::Server => Err(StanzaError::with_text(
            StanzaCondition::ServiceUnavailable,
            "this server keeps user archives only",
        )),
        Target::OtherAccount(_) => Err(StanzaError::with_text(
            StanzaCondition::Forbidden,
            "an archive is queried by its own account",
        )),
    }
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text)
}

#[async_trait]
impl IqHandler for Get {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        own_archive(req)?;
        match req.payload.tag_name().name() {
            "query" => Ok(Some(form())),
            "prefs" => self.0.prefs.get_iq(req, &self.0.settings).await,
            _ => Err(bad("expected <query/> or <prefs/>")),
        }
    }
}

#[async_trait]
impl IqHandler for Set {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        own_archive(req)?;
        match req.payload.tag_name().name() {
            "query" => query(&self.0, req).await,
            "prefs" => self.0.prefs.set_iq(req).await,
            _ => Err(bad("expected <query/> or <prefs/>")),
        }
    }
}

/// XEP-0313 §5.1.1: the fields a query may use.
fn form() -> El {
    let field = |var: &str, typ: &str| El::new("field").attr("var", var).attr("type", typ);
    El::new("query").xmlns(NS_MAM).child(
        El::new("x")
            .xmlns(NS_DATA)
            .attr("type", "form")
            .child(field("FORM_TYPE", "hidden").child(El::new("value").text(NS_MAM)))
            .child(field("with", "jid-single"))
            .child(field("start", "text-single"))
            .child(field("end", "text-single"))
            .child(field("before-id", "text-single"))
            .child(field("after-id", "text-single")),
    )
}

/// An archive id as sent (`stanza-id`, RSM); one that cannot be ours
/// matches nothing.
fn parse_id(s: &str) -> Result<i64, StanzaError> {
    s.trim().parse().map_err(|_| {
        StanzaError::with_text(
            StanzaCondition::ItemNotFound,
            "no such message in the archive",
        )
    })
}

fn parse_time(s: &str) -> Result<i64, StanzaError> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| bad("start and end are XEP-0082 date-times"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| bad("a date-time out of range"))
}

fn stamp(id: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(id_time_us(id)) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The narrower of two lower (or upper) bounds.
fn tighter(a: Option<i64>, b: i64, lower: bool) -> Option<i64> {
    Some(match a {
        None => b,
        Some(a) if lower => a.max(b),
        Some(a) => a.min(b),
    })
}

/// What a query asks, parsed.
struct Asked {
    q: ArchiveQuery,
    /// RSM bounds to check for existence (item-not-found).
    rsm_ids: Vec<i64>,
    max: u32,
}

fn parse(mam: &Mam, req: &IqRequest<'_>) -> Result<Asked, StanzaError> {
    let me = req.me.jid();
    let mut q = ArchiveQuery {
        host: me.domain().to_string(),
        user: me.local().unwrap_or_default().to_string(),
        ..ArchiveQuery::default()
    };
    let mut rsm_ids = Vec::new();
    let children = || req.payload.children().filter(|c| c.is_element());
    if let Some(x) = children().find(|c| c.has_tag_name((NS_DATA, "x"))) {
        for f in x.children().filter(|c| c.has_tag_name((NS_DATA, "field"))) {
            let var = f.attribute("var").unwrap_or_default();
            let value = f
                .children()
                .find(|c| c.has_tag_name((NS_DATA, "value")))
                .and_then(|v| v.text())
                .unwrap_or_default();
            match var {
                "FORM_TYPE" if value == NS_MAM => {}
                "FORM_TYPE" => return Err(bad("FORM_TYPE must be urn:xmpp:mam:2")),
                "with" => {
                    let jid = Jid::parse(value.trim()).map_err(|_| {
                        StanzaError::with_text(StanzaCondition::JidMalformed, "a bad JID in with")
                    })?;
                    q.with_bare = Some(jid.bare());
                    q.with_resource = jid.resource().map(str::to_string);
                }
                "start" => q.after = tighter(q.after, id_at(parse_time(value)?) - 1, true),
                "end" => {
                    q.before = tighter(q.before, id_at(parse_time(value)?.saturating_add(1)), false)
                }
                "after-id" => q.after = tighter(q.after, parse_id(value)?, true),
                "before-id" => q.before = tighter(q.before, parse_id(value)?, false),
                other => {
                    return Err(bad(&format!("unsupported field {other}")));
                }
            }
        }
    }
    let mut max = mam.settings.default_page_size;
    if let Some(set) = children().find(|c| c.has_tag_name((NS_RSM, "set"))) {
        for c in set.children().filter(|c| c.is_element()) {
            let text = c.text().unwrap_or_default().trim();
            match c.tag_name().name() {
                "max" => {
                    let asked: u32 = text.parse().map_err(|_| bad("max is a number"))?;
                    if asked > mam.settings.max_page_size {
                        req.ctx.instr.limit("mam_page");
                    }
                    max = asked.min(mam.settings.max_page_size);
                }
                "after" => {
                    let id = parse_id(text)?;
                    rsm_ids.push(id);
                    q.after = tighter(q.after, id, true);
                }
                "before" => {
                    q.reverse = true;
                    if !text.is_empty() {
                        let id = parse_id(text)?;
                        rsm_ids.push(id);
                        q.before = tighter(q.before, id, false);
                    }
                }
                "index" => {
                    return Err(StanzaError::with_text(
                        StanzaCondition::FeatureNotImplemented,
                        "RSM index is not supported: page with after/before",
                    ))
                }
                _ => {}
            }
        }
    }
    // One more than asked: whether the page is the last one.
    q.limit = max + 1;
    Ok(Asked { q, rsm_ids, max })
}

async fn query(mam: &Mam, req: &IqRequest<'_>) -> IqResult {
    let started = Instant::now();
    let ctx = req.ctx;
    let Asked { q, rsm_ids, max } = parse(mam, req)?;
    let query_id = req.payload.attribute("queryid");
    // Every message archived before the query is in it.
    let _ = tokio::time::timeout(FLUSH_WAIT, mam.writer.flush()).await;
    for id in rsm_ids {
        if !ctx
            .stores
            .mam
            .mam_exists(&q.host, &q.user, id)
            .await
            .map_err(internal)?
        {
            return Err(StanzaError::with_text(
                StanzaCondition::ItemNotFound,
                "no such message in the archive",
            ));
        }
    }
    let mut rows = ctx.stores.mam.mam_page(&q).await.map_err(internal)?;
    let complete = rows.len() <= max as usize;
    rows.truncate(max as usize);
    if q.reverse {
        rows.reverse();
    }
    let me = req.me;
    for (id, xml) in &rows {
        let result = El::new("message")
            .attr("to", me.full())
            .attr("from", me.bare())
            .child(
                El::new("result")
                    .xmlns(NS_MAM)
                    .attr_opt("queryid", query_id)
                    .attr("id", &id.to_string())
                    .child(
                        El::new("forwarded")
                            .xmlns(NS_FORWARD)
                            .child(El::new("delay").xmlns(NS_DELAY).attr("stamp", &stamp(*id)))
                            .raw_child(&forwardable(xml)),
                    ),
            );
        if router::deliver_local(ctx, me, result.to_string()).is_err() {
            return Err(StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                "the results did not fit in the session's queue: ask for a smaller page",
            ));
        }
    }
    let mut set = El::new("set").xmlns(NS_RSM);
    if let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) {
        set = set
            .child(El::new("first").text(&first.to_string()))
            .child(El::new("last").text(&last.to_string()));
    }
    let mut fin = El::new("fin").xmlns(NS_MAM);
    if complete {
        fin = fin.attr("complete", "true");
    }
    ctx.instr
        .module_data("mam", "queried", rows.len() as u64, started.elapsed());
    Ok(Some(fin.child(set)))
}
