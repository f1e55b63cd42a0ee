//! What framing and parsing one stanza costs, by size and shape: a plain
//! message body, and the most expensive shape the XML caps let through
//! (every element at the attribute cap, the namespace caps used up, nested
//! to the depth cap). Prints ns per byte: flat across sizes means the work
//! is linear in the input.
//!
//! Run: `cargo bench -p osprey-gateway --bench parse_cost`.

use std::time::Instant;

use osprey::xml::{Frame, Framer};

const HEADER: &str = "<stream:stream to='localhost' xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

fn plain(size: usize) -> String {
    format!(
        "<message to='bob@localhost' type='chat' id='x'><body>{}</body></message>",
        "x".repeat(size.saturating_sub(80))
    )
}

/// Wide: siblings each at the attribute cap, 128 namespace declarations.
fn wide(size: usize) -> String {
    let mut s = String::from("<message to='bob@localhost'");
    for i in 0..16 {
        s.push_str(&format!(" xmlns:n{i}='urn:x:{i}'"));
    }
    s.push('>');
    let attrs: String = (0..60).map(|i| format!(" a{i}='v'")).collect();
    let mut declared = 16;
    while s.len() + 600 < size {
        if declared < 128 {
            s.push_str(&format!("<x xmlns:d{declared}='u'{attrs}>"));
            declared += 1;
        } else {
            s.push_str(&format!("<x{attrs}>"));
        }
        s.push_str("&amp;&#x1F600;</x>");
    }
    s.push_str("</message>");
    s
}

/// Deep: chains nested to the depth cap, repeated.
fn deep(size: usize) -> String {
    let mut s = String::from("<message to='bob@localhost'>");
    let chain = format!("{}{}", "<a b='c'>".repeat(62), "</a>".repeat(62));
    while s.len() + chain.len() + 20 < size {
        s.push_str(&chain);
    }
    s.push_str("</message>");
    s
}

fn cost(stanza: &str) -> f64 {
    let rounds = (2_000_000 / stanza.len()).max(5);
    let mut f = Framer::new(1 << 20);
    f.push(HEADER.as_bytes());
    assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
    let t = Instant::now();
    for _ in 0..rounds {
        f.push(stanza.as_bytes());
        match f.next_frame() {
            Ok(Some(Frame::Element(e))) => assert!(e.raw().len() == stanza.len()),
            other => panic!("{other:?}"),
        }
    }
    t.elapsed().as_nanos() as f64 / rounds as f64
}

fn main() {
    println!(
        "{:<8} {:>8} {:>12} {:>10}",
        "shape", "KB", "µs/stanza", "ns/byte"
    );
    for (name, make) in [
        ("plain", plain as fn(usize) -> String),
        ("wide", wide),
        ("deep", deep),
    ] {
        for kb in [4usize, 16, 64, 256] {
            let s = make(kb * 1000);
            let ns = cost(&s);
            println!(
                "{name:<8} {:>8.1} {:>12.1} {:>10.2}",
                s.len() as f64 / 1000.0,
                ns / 1000.0,
                ns / s.len() as f64
            );
        }
    }
}
