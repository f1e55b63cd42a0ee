//! Targets `framer` and `framer_stanzas`: the incremental XML framer
//! (`osprey::xml::Framer`) and what the gateway does with each element it
//! frames (`rewrite_from_to`, `append_child`).
//!
//! Input: byte 0 picks the element size limit (low 2 bits, see [`LIMITS`])
//! and, when bit 2 is set, tight shape limits (see [`shape_limits`]); byte 1
//! picks how the bytes are cut into reads (see [`read_sizes`]); the rest is
//! what the peer sends. `framer_stanzas` puts a valid stream header
//! ([`HEADER`]) before it, so the fuzzer reaches stanzas at once.
//!
//! Each input is framed three ways: in one read, in the chosen reads, and
//! (when a `<starttls/>` or `<auth/>` goes by) in the chosen reads with the
//! stream restarts the gateway does. Invariants:
//! - nothing panics, and the framer runs on a 2 MiB stack (tokio's workers);
//! - the frames (and the error, if any) do not depend on the reads;
//! - an element is never larger than the limit (+1: the final `>`), nor
//!   deeper, nor with more attributes or longer values than `XmlLimits`
//!   allow, and the framer never holds more than one element, one header
//!   plus an XML declaration, and one read;
//! - each element's text is the next piece of the input, starts with `<`,
//!   ends with `>`, and parses again to the same name, namespace and
//!   attributes;
//! - `rewrite_from_to` keeps every other byte and gives a parseable element
//!   with the new `from`/`to`; `append_child` gives a parseable element whose
//!   last child is the one appended;
//! - header first, nothing after the stream's end, nothing buffered then.

use osprey::xml::{
    append_child, rewrite_from_to, Element, Frame, Framer, StreamHeader, XmlError, XmlLimits,
};

/// A client's stream header, as in tests/e2e/raw.rs.
pub const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// Element size limits (512 is the smallest pre-auth limit the config allows).
pub const LIMITS: [usize; 4] = [512, 4096, 16384, 65536];

/// The framer's own limit for the stream header (framer.rs `MAX_HEADER`).
const MAX_HEADER: usize = 4096;

/// Tokio's default worker-thread stack, where the gateway runs the framer.
const STACK: usize = 2 << 20;

const FROM: &str = "alice@localhost/r'1<&>\"";
const TO: &str = "bob@localhost";
const DELAY: &str = "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2024-01-01T00:00:00Z'/>";

pub fn run(data: &[u8]) {
    on_gateway_stack(data, b"");
}

pub fn run_stanzas(data: &[u8]) {
    on_gateway_stack(data, HEADER);
}

