//! Files, for every record of the CRM (DESIGN "Files"): what the file service and the services
//! whose records take attachments share.
//!
//! - An upload gets an [upload token](UploadTokens): an HMAC, under the services' shared secret,
//!   of the blob key, size, content type, uploader and expiry. A service that is given a new
//!   attachment reference checks the token, so a client can only attach what it uploaded itself
//!   (not a blob key it saw elsewhere); no call to the file service is needed.
//! - [`sniff_content_type`] decides a file's media type from its bytes; the client's word is
//!   never taken.
//! - [`download`] streams a blob as `crm.files.v1.FileChunk`s for any service's
//!   `AttachmentService.DownloadAttachment`, after that service checked the caller may read the
//!   record.

use std::pin::Pin;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use crm_proto::{common::AttachmentRef, files as pb};
use futures::{Stream, StreamExt as _};
use hmac::{Hmac, Mac as _};
use secrecy::ExposeSecret as _;
use sha2::Sha256;
use tonic::Status;

use crate::{auth::AuthSettings, blob::BlobStore, input::Fields};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Size of the chunks of a download stream.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Signs and checks upload tokens with the services' shared secret.
#[derive(Clone)]
pub struct UploadTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for UploadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadTokens")
    }
}

/// Why a reference's upload token does not prove an upload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token: the reference did not come from an upload.
    #[error("is required for a new attachment: upload the file first (crm.files.v1.FileService)")]
    Missing,
    /// The token does not match the reference or the caller.
    #[error("does not prove that you uploaded this file")]
    Invalid,
    /// The token is past its day.
    #[error("has expired: upload the file again")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

