//! `[modules.register]`: who may create accounts, how often, and the
//! networks of `policy = "allow_list"`.

use std::net::IpAddr;

use serde::Deserialize;

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone.
    Allowed,
    /// Nobody (existing accounts may still change their password or go).
    Denied,
    /// Only clients whose address is in `allow_from`.
    AllowList,
}

/// `[modules.register]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub policy: Policy,
    /// IP addresses or CIDR networks (`"10.0.0.0/8"`, `"::1/128"`) that
    /// may create accounts under `policy = "allow_list"`.
    pub allow_from: Vec<String>,
    /// Seconds between two accounts created from one IP address (0: no
    /// limit); an integer, or a string with a unit (`"600s"`, `"10m"`, `"1h"`).
    #[serde(deserialize_with = "seconds")]
    pub interval_per_address: u64,
    /// Account creation only on a TLS-protected stream.
    pub require_tls: bool,
    pub allow_password_change: bool,
    pub allow_remove: bool,
    /// The text of `<instructions/>` in the form.
    pub instructions: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::Allowed,
            allow_from: Vec::new(),
            interval_per_address: 600,
            require_tls: true,
            allow_password_change: true,
            allow_remove: true,
            instructions: "Choose a username and password to register with this server.".into(),
        }
    }
}

/// An integer number of seconds, or a string with a unit: `s`, `m`, `h`.
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    let bad = || {
        serde::de::Error::custom(
            "expected seconds: a non-negative integer or a string such as \"600s\", \"10m\", \"1h\"",
        )
    };
    match Raw::deserialize(d)? {
        Raw::Int(n) => u64::try_from(n).map_err(|_| bad()),
        Raw::Text(s) => {
            let s = s.trim();
            let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
                Some(i) => (&s[..i], s[i..].trim()),
                None => (s, "s"),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mul = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return Err(bad()),
            };
            n.checked_mul(mul).ok_or_else(bad)
        }
    }
}

/// An allowed network: `"10.0.0.0/8"`, `"::1/128"`, or an address alone
/// (the whole address). IPv4-mapped IPv6 clients match IPv4 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(ipnet::IpNet);

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(Net)
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}
