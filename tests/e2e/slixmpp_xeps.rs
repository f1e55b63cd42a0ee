//! slixmpp scenarios for the XEP modules (stream management, carbons,
//! blocking, private XML storage, vcard-temp, MAM, in-band registration): `tests/slixmpp/scenarios.py` as in
//! `slixmpp.rs`, against a server with those modules configured, on both
//! backends.

use crate::both_backends;
use crate::harness::{Backend, Options};

/// Every module the scenarios use.
const MODULES: &str = "[modules.stream_management]\n\
                       [modules.carbons]\n\
                       [modules.blocking]\n\
                       [modules.register]\nenabled = true\n";

/// Starts a server with [`MODULES`] and runs one scenario (see
/// `slixmpp::run_with`).
fn run(backend: Backend, scenario: &str, users: &[&str]) {
    let opts = Options {
        extra: MODULES.into(),
        ..Options::new(backend)
    };
    crate::slixmpp::run_with(opts, scenario, users);
}

macro_rules! scenario {
    ($name:ident, [$($user:literal),+]) => {
        async fn $name(b: Backend) {
            tokio::task::spawn_blocking(move || run(b, stringify!($name), &[$($user),+]))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
    };
}

scenario!(sm_resume, ["alice", "bob"]);
scenario!(carbons, ["alice", "bob"]);
scenario!(blocking, ["alice", "bob"]);
scenario!(time_last, ["alice", "bob"]);
scenario!(private, ["alice", "bob"]);
scenario!(vcard, ["alice", "bob"]);
scenario!(register, ["alice"]);
scenario!(mam, ["alice", "bob"]);
scenario!(pep, ["alice", "bob"]);

both_backends!(
    slixmpp_sm_resume_after_abort_delivers_each_message_once,
    sm_resume
);
both_backends!(slixmpp_carbons_received_sent_and_disable, carbons);
both_backends!(slixmpp_blocking_block_refuse_unblock, blocking);
both_backends!(slixmpp_entity_time_and_last_activity, time_last);
both_backends!(slixmpp_private_storage_round_trip, private);
both_backends!(slixmpp_vcard_temp_round_trip, vcard);
both_backends!(slixmpp_register_change_password_and_cancel, register);
both_backends!(slixmpp_mam_paged_in_order_with_stanza_ids, mam);
both_backends!(slixmpp_pep_nick_avatar_and_bookmarks, pep);
