//! The incremental framer: bytes in (split anywhere), frames out: the
//! stream header, each complete top-level element, the stream's end.
//!
//! It scans each byte once, keeping its place inside a tag, a quoted value
//! or a CDATA section between reads, so a slow trickle costs no rescans. It
//! checks end-tag names, refuses restricted XML on sight, and enforces the
//! size limit while an element is still arriving.

use super::{Element, StreamHeader, XmlError};

/// Largest stream header accepted.
const MAX_HEADER: usize = 4096;

/// What the framer found.
#[derive(Debug)]
pub enum Frame {
    StreamOpen(Box<StreamHeader>),
    Element(Element),
    StreamClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Character data (between or inside elements).
    Text,
    /// Just after `<`.
    Lt,
    /// After `<!` and this many bytes of `[CDATA[`.
    Bang(usize),
    /// Inside CDATA; how many `]` in a row were just seen (at most 2 count).
    CData(u8),
    /// Inside `<?xml … ?>`; whether the last byte was `?`.
    Decl(bool),
    /// Inside a start tag; the open quote if in a value; whether the last
    /// significant byte was `/`.
    Start { quote: u8, slash: bool },
    /// Inside an end tag.
    End,
}

pub struct Framer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already framed: dropped at the next
    /// `push`, not after each element (a read can hold hundreds of stanzas;
    /// shifting the rest after each one was quadratic).
    base: usize,
    /// Next byte to scan.
    pos: usize,
    /// Where the current markup (`<`) began.
    tok: usize,
    /// Where the current tag's name begins.
    name: usize,
    /// Where the current top-level element began.
    elem: usize,
    /// 0: before the header; 1: in the stream; 2+: inside a stanza.
    depth: usize,
    /// Qualified names of the open elements; [0] is the stream's.
    open: Vec<Vec<u8>>,
    scan: Scan,
    max: usize,
    /// Markup was seen since the (re)start: an XML declaration is only
    /// allowed before anything else.
    started: bool,
    closed: bool,
}

impl Framer {
    pub fn new(max_element_bytes: usize) -> Self {
        Framer {
            buf: Vec::new(),
            base: 0,
            pos: 0,
            tok: 0,
            name: 0,
            elem: 0,
            depth: 0,
            open: Vec::new(),
            scan: Scan::Text,
            max: max_element_bytes,
            started: false,
            closed: false,
        }
    }

    pub fn set_max_element_bytes(&mut self, n: usize) {
        self.max = n;
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        if self.base > 0 {
            let base = self.base;
            self.buf.drain(..base);
            self.base = 0;
            // Offsets of what is in progress; stale ones (before `base`)
            // are never read again.
            self.pos -= base;
            self.tok = self.tok.saturating_sub(base);
            self.name = self.name.saturating_sub(base);
            self.elem = self.elem.saturating_sub(base);
        }
        self.buf.extend_from_slice(data);
    }

    /// Stream restart: everything buffered is discarded, never parsed.
    pub fn reset(&mut self) {
        let max = self.max;
        *self = Framer::new(max);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() - self.base
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, XmlError> {
        if self.closed {
            return Ok(None);
        }
        if !self.started && self.pos == 0 && self.buf.starts_with(b"\xEF\xBB\xBF") {
            self.buf.drain(..3);
        }
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if let Some(frame) = self.step(b)? {
                return Ok(Some(frame));
            }
            self.check_size()?;
        }
        // Between elements nothing needs keeping: the buffer is freed, so
        // an idle connection holds none (the next read allocates what it
        // brings).
        if self.depth <= 1 && self.scan == Scan::Text {
            self.buf = Vec::new();
            self.base = 0;
            self.pos = 0;
        }
        Ok(None)
    }

