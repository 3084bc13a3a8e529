//! The gRPC handlers of marketing's services: request → domain values (validation),
//! authorisation, calls to the store in one transaction with the outbox, domain → response. No
//! SQL here. One file per service.

mod files;
mod partners;

pub use files::{CLAIM_WINDOW, FileApi};
pub use partners::PartnerApi;