fn on_gateway_stack(data: &[u8], prefix: &'static [u8]) {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(s, || check(data, prefix))
            .expect("spawn a thread");
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

fn check(data: &[u8], prefix: &[u8]) {
    let [ctl, seed, payload @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(ctl & 3)];
    let shape = shape_limits(*ctl);
    let mut input = prefix.to_vec();
    input.extend_from_slice(payload);
    let reads = read_sizes(*seed, input.len());
    let whole = drive(&input, limit, shape, &[input.len()], false);
    let split = drive(&input, limit, shape, &reads, false);
    if !bom_ambiguous(&input) {
        assert_eq!(
            whole.frames, split.frames,
            "the frames depend on how the input was cut into reads {reads:?}"
        );
    }
    if split.restarts {
        drive(&input, limit, shape, &reads, true);
    }
}

/// The gateway's default shape limits, or (bit 2 of `ctl`) tight ones that
/// the fuzzer can reach with short inputs: depth 1 to 8 (bits 3-5),
/// 4 attributes, 2 namespace declarations per element and 4 per stanza,
/// 16-byte names, 64-byte attribute values.
pub fn shape_limits(ctl: u8) -> XmlLimits {
    if ctl & 4 == 0 {
        return XmlLimits::default();
    }
    XmlLimits {
        max_depth: 1 + usize::from((ctl >> 3) & 7),
        max_attributes: 4,
        max_namespaces: 2,
        max_namespaces_per_stanza: 4,
        max_name_length: 16,
        max_attribute_length: 64,
    }
}

/// Read sizes for `len` bytes: at most 1, 2, 3, 8, 64, 512, 4096 or 65536
/// bytes each (low 3 bits of `seed`), pseudo-random below that.
pub fn read_sizes(seed: u8, len: usize) -> Vec<usize> {
    const MAX: [usize; 8] = [1, 2, 3, 8, 64, 512, 4096, 65536];
    let max = MAX[usize::from(seed & 7)];
    let mut x = (u32::from(seed) >> 3).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (1 + x as usize % max).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// A byte-order mark is stripped only when it arrives whole in the first
/// read (framer.rs `next_frame`), so a BOM, or a byte of one, before the
/// first `<` may legitimately frame differently depending on the reads.
fn bom_ambiguous(input: &[u8]) -> bool {
    input.iter().take_while(|&&b| b != b'<').any(|&b| b == 0xEF)
}

#[derive(Debug, PartialEq)]
enum Out {
    Open(Box<StreamHeader>),
    Element(String),
    Close,
    Error(XmlError),
}

struct Run {
    frames: Vec<Out>,
    /// A `<starttls/>` or `<auth/>` was framed: worth a run with restarts.
    restarts: bool,
}

fn drive(input: &[u8], limit: usize, shape: XmlLimits, reads: &[usize], restart: bool) -> Run {
    // Element texts are valid UTF-8 and begin with '<', which a lossy
    // decoder never swallows: each is found as is in the lossy input.
    let text = String::from_utf8_lossy(input);
    let mut cursor = 0;
    let mut framer = Framer::with_limits(limit, shape);
    let mut max = limit;
    let mut frames = Vec::new();
    let (mut opened, mut closed, mut restarts) = (false, false, false);
    let mut at = 0;
    for &n in reads {
        framer.push(&input[at..at + n]);
        at += n;
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.condition().is_empty() && !e.to_string().is_empty());
                    frames.push(Out::Error(e));
                    return Run { frames, restarts };
                }
            };
            assert!(!closed, "a frame after the stream's end: {frame:?}");
            match frame {
                Frame::StreamOpen(header) => {
                    assert!(!opened, "a second stream header without a restart");
                    assert!(!header.local_name.is_empty());
                    opened = true;
                    frames.push(Out::Open(header));
                }
                Frame::Element(el) => {
                    assert!(opened, "an element before the stream header");
                    let raw = el.raw();
                    assert!(
                        raw.len() <= max + 1,
                        "a {}-byte element passed the {max}-byte limit",
                        raw.len()
                    );
                    match text[cursor..].find(raw) {
                        Some(i) => cursor += i + raw.len(),
                        None => panic!("the element is not the next part of the input: {raw:?}"),
                    }
                    check_element(&el);
                    check_shape(&el, &shape);
                    let name = el.name();
                    if name == "starttls" || name == "auth" {
                        restarts = true;
                        if restart {
                            // As c2s does after <proceed/> and <success/>: the
                            // rest of this read is dropped, never parsed.
                            if name == "auth" {
                                max = limit * 4;
                                framer.set_max_element_bytes(max);
                            }
                            framer.reset();
                            assert_eq!(framer.buffered(), 0);
                            opened = false;
                        }
                    }
                    frames.push(Out::Element(raw.to_string()));
                }
                Frame::StreamClose => {
                    assert!(opened, "the stream's end before its header");
                    closed = true;
                    frames.push(Out::Close);
                }
            }
        }
        let bound = (max + 1).max(2 * (MAX_HEADER + 1)) + n;
        assert!(
            framer.buffered() <= bound,
            "the framer holds {} bytes (limit {max}, last read {n})",
            framer.buffered()
        );
        if closed {
            assert_eq!(framer.buffered(), 0, "bytes kept after the stream's end");
        }
    }
    Run { frames, restarts }
}

