//! OAuth scopes as the token endpoint takes them (RFC 6749 §3.3) and as access tokens carry
//! them (the `scope` claim, RFC 9068 §2.2.3): space-delimited scope tokens. These are the
//! scopes of the tokens veto issues for resource servers, unrelated to the scopes of veto's own
//! API keys (`apikey::Scope`).
//!
//! veto keeps no registry of them: a client asks for the scopes its resource servers
//! understand, as it could put any claim into a token it issues through the management API.
//! What veto enforces is the syntax, a bound, and RFC 6749 §6: a refresh may narrow the scope
//! originally granted, never widen it.

/// Longest `scope` value accepted, in bytes: a scope rides in every token minted from it.
pub const MAX_SCOPE_BYTES: usize = 1024;

/// The scope tokens of a `scope` value, in the order given, without repeats. `Err` says what is
/// wrong: empty, too long, a character outside RFC 6749 §3.3's NQCHAR (`%x21 / %x23-5B /
/// %x5D-7E`: no control characters, space inside a token, `"` or `\`), or an empty token
/// (two spaces, or a leading or trailing one).
pub fn parse(value: &str) -> Result<Vec<&str>, String> {
    if value.is_empty() {
        return Err("scope is empty; leave the parameter out, or give scope tokens".into());
    }
    if value.len() > MAX_SCOPE_BYTES {
        return Err(format!("scope is longer than {MAX_SCOPE_BYTES} bytes"));
    }
    let mut out: Vec<&str> = Vec::new();
    for token in value.split(' ') {
        if token.is_empty() {
            return Err(
                "scope tokens are separated by single spaces, with none at either end".into(),
            );
        }
        if let Some(c) = token.chars().find(|c| !is_nqchar(*c)) {
            return Err(format!(
                "scope token {token:?} holds {c:?}; RFC 6749 §3.3 allows printable ASCII except space, '\"' and '\\'"
            ));
        }
        if !out.contains(&token) {
            out.push(token);
        }
    }
    Ok(out)
}

fn is_nqchar(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

/// The scope claim's value for these tokens: joined by single spaces.
pub fn join(tokens: &[&str]) -> String {
    tokens.join(" ")
}

/// RFC 6749 §6: the tokens of `requested` that were not `granted` (empty when the request
/// stays within the grant). Nothing was granted when the refresh token carries no scope.
pub fn beyond<'a>(requested: &[&'a str], granted: Option<&str>) -> Vec<&'a str> {
    let granted: Vec<&str> = granted.map_or_else(Vec::new, |g| g.split(' ').collect());
    requested
        .iter()
        .copied()
        .filter(|r| !granted.contains(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_delimited_tokens_and_drops_repeats() {
        assert_eq!(parse("read").unwrap(), vec!["read"]);
        assert_eq!(
            parse("read write:all https://x.example/a read").unwrap(),
            vec!["read", "write:all", "https://x.example/a"]
        );
    }

    #[test]
    fn refuses_what_rfc_6749_does_not_allow() {
        for bad in [
            "",
            " read",
            "read ",
            "read  write",
            "re\"ad",
            "re\\ad",
            "read\twrite",
            "caf\u{e9}",
            "a\u{7f}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&"a".repeat(MAX_SCOPE_BYTES)).is_ok());
        assert!(parse(&"a".repeat(MAX_SCOPE_BYTES + 1)).is_err());
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen() {
        assert!(beyond(&["read"], Some("read write")).is_empty());
        assert!(beyond(&["write", "read"], Some("read write")).is_empty());
        assert_eq!(
            beyond(&["read", "admin"], Some("read write")),
            vec!["admin"]
        );
        assert_eq!(beyond(&["read"], None), vec!["read"]);
    }
}
