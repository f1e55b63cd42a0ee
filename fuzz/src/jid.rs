//! Target `jid`: JID parsing and normalisation (`osprey::jid`).
//!
//! Input: the JID text (non-UTF-8 inputs are skipped: JIDs reach the parser
//! as `&str`, from attributes or SASL).
//!
//! Invariants: nothing panics; normalisation is idempotent, so that the
//! session table can compare with `==`: parse(to_string(parse(x))) ==
//! parse(x), and each part's normaliser gives back its own output; the
//! parts hold no separator they would be confused by; every part is at
//! most 1023 bytes; bare/full conversions agree with the text form.

use osprey::jid::{normalise_domain, normalise_local, Jid};

pub fn run(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(j) = Jid::parse(s) {
        let text = j.to_string();
        let again = Jid::parse(&text)
            .unwrap_or_else(|e| panic!("{s:?} normalised to {text:?}, which is refused: {e}"));
        assert_eq!(again, j, "{s:?} -> {text:?} is not a fixed point");
        assert_eq!(again.to_string(), text);
        let local = j.local().unwrap_or("");
        assert!(!local.contains(['@', '/']), "{j:?}");
        assert!(
            !j.domain().is_empty() && !j.domain().contains(['@', '/']),
            "{j:?}"
        );
        for part in [j.local(), Some(j.domain()), j.resource()]
            .into_iter()
            .flatten()
        {
            assert!(!part.is_empty() && part.len() <= 1023, "{j:?}");
        }
        assert_eq!(j.bare(), j.to_bare().to_string());
        assert!(j.to_bare().is_bare());
        assert_eq!(j.is_bare(), j.resource().is_none());
        if let Some(r) = j.resource() {
            assert_eq!(j.to_bare().with_resource(r), j);
        }
        assert_eq!(Jid::from_parts(j.local(), j.domain(), j.resource()), j);
    }
    if let Ok(l) = normalise_local(s) {
        assert_eq!(normalise_local(&l).as_deref(), Ok(l.as_str()), "{s:?}");
    }
    if let Ok(d) = normalise_domain(s) {
        assert_eq!(normalise_domain(&d).as_deref(), Ok(d.as_str()), "{s:?}");
    }
}
