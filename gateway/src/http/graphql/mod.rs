//! The admin API as GraphQL: `POST /api/graphql` (JSON `{"query",
//! "variables", "operationName"}`), or `GET /api/graphql?query=…` for
//! queries. Laid out as MongooseIM's admin GraphQL API, one top-level field
//! per category (`account`, `session`, `stanza`, `roster`, `offline`,
//! `stat`, `server`), each field one `crate::admin` function: REST, GraphQL
//! and the CLI agree, and `admin_operation` is emitted there, once.
//!
//! Same bearer token as the REST routes. Depth and complexity are bounded
//! before anything runs; introspection stays on, within those bounds.

mod mutation;
mod query;
mod serve;
#[cfg(test)]
mod tests;
mod types;

use std::sync::{Arc, OnceLock};

use async_graphql::{EmptySubscription, ErrorExtensions, Schema};

use self::mutation::AdminMutation;
use self::query::AdminQuery;
pub use self::serve::handle;
use crate::admin::{AdminError, AdminResult};
use crate::server::Ctx;

pub type AdminSchema = Schema<AdminQuery, AdminMutation, EmptySubscription>;

/// Fields nested at most this deep: a client's full introspection query
/// needs 13 (graphql-js's seven `ofType`) to 15; our own types need 4.
pub const MAX_DEPTH: usize = 16;
/// Fields per request at most (aliases count): a full introspection query
/// is about 200; every query and mutation field at once about 100.
pub const MAX_COMPLEXITY: usize = 1000;
/// The largest request body: the REST routes' limit, so that `sendStanza`
/// carries a stanza as large as a client may send (256 KiB by default).
pub const MAX_BODY: usize = 512 * 1024;

/// Built once: the registry is the same for every request; the server
/// context comes with each request (`Request::data`).
pub fn schema() -> &'static AdminSchema {
    static SCHEMA: OnceLock<AdminSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::build(AdminQuery, AdminMutation, EmptySubscription)
            .limit_depth(MAX_DEPTH)
            .limit_complexity(MAX_COMPLEXITY)
            .finish()
    })
}

/// The schema in SDL (`osprey api schema`): needs no server.
pub fn sdl() -> String {
    schema().sdl()
}

/// An admin failure as a GraphQL error; `extensions.code` is its wire name
/// (the REST `error.code` and the `admin_operation` outcome label).
fn error(e: AdminError) -> async_graphql::Error {
    let code = e.wire_name();
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", code))
}

/// An operation's result as a nullable field. A failure is reported as
/// that field's error (with its path) and the field is null, so the other
/// fields of the request still answer: returned as an `Err`, it would null
/// its parents up to the root, whatever their types.
fn out<T, U: From<T>>(
    ctx: &async_graphql::Context<'_>,
    r: AdminResult<T>,
) -> async_graphql::Result<Option<U>> {
    match r {
        Ok(v) => Ok(Some(U::from(v))),
        Err(e) => {
            // What the derived resolver does with an `Err`, minus the `?`.
            let e = ctx.set_error_path(error(e).into_server_error(ctx.item.pos));
            ctx.add_error(e);
            Ok(None)
        }
    }
}

/// The server context the request carries.
fn server_ctx<'a>(ctx: &async_graphql::Context<'a>) -> async_graphql::Result<&'a Ctx> {
    ctx.data::<Arc<Ctx>>()
        .map(|c| c.as_ref())
        .map_err(|_| error(AdminError::Internal("no server context".into())))
}
