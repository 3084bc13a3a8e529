//! Contract checks of `crm-proto`: the API rules of DESIGN.md hold for every `crm.*` proto file,
//! each rule is shown to catch a violation, and the API has no breaking change against the
//! committed snapshot (`proto/snapshot/crm_api.txt`).
//!
//! Refresh the snapshot deliberately (after reviewing that the change is wanted):
//! `CRM_UPDATE_PROTO_SNAPSHOT=1 cargo test -p crm-proto --test contracts`.

mod rules;
mod snapshot;

use std::path::PathBuf;

use prost::Message as _;
use prost_types::FileDescriptorSet;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// The descriptor set embedded in `crm-proto` at build time.
fn crm_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(crm_proto::FILE_DESCRIPTOR_SET).expect("embedded descriptor set")
}

/// Serves one in-memory `.proto` file.
struct InMemory {
    name: String,
    source: String,
}

impl FileResolver for InMemory {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == self.name {
            File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Compiles a small proto source (named `crm/test/v1/test.proto`, with source info) into a
/// descriptor set, as the build does for the real files.
fn compile(source: &str) -> FileDescriptorSet {
    let name = "crm/test/v1/test.proto";
    let mut resolver = ChainFileResolver::new();
    resolver.add(InMemory {
        name: name.to_owned(),
        source: source.to_owned(),
    });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_source_info(true);
    compiler.open_file(name).expect("test proto compiles");
    compiler.file_descriptor_set()
}

/// A small file that follows every rule; the bad cases below change one thing in it.
const GOOD: &str = r#"
syntax = "proto3";
package crm.test.v1;
import "google/protobuf/field_mask.proto";
import "google/protobuf/timestamp.proto";

// Things.
service ThingService {
  // Creates a thing.
  rpc CreateThing(CreateThingRequest) returns (Thing);
  // Changes a thing.
  rpc UpdateThing(UpdateThingRequest) returns (Thing);
  // Lists things.
  rpc ListThings(ListThingsRequest) returns (ListThingsResponse);
}

// Colour of a thing.
enum ThingColour {
  // Not set.
  THING_COLOUR_UNSPECIFIED = 0;
  // Red.
  THING_COLOUR_RED = 1;
}

// A thing.
message Thing {
  // Id.
  string id = 1;
  // Colour.
  ThingColour colour = 2;
  // Created.
  google.protobuf.Timestamp create_time = 3;
  // Maybe a weight.
  optional int64 weight = 4;
  // Either or.
  oneof choice {
    // One.
    string one = 5;
    // Two.
    int32 two = 6;
  }
  // A nested part.
  message Part {
    // Kind of part.
    enum Kind {
      // Not set.
      KIND_UNSPECIFIED = 0;
    }
    // Its kind.
    Kind kind = 1;
  }
}

// Create.
message CreateThingRequest {
  // The thing.
  Thing thing = 1;
  // Idempotency key.
  string request_id = 2;
}

// Update.
message UpdateThingRequest {
  // The thing.
  Thing thing = 1;
  // Mask.
  google.protobuf.FieldMask update_mask = 2;
  // Etag.
  string etag = 3;
}

// List.
message ListThingsRequest {
  // Size.
  int32 page_size = 1;
  // Token.
  string page_token = 2;
}

// List response.
message ListThingsResponse {
  // Things.
  repeated Thing things = 1;
  // Next.
  string next_page_token = 2;
}
"#;

/// `GOOD` with `from` replaced by `to` (which must occur).
fn bad(from: &str, to: &str) -> FileDescriptorSet {
    assert!(GOOD.contains(from), "test fixture lacks {from:?}");
    compile(&GOOD.replacen(from, to, 1))
}

fn assert_one_violation(violations: &[String], needle: &str) {
    assert_eq!(
        violations.len(),
        1,
        "expected exactly one violation mentioning {needle:?}, got {violations:#?}"
    );
    assert!(
        violations[0].contains(needle),
        "expected a violation mentioning {needle:?}, got {violations:#?}"
    );
}

// ---- the real contracts follow every rule ----

#[test]
fn crm_contracts_follow_every_rule() {
    let set = crm_set();
    let mut report = String::new();
    for (rule, check) in rules::ALL {
        for v in check(&set) {
            report.push_str(&format!("[{rule}] {v}\n"));
        }
    }
    assert!(report.is_empty(), "API rule violations:\n{report}");
}

#[test]
fn every_service_package_is_present() {
    let names = crm_proto::service_names();
    for expected in [
        "crm.marketing.v1.PartnerService",
        "crm.marketing.v1.CampaignService",
        "crm.opportunities.v1.OpportunityService",
        "crm.opportunities.v1.InvoiceService",
        "crm.tasks.v1.TaskService",
        "crm.notifications.v1.EmailService",
        "crm.notifications.v1.InboxService",
        "crm.email_import.v1.EmailImportService",
        "crm.files.v1.FileService",
        "crm.opportunities.v1.AttachmentService",
        "crm.tasks.v1.AttachmentService",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn the_good_fixture_follows_every_rule() {
    let set = compile(GOOD);
    for (rule, check) in rules::ALL {
        assert_eq!(
            check(&set),
            Vec::<String>::new(),
            "rule {rule:?} on the good fixture"
        );
    }
}

// ---- each rule catches a violation ----

#[test]
fn list_request_without_page_size_is_caught() {
    let set = bad("  int32 page_size = 1;", "  int32 size = 1;");
    assert_one_violation(
        &rules::list_methods_are_paged(&set),
        "ListThingsRequest lacks `int32 page_size`",
    );
}

#[test]
fn list_request_with_wrongly_typed_page_token_is_caught() {
    let set = bad("  string page_token = 2;", "  int64 page_token = 2;");
    assert_one_violation(
        &rules::list_methods_are_paged(&set),
        "ListThingsRequest.page_token",
    );
}

#[test]
fn list_response_without_next_page_token_is_caught() {
    let set = bad("  string next_page_token = 2;", "  string next = 2;");
    assert_one_violation(
        &rules::list_methods_are_paged(&set),
        "ListThingsResponse lacks `string next_page_token`",
    );
}

#[test]
fn update_request_without_update_mask_is_caught() {
    let set = bad(
        "  google.protobuf.FieldMask update_mask = 2;",
        "  repeated string paths = 2;",
    );
    assert_one_violation(
        &rules::updates_take_mask_and_etag(&set),
        "UpdateThingRequest lacks `google.protobuf.FieldMask update_mask`",
    );
}

#[test]
fn update_request_without_etag_is_caught() {
    let set = bad("  string etag = 3;", "  string version = 3;");
    assert_one_violation(
        &rules::updates_take_mask_and_etag(&set),
        "UpdateThingRequest lacks `string etag`",
    );
}

#[test]
fn create_request_without_request_id_is_caught() {
    let set = bad("  string request_id = 2;", "  string key = 2;");
    assert_one_violation(
        &rules::creates_take_request_id(&set),
        "CreateThingRequest lacks `string request_id`",
    );
}

#[test]
fn request_messages_are_checked_even_without_a_method() {
    let set = bad(
        "// List response.",
        "// An unused request.\nmessage CreateOtherRequest {\n  // x.\n  string x = 1;\n}\n\n// List response.",
    );
    assert_one_violation(&rules::creates_take_request_id(&set), "CreateOtherRequest");
}

#[test]
fn undocumented_elements_are_caught() {
    for (from, to, needle) in [
        ("// Things.\nservice", "service", "service ThingService"),
        ("  // Lists things.\n", "", "method ThingService.ListThings"),
        (
            "// A thing.\nmessage Thing {",
            "message Thing {",
            "message Thing",
        ),
        ("  // Colour.\n", "", "field Thing.colour"),
        ("  // Either or.\n", "", "oneof Thing.choice"),
        ("    // Two.\n", "", "field Thing.two"),
        ("// Colour of a thing.\n", "", "enum ThingColour"),
        ("  // Red.\n", "", "enum value ThingColour.THING_COLOUR_RED"),
        ("  // A nested part.\n", "", "message Thing.Part"),
        ("    // Kind of part.\n", "", "enum Thing.Part.Kind"),
        (
            "      // Not set.\n",
            "",
            "enum value Thing.Part.Kind.KIND_UNSPECIFIED",
        ),
        ("  // Maybe a weight.\n", "", "field Thing.weight"),
    ] {
        let set = bad(from, to);
        assert_one_violation(&rules::everything_is_documented(&set), needle);
    }
}

#[test]
fn a_trailing_comment_is_not_a_doc_comment() {
    let set = bad("  // Id.\n  string id = 1;", "  string id = 1; // Id.");
    assert_one_violation(&rules::everything_is_documented(&set), "field Thing.id");
}

#[test]
fn enum_without_unspecified_zero_is_caught() {
    let set = bad("THING_COLOUR_UNSPECIFIED = 0;", "THING_COLOUR_NONE = 0;");
    assert_one_violation(
        &rules::enums_have_unspecified_zero(&set),
        "expected THING_COLOUR_UNSPECIFIED = 0",
    );
    let set = bad("KIND_UNSPECIFIED = 0;", "UNKNOWN = 0;");
    assert_one_violation(
        &rules::enums_have_unspecified_zero(&set),
        "enum crm.test.v1.Thing.Part.Kind",
    );
}

#[test]
fn mistyped_time_and_id_fields_are_caught() {
    let set = bad(
        "  google.protobuf.Timestamp create_time = 3;",
        "  string create_time = 3;",
    );
    assert_one_violation(
        &rules::fields_follow_naming_types(&set),
        "Thing.create_time must be a singular google.protobuf.Timestamp",
    );
    let set = bad("  string id = 1;", "  int64 id = 1;");
    assert_one_violation(
        &rules::fields_follow_naming_types(&set),
        "Thing.id must be a singular string",
    );
}

#[test]
fn upper_snake_case_of_enum_names() {
    assert_eq!(rules::upper_snake("PartnerKind"), "PARTNER_KIND");
    assert_eq!(rules::upper_snake("SmtpTlsMode"), "SMTP_TLS_MODE");
    assert_eq!(rules::upper_snake("HTTPStatus"), "HTTP_STATUS");
    assert_eq!(rules::upper_snake("Kind"), "KIND");
}

// ---- breaking changes against the snapshot ----

fn snapshot_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(snapshot::SNAPSHOT_PATH)
}

#[test]
fn no_breaking_change_against_the_snapshot() {
    let current = snapshot::render(&crm_set());
    let path = snapshot_file();
    if std::env::var_os(snapshot::UPDATE_ENV).is_some() {
        if let Ok(old) = std::fs::read_to_string(&path) {
            for change in snapshot::breaking_changes(&snapshot::from_text(&old), &current) {
                eprintln!("accepted breaking change: {change}");
            }
        }
        std::fs::create_dir_all(path.parent().expect("snapshot has a parent dir"))
            .expect("create snapshot dir");
        std::fs::write(&path, snapshot::to_text(&current)).expect("write snapshot");
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the API snapshot {} ({e}); create it with `{}=1 cargo test -p crm-proto --test contracts`",
            path.display(),
            snapshot::UPDATE_ENV
        )
    });
    let old = snapshot::from_text(&text);
    let breaking = snapshot::breaking_changes(&old, &current);
    assert!(
        breaking.is_empty(),
        "breaking API changes against {}:\n  {}\nIf this is deliberate (e.g. before v1 is released), refresh the snapshot with `{}=1 cargo test -p crm-proto --test contracts` and say so in the commit.",
        path.display(),
        breaking.join("\n  "),
        snapshot::UPDATE_ENV
    );
    let added = snapshot::additions(&old, &current);
    assert!(
        added.is_empty(),
        "the API grew but the snapshot was not refreshed ({} new elements, e.g. {:?}); additions are fine: record them with `{}=1 cargo test -p crm-proto --test contracts`",
        added.len(),
        added.iter().take(5).collect::<Vec<_>>(),
        snapshot::UPDATE_ENV
    );
}

#[test]
fn snapshot_text_round_trips() {
    let api = snapshot::render(&crm_set());
    assert_eq!(snapshot::from_text(&snapshot::to_text(&api)), api);
    assert!(api.contains_key("field crm.marketing.v1.Partner.id"));
    assert_eq!(
        api["field crm.marketing.v1.Partner.id"],
        "= 1 singular string"
    );
    assert_eq!(
        api["method crm.tasks.v1.TaskService.WatchNewTasks"],
        "(crm.tasks.v1.WatchNewTasksRequest) returns (stream crm.tasks.v1.WatchNewTasksResponse)"
    );
}

/// Edits the real descriptor set by hand the way a careless change would, and checks that the
/// comparison with the unedited API reports each edit.
#[test]
fn hand_made_breaking_changes_are_detected() {
    use prost_types::field_descriptor_proto::{Label, Type};

    let set = crm_set();
    let before = snapshot::render(&set);
    let mut edited = set.clone();
    let partners = edited
        .file
        .iter_mut()
        .find(|f| f.name() == "crm/marketing/v1/partners.proto")
        .expect("partners.proto");
    let partner = partners
        .message_type
        .iter_mut()
        .find(|m| m.name() == "Partner")
        .expect("Partner");
    partner.field.retain(|f| f.name() != "fiscal_code"); // removed field
    for f in &mut partner.field {
        match f.name() {
            "city" => f.number = Some(99),                            // renumbered
            "country" => f.set_type(Type::Bytes),                     // other type
            "activities_of_interest" => f.set_label(Label::Optional), // other label
            _ => {}
        }
    }
    let kind = partners
        .enum_type
        .iter_mut()
        .find(|e| e.name() == "PartnerKind")
        .expect("PartnerKind");
    kind.value.retain(|v| v.name() != "PARTNER_KIND_COMPETITOR"); // removed enum value
    partners.service[0]
        .method
        .retain(|m| m.name() != "ConvertLead"); // removed method
    partners
        .message_type
        .retain(|m| m.name() != "ArchivePartnerRequest"); // removed message

    let after = snapshot::render(&edited);
    let changes = snapshot::breaking_changes(&before, &after).join("\n");
    for needle in [
        "removed: field crm.marketing.v1.Partner.fiscal_code",
        "changed: field crm.marketing.v1.Partner.city: was `= 5 singular string`, now `= 99 singular string`",
        "changed: field crm.marketing.v1.Partner.country: was `= 7 singular string`, now `= 7 singular bytes`",
        "changed: field crm.marketing.v1.Partner.activities_of_interest: was `= 11 repeated string`, now `= 11 singular string`",
        "removed: value crm.marketing.v1.PartnerKind.PARTNER_KIND_COMPETITOR",
        "removed: method crm.marketing.v1.PartnerService.ConvertLead",
        "removed: message crm.marketing.v1.ArchivePartnerRequest",
    ] {
        assert!(
            changes.contains(needle),
            "{needle:?} not reported in:\n{changes}"
        );
    }
    // And the committed snapshot sees the same edits as breaking.
    if let Ok(text) = std::fs::read_to_string(snapshot_file()) {
        let committed = snapshot::from_text(&text);
        assert!(!snapshot::breaking_changes(&committed, &after).is_empty());
    }
}

/// Two versions of a proto source compiled with protox: a renumbered field, a changed
/// streaming flag and a field moved into a oneof are breaking; pure additions are not.
#[test]
fn compiled_breaking_changes_are_detected_and_additions_are_not() {
    let v1 = snapshot::render(&compile(GOOD));

    let renumbered = snapshot::render(&bad(
        "  ThingColour colour = 2;",
        "  ThingColour colour = 7;",
    ));
    assert_eq!(
        snapshot::breaking_changes(&v1, &renumbered),
        vec!["changed: field crm.test.v1.Thing.colour: was `= 2 singular crm.test.v1.ThingColour`, now `= 7 singular crm.test.v1.ThingColour`".to_owned()]
    );

    let streaming = snapshot::render(&bad(
        "returns (ListThingsResponse)",
        "returns (stream ListThingsResponse)",
    ));
    assert_one_violation(
        &snapshot::breaking_changes(&v1, &streaming),
        "method crm.test.v1.ThingService.ListThings",
    );

    let src = GOOD
        .replacen("  // Colour.\n  ThingColour colour = 2;\n", "", 1)
        .replacen(
            "    int32 two = 6;\n",
            "    int32 two = 6;\n    // Colour.\n    ThingColour colour = 2;\n",
            1,
        );
    let into_oneof = snapshot::render(&compile(&src));
    assert_one_violation(
        &snapshot::breaking_changes(&v1, &into_oneof),
        "field crm.test.v1.Thing.colour: was `= 2 singular crm.test.v1.ThingColour`, now `= 2 singular crm.test.v1.ThingColour oneof choice`",
    );

    let optional = snapshot::render(&bad("  optional int64 weight = 4;", "  int64 weight = 4;"));
    assert_one_violation(
        &snapshot::breaking_changes(&v1, &optional),
        "field crm.test.v1.Thing.weight",
    );

    let renamed_value =
        snapshot::render(&bad("THING_COLOUR_RED = 1;", "THING_COLOUR_CRIMSON = 1;"));
    assert_one_violation(
        &snapshot::breaking_changes(&v1, &renamed_value),
        "removed: value crm.test.v1.ThingColour.THING_COLOUR_RED",
    );

    let grown = snapshot::render(&bad(
        "  // Next.\n  string next_page_token = 2;",
        "  // Next.\n  string next_page_token = 2;\n  // Total.\n  int32 total_size = 3;",
    ));
    assert!(snapshot::breaking_changes(&v1, &grown).is_empty());
    assert_eq!(
        snapshot::additions(&v1, &grown),
        vec!["field crm.test.v1.ListThingsResponse.total_size".to_owned()]
    );
}
