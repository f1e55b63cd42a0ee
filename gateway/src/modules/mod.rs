//! XMPP modules. Each is one file that implements [`Module`]: at start it
//! registers its hooks, features and IQ handlers; the data path never
//! names a module. Adding one touches its file and [`MODULES`], nothing else.
//!
//! Configured as `[modules.NAME]` tables (`enabled = false` turns one off;
//! the modules in [`OFF_BY_DEFAULT`] need `enabled = true`); an unknown
//! module or key stops the server at start with the key named.
//!
//! - [`roster`]: roster get/set/remove, pushes, versioning (RFC 6121 §2, XEP-0237).
//! - [`presence`]: initial/broadcast/directed/unavailable presence, probes.
//! - [`subscription`]: the subscription state machine (RFC 6121 §3, App. A).
//! - [`offline`]: offline messages (XEP-0160).
//! - [`disco`]: service discovery (XEP-0030).
//! - [`ping`]: XMPP ping (XEP-0199).
//! - [`version`]: software version (XEP-0092).
//! - [`time`]: entity time (XEP-0202).
//! - [`last`]: last activity (XEP-0012).
//! - [`stream_management`]: stream management with resume (XEP-0198).
//! - [`csi`]: client state indication (XEP-0352).
//! - [`carbons`]: message carbons (XEP-0280).
//! - [`blocking`]: the blocking command (XEP-0191).
//! - [`private`]: private XML storage (XEP-0049).
//! - [`vcard`]: vcard-temp (XEP-0054).
//! - [`pep`]: personal eventing (XEP-0163) with entity capabilities (XEP-0115).
//! - [`mam`]: message archive management (XEP-0313, XEP-0359 stanza ids).
//! - [`register`]: in-band registration (XEP-0077); off by default.
//!
//! Not modules: [`iq`] (IQ dispatch to the handlers modules registered)
//! and [`message`] (a client's message into the router).

pub mod blocking;
pub mod carbons;
pub mod csi;
pub mod disco;
pub mod iq;
pub mod last;
pub mod mam;
pub mod message;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private;
pub mod register;
pub mod roster;
pub mod stream_management;
pub mod subscription;
pub mod time;
pub mod vcard;
pub mod version;

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::hooks::Hooks;

pub use crate::hooks::{IqRequest, IqResult, Target};

/// The legacy session establishment (RFC 3921), kept as a no-op.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// A feature module.
pub trait Module: Send + Sync + 'static {
    /// Adds the module's hooks; `config` is the whole configuration (its
    /// own settings were parsed when it was built).
    fn register(self: Arc<Self>, hooks: &mut Hooks, config: &Config);
}

/// A bad module setting: (key, message).
pub type SettingError = (String, String);

/// A module as the list knows it: its `[modules.NAME]` and how to build it
/// from that table (`Err((key, message))` names the bad key).
pub struct ModuleDef {
    pub name: &'static str,
    pub build: fn(&toml::Table) -> Result<Arc<dyn Module>, SettingError>,
}

/// Every module, in registration order (which orders hooks of equal rank).
pub static MODULES: &[ModuleDef] = &[
    disco::DEF,
    roster::DEF,
    presence::DEF,
    offline::DEF,
    ping::DEF,
    version::DEF,
    time::DEF,
    last::DEF,
    stream_management::DEF,
    csi::DEF,
    carbons::DEF,
    blocking::DEF,
    private::DEF,
    vcard::DEF,
    pep::DEF,
    mam::DEF,
    register::DEF,
];

/// Modules that are off unless their table says `enabled = true`: they
/// change who may do what on the server (anyone may create an account).
pub const OFF_BY_DEFAULT: &[&str] = &["register"];

/// Parses a module's settings: `T` denies unknown keys; `enabled` is
/// everyone's and is taken out first.
pub fn settings<T: DeserializeOwned>(table: &toml::Table) -> Result<T, (String, String)> {
    let mut t = table.clone();
    t.remove("enabled");
    serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
        let key = e.path().to_string();
        (key, e.into_inner().to_string())
    })
}

fn enabled(name: &str, table: &toml::Table) -> Result<bool, (String, String)> {
    match table.get("enabled") {
        None => Ok(!OFF_BY_DEFAULT.contains(&name)),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(("enabled".into(), "expected true or false".into())),
    }
}

/// Checks `[modules.*]`: unknown modules and bad settings, as (key, message).
pub fn check(config: &Config) -> Result<(), (String, String)> {
    build_all(config).map(|_| ())
}

fn build_all(config: &Config) -> Result<Vec<Arc<dyn Module>>, (String, String)> {
    for name in config.modules.keys() {
        if !MODULES.iter().any(|m| m.name == name) {
            let known: Vec<_> = MODULES.iter().map(|m| m.name).collect();
            return Err((
                format!("modules.{name}"),
                format!("unknown module; known: {}", known.join(", ")),
            ));
        }
    }
    let empty = toml::Table::new();
    let mut built = Vec::new();
    for def in MODULES {
        let table = config.modules.get(def.name).unwrap_or(&empty);
        let at = |(k, m): (String, String)| {
            let key = if k.is_empty() || k == "." {
                format!("modules.{}", def.name)
            } else {
                format!("modules.{}.{k}", def.name)
            };
            (key, m)
        };
        let on = enabled(def.name, table).map_err(at)?;
        // Settings are checked on or off: a typo in a module left off
        // (as `register` is by default) still stops the start.
        let module = (def.build)(table).map_err(at)?;
        if on {
            built.push(module);
        }
    }
    Ok(built)
}

/// Builds the hook registry from the configured modules.
pub fn hooks(config: &Config) -> Result<Hooks, (String, String)> {
    let mut hooks = Hooks::default();
    for m in build_all(config)? {
        m.register(&mut hooks, config);
    }
    Ok(hooks)
}

/// A module without settings: `[modules.NAME]` may only hold `enabled`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}
