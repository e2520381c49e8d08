//! Arbitrary bytes as the form body of RFC 7662 introspection and RFC 7009 revocation, through
//! the extractor their handlers use (`routes::oauth::OAuthForm`). Never a panic, and a body that
//! is refused is a 400 `invalid_request` (or 413), never a 5xx.
#![no_main]

use axum::extract::FromRequest;
use libfuzzer_sys::fuzz_target;
use veto_fuzz::{ready, refused_with_4xx, request};
use veto_server::routes::oauth::OAuthForm;

fuzz_target!(|data: &[u8]| {
    refused_with_4xx(ready(OAuthForm::from_request(
        request("application/x-www-form-urlencoded", data),
        &(),
    )));
});
