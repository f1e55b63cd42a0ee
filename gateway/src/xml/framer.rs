//! The incremental framer: bytes in (split anywhere), frames out: the
//! stream header, each complete top-level element, the stream's end.
//!
//! It scans each byte once, keeping its place inside a tag, a quoted value
//! or a CDATA section between reads, so a slow trickle costs no rescans. It
//! checks end-tag names, refuses restricted XML on sight, and enforces the
//! size limit while an element is still arriving.

use super::{Element, StreamHeader, XmlError, XmlLimit, XmlLimits};

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
    /// Inside a start tag.
    Start(Tag),
    /// Inside an end tag.
    End,
}

/// Where a start tag is: enough to count attributes and namespace
/// declarations and to measure names and values as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// The element's name.
    Name,
    /// Between attributes; whether the last byte was `/`.
    Between { slash: bool },
    /// An attribute's name (it began at `word`).
    AttrName,
    /// After an attribute's name, before `=`.
    Eq,
    /// After `=`, before the opening quote.
    AfterEq,
    /// Inside a value quoted with this byte (it began at `word`).
    Value(u8),
}

/// A reference (`&…;`) being read, in text or in an attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    /// Just after `&`.
    Amp,
    /// After `&#`.
    Hash,
    /// `&#…` or `&#x…`: the radix, the value so far, whether a digit came.
    Num {
        radix: u32,
        value: u32,
        digits: bool,
    },
    /// `&name`: the first bytes of the name and how many.
    Named([u8; 4], u8),
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
    /// Where the current attribute name or value begins.
    word: usize,
    /// Where the current top-level element began.
    elem: usize,
    /// 0: before the header; 1: in the stream; 2+: inside a stanza.
    depth: usize,
    /// The stream element's qualified name.
    stream_name: Vec<u8>,
    /// The open elements inside the stanza: where each name starts (from
    /// `elem`) and its length. The names stay in `buf` until the stanza is
    /// complete, so nesting costs 8 bytes a level, never an allocation.
    open: Vec<(u32, u32)>,
    scan: Scan,
    reference: Option<Ref>,
    /// Attributes and namespace declarations on the current start tag.
    attrs: usize,
    namespaces: usize,
    /// Namespace declarations in the current stanza.
    stanza_namespaces: usize,
    max: usize,
    limits: XmlLimits,
    /// Markup was seen since the (re)start: an XML declaration is only
    /// allowed before anything else.
    started: bool,
    closed: bool,
}

impl Framer {
    /// A framer with the default shape limits.
    pub fn new(max_element_bytes: usize) -> Self {
        Framer::with_limits(max_element_bytes, XmlLimits::default())
    }

    pub fn with_limits(max_element_bytes: usize, limits: XmlLimits) -> Self {
        Framer {
            buf: Vec::new(),
            base: 0,
            pos: 0,
            tok: 0,
            name: 0,
            word: 0,
            elem: 0,
            depth: 0,
            stream_name: Vec::new(),
            open: Vec::new(),
            scan: Scan::Text,
            reference: None,
            attrs: 0,
            namespaces: 0,
            stanza_namespaces: 0,
            max: max_element_bytes,
            limits,
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
            self.word = self.word.saturating_sub(base);
            self.elem = self.elem.saturating_sub(base);
        }
        self.buf.extend_from_slice(data);
    }

    /// Stream restart: everything buffered is discarded, never parsed.
    pub fn reset(&mut self) {
        *self = Framer::with_limits(self.max, self.limits);
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() - self.base
    }