    fn step(&mut self, b: u8) -> Result<Option<Frame>, XmlError> {
        let at = self.pos - 1;
        match self.scan {
            Scan::Text => {
                if b == b'<' {
                    self.tok = at;
                    self.scan = Scan::Lt;
                } else if self.depth <= 1 && !b.is_ascii_whitespace() {
                    return Err(not_well_formed("text outside of a stanza"));
                }
            }
            Scan::Lt => match b {
                b'/' => {
                    self.name = self.pos;
                    self.scan = Scan::End;
                }
                b'!' => self.scan = Scan::Bang(0),
                b'?' if self.depth == 0 && !self.started => self.scan = Scan::Decl(false),
                b'?' => return Err(XmlError::RestrictedXml("a processing instruction")),
                _ if is_name_start(b) => {
                    self.name = at;
                    self.started = true;
                    if self.depth == 1 {
                        self.elem = self.tok;
                    }
                    self.scan = Scan::Start {
                        quote: 0,
                        slash: false,
                    };
                }
                _ => return Err(not_well_formed("bad markup after '<'")),
            },
            Scan::Bang(n) => {
                const CDATA: &[u8] = b"[CDATA[";
                if b != CDATA[n] {
                    return Err(XmlError::RestrictedXml(match (n, b) {
                        (0, b'-') => "a comment",
                        (0, b'D') => "a DTD",
                        (0, b'E') => "an entity declaration",
                        _ => "a markup declaration",
                    }));
                }
                if n + 1 < CDATA.len() {
                    self.scan = Scan::Bang(n + 1);
                } else if self.depth >= 2 {
                    self.scan = Scan::CData(0);
                } else {
                    return Err(not_well_formed("CDATA outside of a stanza"));
                }
            }
            Scan::CData(brackets) => {
                self.scan = match b {
                    b']' => Scan::CData((brackets + 1).min(2)),
                    b'>' if brackets == 2 => Scan::Text,
                    _ => Scan::CData(0),
                };
            }
            Scan::Decl(question) => {
                if question && b == b'>' {
                    self.check_declaration()?;
                    self.started = true;
                    self.scan = Scan::Text;
                } else {
                    self.scan = Scan::Decl(b == b'?');
                }
            }
            Scan::Start { quote, slash } => {
                if quote != 0 {
                    if b == quote {
                        self.scan = Scan::Start {
                            quote: 0,
                            slash: false,
                        };
                    }
                    return Ok(None);
                }
                match b {
                    b'\'' | b'"' => {
                        self.scan = Scan::Start {
                            quote: b,
                            slash: false,
                        }
                    }
                    b'/' => {
                        self.scan = Scan::Start {
                            quote: 0,
                            slash: true,
                        }
                    }
                    b'>' => return self.start_tag_end(slash),
                    b'<' => return Err(not_well_formed("'<' inside a tag")),
                    _ => {
                        self.scan = Scan::Start {
                            quote: 0,
                            slash: false,
                        }
                    }
                }
            }
            Scan::End => match b {
                b'>' => return self.end_tag_end(),
                b'<' => return Err(not_well_formed("'<' inside an end tag")),
                _ => {}
            },
        }
        Ok(None)
    }

    fn tag_name(&self) -> Vec<u8> {
        self.buf[self.name..]
            .iter()
            .take_while(|c| !c.is_ascii_whitespace() && **c != b'/' && **c != b'>')
            .copied()
            .collect()
    }

    fn start_tag_end(&mut self, self_closing: bool) -> Result<Option<Frame>, XmlError> {
        self.scan = Scan::Text;
        let name = self.tag_name();
        match self.depth {
            0 => {
                if self_closing {
                    return Err(not_well_formed("an empty stream"));
                }
                let text = utf8(&self.buf[self.tok..self.pos])?;
                let header = StreamHeader::parse(text)?;
                self.open.push(name);
                self.depth = 1;
                self.consume();
                Ok(Some(Frame::StreamOpen(Box::new(header))))
            }
            1 if self_closing => self.emit(),
            _ => {
                if !self_closing {
                    self.open.push(name);
                    self.depth += 1;
                }
                Ok(None)
            }
        }
    }

