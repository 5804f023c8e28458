//! A linear pre-scan of an XML text, run before sxd-document sees it. sxd-document resolves namespaces
//! by walking every element's ancestors, so a deeply nested body costs time quadratic in its depth
//! (minutes for 2 MB of nested elements); this scan measures depth and element count in one pass and
//! refuses a document over the limits, and any document type declaration (SOAP forbids DTDs; refusing
//! them rules out entity expansion whatever the parser does with them).
//!
//! The scan is not a validator: on text that is not XML it may stop early or count oddly, and the
//! parser then rejects the text. It never counts less depth than the parser would build, because it
//! follows the same markup rules (comments, CDATA, processing instructions, quoted attribute values).

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooDeep(usize),
    TooManyElements(usize),
    Doctype,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooDeep(max) => write!(f, "the XML nests deeper than {max} elements"),
            Refusal::TooManyElements(max) => write!(f, "the XML has more than {max} elements"),
            Refusal::Doctype => {
                f.write_str("the XML has a document type declaration (not accepted)")
            }
        }
    }
}

/// Where `needle` next occurs in `text` at or after `from` (the end of the text when it does not).
fn find(text: &[u8], from: usize, needle: &[u8]) -> usize {
    text.get(from..)
        .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
        .map_or(text.len(), |i| from + i)
}

/// Checks `xml` against the limits in one pass.
pub fn check(xml: &str, max_depth: usize, max_elements: usize) -> Result<(), Refusal> {
    let text = xml.as_bytes();
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut pos = 0usize;
    while let Some(i) = text
        .get(pos..)
        .and_then(|r| r.iter().position(|&b| b == b'<'))
    {
        let lt = pos + i;
        let rest = &text[lt..];
        if rest.starts_with(b"<!--") {
            pos = find(text, lt + 4, b"-->") + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            pos = find(text, lt + 9, b"]]>") + 3;
        } else if rest.starts_with(b"<!") {
            return Err(Refusal::Doctype);
        } else if rest.starts_with(b"<?") {
            pos = find(text, lt + 2, b"?>") + 2;
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            pos = find(text, lt + 2, b">") + 1;
        } else {
            let (end, self_closing) = start_tag_end(text, lt + 1);
            elements += 1;
            if elements > max_elements {
                return Err(Refusal::TooManyElements(max_elements));
            }
            if !self_closing {
                depth += 1;
                if depth > max_depth {
                    return Err(Refusal::TooDeep(max_depth));
                }
            }
            pos = end + 1;
        }
    }
    Ok(())
}

/// The index of the `>` ending the start tag whose name begins at `from` (skipping quoted attribute
/// values), and whether the tag closes itself (`/>`).
fn start_tag_end(text: &[u8], from: usize) -> (usize, bool) {
    let mut pos = from;
    while pos < text.len() {
        match text[pos] {
            quote @ (b'"' | b'\'') => {
                pos = find(text, pos + 1, &[quote]) + 1;
            }
            b'>' => return (pos, pos > from && text[pos - 1] == b'/'),
            _ => pos += 1,
        }
    }
    (text.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(xml: &str, depth: usize) -> bool {
        check(xml, depth, usize::MAX).is_ok()
    }

    #[test]
    fn depth_counts_open_elements_only() {
        let xml = r#"<a x="1"><b/><c y='>'><d></d></c><!-- <e><f><g> --><![CDATA[<h><i>]]><?pi <j>?></a>"#;
        assert!(depth_ok(xml, 3));
        assert_eq!(check(xml, 2, 100), Err(Refusal::TooDeep(2)));
        assert_eq!(check(xml, 3, 3), Err(Refusal::TooManyElements(3)));
        assert!(check(xml, 3, 4).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_in_one_pass() {
        let n = 200_000;
        let xml = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert_eq!(check(&xml, 128, usize::MAX), Err(Refusal::TooDeep(128)));
        let siblings = "<a></a>".repeat(n);
        assert!(depth_ok(&siblings, 1));
    }

    #[test]
    fn doctypes_are_refused() {
        let laughs =
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><lolz>&lol;</lolz>"#;
        assert_eq!(check(laughs, 128, 100), Err(Refusal::Doctype));
    }

    #[test]
    fn unterminated_markup_ends_the_scan() {
        for xml in [
            "<a",
            "<a b=\"",
            "<!--",
            "<![CDATA[",
            "<?x",
            "</",
            "<",
            "a<b",
        ] {
            assert!(check(xml, 8, 8).is_ok(), "{xml}");
        }
    }
}
