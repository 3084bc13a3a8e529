//! Page sizes and opaque keyset page tokens shared by every `List` method.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::invalid_field;

/// Page size when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page size accepted.
pub const MAX_PAGE_SIZE: i64 = 500;

/// The page size asked for: 0 means the default; negative or above the maximum is refused.
pub fn page_size(requested: i32) -> Result<i64, tonic::Status> {
    match i64::from(requested) {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(invalid_field(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Encodes the keyset position after the last item of a page. The token is opaque to clients;
/// it also binds the filter (`filter_hash`), so a token cannot be replayed with other filters.
pub fn encode_token<K: Serialize>(key: &K, filter_hash: u64) -> String {
    let json = serde_json::to_vec(&(key, filter_hash)).expect("page keys serialize");
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a page token made by [`encode_token`] for the same filter; empty means the first page.
pub fn decode_token<K: DeserializeOwned>(
    token: &str,
    filter_hash: u64,
) -> Result<Option<K>, tonic::Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        invalid_field(
            "page_token",
            "is not a token returned by this list with the same filters",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let (key, hash): (K, u64) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if hash != filter_hash {
        return Err(bad());
    }
    Ok(Some(key))
}

/// A page of a list: the page size asked, and the keyset position after which it starts,
/// bound to the filter so a token cannot be replayed with other filters.
#[derive(Debug)]
pub struct Page<K> {
    /// Items per page.
    pub size: i64,
    /// The key of the last item of the previous page; `None` on the first page.
    pub after: Option<K>,
    filter_hash: u64,
}

impl<K: Serialize + DeserializeOwned> Page<K> {
    /// The page of `page_size` after `page_token`, for a list filtered by `filter`.
    pub fn of(
        requested_size: i32,
        page_token: &str,
        filter: &impl std::hash::Hash,
    ) -> Result<Self, tonic::Status> {
        use std::hash::{DefaultHasher, Hasher as _};
        let mut hasher = DefaultHasher::new();
        filter.hash(&mut hasher);
        let filter_hash = hasher.finish();
        Ok(Self {
            size: page_size(requested_size)?,
            after: decode_token(page_token, filter_hash)?,
            filter_hash,
        })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts `rows` to the page and returns the token of the next page (empty on the last).
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> K) -> String {
        if rows.len() as i64 > self.size {
            rows.truncate(usize::try_from(self.size).unwrap_or(usize::MAX));
            rows.last()
                .map(|last| encode_token(&key(last), self.filter_hash))
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_filters() {
        let token = encode_token(&("acme".to_owned(), 7_u32), 42);
        let key: Option<(String, u32)> = decode_token(&token, 42).unwrap();
        assert_eq!(key, Some(("acme".to_owned(), 7)));
        assert!(decode_token::<(String, u32)>(&token, 43).is_err());
        assert!(decode_token::<(String, u32)>("garbage!", 42).is_err());
        assert_eq!(decode_token::<(String, u32)>("", 42).unwrap(), None);
    }

    #[test]
    fn page_size_defaults_and_bounds() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(500).unwrap(), 500);
        assert!(page_size(501).is_err());
        assert!(page_size(-1).is_err());
    }
}
