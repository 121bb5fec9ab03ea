//! Request paths the payee prices: only paths that every server reads the same way.
//!
//! A price is looked up on the path the client sent, and the site (behind the proxy, or the
//! service under the layer) answers for the path it understands. The two must be the same
//! path, or a priced page is served free: `/x/../articles/1` matches no price but is
//! `/articles/1` to a URL parser, and other servers merge `//`, decode `%61` or `%2f`, strip
//! `;params` or trailing dots, or treat `\` as `/`. Rather than guess how a site normalises, the
//! payee takes only paths that no normalisation changes, and refuses the rest (400) whether they
//! are priced or not. Prices match ASCII letters in any case, so a site that matches paths
//! without regard to case is priced the same way.

use core::fmt;

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmbiguousPath {
    /// It does not start with `/`.
    NotAbsolute,
    /// It has an empty segment (`//`).
    EmptySegment,
    /// It has a `.` or `..` segment.
    DotSegment,
    /// A segment ends with `.`, which some servers strip.
    TrailingDot,
    /// A `\`, which some servers read as `/`.
    Backslash,
    /// A `;`, which some servers strip with what follows it in the segment.
    Semicolon,
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// A percent-encoded letter, digit or `-._~`, which decodes to the same path as the
    /// character itself (RFC 3986 section 6.2.2.2).
    EncodedUnreserved,
    /// A percent-encoded `/`, `\`, `?`, `#` or `;`, which some servers decode before routing.
    EncodedDelimiter,
    /// A percent-encoded control character.
    EncodedControl,
}

impl AmbiguousPath {
    /// A short reason, for the client.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAbsolute => "the path does not start with /",
            Self::EmptySegment => "the path has an empty segment (//)",
            Self::DotSegment => "the path has a . or .. segment",
            Self::TrailingDot => "a path segment ends with .",
            Self::Backslash => "the path has a backslash",
            Self::Semicolon => "the path has a ;",
            Self::BadPercent => "the path has a % not followed by two hex digits",
            Self::EncodedUnreserved => {
                "the path percent-encodes a letter, digit or -._~ (write the character itself)"
            }
            Self::EncodedDelimiter => "the path percent-encodes /, \\, ?, # or ;",
            Self::EncodedControl => "the path percent-encodes a control character",
        }
    }
}

impl fmt::Display for AmbiguousPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for AmbiguousPath {}

/// Checks that `path` (without its query) reads the same to every server; see the module doc.
pub fn check(path: &str) -> Result<(), AmbiguousPath> {
    let rest = path.strip_prefix('/').ok_or(AmbiguousPath::NotAbsolute)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        // Only the last segment may be empty: `/` itself, or a trailing slash.
        if segment.is_empty() && i != last {
            return Err(AmbiguousPath::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(AmbiguousPath::DotSegment);
        }
        if segment.ends_with('.') {
            return Err(AmbiguousPath::TrailingDot);
        }
        check_segment(segment)?;
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), AmbiguousPath> {
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => return Err(AmbiguousPath::Backslash),
            b';' => return Err(AmbiguousPath::Semicolon),
            b'%' => {
                let hi = bytes.next().and_then(hex);
                let lo = bytes.next().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(AmbiguousPath::BadPercent);
                };
                let decoded = hi << 4 | lo;
                if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                    return Err(AmbiguousPath::EncodedUnreserved);
                }
                if b"/\\?#;".contains(&decoded) {
                    return Err(AmbiguousPath::EncodedDelimiter);
                }
                if decoded.is_ascii_control() {
                    return Err(AmbiguousPath::EncodedControl);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass() {
        for p in [
            "/",
            "/articles",
            "/articles/",
            "/articles/1.html",
            "/a/b.c/d",
            "/caf%C3%A9",
            "/a%20b",
            "/%40scope",
            "/.well-known/x",
            "/a..b",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use AmbiguousPath::*;
        for (p, why) in [
            ("articles/1", NotAbsolute),
            ("", NotAbsolute),
            ("//articles/1", EmptySegment),
            ("/articles//1", EmptySegment),
            ("/./articles/1", DotSegment),
            ("/x/../articles/1", DotSegment),
            ("/articles/..", DotSegment),
            ("/articles./1", TrailingDot),
            ("/articles/1.", TrailingDot),
            ("/articles\\1", Backslash),
            ("/articles;x/1", Semicolon),
            ("/articles/1%", BadPercent),
            ("/articles/1%2", BadPercent),
            ("/articles/%zz", BadPercent),
            ("/%2e/articles/1", EncodedUnreserved),
            ("/%2E%2E/articles/1", EncodedUnreserved),
            ("/free/%2e%2e/articles/1", EncodedUnreserved),
            ("/%70aid/a.html", EncodedUnreserved),
            ("/articles/%31", EncodedUnreserved),
            ("/articles%7e", EncodedUnreserved),
            ("/articles%2f1", EncodedDelimiter),
            ("/articles%2F1", EncodedDelimiter),
            ("/articles%5c1", EncodedDelimiter),
            ("/articles%3F1", EncodedDelimiter),
            ("/articles%23", EncodedDelimiter),
            ("/articles%3b/1", EncodedDelimiter),
            ("/articles%00", EncodedControl),
            ("/articles%0a", EncodedControl),
        ] {
            assert_eq!(check(p), Err(why), "{p}");
        }
    }
}
