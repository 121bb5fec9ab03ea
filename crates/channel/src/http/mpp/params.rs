//! HTTP authentication fields (RFC 9110 section 11): the challenges of a `WWW-Authenticate`
//! value and the credentials of an `Authorization` value.
//!
//! ```text
//! challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! One value may hold several challenges, separated by commas as their parameters are: a comma
//! followed by `token BWS "="` starts another parameter, any other token another challenge.
//! Scheme and parameter names are case-insensitive (returned lowercase); a parameter named
//! twice in one challenge, a control character or an unterminated quoted string is a syntax
//! error. Values are at most [`MAX_HEADER_LEN`] bytes; the parse is one pass over them.

use core::fmt;

use crate::http::MAX_HEADER_LEN;

/// One challenge, or one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthChallenge {
    /// The scheme, lowercase.
    pub scheme: String,
    /// The token68 form, if the challenge carries one instead of parameters.
    pub token68: Option<String>,
    /// The parameters in their order: names lowercase, values unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl AuthChallenge {
    /// The value of the parameter `name` (lowercase), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why an authentication field does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Longer than [`MAX_HEADER_LEN`].
    TooLong,
    /// Not of the grammar, at this byte offset.
    Syntax(usize, &'static str),
    /// A parameter named twice in one challenge.
    Duplicate(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "value is longer than {MAX_HEADER_LEN} bytes"),
            Self::Syntax(at, what) => write!(f, "{what} at byte {at}"),
            Self::Duplicate(name) => write!(f, "parameter {name:?} is given twice"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Every challenge of a `WWW-Authenticate` value, in order (empty list elements skipped).
pub fn parse_challenges(value: &str) -> Result<Vec<AuthChallenge>, AuthError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(AuthError::TooLong);
    }
    let mut p = Parser {
        b: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_separators();
        if p.end() {
            return Ok(out);
        }
        out.push(p.challenge()?);
        p.skip_ows();
        if p.end() {
            return Ok(out);
        }
        p.expect(b',', "expected a comma between challenges")?;
    }
}

/// The one credential of an `Authorization` value.
pub fn parse_credentials(value: &str) -> Result<AuthChallenge, AuthError> {
    let mut all = parse_challenges(value)?;
    match (all.pop(), all.is_empty()) {
        (Some(one), true) => Ok(one),
        (None, _) => Err(AuthError::Syntax(0, "no credentials")),
        (Some(_), false) => Err(AuthError::Syntax(0, "more than one credential")),
    }
}

