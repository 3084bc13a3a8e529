//! The API rules every `crm.*` proto file must follow (DESIGN "API conventions"), each written
//! as a function from a `FileDescriptorSet` to the list of its violations, so a test can run it
//! on the real contracts (expecting none) and on a deliberately bad descriptor (expecting one).

use std::collections::HashSet;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};

/// One broken rule, in words that name the element (e.g. "crm.tasks.v1.ListTasksRequest lacks
/// `int32 page_size`").
pub type Violation = String;

/// A rule: the violations it finds in a descriptor set.
pub type Rule = fn(&FileDescriptorSet) -> Vec<Violation>;

/// Every rule, with the name used in failure messages.
pub const ALL: &[(&str, Rule)] = &[
    ("list methods are paged", list_methods_are_paged),
    (
        "updates take update_mask and etag",
        updates_take_mask_and_etag,
    ),
    ("creates take request_id", creates_take_request_id),
    ("every element has a doc comment", everything_is_documented),
    (
        "enums start with <NAME>_UNSPECIFIED = 0",
        enums_have_unspecified_zero,
    ),
    (
        "typed times, dates, ids and rates",
        fields_follow_naming_types,
    ),
];

/// The CRM's own files: those whose package starts with `crm.` (imports such as
/// `google/protobuf/*.proto` are left out).
pub fn crm_files(set: &FileDescriptorSet) -> impl Iterator<Item = &FileDescriptorProto> {
    set.file.iter().filter(|f| f.package().starts_with("crm."))
}

/// Every message of the set (nested ones too), with its full name without the leading dot.
fn all_messages(set: &FileDescriptorSet) -> Vec<(String, &DescriptorProto)> {
    fn walk<'a>(
        prefix: &str,
        msgs: &'a [DescriptorProto],
        out: &mut Vec<(String, &'a DescriptorProto)>,
    ) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            walk(&name, &m.nested_type, out);
            out.push((name, m));
        }
    }
    let mut out = Vec::new();
    for f in &set.file {
        walk(f.package(), &f.message_type, &mut out);
    }
    out
}

/// Finds a message by full name (with or without the leading dot).
fn find_message<'a>(set: &'a FileDescriptorSet, full_name: &str) -> Option<&'a DescriptorProto> {
    let wanted = full_name.trim_start_matches('.');
    all_messages(set)
        .into_iter()
        .find(|(n, _)| n == wanted)
        .map(|(_, m)| m)
}

fn field<'a>(m: &'a DescriptorProto, name: &str) -> Option<&'a FieldDescriptorProto> {
    m.field.iter().find(|f| f.name() == name)
}

/// Checks that `msg` has a singular field `name` of scalar type `ty` (or of message type
/// `type_name` when given).
fn require_field(
    out: &mut Vec<Violation>,
    msg_name: &str,
    msg: &DescriptorProto,
    name: &str,
    ty: Type,
    type_name: Option<&str>,
) {
    let what = match type_name {
        Some(t) => t.trim_start_matches('.').to_owned(),
        None => format!("{ty:?}").to_lowercase(),
    };
    match field(msg, name) {
        None => out.push(format!("{msg_name} lacks `{what} {name}`")),
        Some(f) => {
            let type_ok = f.r#type() == ty && type_name.is_none_or(|t| f.type_name() == t);
            if !type_ok || f.label() == Label::Repeated {
                out.push(format!(
                    "{msg_name}.{name} must be a singular `{what}`, found {:?} {}",
                    f.r#type(),
                    f.type_name()
                ));
            }
        }
    }
}

/// Calls `check(out, method_name, input, output)` for every method of every `crm.*` service
/// whose name starts with `prefix`, and for every `crm.*` message named `<prefix>…Request`
/// (so request messages are checked even before a method uses them; `output` is then `None`).
fn for_methods_and_requests(
    set: &FileDescriptorSet,
    prefix: &str,
    mut check: impl FnMut(
        &mut Vec<Violation>,
        &str,
        (&str, &DescriptorProto),
        Option<(&str, &DescriptorProto)>,
    ),
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut seen_inputs = HashSet::new();
    for f in crm_files(set) {
        for s in &f.service {
            for m in &s.method {
                if !starts_with_word(m.name(), prefix) {
                    continue;
                }
                let method = format!("{}.{}.{}", f.package(), s.name(), m.name());
                let Some(input) = find_message(set, m.input_type()) else {
                    out.push(format!("{method}: input type {} not found", m.input_type()));
                    continue;
                };
                let output = find_message(set, m.output_type());
                let in_name = m.input_type().trim_start_matches('.').to_owned();
                let out_name = m.output_type().trim_start_matches('.').to_owned();
                check(
                    &mut out,
                    &method,
                    (&in_name, input),
                    output.map(|o| (out_name.as_str(), o)),
                );
                seen_inputs.insert(in_name);
            }
        }
    }
    for (name, msg) in all_messages(set) {
        if !name.starts_with("crm.") || seen_inputs.contains(&name) {
            continue;
        }
        let short = name.rsplit('.').next().unwrap_or_default();
        if starts_with_word(short, prefix) && short.ends_with("Request") {
            check(&mut out, &name, (&name, msg), None);
        }
    }
    out
}

