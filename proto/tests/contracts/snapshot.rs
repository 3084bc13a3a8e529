//! The committed API snapshot and the breaking-change check against it.
//!
//! The snapshot (`proto/snapshot/crm_api.txt`) lists, one per line and sorted, every message,
//! field, enum, enum value, service and method of the `crm.*` packages with what a client
//! depends on: field number, type, label, presence and oneof; method input, output and
//! streaming. Doc comments and file layout are left out: changing them breaks no client.
//!
//! Breaking = an element of the snapshot is missing now (removed or renamed) or its line
//! changed (renumbered field, other type or label, other request/response type…). New lines
//! are additions and are fine, but they must be recorded in the snapshot (refresh it) so that
//! removing them later is caught too.

use std::collections::BTreeMap;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

use crate::rules::crm_files;

/// Environment variable that makes the snapshot test rewrite the snapshot instead of comparing.
pub const UPDATE_ENV: &str = "CRM_UPDATE_PROTO_SNAPSHOT";

/// Path of the committed snapshot, relative to the crate (`proto/`).
pub const SNAPSHOT_PATH: &str = "snapshot/crm_api.txt";

/// The snapshot as element key → what clients depend on. A key is "<kind> <full name>".
pub type Api = BTreeMap<String, String>;

/// Renders the `crm.*` part of a descriptor set.
pub fn render(set: &FileDescriptorSet) -> Api {
    let mut api = Api::new();
    for f in crm_files(set) {
        let pkg = f.package();
        for m in &f.message_type {
            render_message(&mut api, pkg, m);
        }
        for e in &f.enum_type {
            render_enum(&mut api, pkg, e);
        }
        for s in &f.service {
            let sname = format!("{pkg}.{}", s.name());
            api.insert(format!("service {sname}"), String::new());
            for m in &s.method {
                api.insert(
                    format!("method {sname}.{}", m.name()),
                    format!(
                        "({}{}) returns ({}{})",
                        if m.client_streaming() { "stream " } else { "" },
                        m.input_type().trim_start_matches('.'),
                        if m.server_streaming() { "stream " } else { "" },
                        m.output_type().trim_start_matches('.'),
                    ),
                );
            }
        }
    }
    api
}

fn render_message(api: &mut Api, prefix: &str, m: &DescriptorProto) {
    let name = format!("{prefix}.{}", m.name());
    api.insert(format!("message {name}"), String::new());
    for f in &m.field {
        let label = match f.label() {
            Label::Repeated => "repeated",
            Label::Required => "required",
            Label::Optional if f.proto3_optional() => "optional",
            Label::Optional => "singular",
        };
        let ty = match f.r#type() {
            Type::Message | Type::Enum | Type::Group => {
                f.type_name().trim_start_matches('.').to_owned()
            }
            t => format!("{t:?}").to_lowercase(),
        };
        let oneof = f
            .oneof_index
            .filter(|_| !f.proto3_optional())
            .and_then(|i| m.oneof_decl.get(usize::try_from(i).ok()?))
            .map(|o| format!(" oneof {}", o.name()))
            .unwrap_or_default();
        api.insert(
            format!("field {name}.{}", f.name()),
            format!("= {} {label} {ty}{oneof}", f.number()),
        );
    }
    for n in &m.nested_type {
        render_message(api, &name, n);
    }
    for e in &m.enum_type {
        render_enum(api, &name, e);
    }
}

fn render_enum(api: &mut Api, prefix: &str, e: &EnumDescriptorProto) {
    let name = format!("{prefix}.{}", e.name());
    api.insert(format!("enum {name}"), String::new());
    for v in &e.value {
        api.insert(
            format!("value {name}.{}", v.name()),
            format!("= {}", v.number()),
        );
    }
}

/// The snapshot file's text: a header, then one "<kind> <name> <value>" line per element,
/// ordered by name.
pub fn to_text(api: &Api) -> String {
    let mut text = String::from(
        "# Snapshot of the CRM's public API (every crm.* message, field, enum value, service and\n\
         # method), checked by `cargo test -p crm-proto --test contracts`. Do not edit by hand:\n\
         # refresh it deliberately with\n\
         #   CRM_UPDATE_PROTO_SNAPSHOT=1 cargo test -p crm-proto --test contracts\n\
         # and review the diff: a removed or changed line is a breaking change.\n",
    );
    // Sorted by element name, so that a message's fields and an enum's values stay together.
    let mut lines: Vec<(&str, &String, &String)> = api
        .iter()
        .map(|(k, v)| (k.split_once(' ').map_or(k.as_str(), |(_, name)| name), k, v))
        .collect();
    lines.sort();
    for (_, k, v) in lines {
        text.push_str(k);
        if !v.is_empty() {
            text.push(' ');
            text.push_str(v);
        }
        text.push('\n');
    }
    text
}

/// Parses the snapshot file's text back.
pub fn from_text(text: &str) -> Api {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            // "<kind> <name>[ <value>]": the value starts after the second space.
            let mut parts = l.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            (format!("{kind} {name}"), value.to_owned())
        })
        .collect()
}

/// Every breaking change from `old` to `new`: elements removed (or renamed) and elements whose
/// wire-relevant description changed.
pub fn breaking_changes(old: &Api, new: &Api) -> Vec<String> {
    let mut out = Vec::new();
    for (key, was) in old {
        match new.get(key) {
            None => out.push(format!("removed: {key} {was}")),
            Some(now) if now != was => {
                out.push(format!("changed: {key}: was `{was}`, now `{now}`"))
            }
            Some(_) => {}
        }
    }
    out
}

/// Elements of `new` that `old` does not have (additions; fine, but to be recorded).
pub fn additions(old: &Api, new: &Api) -> Vec<String> {
    new.keys()
        .filter(|k| !old.contains_key(*k))
        .cloned()
        .collect()
}
