//! Opaque keyset-pagination cursors: the (time, id) of the last item of a page, base64url'd.
//! Opaque so callers cannot build one by hand and so the encoding may change.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::StoreError;

pub struct Cursor {
    pub at: i64,
    pub id: String,
}

impl Cursor {
    pub fn new(at: i64, id: &str) -> Self {
        Cursor {
            at,
            id: id.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.at, self.id))
    }

    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let raw = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| StoreError::BadCursor)?;
        let text = String::from_utf8(raw).map_err(|_| StoreError::BadCursor)?;
        let (at, id) = text.split_once(':').ok_or(StoreError::BadCursor)?;
        let at = at.parse().map_err(|_| StoreError::BadCursor)?;
        if id.is_empty() {
            return Err(StoreError::BadCursor);
        }
        Ok(Cursor {
            at,
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let c = Cursor::decode(&Cursor::new(1_700_000_000, "a:b").encode()).unwrap();
        assert_eq!((c.at, c.id.as_str()), (1_700_000_000, "a:b"));
        for bad in ["", "!!", "bm9jb2xvbg", "MTIzOg"] {
            assert!(
                matches!(Cursor::decode(bad), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
    }
}
