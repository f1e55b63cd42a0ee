//! A cheap byte scanner for an XMPP stream: finds where the stream header
//! and each top-level element end (depth counting, quoted attributes,
//! comments, CDATA), and reads a few attributes or a child's text out of an
//! element's bytes. No DOM: the generator must not be the bottleneck, and
//! it only ever needs an id, a type or a short text.

use crate::error::Error;

/// What the scanner found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `<stream:stream …>`: the bytes of the opening tag.
    Header(usize, usize),
    /// A complete top-level element (stanza or nonza).
    Element(usize, usize),
    /// `</stream:stream>`.
    End,
}

/// Bytes received and not yet returned as frames.
pub struct Scanner {
    buf: Vec<u8>,
    /// Everything before this has been returned.
    start: usize,
    /// An element larger than this is an error (a broken or hostile peer
    /// must not make the generator buffer without bound).
    max: usize,
}

impl Scanner {
    pub fn new(max: usize) -> Scanner {
        Scanner {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// The buffer to read into: compacted first, with room for `room` bytes.
    pub fn spare(&mut self, room: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            // Returned frames are dead: move the live tail to the front.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(room);
        &mut self.buf
    }

    /// Appends bytes (tests, and callers that read elsewhere).
    pub fn push(&mut self, bytes: &[u8]) {
        self.spare(bytes.len()).extend_from_slice(bytes);
    }

    /// Drops everything buffered (after STARTTLS: bytes sent in the clear
    /// after `<proceed/>` must never be used).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Unreturned bytes.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn slice(&self, from: usize, to: usize) -> &[u8] {
        &self.buf[from..to]
    }

    /// The next complete frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        let buf = &self.buf;
        let mut i = self.start;
        // Whitespace between elements (keepalives) is skipped.
        while i < buf.len() && buf[i] != b'<' {
            i += 1;
        }
        self.start = i;
        if i >= buf.len() {
            return Ok(None);
        }
        if buf.get(i + 1) == Some(&b'?') {
            // The XML declaration: skip it and look again.
            if let Some(e) = find(buf, i, b"?>") {
                self.start = e + 2;
                return self.next_frame();
            }
            return Ok(None);
        }
        let found = match buf.get(i + 1) {
            None => None,
            Some(b'/') => tag_end(buf, i)?.map(|e| (Frame::End, e + 1)),
            Some(_) if is_stream_open(buf, i) => {
                tag_end(buf, i)?.map(|e| (Frame::Header(i, e + 1), e + 1))
            }
            Some(_) => element_end(buf, i)?.map(|e| (Frame::Element(i, e), e)),
        };
        match found {
            Some((frame, end)) => {
                self.start = end;
                Ok(Some(frame))
            }
            None if self.pending() > self.max => Err(Error::TooLarge(self.max)),
            None => Ok(None),
        }
    }
}

fn is_stream_open(buf: &[u8], i: usize) -> bool {
    // Servers use the `stream:` prefix; the name alone settles it.
    let name = tag_name(&buf[i..]);
    name == b"stream:stream" || name == b"stream"
}

/// Index of the `>` closing the tag that starts at `i` (quotes respected).
fn tag_end(buf: &[u8], i: usize) -> Result<Option<usize>, Error> {
    let mut quote = 0u8;
    for (k, &b) in buf.iter().enumerate().skip(i + 1) {
        match b {
            b'"' | b'\'' if quote == 0 => quote = b,
            q if q == quote => quote = 0,
            b'>' if quote == 0 => return Ok(Some(k)),
            b'<' if quote == 0 => return Err(Error::Protocol("'<' inside a tag".into())),
            _ => {}
        }
    }
    Ok(None)
}

/// End (exclusive) of the element starting at `i`, by depth counting.
fn element_end(buf: &[u8], mut i: usize) -> Result<Option<usize>, Error> {
    let mut depth = 0usize;
    loop {
        // `i` is at a '<'.
        if buf.len() < i + 2 {
            return Ok(None);
        }
        if buf[i + 1] == b'!' {
            let (open, close): (&[u8], &[u8]) = if buf[i..].starts_with(b"<![CDATA[") {
                (b"<![CDATA[", b"]]>")
            } else if buf[i..].starts_with(b"<!--") {
                (b"<!--", b"-->")
            } else if buf.len() < i + 9 {
                return Ok(None);
            } else {
                return Err(Error::Protocol("unexpected <! in a stanza".into()));
            };
            match find(buf, i + open.len(), close) {
                Some(e) => i = e + close.len(),
                None => return Ok(None),
            }
        } else {
            let Some(e) = tag_end(buf, i)? else {
                return Ok(None);
            };
            if buf[i + 1] == b'/' {
                depth = depth.saturating_sub(1);
            } else if buf[e - 1] != b'/' {
                depth += 1;
            }
            i = e + 1;
            if depth == 0 {
                return Ok(Some(i));
            }
        }
        // Text up to the next tag.
        match buf[i..].iter().position(|&b| b == b'<') {
            Some(k) => i += k,
            None => return Ok(None),
        }
    }
}