    fn end_tag_end(&mut self) -> Result<Option<Frame>, XmlError> {
        self.scan = Scan::Text;
        let name = self.tag_name();
        if self.open.pop().as_deref() != Some(name.as_slice()) {
            return Err(not_well_formed("mismatched end tag"));
        }
        self.depth -= 1;
        match self.depth {
            0 => {
                self.closed = true;
                self.buf.clear();
                self.base = 0;
                self.pos = 0;
                Ok(Some(Frame::StreamClose))
            }
            1 => self.emit(),
            _ => Ok(None),
        }
    }

    /// The element from `elem` to here is complete.
    fn emit(&mut self) -> Result<Option<Frame>, XmlError> {
        let text = utf8(&self.buf[self.elem..self.pos])?;
        let el = Element::parse(text)?;
        self.consume();
        Ok(Some(Frame::Element(el)))
    }

    /// Drops everything scanned so far.
    fn consume(&mut self) {
        self.base = self.pos;
    }

    fn check_size(&self) -> Result<(), XmlError> {
        let (start, limit) = match self.depth {
            0 if self.scan != Scan::Text => (self.tok, MAX_HEADER),
            0 => return Ok(()),
            1 if self.scan == Scan::Text => return Ok(()),
            1 => (self.tok, self.max),
            _ => (self.elem, self.max),
        };
        if self.pos - start > limit {
            return Err(XmlError::TooLarge { limit });
        }
        Ok(())
    }

    /// `<?xml version='1.0' encoding='UTF-8'?>` and nothing else.
    fn check_declaration(&self) -> Result<(), XmlError> {
        let decl = utf8(&self.buf[self.tok..self.pos])?;
        let is_xml = decl
            .strip_prefix("<?xml")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_whitespace()));
        if !is_xml {
            return Err(XmlError::RestrictedXml("a processing instruction"));
        }
        if let Some(i) = decl.find("encoding") {
            let value: String = decl[i + "encoding".len()..]
                .trim_start_matches(|c: char| c == '=' || c.is_ascii_whitespace())
                .trim_start_matches(['\'', '"'])
                .chars()
                .take_while(|c| *c != '\'' && *c != '"')
                .collect();
            if !value.eq_ignore_ascii_case("utf-8") {
                return Err(XmlError::UnsupportedEncoding);
            }
        }
        Ok(())
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| not_well_formed("invalid UTF-8"))
}