/// `name` starts with `prefix` followed by an upper-case letter ("ListTasks" for "List", not
/// "Listen").
fn starts_with_word(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
}

/// Every `List*` request has `int32 page_size` and `string page_token`, and its response
/// `string next_page_token` (AIP-158).
pub fn list_methods_are_paged(set: &FileDescriptorSet) -> Vec<Violation> {
    let mut out = for_methods_and_requests(set, "List", |out, _, (in_name, input), output| {
        require_field(out, in_name, input, "page_size", Type::Int32, None);
        require_field(out, in_name, input, "page_token", Type::String, None);
        if let Some((out_name, output)) = output {
            require_field(out, out_name, output, "next_page_token", Type::String, None);
        }
    });
    for (name, msg) in all_messages(set) {
        let short = name.rsplit('.').next().unwrap_or_default();
        if name.starts_with("crm.")
            && starts_with_word(short, "List")
            && short.ends_with("Response")
        {
            require_field(&mut out, &name, msg, "next_page_token", Type::String, None);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every `Update*` request has `google.protobuf.FieldMask update_mask` and `string etag`
/// (AIP-134, AIP-154).
pub fn updates_take_mask_and_etag(set: &FileDescriptorSet) -> Vec<Violation> {
    let mut out = for_methods_and_requests(set, "Update", |out, _, (in_name, input), _| {
        require_field(
            out,
            in_name,
            input,
            "update_mask",
            Type::Message,
            Some(".google.protobuf.FieldMask"),
        );
        require_field(out, in_name, input, "etag", Type::String, None);
    });
    out.sort();
    out.dedup();
    out
}

/// Every `Create*` request has `string request_id` (AIP-155).
pub fn creates_take_request_id(set: &FileDescriptorSet) -> Vec<Violation> {
    let mut out = for_methods_and_requests(set, "Create", |out, _, (in_name, input), _| {
        require_field(out, in_name, input, "request_id", Type::String, None);
    });
    out.sort();
    out.dedup();
    out
}

// Field numbers of descriptor.proto, used in `SourceCodeInfo.Location.path`.
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED_TYPE: i32 = 3;
const MESSAGE_ENUM_TYPE: i32 = 4;
const MESSAGE_ONEOF_DECL: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

fn idx(i: usize) -> i32 {
    i32::try_from(i).expect("descriptor index fits in i32")
}

/// Every service, method, message, field, oneof, enum and enum value (nested ones too) of a
/// `crm.*` file has a non-blank leading comment. Synthetic oneofs of proto3 `optional` fields
/// are exempt (they are not written in the source).
pub fn everything_is_documented(set: &FileDescriptorSet) -> Vec<Violation> {
    let mut out = Vec::new();
    for f in crm_files(set) {
        let documented: HashSet<&[i32]> = f
            .source_code_info
            .iter()
            .flat_map(|i| &i.location)
            .filter(|l| {
                l.leading_comments()
                    .trim()
                    .chars()
                    .any(|c| !c.is_whitespace())
            })
            .map(|l| l.path.as_slice())
            .collect();
        let mut check = |path: &[i32], what: &str| {
            if !documented.contains(path) {
                out.push(format!(
                    "{} ({}): {what} has no leading doc comment",
                    f.name(),
                    f.package()
                ));
            }
        };
        for (i, s) in f.service.iter().enumerate() {
            let sp = vec![FILE_SERVICE, idx(i)];
            check(&sp, &format!("service {}", s.name()));
            for (j, m) in s.method.iter().enumerate() {
                let mut mp = sp.clone();
                mp.extend([SERVICE_METHOD, idx(j)]);
                check(&mp, &format!("method {}.{}", s.name(), m.name()));
            }
        }
        for (i, e) in f.enum_type.iter().enumerate() {
            check_enum(&mut check, &[FILE_ENUM_TYPE, idx(i)], e.name(), e);
        }
        for (i, m) in f.message_type.iter().enumerate() {
            check_message(&mut check, &[FILE_MESSAGE_TYPE, idx(i)], m.name(), m);
        }
    }
    out
}

fn check_enum(
    check: &mut impl FnMut(&[i32], &str),
    path: &[i32],
    name: &str,
    e: &EnumDescriptorProto,
) {
    check(path, &format!("enum {name}"));
    for (k, v) in e.value.iter().enumerate() {
        let mut vp = path.to_vec();
        vp.extend([ENUM_VALUE, idx(k)]);
        check(&vp, &format!("enum value {name}.{}", v.name()));
    }
}

fn check_message(
    check: &mut impl FnMut(&[i32], &str),
    path: &[i32],
    name: &str,
    m: &DescriptorProto,
) {
    check(path, &format!("message {name}"));
    for (k, fd) in m.field.iter().enumerate() {
        let mut fp = path.to_vec();
        fp.extend([MESSAGE_FIELD, idx(k)]);
        check(&fp, &format!("field {name}.{}", fd.name()));
    }
    for (k, o) in m.oneof_decl.iter().enumerate() {
        let synthetic = m
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(idx(k)))
            .all(|f| f.proto3_optional());
        if !synthetic {
            let mut op = path.to_vec();
            op.extend([MESSAGE_ONEOF_DECL, idx(k)]);
            check(&op, &format!("oneof {name}.{}", o.name()));
        }
    }
    for (k, e) in m.enum_type.iter().enumerate() {
        let mut ep = path.to_vec();
        ep.extend([MESSAGE_ENUM_TYPE, idx(k)]);
        check_enum(check, &ep, &format!("{name}.{}", e.name()), e);
    }
    for (k, n) in m.nested_type.iter().enumerate() {
        if n.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue; // map<K, V> entries are generated, not written
        }
        let mut np = path.to_vec();
        np.extend([MESSAGE_NESTED_TYPE, idx(k)]);
        check_message(check, &np, &format!("{name}.{}", n.name()), n);
    }
}

/// `PartnerKind` → `PARTNER_KIND`.
pub fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = camel.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase()) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Every enum of a `crm.*` file (nested ones too) has `<ENUM_NAME>_UNSPECIFIED = 0` as its first
/// value (AIP-126), so an unset field never means something.
pub fn enums_have_unspecified_zero(set: &FileDescriptorSet) -> Vec<Violation> {
    fn check(out: &mut Vec<Violation>, full: &str, e: &EnumDescriptorProto) {
        let want = format!("{}_UNSPECIFIED", upper_snake(e.name()));
        match e.value.first() {
            Some(v) if v.number() == 0 && v.name() == want => {}
            Some(v) => out.push(format!(
                "enum {full}: first value is {} = {}, expected {want} = 0",
                v.name(),
                v.number()
            )),
            None => out.push(format!("enum {full} has no values, expected {want} = 0")),
        }
    }
    fn walk(out: &mut Vec<Violation>, prefix: &str, msgs: &[DescriptorProto]) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            for e in &m.enum_type {
                check(out, &format!("{name}.{}", e.name()), e);
            }
            walk(out, &name, &m.nested_type);
        }
    }
    let mut out = Vec::new();
    for f in crm_files(set) {
        for e in &f.enum_type {
            check(&mut out, &format!("{}.{}", f.package(), e.name()), e);
        }
        walk(&mut out, f.package(), &f.message_type);
    }
    out
}