fn find(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    buf.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|k| k + from)
}

/// The qualified name of the element whose bytes start with `<`.
pub fn tag_name(el: &[u8]) -> &[u8] {
    let rest = el.get(1..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The raw (not entity-decoded) value of attribute `name` on the
/// element's own start tag.
pub fn attr<'a>(el: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let head_end = start_tag_len(el);
    let head = &el[..head_end];
    let name = name.as_bytes();
    let mut from = 0;
    while let Some(k) = find(head, from, name) {
        from = k + 1;
        // Whole attribute name only: whitespace before, '=' after.
        if k == 0 || !head[k - 1].is_ascii_whitespace() {
            continue;
        }
        let mut j = k + name.len();
        while head.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        if head.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while head.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        let q = *head.get(j)?;
        if q != b'"' && q != b'\'' {
            return None;
        }
        let v = &head[j + 1..];
        let end = v.iter().position(|&b| b == q)?;
        return Some(&v[..end]);
    }
    None
}

/// Length of the element's start tag, `>` included.
fn start_tag_len(el: &[u8]) -> usize {
    let mut quote = 0u8;
    for (k, &b) in el.iter().enumerate() {
        match b {
            b'"' | b'\'' if quote == 0 => quote = b,
            q if q == quote => quote = 0,
            b'>' if quote == 0 => return k + 1,
            _ => {}
        }
    }
    el.len()
}

/// The text of the first descendant named `name` (local name, any
/// prefix), e.g. the `<jid>` of a bind result. Empty for `<name/>`.
pub fn child_text<'a>(el: &'a [u8], name: &str) -> Option<&'a [u8]> {
    child_texts(el, name).into_iter().next()
}

/// Whether a descendant element named `name` exists.
pub fn has_child(el: &[u8], name: &str) -> bool {
    child_text(el, name).is_some()
}

/// Every `<name>text</name>` descendant's text, in order (e.g. SASL
/// mechanisms).
pub fn child_texts<'a>(el: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = start_tag_len(el);
    while let Some(k) = find(el, from, b"<") {
        from = k + 1;
        if el.get(k + 1) == Some(&b'/') {
            continue;
        }
        let n = tag_name(&el[k..]);
        let local = n.rsplit(|&b| b == b':').next().unwrap_or(n);
        if local != name.as_bytes() {
            continue;
        }
        let head = start_tag_len(&el[k..]);
        if head >= 2 && el[k + head - 2] == b'/' {
            out.push(&el[k + head - 1..k + head - 1]);
            continue;
        }
        let body = &el[k + head..];
        let end = body.iter().position(|&b| b == b'<').unwrap_or(body.len());
        out.push(&body[..end]);
    }
    out
}

/// The value of attribute `attr_name` on every descendant named `name`
/// (e.g. the `jid` of each roster `<item>`).
pub fn child_attrs<'a>(el: &'a [u8], name: &str, attr_name: &str) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = start_tag_len(el);
    while let Some(k) = find(el, from, b"<") {
        from = k + 1;
        let n = tag_name(&el[k..]);
        let local = n.rsplit(|&b| b == b':').next().unwrap_or(n);
        if el.get(k + 1) != Some(&b'/') && local == name.as_bytes() {
            if let Some(v) = attr(&el[k..], attr_name) {
                out.push(v);
            }
        }
    }
    out
}

/// The text right inside the element (up to its first child or end tag),
/// e.g. the base64 of a SASL `<challenge>`. Empty for `<x/>`.
pub fn text(el: &[u8]) -> &[u8] {
    let head = start_tag_len(el);
    if head >= 2 && el[head - 2] == b'/' {
        return &[];
    }
    let body = &el[head..];
    let end = body.iter().position(|&b| b == b'<').unwrap_or(body.len());
    &body[..end]
}

/// The local name of the element's first child element.
pub fn first_child_name(el: &[u8]) -> Option<String> {
    let head = start_tag_len(el);
    let k = find(el, head, b"<")?;
    if el.get(k + 1) == Some(&b'/') {
        return None;
    }
    let n = tag_name(&el[k..]);
    let local = n.rsplit(|&b| b == b':').next().unwrap_or(n);
    Some(String::from_utf8_lossy(local).into_owned())
}