fn not_well_formed(why: &str) -> XmlError {
    XmlError::NotWellFormed(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

    fn frames(input: &[u8], chunk: usize) -> Result<Vec<String>, XmlError> {
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        for part in input.chunks(chunk.max(1)) {
            f.push(part);
            while let Some(frame) = f.next_frame()? {
                out.push(match frame {
                    Frame::StreamOpen(h) => format!("open:{}", h.to.unwrap_or_default()),
                    Frame::Element(e) => e.raw().to_string(),
                    Frame::StreamClose => "close".into(),
                });
            }
        }
        Ok(out)
    }

    #[test]
    fn every_split_gives_the_same_frames() {
        let stream = format!(
            "{HEADER} <message to='b@x' id=\"a>b\"><body>caf\u{e9} &amp; <![CDATA[<not> ]] ]>x]]></body></message>\n\
             <iq type='get' id='/>'/><presence><status>é/></status></presence></stream:stream>"
        );
        let bytes = stream.as_bytes();
        let whole = frames(bytes, bytes.len()).unwrap();
        assert_eq!(whole.len(), 5, "{whole:?}");
        assert_eq!(whole[0], "open:localhost");
        assert!(whole[1].starts_with("<message") && whole[1].ends_with("</message>"));
        assert_eq!(whole[2], "<iq type='get' id='/>'/>");
        assert_eq!(whole[4], "close");
        for chunk in 1..40 {
            assert_eq!(frames(bytes, chunk).unwrap(), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn restricted_xml_is_refused_on_sight() {
        let bomb = format!("{HEADER}<!DOCTYPE lolz [<!ENTITY lol 'lol'>]>");
        assert_eq!(
            frames(bomb.as_bytes(), 1 << 20).unwrap_err(),
            XmlError::RestrictedXml("a DTD")
        );
        let pre = "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>";
        assert!(matches!(
            frames(pre.as_bytes(), 7),
            Err(XmlError::RestrictedXml(_))
        ));
        let comment = format!("{HEADER}<!-- hi -->");
        assert_eq!(
            frames(comment.as_bytes(), 3).unwrap_err(),
            XmlError::RestrictedXml("a comment")
        );
        let pi = format!("{HEADER}<?php x?>");
        assert!(matches!(
            frames(pi.as_bytes(), 2),
            Err(XmlError::RestrictedXml(_))
        ));
        let inner = format!("{HEADER}<message><!ENTITY x 'y'></message>");
        assert!(matches!(
            frames(inner.as_bytes(), 5),
            Err(XmlError::RestrictedXml(_))
        ));
    }

    #[test]
    fn oversized_element_fails_while_arriving() {
        let mut f = Framer::new(4096);
        f.push(HEADER.as_bytes());
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        f.push(b"<message><body>");
        let chunk = [b'x'; 1024];
        let mut pushed = 0;
        loop {
            f.push(&chunk);
            pushed += chunk.len();
            match f.next_frame() {
                Ok(None) => assert!(pushed <= 4096, "limit not enforced"),
                Err(e) => {
                    assert_eq!(e.condition(), "policy-violation");
                    break;
                }
                Ok(Some(_)) => panic!("no element expected"),
            }
        }
        assert!(f.buffered() <= 4096 + 2048);
    }

    #[test]
    fn malformed_input_is_not_well_formed() {
        for bad in [
            format!("{HEADER}<a></b>"),
            format!("{HEADER}hello"),
            format!("{HEADER}<a>&foo;</a>"),
            format!("{HEADER}<a><![CDATA[x]]></b>"),
            "<stream:stream/>".to_string(),
        ] {
            let e = frames(bad.as_bytes(), 4).unwrap_err();
            assert_eq!(e.condition(), "not-well-formed", "{bad}: {e}");
        }
        let mut invalid = HEADER.as_bytes().to_vec();
        invalid.extend_from_slice(b"<a>\xff\xfe</a>");
        assert_eq!(
            frames(&invalid, 3).unwrap_err().condition(),
            "not-well-formed"
        );
        let latin1 = "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>";
        assert_eq!(
            frames(latin1.as_bytes(), 9).unwrap_err(),
            XmlError::UnsupportedEncoding
        );
    }

    #[test]
    fn utf8_split_across_reads() {
        let s = format!("{HEADER}<a>\u{1F600}\u{e9}</a>");
        assert_eq!(
            frames(s.as_bytes(), 1).unwrap()[1],
            "<a>\u{1F600}\u{e9}</a>"
        );
    }

    #[test]
    fn reset_discards_buffered_bytes() {
        let mut f = Framer::new(1 << 16);
        f.push(HEADER.as_bytes());
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        // <starttls/> followed by an injected stanza in the same packet.
        f.push(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='set' id='evil'/>");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::Element(_)))));
        f.reset();
        assert_eq!(f.buffered(), 0);
        assert!(f.next_frame().unwrap().is_none());
        f.push(HEADER.as_bytes());
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        assert!(
            f.next_frame().unwrap().is_none(),
            "the injected iq must be gone"
        );
    }

    #[test]
    fn several_elements_in_one_push_and_keepalives() {
        let s = format!("{HEADER}  \n<a/> <b>x</b>\t<c/>   ");
        assert_eq!(
            frames(s.as_bytes(), 1 << 10).unwrap(),
            ["open:localhost", "<a/>", "<b>x</b>", "<c/>"]
        );
    }
}