/// `value` as a quoted-string: `"`, with `"` and `\` escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Visible ASCII, space and tab, and the bytes of non-ASCII text (RFC 9110's obs-text).
fn is_quotable(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn error<T>(&self, what: &'static str) -> Result<T, AuthError> {
        Err(AuthError::Syntax(self.i, what))
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), AuthError> {
        if self.peek() != Some(b) {
            return self.error(what);
        }
        self.i += 1;
        Ok(())
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Whitespace and commas: the empty elements a list may hold.
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        // Only ASCII bytes are taken, so the slice is whole characters.
        core::str::from_utf8(&self.b[start..self.i]).unwrap_or_default()
    }

    fn token(&mut self, what: &'static str) -> Result<String, AuthError> {
        let token = self.take_while(is_tchar).to_owned();
        if token.is_empty() {
            return self.error(what);
        }
        Ok(token)
    }

    /// Whether an auth-param starts here: `token BWS "=" BWS`, then a token or a quote (so that
    /// a token68's padding is not read as a parameter). Consumes nothing.
    fn at_param(&mut self) -> bool {
        let start = self.i;
        let found = !self.take_while(is_tchar).is_empty() && {
            self.skip_ows();
            self.peek() == Some(b'=') && {
                self.i += 1;
                self.skip_ows();
                self.peek().is_some_and(|b| b == b'"' || is_tchar(b))
            }
        };
        self.i = start;
        found
    }

    fn challenge(&mut self) -> Result<AuthChallenge, AuthError> {
        let scheme = self.token("expected an auth-scheme")?.to_ascii_lowercase();
        let mut challenge = AuthChallenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let spaced = matches!(self.peek(), Some(b' '));
        self.skip_ows();
        if !spaced || self.end() || self.peek() == Some(b',') {
            return Ok(challenge);
        }
        if !self.at_param() {
            let token = self.take_while(is_token68).to_owned();
            if token.is_empty() {
                return self.error("expected a token68 or an auth-param");
            }
            let padding = self.take_while(|b| b == b'=').len();
            challenge.token68 = Some(token + &"=".repeat(padding));
            return Ok(challenge);
        }
        loop {
            let name = self
                .token("expected a parameter name")?
                .to_ascii_lowercase();
            self.skip_ows();
            self.expect(b'=', "expected =")?;
            self.skip_ows();
            let value = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.token("expected a token or a quoted string")?
            };
            if challenge.param(&name).is_some() {
                return Err(AuthError::Duplicate(name));
            }
            challenge.params.push((name, value));
            // A comma ends this parameter; what follows it is another one or another challenge.
            let after = self.i;
            self.skip_ows();
            if self.end() {
                return Ok(challenge);
            }
            if self.peek() != Some(b',') {
                return self.error("expected a comma after a parameter");
            }
            self.skip_separators();
            if self.end() || !self.at_param() {
                self.i = after;
                return Ok(challenge);
            }
        }
    }

    fn quoted(&mut self) -> Result<String, AuthError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.error("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b) if is_quotable(b) => out.push(b),
                        _ => return self.error("bad escape in a quoted string"),
                    }
                }
                Some(b) if is_quotable(b) => out.push(b),
                Some(_) => return self.error("control character in a quoted string"),
            }
            self.i += 1;
        }
        // Bytes of non-ASCII text are copied whole from a `str`, so this is UTF-8 again.
        String::from_utf8(out).map_err(|_| AuthError::Syntax(self.i, "not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(c: &AuthChallenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn several_challenges_in_one_value() {
        let value = r#"Basic realm="a, b", PAYMENT id="x", Realm=host,method="trickle" ,, Bearer abc==, Other"#;
        let all = parse_challenges(value).expect("parses");
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "payment", "bearer", "other"]);
        assert_eq!(params(&all[0]), [("realm", "a, b")]);
        assert_eq!(
            params(&all[1]),
            [("id", "x"), ("realm", "host"), ("method", "trickle")]
        );
        assert_eq!(all[2].token68.as_deref(), Some("abc=="));
        assert_eq!(
            all[3],
            AuthChallenge {
                scheme: "other".into(),
                token68: None,
                params: vec![],
            }
        );
    }

    #[test]
    fn quoted_strings_unescape() {
        let c = parse_credentials(r#"Payment a="q\"uo\\te\d", b = "", c="é""#).expect("parses");
        assert_eq!(params(&c), [("a", r#"q"uo\ted"#), ("b", ""), ("c", "é")]);
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "Payment id=\"open",
            "Payment id=\"a\" realm=\"b\"",
            "Payment id=\"a\", id=\"b\"",
            "Payment =x",
            "Payment id=\"a\x01\"",
            "Payment id=\"a\\\x01\"",
            "\"Payment\"",
            "Payment @",
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_challenges(&"a".repeat(MAX_HEADER_LEN + 1)),
            Err(AuthError::TooLong)
        );
        // Valid token68 forms, not parameters.
        let c = parse_credentials("Payment id=").expect("parses");
        assert_eq!(c.token68.as_deref(), Some("id="));
        assert!(parse_credentials("").is_err());
        assert!(parse_credentials("Payment abc, Basic def").is_err());
    }

    #[test]
    fn a_scheme_without_a_space_takes_nothing_after_it() {
        // `Payment,x=1`: the scheme ends at the comma; what follows is no challenge.
        assert!(parse_challenges("Payment,x=1").is_err());
        assert_eq!(parse_challenges("Payment,").expect("parses").len(), 1);
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,200}") {
            let _ = parse_challenges(&text);
        }

        #[test]
        fn quoted_values_round_trip(
            values in proptest::collection::vec("[ -~é\t]{0,20}", 1..5),
            scheme in "[A-Za-z][A-Za-z0-9-]{0,10}",
        ) {
            let value = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("P{i} = {}", quote(v)))
                .collect::<Vec<_>>()
                .join(", ");
            let header = format!("{scheme} {value}, {scheme} {value}");
            let all = parse_challenges(&header).expect("parses");
            prop_assert_eq!(all.len(), 2);
            for c in all {
                prop_assert_eq!(&c.scheme, &scheme.to_ascii_lowercase());
                let got: Vec<String> = c.params.into_iter().map(|(_, v)| v).collect();
                prop_assert_eq!(&got, &values);
            }
        }
    }
}
