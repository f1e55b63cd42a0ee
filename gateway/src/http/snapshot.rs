//! `/api/snapshot`: the latest snapshot of every series with rates;
//! `/api/snapshot/stream`: each new one as a server-sent event.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use super::{respond, Body};
use crate::server::Ctx;

pub fn latest(ctx: &Ctx) -> Response<Body> {
    let snap = ctx.snapshots.borrow().clone();
    let text = serde_json::to_string(&*snap).unwrap_or_default();
    respond(StatusCode::OK, "application/json", text)
}

pub fn stream(ctx: &Ctx) -> Response<Body> {
    let mut rx = ctx.snapshots.subscribe();
    // The current snapshot goes out first, so a viewer draws at once.
    rx.mark_changed();
    let s = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let frame = match tokio::time::timeout(Duration::from_secs(15), rx.changed()).await {
            Ok(Ok(())) => {
                let snap = rx.borrow_and_update().clone();
                format!(
                    "event: snapshot\ndata: {}\n\n",
                    serde_json::to_string(&*snap).unwrap_or_default()
                )
            }
            // The sampler stopped: the server is shutting down.
            Ok(Err(_)) => return None,
            Err(_) => ": keep-alive\n\n".to_string(),
        };
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(frame))),
            Some(rx),
        ))
    });
    super::event_stream(s)
}