/// The condition of a stanza error: the first child of its `<error>`.
pub fn error_condition(el: &[u8]) -> String {
    let mut from = start_tag_len(el);
    while let Some(k) = find(el, from, b"<error") {
        from = k + 1;
        if matches!(
            el.get(k + 6),
            Some(b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r')
        ) {
            return first_child_name(&el[k..]).unwrap_or_else(|| "undefined-condition".into());
        }
    }
    "undefined-condition".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<String> {
        let mut s = Scanner::new(1 << 20);
        let mut out = Vec::new();
        for chunk in input {
            s.push(chunk);
            while let Some(f) = s.next_frame().expect("scan") {
                out.push(match f {
                    Frame::Header(a, b) | Frame::Element(a, b) => {
                        String::from_utf8_lossy(s.slice(a, b)).into_owned()
                    }
                    Frame::End => "END".into(),
                });
            }
        }
        out
    }

    #[test]
    fn header_elements_and_end_across_splits() {
        let whole: &[u8] = b"<?xml version='1.0'?><stream:stream from='localhost' id='x>y' \
            xmlns='jabber:client'><stream:features><bind xmlns='b'/></stream:features> \
            <message to='a' id=\"1\"><body>x &lt; y</body></message>\n<presence/></stream:stream>";
        let want = vec![
            "<stream:stream from='localhost' id='x>y' xmlns='jabber:client'>".to_string(),
            "<stream:features><bind xmlns='b'/></stream:features>".into(),
            "<message to='a' id=\"1\"><body>x &lt; y</body></message>".into(),
            "<presence/>".into(),
            "END".into(),
        ];
        assert_eq!(frames(&[whole]), want);
        // Every split point gives the same frames.
        for cut in 1..whole.len() {
            assert_eq!(
                frames(&[&whole[..cut], &whole[cut..]]),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn cdata_and_comments_do_not_count_depth() {
        let got = frames(&[
            b"<message><body><![CDATA[</body><x>]]></body><!-- </message> --></message><a/>",
        ]);
        assert_eq!(
            got,
            vec![
                "<message><body><![CDATA[</body><x>]]></body><!-- </message> --></message>",
                "<a/>"
            ]
        );
    }

    #[test]
    fn oversized_element_is_an_error() {
        let mut s = Scanner::new(16);
        s.push(b"<message><body>0123456789012345678901234567890");
        assert!(matches!(s.next_frame(), Err(Error::TooLarge(16))));
    }

    #[test]
    fn attributes() {
        let el = b"<message xml:id='no' id='m1' type=\"chat\"><body id='inner'>hi</body></message>";
        assert_eq!(attr(el, "id"), Some(&b"m1"[..]));
        assert_eq!(attr(el, "type"), Some(&b"chat"[..]));
        assert_eq!(attr(el, "to"), None);
        assert_eq!(tag_name(el), b"message");
        assert_eq!(attr(b"<iq id = 'a b'/>", "id"), Some(&b"a b"[..]));
    }

    #[test]
    fn child_text_and_lists() {
        let el = b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                   <jid>u@localhost/r</jid></bind></iq>";
        assert_eq!(child_text(el, "jid"), Some(&b"u@localhost/r"[..]));
        assert!(has_child(el, "bind"));
        assert!(!has_child(el, "session"));
        let f = b"<stream:features><mechanisms xmlns='m'><mechanism>SCRAM-SHA-1</mechanism>\
                  <mechanism>PLAIN</mechanism></mechanisms><sm/></stream:features>";
        assert_eq!(
            child_texts(f, "mechanism"),
            vec![&b"SCRAM-SHA-1"[..], &b"PLAIN"[..]]
        );
        assert_eq!(child_text(b"<success xmlns='s'/>", "x"), None);
        assert_eq!(text(b"<success xmlns='s'>dj1h</success>"), b"dj1h");
        let roster = b"<iq type='result'><query xmlns='jabber:iq:roster'><item jid='a@l' \
                       subscription='none'/><item name='x' jid=\"b@l\"><group>g</group></item></query></iq>";
        assert_eq!(
            child_attrs(roster, "item", "jid"),
            vec![&b"a@l"[..], &b"b@l"[..]]
        );
        assert_eq!(text(b"<success xmlns='s'/>"), b"");
        assert_eq!(
            first_child_name(b"<failure xmlns='s'><not-authorized/></failure>").as_deref(),
            Some("not-authorized")
        );
        assert_eq!(
            error_condition(b"<iq type='error' id='x'><bind/><error type='cancel'><conflict xmlns='e'/></error></iq>"),
            "conflict"
        );
    }
}