    /// Bytes of memory this framer holds (its buffers' capacity).
    pub fn held(&self) -> usize {
        self.buf.capacity() + self.stream_name.capacity() + self.open.capacity() * 8
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
            // Most bytes have nothing to do but be checked: text inside a
            // stanza, quoted values, names. Runs of them are skipped in a
            // tight loop, then measured once; the state machine below sees
            // only the bytes that change something.
            if self.reference.is_none() {
                let run = match self.scan {
                    Scan::Text if self.depth >= 2 => Some((&PLAIN, None)),
                    Scan::Start(Tag::Value(_)) => Some((&PLAIN, None)),
                    Scan::Start(Tag::Name) => Some((&NAME, Some(self.name))),
                    Scan::Start(Tag::AttrName) => Some((&NAME, Some(self.word))),
                    Scan::End => Some((&END_NAME, Some(self.name))),
                    _ => None,
                };
                if let Some((table, name_start)) = run {
                    let n = self.buf[self.pos..]
                        .iter()
                        .position(|&b| !table[usize::from(b)])
                        .unwrap_or(self.buf.len() - self.pos);
                    if n > 0 {
                        self.pos += n;
                        if let Some(start) = name_start {
                            if self.pos - start > self.limits.max_name_length {
                                return Err(self.limit(XmlLimit::NameLength));
                            }
                        }
                        self.check_size()?;
                        continue;
                    }
                }
            }
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
        // XML 1.0 allows no control characters but these three, raw or
        // escaped (RFC 6120 §11: not-well-formed).
        if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') {
            return Err(not_well_formed("a control character"));
        }
        if let Some(r) = self.reference {
            self.reference = self.reference_step(r, b)?;
            return Ok(None);
        }
        let at = self.pos - 1;
        match self.scan {
            Scan::Text => {
                if b == b'<' {
                    self.tok = at;
                    self.scan = Scan::Lt;
                } else if self.depth <= 1 && !b.is_ascii_whitespace() {
                    return Err(not_well_formed("text outside of a stanza"));
                } else if b == b'&' {
                    self.reference = Some(Ref::Amp);
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
                    // Checked before the tag is read: the element's level
                    // in its stanza is the current depth.
                    if self.depth > self.limits.max_depth {
                        return Err(self.limit(XmlLimit::Depth));
                    }
                    self.name = at;
                    self.started = true;
                    if self.depth == 1 {
                        self.elem = self.tok;
                        self.stanza_namespaces = 0;
                    }
                    self.attrs = 0;
                    self.namespaces = 0;
                    self.scan = Scan::Start(Tag::Name);
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
            Scan::Start(tag) => return self.tag_step(tag, b, at),
            Scan::End => match b {
                b'>' => return self.end_tag_end(),
                b'<' => return Err(not_well_formed("'<' inside an end tag")),
                _ => {
                    if self.pos - self.name > self.limits.max_name_length {
                        return Err(self.limit(XmlLimit::NameLength));
                    }
                }
            },
        }
        Ok(None)
    }

    /// One byte of a start tag.
    fn tag_step(&mut self, tag: Tag, b: u8, at: usize) -> Result<Option<Frame>, XmlError> {
        let space = b.is_ascii_whitespace();
        let next = match tag {
            Tag::Value(quote) => {
                if b == quote {
                    if at - self.word > self.limits.max_attribute_length {
                        return Err(self.limit(XmlLimit::AttributeLength));
                    }
                    Tag::Between { slash: false }
                } else if b == b'<' {
                    return Err(not_well_formed("'<' in an attribute value"));
                } else {
                    if b == b'&' {
                        self.reference = Some(Ref::Amp);
                    }
                    tag
                }
            }
            Tag::Name | Tag::AttrName if is_name_byte(b) => {
                let start = if tag == Tag::Name {
                    self.name
                } else {
                    self.word
                };
                if self.pos - start > self.limits.max_name_length {
                    return Err(self.limit(XmlLimit::NameLength));
                }
                tag
            }
            Tag::AttrName if space => {
                self.attribute_named(at)?;
                Tag::Eq
            }
            Tag::AttrName | Tag::Eq if b == b'=' => {
                if tag == Tag::AttrName {
                    self.attribute_named(at)?;
                }
                Tag::AfterEq
            }
            Tag::AfterEq if b == b'\'' || b == b'"' => {
                self.word = self.pos;
                Tag::Value(b)
            }
            Tag::Eq | Tag::AfterEq if space => tag,
            Tag::Name | Tag::Between { .. } if space => Tag::Between { slash: false },
            Tag::Name | Tag::Between { .. } if b == b'/' => Tag::Between { slash: true },
            Tag::Name if b == b'>' => return self.start_tag_end(false),
            Tag::Between { slash } if b == b'>' => return self.start_tag_end(slash),
            Tag::Between { .. } if is_name_byte(b) => {
                self.attrs += 1;
                if self.attrs > self.limits.max_attributes {
                    return Err(self.limit(XmlLimit::Attributes));
                }
                self.word = at;
                Tag::AttrName
            }
            _ if b == b'<' => return Err(not_well_formed("'<' inside a tag")),
            _ => return Err(not_well_formed("a malformed attribute")),
        };
        self.scan = Scan::Start(next);
        Ok(None)
    }

    /// The attribute name from `word` to `end` is complete: namespace
    /// declarations are counted (roxmltree copies the in-scope ones for
    /// every element that declares one).
    fn attribute_named(&mut self, end: usize) -> Result<(), XmlError> {
        let name = &self.buf[self.word..end];
        if name == b"xmlns" || name.starts_with(b"xmlns:") {
            self.namespaces += 1;
            self.stanza_namespaces += 1;
            if self.namespaces > self.limits.max_namespaces {
                return Err(self.limit(XmlLimit::Namespaces));
            }
            if self.depth >= 1 && self.stanza_namespaces > self.limits.max_namespaces_per_stanza {
                return Err(self.limit(XmlLimit::NamespacesPerStanza));
            }
        }
        Ok(())
    }

    /// One byte of a reference; `None` once it is complete and valid.
    /// Character references must name a character XML 1.0 allows (a parser
    /// that maps the others to U+FFFD would relay what the sender wrote).
    fn reference_step(&self, r: Ref, b: u8) -> Result<Option<Ref>, XmlError> {
        let bad = || not_well_formed("a malformed or forbidden reference");
        Ok(Some(match (r, b) {
            (Ref::Amp, b'#') => Ref::Hash,
            (Ref::Amp, b) if b.is_ascii_alphabetic() => Ref::Named([b, 0, 0, 0], 1),
            (Ref::Hash, b'x') => Ref::Num {
                radix: 16,
                value: 0,
                digits: false,
            },
            (Ref::Hash, b) if b.is_ascii_digit() => Ref::Num {
                radix: 10,
                value: u32::from(b - b'0'),
                digits: true,
            },
            (Ref::Num { radix, value, .. }, b) if b != b';' => {
                let d = (b as char).to_digit(radix).ok_or_else(bad)?;
                let value = value * radix + d;
                if value > 0x10_FFFF {
                    return Err(bad());
                }
                Ref::Num {
                    radix,
                    value,
                    digits: true,
                }
            }
            (Ref::Num { value, digits, .. }, _) => {
                if digits && is_xml_char(value) {
                    return Ok(None);
                }
                return Err(bad());
            }
            (Ref::Named(name, n), b';') => {
                return match &name[..usize::from(n)] {
                    b"amp" | b"lt" | b"gt" | b"apos" | b"quot" => Ok(None),
                    _ => Err(not_well_formed("an undefined entity")),
                };
            }
            (Ref::Named(mut name, n), b) if b.is_ascii_alphabetic() && n < 4 => {
                name[usize::from(n)] = b;
                Ref::Named(name, n + 1)
            }
            _ => return Err(bad()),
        }))
    }

    fn start_tag_end(&mut self, self_closing: bool) -> Result<Option<Frame>, XmlError> {
        self.scan = Scan::Text;
        let name_len = self.name_len(self.name);
        match self.depth {
            0 => {
                if self_closing {
                    return Err(not_well_formed("an empty stream"));
                }
                let text = utf8(&self.buf[self.tok..self.pos])?;
                let header = StreamHeader::parse(text)?;
                self.stream_name = self.buf[self.name..self.name + name_len].to_vec();
                self.depth = 1;
                self.consume();
                Ok(Some(Frame::StreamOpen(Box::new(header))))
            }
            1 if self.buf[self.name..self.name + name_len] == self.stream_name[..] => {
                // A restart is only legal where the protocol asks for one,
                // and then the framer is reset: here it is a second header.
                Err(not_well_formed("a stream header inside the stream"))
            }
            1 if self_closing => self.emit(),
            _ => {
                if !self_closing {
                    self.open
                        .push(((self.name - self.elem) as u32, name_len as u32));
                    self.depth += 1;
                }
                Ok(None)
            }
        }
    }

    /// Length of the name starting at `at` (names are capped as they
    /// arrive, so this scan is short).
    fn name_len(&self, at: usize) -> usize {
        self.buf[at..]
            .iter()
            .take_while(|c| is_name_byte(**c))
            .count()
    }

    fn end_tag_end(&mut self) -> Result<Option<Frame>, XmlError> {
        self.scan = Scan::Text;
        let len = self.name_len(self.name);
        if !self.buf[self.name + len..self.pos - 1]
            .iter()
            .all(u8::is_ascii_whitespace)
        {
            return Err(not_well_formed("a malformed end tag"));
        }
        let name = &self.buf[self.name..self.name + len];
        let expected = match self.depth {
            0 => None,
            1 => Some(&self.stream_name[..]),
            _ => self.open.last().map(|&(at, n)| {
                let at = self.elem + at as usize;
                &self.buf[at..at + n as usize]
            }),
        };
        if expected != Some(name) {
            return Err(not_well_formed("mismatched end tag"));
        }
        if self.depth >= 2 {
            self.open.pop();
        }
        self.depth -= 1;
        match self.depth {
            0 => {
                self.closed = true;
                self.buf = Vec::new();
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

    fn limit(&self, limit: XmlLimit) -> XmlError {
        let l = &self.limits;
        let max = match limit {
            XmlLimit::Depth => l.max_depth,
            XmlLimit::Attributes => l.max_attributes,
            XmlLimit::Namespaces => l.max_namespaces,
            XmlLimit::NamespacesPerStanza => l.max_namespaces_per_stanza,
            XmlLimit::NameLength => l.max_name_length,
            XmlLimit::AttributeLength => l.max_attribute_length,
        };
        XmlError::Limit { limit, max }
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

/// Every byte but the control characters XML forbids and `stops`.
const fn allowed_except(stops: &[u8]) -> [bool; 256] {
    let mut t = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = matches!(b as u8, b'\t' | b'\n' | b'\r');
        b += 1;
    }
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = false;
        i += 1;
    }
    t
}

/// Bytes that, in text or in a quoted value, change nothing: not markup
/// (`<`, `&`, a quote) and not a control character XML forbids.
static PLAIN: [bool; 256] = allowed_except(b"<&'\"");

/// Bytes that continue a name ([`is_name_byte`], less the control
/// characters XML forbids).
static NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 256 {
        t[b] = is_name_byte(b as u8);
        b += 1;
    }
    t
};

/// Bytes that continue an end tag (its name and any space before `>`).
static END_NAME: [bool; 256] = allowed_except(b"<>");

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// A byte that can be part of a name (roxmltree checks the finer rules).
const fn is_name_byte(b: u8) -> bool {
    !b.is_ascii_whitespace() && !matches!(b, b'/' | b'>' | b'<' | b'=' | b'\'' | b'"' | b'&')
}

/// XML 1.0 `Char`.
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF)
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
    fn fast_path_tables_stop_where_the_state_machine_must_look() {
        for b in [b'<', b'&', b'\'', b'"', 0x00, 0x08, 0x1F] {
            assert!(!PLAIN[usize::from(b)], "{b:#x} in text");
        }
        for b in [b'a', b' ', b'\t', b'\n', b'\r', b'>', 0x80, 0xFF] {
            assert!(PLAIN[usize::from(b)], "{b:#x} in text");
        }
        for b in [b' ', b'/', b'>', b'=', b'<', b'&', 0x01] {
            assert!(!NAME[usize::from(b)], "{b:#x} in a name");
        }
        assert!(NAME[usize::from(b':')] && NAME[0xC3]);
        assert!(!END_NAME[usize::from(b'>')] && !END_NAME[usize::from(b'<')] && !END_NAME[0x02]);
        assert!(END_NAME[usize::from(b' ')] && END_NAME[usize::from(b'x')]);
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

    fn first_error(input: &str) -> XmlError {
        frames(input.as_bytes(), 7).unwrap_err()
    }

    #[test]
    fn nesting_is_capped_before_the_parser_sees_it() {
        let nest = |n: usize| {
            format!(
                "{HEADER}<message>{}{}</message>",
                "<a>".repeat(n - 1),
                "</a>".repeat(n - 1)
            )
        };
        assert_eq!(frames(nest(64).as_bytes(), 64).unwrap().len(), 2);
        let e = first_error(&nest(65));
        assert_eq!(e.condition(), "policy-violation");
        assert_eq!(e.limit_label(), Some("xml_depth"));
        assert_eq!(e.to_string(), "elements nested deeper than 64");
        // The 27 KB stanza: refused at the 65th level, long before its end.
        let attack = format!(
            "{HEADER}<message to='bob@localhost/x' type='headline'>{}",
            "<a>".repeat(4000)
        );
        assert_eq!(first_error(&attack).limit_label(), Some("xml_depth"));
    }

    #[test]
    fn attributes_and_namespaces_are_counted() {
        let attrs = |n: usize| {
            let a: String = (0..n).map(|i| format!(" a{i}='v'")).collect();
            format!("{HEADER}<message{a}/>")
        };
        assert!(frames(attrs(64).as_bytes(), 5).is_ok());
        assert_eq!(
            first_error(&attrs(65)).limit_label(),
            Some("xml_attributes")
        );
        let ns = |n: usize| {
            let a: String = (0..n).map(|i| format!(" xmlns:p{i} = \"u\"")).collect();
            format!("{HEADER}<message{a}/>")
        };
        assert!(frames(ns(16).as_bytes(), 3).is_ok());
        assert_eq!(first_error(&ns(17)).limit_label(), Some("xml_namespaces"));
        // Many children, each declaring one: capped per stanza.
        let per_stanza =
            |n: usize| format!("{HEADER}<message>{}</message>", "<x xmlns='u'/>".repeat(n));
        assert!(frames(per_stanza(128).as_bytes(), 11).is_ok());
        assert_eq!(
            first_error(&per_stanza(129)).limit_label(),
            Some("xml_namespaces_per_stanza")
        );
        // The count starts again with each stanza.
        let two = format!(
            "{}{}",
            per_stanza(100),
            "<iq>".to_string() + &"<x xmlns='u'/>".repeat(100) + "</iq>"
        );
        assert_eq!(frames(two.as_bytes(), 13).unwrap().len(), 3);
    }

    #[test]
    fn names_and_values_are_capped() {
        let long = "n".repeat(257);
        assert_eq!(
            first_error(&format!("{HEADER}<{long}/>")).limit_label(),
            Some("xml_name_length")
        );
        assert_eq!(
            first_error(&format!("{HEADER}<a {long}='1'/>")).limit_label(),
            Some("xml_name_length")
        );
        assert_eq!(
            first_error(&format!("{HEADER}<a><b></{long}></a>")).limit_label(),
            Some("xml_name_length")
        );
        let value = "v".repeat(65_537);
        assert_eq!(
            first_error(&format!("{HEADER}<a b='{value}'/>")).limit_label(),
            Some("xml_attribute_length")
        );
        assert!(frames(
            format!("{HEADER}<a b='{}'/>", "v".repeat(65_536)).as_bytes(),
            4096
        )
        .is_ok());
    }

    #[test]
    fn forbidden_characters_are_not_well_formed() {
        for bad in [
            "<body>x&#xD800;y</body>",
            "<body>&#x110000;</body>",
            "<body>&#1114112;</body>",
            "<body>&#0;</body>",
            "<body>&#x1;</body>",
            "<body>&#xFFFE;</body>",
            "<body>&#;</body>",
            "<body>&#x;</body>",
            "<body>&#12a;</body>",
            "<body>&#x00000000000000000000000000D800;</body>",
            "<body>&ampx;</body>",
            "<body>&foo;</body>",
            "<body>&;</body>",
            "<a b='&#xD800;'/>",
            "<body>\u{1}</body>",
            "<a b='x<y'/>",
        ] {
            let e = first_error(&format!("{HEADER}{bad}"));
            assert_eq!(e.condition(), "not-well-formed", "{bad}: {e}");
        }
        let good = format!(
            "{HEADER}<body a='&quot;&#9;'>&#x1F600;&#65;&amp;&lt;&gt;&apos;&#x0041;&#xE000;&#x10FFFF;\t\r\n</body>"
        );
        assert_eq!(frames(good.as_bytes(), 1).unwrap().len(), 2);
    }

    #[test]
    fn a_second_stream_header_is_an_error() {
        let e = first_error(&format!(
            "{HEADER}<message/><stream:stream to='localhost' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        ));
        assert_eq!(e.condition(), "not-well-formed");
        assert!(e.to_string().contains("stream header"), "{e}");
    }

    #[test]
    fn open_tags_cost_no_allocation_each() {
        let mut f = Framer::new(1 << 20);
        f.push(HEADER.as_bytes());
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamOpen(_)))));
        let input = format!("<message>{}", "<a>".repeat(63));
        let mut body = input.into_bytes();
        body.extend(std::iter::repeat_n(b'x', 16_000));
        f.push(&body);
        assert!(f.next_frame().unwrap().is_none());
        // What it holds is the bytes themselves (Vec growth at most
        // doubles them), plus 8 bytes per open level.
        assert!(
            f.held() <= 2 * body.len() + 64 * 8 + 64,
            "{} for {}",
            f.held(),
            body.len()
        );
    }
}