/// The framer's shape caps, seen from the parsed element.
fn check_shape(el: &Element, shape: &XmlLimits) {
    let raw = el.raw();
    for node in el.node().descendants().filter(|n| n.is_element()) {
        // The stanza is depth 1; the wrapper and the document root are not counted.
        let depth = node.ancestors().filter(|a| a.is_element()).count() - 1;
        assert!(depth <= shape.max_depth, "depth {depth}: {raw:?}");
        let attrs = node.attributes().len();
        assert!(attrs <= shape.max_attributes, "{attrs} attributes: {raw:?}");
        assert!(
            node.tag_name().name().len() <= shape.max_name_length,
            "{raw:?}"
        );
        for a in node.attributes() {
            // A parsed value is never longer than as sent.
            assert!(a.value().len() <= shape.max_attribute_length, "{raw:?}");
            assert!(a.name().len() <= shape.max_name_length, "{raw:?}");
        }
    }
}

type Attrs = Vec<(Option<String>, String, String)>;

fn attrs(el: &Element) -> Attrs {
    el.node()
        .attributes()
        .map(|a| {
            let ns = a.namespace().map(str::to_string);
            (ns, a.name().to_string(), a.value().to_string())
        })
        .collect()
}

fn without_from_to(attrs: Attrs) -> Attrs {
    attrs
        .into_iter()
        .filter(|(ns, name, _)| ns.is_some() || (name != "from" && name != "to"))
        .collect()
}

/// What must hold of every framed element, and of the gateway's edits of it.
pub fn check_element(el: &Element) {
    let raw = el.raw();
    assert!(raw.starts_with('<') && raw.ends_with('>'), "{raw:?}");
    let again = Element::parse(raw)
        .unwrap_or_else(|e| panic!("a framed element does not parse again: {e}: {raw:?}"));
    assert_eq!((again.name(), again.ns()), (el.name(), el.ns()));
    assert_eq!(attrs(&again), attrs(el));
    // Every node, iteratively (no recursion of our own).
    for node in el.node().descendants() {
        let _ = (node.text(), node.tag_name().namespace());
    }

    assert_eq!(rewrite_from_to(el, None, None), raw, "nothing to change");
    let out = rewrite_from_to(el, Some(FROM), Some(TO));
    let edited = Element::parse(&out).unwrap_or_else(|e| {
        panic!("rewrite_from_to made it unparseable: {e}\n in: {raw:?}\nout: {out:?}")
    });
    assert_eq!(
        (edited.name(), edited.ns()),
        (el.name(), el.ns()),
        "{out:?}"
    );
    assert_eq!(
        (edited.attr("from"), edited.attr("to")),
        (Some(FROM), Some(TO)),
        "{out:?}"
    );
    assert_eq!(
        without_from_to(attrs(&edited)),
        without_from_to(attrs(el)),
        "rewrite_from_to changed other attributes: {out:?}"
    );
    let from_only = rewrite_from_to(el, Some(FROM), None);
    let edited = Element::parse(&from_only).unwrap_or_else(|e| {
        panic!("rewrite_from_to made it unparseable: {e}\n in: {raw:?}\nout: {from_only:?}")
    });
    assert_eq!(edited.attr("to"), el.attr("to"), "{from_only:?}");

    // Offline storage: the rewritten stanza gets a <delay/>.
    for text in [raw, out.as_str()] {
        let stamped = append_child(text, DELAY);
        let edited = Element::parse(&stamped).unwrap_or_else(|e| {
            panic!("append_child made it unparseable: {e}\n in: {text:?}\nout: {stamped:?}")
        });
        assert_eq!(edited.name(), el.name(), "{stamped:?}");
        let last = edited.node().last_element_child();
        assert_eq!(
            last.map(|c| (c.tag_name().name(), c.tag_name().namespace())),
            Some(("delay", Some("urn:xmpp:delay"))),
            "append_child did not add the last child: {stamped:?}"
        );
    }
}