impl UploadTokens {
    /// Tokens under the service secret of `settings` (the secret every service shares).
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            // A distinct derivation: an upload token can never pass as a service token.
            key: [
                b"crm-upload-token:".as_slice(),
                settings.service_secret.expose_secret().as_bytes(),
            ]
            .concat(),
        }
    }

    fn mac(&self, file: &AttachmentRef, uploader: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [
            file.blob_key.as_bytes(),
            &file.size_bytes.to_be_bytes(),
            file.content_type.as_bytes(),
            uploader.as_bytes(),
            &expires.to_be_bytes(),
        ] {
            // Length-prefixed, so no two different inputs give the same message.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The token of `file` uploaded by `uploader`, valid until `expires`.
    pub fn sign(&self, file: &AttachmentRef, uploader: &str, expires: DateTime<Utc>) -> String {
        let expires = expires.timestamp();
        let tag = self.mac(file, uploader, expires).finalize().into_bytes();
        format!("v1.{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks that `file.upload_token` proves `caller` uploaded `file`, at `now`.
    pub fn verify(
        &self,
        file: &AttachmentRef,
        caller: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TokenError> {
        if file.upload_token.is_empty() {
            return Err(TokenError::Missing);
        }
        let mut parts = file.upload_token.splitn(3, '.');
        let (Some("v1"), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Invalid)?;
        // Constant-time comparison.
        self.mac(file, caller, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        if now.timestamp() > expires {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The media type of a file from its bytes: a known signature (PDF, images, office documents,
/// archives…), else `text/plain; charset=utf-8` for UTF-8 text without control characters, else
/// `application/octet-stream`.
pub fn sniff_content_type(bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            "text/plain; charset=utf-8".to_owned()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// A file kept in the blob store and attached to a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its id on the record.
    pub id: Uuid,
    /// SHA-256 of the content, lower-case hex.
    pub blob_key: String,
    /// File name shown to people.
    pub file_name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
}

/// Checks a blob key: 64 lower-case hex digits.
pub fn check_blob_key(key: &str) -> Result<(), String> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err("must be the lower-case hex SHA-256 of the file (64 characters)".into())
    }
}

/// Checks a file name: 1..=255 characters without path separators or control characters.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is required".into());
    }
    if name.chars().count() > 255 {
        return Err("must be at most 255 characters".into());
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err("must not contain path separators or control characters".into());
    }
    Ok(())
}

impl Attachment {
    /// The reference clients see (never with an upload token).
    pub fn to_proto(&self) -> AttachmentRef {
        AttachmentRef {
            blob_key: self.blob_key.clone(),
            file_name: self.file_name.clone(),
            content_type: self.content_type.clone(),
            size_bytes: self.size_bytes,
            id: self.id.to_string(),
            upload_token: String::new(),
        }
    }
}

/// Attachments given on a record, checked and given ids (kept when they already have one);
/// `images_only` refuses anything but images.
pub fn parse_attachments(
    f: &mut Fields,
    field: &str,
    given: &[AttachmentRef],
    max: usize,
    images_only: bool,
) -> Option<Vec<Attachment>> {
    if given.len() > max {
        f.add(field, format!("must hold at most {max} files"));
        return None;
    }
    let mut out = Vec::with_capacity(given.len());
    let mut ok = true;
    for (i, a) in given.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let id = if a.id.is_empty() {
            Some(Uuid::now_v7())
        } else {
            f.id(&format!("{at}.id"), &a.id)
        };
        let key =
            f.0.check(format!("{at}.blob_key"), check_blob_key(&a.blob_key));
        let name =
            f.0.check(format!("{at}.file_name"), check_file_name(&a.file_name));
        let content_type = if a.content_type.trim().is_empty() {
            "application/octet-stream".to_owned()
        } else {
            a.content_type.trim().to_owned()
        };
        if images_only && !content_type.starts_with("image/") {
            f.add(format!("{at}.content_type"), "must be an image (image/…)");
            ok = false;
        }
        if a.size_bytes < 0 {
            f.add(format!("{at}.size_bytes"), "must not be negative");
            ok = false;
        }
        match (id, key, name) {
            (Some(id), Some(()), Some(())) => out.push(Attachment {
                id,
                blob_key: a.blob_key.clone(),
                file_name: a.file_name.clone(),
                content_type,
                size_bytes: a.size_bytes,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// The blob keys of the files in `given` that are new to a record holding `known`, each
/// proven by its upload token to have been uploaded by `uploader`; a reference already on the
/// record (same id and blob key) needs no token. Every refused token is named
/// (`{field}[i].upload_token`).
pub fn new_uploads(
    tokens: &UploadTokens,
    uploader: &str,
    field: &str,
    given: &[AttachmentRef],
    known: &[Attachment],
    now: DateTime<Utc>,
) -> Result<Vec<String>, crate::error::FieldViolations> {
    let mut violations = crate::error::FieldViolations::new();
    let mut new = Vec::new();
    for (i, file) in given.iter().enumerate() {
        let already = known
            .iter()
            .any(|k| k.id.to_string() == file.id && k.blob_key == file.blob_key);
        if already {
            continue;
        }
        match tokens.verify(file, uploader, now) {
            Ok(()) => new.push(file.blob_key.clone()),
            Err(reason) => violations.add(format!("{field}[{i}].upload_token"), reason.to_string()),
        }
    }
    violations.into_violations_result().map(|()| new)
}

/// A download stream: the chunks of a file.
pub type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::FileChunk, Status>> + Send>>;

/// Streams `file` from `blobs`: its reference first (without token), then its bytes in chunks
/// of at most [`CHUNK_BYTES`]. A blob missing from the store is NOT_FOUND.
pub async fn download(blobs: &BlobStore, file: AttachmentRef) -> Result<DownloadStream, Status> {
    let bytes = match blobs.open(&file.blob_key).await {
        Ok(stream) => stream,
        Err(crate::blob::BlobError::Store(object_store::Error::NotFound { .. })) => {
            return Err(Status::not_found("the file's bytes are not in the store"));
        }
        Err(err) => return Err(crate::error::internal(&err)),
    };
    let head = pb::FileChunk {
        part: Some(pb::file_chunk::Part::File(AttachmentRef {
            upload_token: String::new(),
            ..file
        })),
    };
    // The store reads in its own sizes (8 KiB for local files); the stream sends full chunks.
    let data = futures::stream::unfold(
        (bytes, bytes::BytesMut::new(), false),
        |(mut source, mut buffer, mut finished)| async move {
            while !finished && buffer.len() < CHUNK_BYTES {
                match source.next().await {
                    Some(Ok(read)) => buffer.extend_from_slice(&read),
                    Some(Err(err)) => {
                        // Nothing after a failed read: the client must not take a torn file.
                        buffer.clear();
                        return Some((Err(crate::error::internal(&err)), (source, buffer, true)));
                    }
                    None => finished = true,
                }
            }
            if buffer.is_empty() {
                return None;
            }
            let part = buffer.split_to(buffer.len().min(CHUNK_BYTES)).freeze();
            let chunk = pb::FileChunk {
                part: Some(pb::file_chunk::Part::Data(part.to_vec())),
            };
            Some((Ok(chunk), (source, buffer, finished)))
        },
    );
    Ok(Box::pin(
        futures::stream::once(async { Ok(head) }).chain(data),
    ))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn file() -> AttachmentRef {
        AttachmentRef {
            blob_key: "a".repeat(64),
            file_name: "oferta.pdf".into(),
            content_type: "application/pdf".into(),
            size_bytes: 1234,
            id: String::new(),
            upload_token: String::new(),
        }
    }

    #[test]
    fn a_token_proves_the_upload_of_its_uploader_until_it_expires() {
        let tokens = UploadTokens::new(&AuthSettings::development());
        let now = Utc::now();
        let signed = AttachmentRef {
            upload_token: tokens.sign(&file(), "ana", now + Duration::days(1)),
            ..file()
        };
        assert_eq!(tokens.verify(&signed, "ana", now), Ok(()));
        assert_eq!(tokens.verify(&signed, "ion", now), Err(TokenError::Invalid));
        assert_eq!(
            tokens.verify(&signed, "ana", now + Duration::days(2)),
            Err(TokenError::Expired)
        );
        // Any field changed: not this upload.
        for changed in [
            AttachmentRef {
                blob_key: "b".repeat(64),
                ..signed.clone()
            },
            AttachmentRef {
                size_bytes: 1,
                ..signed.clone()
            },
            AttachmentRef {
                content_type: "image/png".into(),
                ..signed.clone()
            },
        ] {
            assert_eq!(
                tokens.verify(&changed, "ana", now),
                Err(TokenError::Invalid)
            );
        }
        assert_eq!(tokens.verify(&file(), "ana", now), Err(TokenError::Missing));
        let mut forged = signed.clone();
        forged.upload_token = "v1.99999999999.AAAA".into();
        assert_eq!(tokens.verify(&forged, "ana", now), Err(TokenError::Invalid));
        // Another secret signs other tokens.
        let mut other = AuthSettings::development();
        other.service_secret = "another-service-secret-0123456789".into();
        assert_eq!(
            UploadTokens::new(&other).verify(&signed, "ana", now),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn content_types_come_from_the_bytes() {
        assert_eq!(sniff_content_type(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(
            sniff_content_type(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]),
            "image/png"
        );
        assert_eq!(
            sniff_content_type("Ofertă\nși preț".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(&[0, 1, 2, 3, 0xff]),
            "application/octet-stream"
        );
        assert_eq!(sniff_content_type(b""), "text/plain; charset=utf-8");
    }
}
