//! The CRM's contracts: every gRPC service and event of `proto/crm/**`, compiled with protox and
//! tonic-prost-build. Packages appear as modules (`crm_proto::crm::marketing::v1`), re-exported
//! below under shorter paths.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod codec;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/crm.rs"));
}

pub use generated::crm;
pub use generated::crm::common::v1 as common;
pub use generated::crm::email_import::v1 as email_import;
pub use generated::crm::events::v1 as events;
pub use generated::crm::files::v1 as files;
pub use generated::crm::marketing::v1 as marketing;
pub use generated::crm::notifications::v1 as notifications;
pub use generated::crm::opportunities::v1 as opportunities;
pub use generated::crm::tasks::v1 as tasks;

/// The encoded `FileDescriptorSet` of every CRM proto file and its imports, with doc comments
/// (source info): fed to server reflection and to the contract checks.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/crm_descriptor.bin"));

/// The fully qualified names of every public gRPC service, e.g. `crm.marketing.v1.PartnerService`.
pub fn service_names() -> Vec<String> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .expect("the descriptor set embedded at build time decodes");
    set.file
        .iter()
        .filter(|f| f.package().starts_with("crm."))
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect()
}