/// Field names promise their types (DESIGN "API conventions"): `*_time` is a
/// `google.protobuf.Timestamp`, `*_date` a `crm.common.v1.Date`, `id` and `*_id` a singular
/// string (a UUID), `*_ids` a repeated string, `*_bp` (basis points) an `int32`.
pub fn fields_follow_naming_types(set: &FileDescriptorSet) -> Vec<Violation> {
    let mut out = Vec::new();
    for (name, msg) in all_messages(set) {
        if !name.starts_with("crm.") {
            continue;
        }
        for f in &msg.field {
            let n = f.name();
            let repeated = f.label() == Label::Repeated;
            let problem = if n.ends_with("_time") {
                (f.type_name() != ".google.protobuf.Timestamp" || repeated)
                    .then_some("a singular google.protobuf.Timestamp")
            } else if n.ends_with("_date") {
                (f.type_name() != ".crm.common.v1.Date" || repeated)
                    .then_some("a singular crm.common.v1.Date")
            } else if n == "id" || n.ends_with("_id") {
                (f.r#type() != Type::String || repeated).then_some("a singular string")
            } else if n.ends_with("_ids") {
                (f.r#type() != Type::String || !repeated).then_some("a repeated string")
            } else if n.ends_with("_bp") {
                (f.r#type() != Type::Int32 || repeated).then_some("a singular int32")
            } else {
                None
            };
            if let Some(want) = problem {
                out.push(format!(
                    "{name}.{n} must be {want}, found {:?} {}{}",
                    f.r#type(),
                    f.type_name(),
                    if repeated { " (repeated)" } else { "" }
                ));
            }
        }
    }
    out
}
