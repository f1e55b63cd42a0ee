//! Unit-test support for modules: a server context on in-memory stores
//! (no database, no sockets), sessions that are a handle and a mailbox,
//! and stanzas pushed through the same dispatch a client's take.

use std::sync::Arc;

use crate::config::Config;
use crate::jid::Jid;
use crate::router::{ConnInfo, Outbound, SessionHandle};
use crate::server::Ctx;
use crate::session::Session;
use crate::storage::{MemoryStore, Storage, Stores};
use crate::xml::Element;

pub struct TestServer {
    pub ctx: Arc<Ctx>,
    pub store: Arc<MemoryStore>,
}

/// A session of the test server, driven by the test itself.
pub struct TestSession {
    pub session: tokio::sync::Mutex<Session>,
    pub handle: Arc<SessionHandle>,
}

impl TestServer {
    /// `modules`: (name, TOML body of `[modules.NAME]`).
    pub async fn new(modules: &[(&str, &str)]) -> TestServer {
        TestServer::with_general(modules, "").await
    }

    pub async fn with_general(modules: &[(&str, &str)], general: &str) -> TestServer {
        let mut toml = format!("[general]\nhosts = ['localhost']\n{general}\n");
        for (name, body) in modules {
            toml.push_str(&format!("[modules.{name}]\n{body}\n"));
        }
        let config = Config::parse(&toml, std::path::Path::new("test.toml")).expect("config");
        let hooks = crate::modules::hooks(&config).expect("modules");
        let config = Arc::new(config);
        let live = Arc::new(crate::live::Live::new());
        let instr = crate::instr::Instr::from_config(&config, Vec::new()).expect("instr");
        let admission = crate::server::Admission::new(1000);
        let storage = Storage::unconnected().expect("storage");
        let mut ctx = Ctx::new(config, storage, hooks, instr, live, admission);
        let store = Arc::new(MemoryStore::new());
        ctx.stores = Stores::backed_by(store.clone());
        let ctx = Arc::new(ctx);
        ctx.hooks.run_started(&ctx);
        TestServer { ctx, store }
    }

    pub fn add_account(&self, user: &str) {
        self.store.add_account("localhost", user);
    }

    /// A bound session of `user` (its account is created).
    pub async fn session(&self, user: &str, resource: &str) -> TestSession {
        self.add_account(user);
        let jid = Jid::parse(&format!("{user}@localhost/{resource}")).expect("jid");
        let info = ConnInfo {
            peer: "127.0.0.1:1".parse().expect("addr"),
            listener: "test".into(),
            tls: false,
            connected_at: std::time::SystemTime::now(),
        };
        let (handle, rx) = SessionHandle::new(self.ctx.sessions.next_id(), jid, info, 1 << 20);
        self.ctx.sessions.insert(handle.clone());
        let mut session = Session::new(handle.clone(), rx);
        self.ctx
            .hooks
            .run_session(&self.ctx, &mut session, crate::hooks::SessionEvent::Bound)
            .await;
        TestSession {
            session: tokio::sync::Mutex::new(session),
            handle,
        }
    }

    /// Handles one stanza from `s` as the c2s loop would.
    pub async fn send(&self, s: &TestSession, xml: &str) {
        let el = Element::parse(xml).expect("stanza");
        let mut session = s.session.lock().await;
        crate::c2s::dispatch::stanza(&self.ctx, &mut session, el)
            .await
            .expect("no stream error");
    }

    /// A nonza from a bound session: the module's replies (unencoded), or
    /// the stream error that ends the session.
    pub async fn nonza(
        &self,
        s: &TestSession,
        xml: &str,
    ) -> Result<Vec<String>, crate::errors::SessionEnd> {
        let el = Element::parse(xml).expect("nonza");
        let ns = el.ns().unwrap_or_default().to_string();
        let mut session = s.session.lock().await;
        let account = session.handle.jid().to_bare();
        let mut cx = crate::hooks::NonzaCx {
            ctx: &self.ctx,
            el: &el,
            session: Some(&mut session),
            account: &account,
            replies: Vec::new(),
        };
        match self.ctx.hooks.run_nonza(&ns, &mut cx).await {
            Some(Ok(_)) => Ok(cx.replies),
            Some(Err(e)) => Err(e),
            None => panic!("no module handles {ns}"),
        }
    }

    /// Everything queued to `s` so far, as written (write hooks applied).
    pub fn take_all(&self, s: &TestSession) -> Vec<String> {
        let mut session = s.session.try_lock().expect("session free");
        let mut out = Vec::new();
        while let Some(item) = session.mailbox.try_recv() {
            if let Outbound::Stanza(xml, _) = item {
                let mut batch = crate::session::Batch::default();
                session.encode(&self.ctx, &xml, &mut batch);
                self.ctx.hooks.report_writes(&self.ctx, &mut batch.tally);
                for x in batch.unwritten(0) {
                    out.push(x.to_string());
                }
            }
        }
        out
    }

    /// Sends an IQ and returns the one answer with its id.
    pub async fn iq(&self, s: &TestSession, xml: &str) -> String {
        let id = Element::parse(xml)
            .ok()
            .and_then(|e| e.attr("id").map(str::to_string))
            .expect("an IQ with an id");
        self.send(s, xml).await;
        let all = self.take_all(s);
        all.into_iter()
            .find(|x| x.contains(&format!("id='{id}'")))
            .unwrap_or_else(|| panic!("no answer to {id}"))
    }

    /// Ends the session as a closed connection would (`session::leave`).
    pub async fn close(&self, s: TestSession) {
        crate::session::leave(&self.ctx, s.session.into_inner(), "peer_closed").await;
    }

    /// What the session's offline flush would write now.
    pub async fn offline_flush(&self, s: &TestSession) -> Vec<String> {
        let _ = self.take_all(s);
        self.ctx.hooks.offline_take(&self.ctx, s.handle.jid()).await
    }
}

/// `[modules.NAME]` with `setting` (a key the module does not have) stops
/// the configuration, naming the key.
pub(crate) fn assert_unknown_key_refused(module: &str, setting: &str) {
    let text = format!("[general]\nhosts = ['localhost']\n[modules.{module}]\n{setting}\n");
    let err = crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
        .expect_err("an unknown key is refused");
    let key = setting.split('=').next().unwrap_or_default().trim();
    assert_eq!(err.key, format!("modules.{module}.{key}"), "{err:?}");
}
