//! PartnerService end to end: the real service in-process on port 0, against its own fresh
//! PostgreSQL database and Redis stream prefix (SPEC M1, M2, X2, X3, X5).

use std::time::Duration;

use crm_marketing::config::Settings;
use crm_platform::testing::{self, TestDatabase, redis_settings};
use crm_proto::{
    common::Money,
    events::{Envelope, PartnerCreated, PartnerUpdated},
    marketing::{self as pb, partner_service_client::PartnerServiceClient},
};
use prost::Message as _;
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt as _;

struct Service {
    client: PartnerServiceClient<Channel>,
    settings: Settings,
    _db: TestDatabase,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Service {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Service {
    let db = TestDatabase::create("marketing").await;
    let mut settings = Settings::load(None).unwrap();
    testing::init_telemetry(&settings.base);
    testing::use_test_backing(&mut settings.base, &db, redis_settings());
    adjust(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crm_marketing::run(settings.clone(), listener, async {
        let _ = stopped.await;
    }));
    testing::wait_serving(addr, "crm.marketing.v1.PartnerService").await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Service {
        client: PartnerServiceClient::new(channel),
        settings,
        _db: db,
        _stop: stop,
    }
}

use crm_platform::testing::authed;

fn as_sales<T>(message: T) -> Request<T> {
    authed(message, "ana", &["sales"])
}

fn partner(name: &str, kind: pb::PartnerKind) -> pb::Partner {
    pb::Partner {
        kind: kind as i32,
        name: name.into(),
        ..Default::default()
    }
}

async fn create(s: &mut Service, p: pb::Partner) -> pb::Partner {
    s.client
        .create_partner(as_sales(pb::CreatePartnerRequest {
            partner: Some(p),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn a_partner_with_sites_and_contacts_is_created_and_read_back() {
    let mut s = start().await;
    let created = create(
        &mut s,
        pb::Partner {
            fiscal_code: "RO18547290".into(),
            city: "Cluj-Napoca".into(),
            county: "Cluj".into(),
            annual_turnover: Some(Money {
                units: 15_000_000,
                currency_code: "RON".into(),
            }),
            employee_count: Some(42),
            activities_of_interest: vec!["irrigation".into()],
            sites: vec![pb::Site {
                label: "Head office".into(),
                email: "Office@Agroserv.ro".into(),
                phone: "+40 264 123 456".into(),
                ..Default::default()
            }],
            contacts: vec![pb::ContactPerson {
                name: "Ion Pop".into(),
                role: "purchasing".into(),
                email: "ion.pop@agroserv.ro".into(),
                ..Default::default()
            }],
            ..partner("Agroserv SRL", pb::PartnerKind::Customer)
        },
    )
    .await;
    assert!(!created.id.is_empty() && !created.etag.is_empty());
    assert_eq!(created.fiscal_code, "18547290");
    assert_eq!(created.country, "RO");
    assert_eq!(created.creator, "ana");
    assert!(!created.sites[0].id.is_empty() && !created.contacts[0].id.is_empty());

    let read = s
        .client
        .get_partner(as_sales(pb::GetPartnerRequest {
            id: created.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, created);

    let missing = s
        .client
        .get_partner(as_sales(pb::GetPartnerRequest {
            id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_input_is_refused_naming_every_field() {
    let mut s = start().await;
    let status = s
        .client
        .create_partner(as_sales(pb::CreatePartnerRequest {
            partner: Some(pb::Partner {
                fiscal_code: "RO18547291".into(),
                annual_turnover: Some(Money {
                    units: -1,
                    currency_code: "RON".into(),
                }),
                employee_count: Some(-3),
                sites: vec![pb::Site {
                    label: "HQ".into(),
                    email: "office@@agroserv".into(),
                    ..Default::default()
                }],
                ..partner("", pb::PartnerKind::Unspecified)
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "partner.kind",
            "partner.name",
            "partner.fiscal_code",
            "partner.annual_turnover",
            "partner.employee_count",
            "partner.sites[0].email",
        ]
    );
    // Nothing was stored.
    let listed = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.partners.is_empty());
}

#[tokio::test]
async fn a_repeated_request_id_returns_the_first_partner() {
    let mut s = start().await;
    let request = pb::CreatePartnerRequest {
        partner: Some(partner("Once SRL", pb::PartnerKind::Lead)),
        request_id: "form-42".into(),
    };
    let (mut first, mut second) = (s.client.clone(), s.client.clone());
    let (a, b) = tokio::join!(
        first.create_partner(as_sales(request.clone())),
        second.create_partner(as_sales(request.clone())),
    );
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    let c = s
        .client
        .create_partner(as_sales(request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, c.id);
    // Another user's identical request id is theirs alone.
    let other = s
        .client
        .create_partner(authed(request, "bob", &["sales"]))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.id, a.id);
    let listed = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.partners.len(), 2);
}

#[tokio::test]
async fn update_changes_only_the_masked_fields_and_refuses_a_stale_etag() {
    let mut s = start().await;
    let created = create(
        &mut s,
        pb::Partner {
            city: "Iasi".into(),
            sites: vec![
                pb::Site {
                    label: "Head office".into(),
                    ..Default::default()
                },
                pb::Site {
                    label: "Depot".into(),
                    ..Default::default()
                },
            ],
            ..partner("Old Name", pb::PartnerKind::Customer)
        },
    )
    .await;
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    };
    // Keep the head office (renamed), drop the depot, add a branch.
    let mut sites = vec![created.sites[0].clone()];
    sites[0].label = "Main office".into();
    sites.push(pb::Site {
        label: "Branch".into(),
        email: "branch@x.ro".into(),
        ..Default::default()
    });
    let updated = s
        .client
        .update_partner(as_sales(pb::UpdatePartnerRequest {
            partner: Some(pb::Partner {
                id: created.id.clone(),
                name: "New Name".into(),
                city: "ignored because not in the mask".into(),
                sites,
                ..Default::default()
            }),
            update_mask: mask(&["name", "sites"]),
            etag: created.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "New Name");
    assert_eq!(updated.city, "Iasi");
    assert_eq!(updated.kind, created.kind);
    assert_ne!(updated.etag, created.etag);
    let labels: Vec<_> = updated.sites.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["Main office", "Branch"]);
    assert_eq!(updated.sites[0].id, created.sites[0].id);

    // The etag read before the update is stale now.
    let stale = s
        .client
        .update_partner(as_sales(pb::UpdatePartnerRequest {
            partner: Some(pb::Partner {
                id: created.id.clone(),
                name: "Lost Update".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: created.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Ids, owners and audit fields cannot be named; a bad new value names its field.
    let refused = s
        .client
        .update_partner(as_sales(pb::UpdatePartnerRequest {
            partner: Some(pb::Partner {
                id: created.id.clone(),
                creator: "mallory".into(),
                ..Default::default()
            }),
            update_mask: mask(&["creator"]),
            etag: updated.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["update_mask"]);
    let refused = s
        .client
        .update_partner(as_sales(pb::UpdatePartnerRequest {
            partner: Some(pb::Partner {
                id: created.id.clone(),
                contacts: vec![pb::ContactPerson {
                    name: "Ana".into(),
                    email: "ana@".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            update_mask: mask(&["contacts"]),
            etag: updated.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["partner.contacts[0].email"]);
}

#[tokio::test]
async fn list_applies_every_filter_and_pages_in_a_stable_order() {
    let mut s = start().await;
    let competitor = create(&mut s, partner("Rival SA", pb::PartnerKind::Competitor)).await;
    for i in 0..7 {
        create(
            &mut s,
            pb::Partner {
                city: if i % 2 == 0 { "Cluj" } else { "Brasov" }.into(),
                county: if i % 2 == 0 { "Cluj" } else { "Brasov" }.into(),
                employee_count: Some(i * 10),
                annual_turnover: Some(Money {
                    units: i * 1000,
                    currency_code: "RON".into(),
                }),
                activity_domain: if i < 3 { "agriculture" } else { "retail" }.into(),
                fiscal_code: if i == 5 {
                    "RO14399840".into()
                } else {
                    String::new()
                },
                competitor_ids: if i == 0 {
                    vec![competitor.id.clone()]
                } else {
                    vec![]
                },
                ..partner(
                    &format!("Farm {i}"),
                    if i < 4 {
                        pb::PartnerKind::Lead
                    } else {
                        pb::PartnerKind::Customer
                    },
                )
            },
        )
        .await;
    }
    let names = |r: pb::ListPartnersResponse| -> Vec<String> {
        r.partners.into_iter().map(|p| p.name).collect()
    };
    let list = |request: pb::ListPartnersRequest| {
        let mut client = s.client.clone();
        async move {
            client
                .list_partners(as_sales(request))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let all = list(pb::ListPartnersRequest::default()).await;
    assert_eq!(all.partners.len(), 8);
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                name_prefix: "farm".into(),
                city: "CLUJ".into(),
                ..Default::default()
            })
            .await
        ),
        ["Farm 0", "Farm 2", "Farm 4", "Farm 6"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                name_contains: "m 3".into(),
                ..Default::default()
            })
            .await
        ),
        ["Farm 3"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                county: "brasov".into(),
                employees_min: Some(20),
                employees_max: Some(50),
                ..Default::default()
            })
            .await
        ),
        ["Farm 3", "Farm 5"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                turnover_min: Some(Money {
                    units: 2000,
                    currency_code: "RON".into()
                }),
                turnover_max: Some(Money {
                    units: 4000,
                    currency_code: String::new()
                }),
                ..Default::default()
            })
            .await
        ),
        ["Farm 2", "Farm 3", "Farm 4"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                activity_domain: "Agriculture".into(),
                kind: pb::PartnerKind::Lead as i32,
                ..Default::default()
            })
            .await
        ),
        ["Farm 0", "Farm 1", "Farm 2"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                fiscal_code: "ro 14399840".into(),
                ..Default::default()
            })
            .await
        ),
        ["Farm 5"]
    );
    assert_eq!(
        names(
            list(pb::ListPartnersRequest {
                kind: pb::PartnerKind::Competitor as i32,
                ..Default::default()
            })
            .await
        ),
        ["Rival SA"]
    );
    // A LIKE wildcard in the filter is matched literally.
    assert!(
        list(pb::ListPartnersRequest {
            name_contains: "%".into(),
            ..Default::default()
        })
        .await
        .partners
        .is_empty()
    );

    // Pages of 3 cover everything once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListPartnersRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        assert!(page.partners.len() <= 3);
        seen.extend(page.partners.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, names(all));

    // A token cannot be replayed with other filters; bounds are checked.
    let first = list(pb::ListPartnersRequest {
        page_size: 1,
        ..Default::default()
    })
    .await;
    let status = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest {
            page_token: first.next_page_token,
            city: "Cluj".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest {
            page_size: 501,
            employees_min: Some(-1),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn competitors_must_be_partners_of_kind_competitor() {
    let mut s = start().await;
    let customer = create(&mut s, partner("Customer SRL", pb::PartnerKind::Customer)).await;
    let status = s
        .client
        .create_partner(as_sales(pb::CreatePartnerRequest {
            partner: Some(pb::Partner {
                competitor_ids: vec![customer.id.clone(), "not-a-uuid".into()],
                ..partner("Lead SRL", pb::PartnerKind::Lead)
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["partner.competitor_ids[1]"]);
    let status = s
        .client
        .create_partner(as_sales(pb::CreatePartnerRequest {
            partner: Some(pb::Partner {
                competitor_ids: vec![customer.id.clone()],
                ..partner("Lead SRL", pb::PartnerKind::Lead)
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["partner.competitor_ids[0]"]);
}

#[tokio::test]
async fn a_lead_converts_to_a_customer_once_and_archived_partners_leave_the_list() {
    let mut s = start().await;
    let lead = create(&mut s, partner("Lead SRL", pb::PartnerKind::Lead)).await;
    let customer = s
        .client
        .convert_lead(as_sales(pb::ConvertLeadRequest {
            id: lead.id.clone(),
            etag: lead.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.id, lead.id);
    assert_eq!(customer.kind, pb::PartnerKind::Customer as i32);
    assert!(customer.convert_time.is_some());
    assert_eq!(customer.create_time, lead.create_time);
    let again = s
        .client
        .convert_lead(as_sales(pb::ConvertLeadRequest {
            id: lead.id.clone(),
            etag: customer.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    let archived = s
        .client
        .archive_partner(as_sales(pb::ArchivePartnerRequest {
            id: lead.id.clone(),
            etag: customer.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.state, pb::PartnerState::Archived as i32);
    let default_list = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(default_list.partners.is_empty());
    let with_archived = s
        .client
        .list_partners(as_sales(pb::ListPartnersRequest {
            show_archived: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_archived.partners.len(), 1);
}

#[tokio::test]
async fn partners_are_found_by_site_or_contact_email_case_insensitively() {
    let mut s = start().await;
    let a = create(
        &mut s,
        pb::Partner {
            sites: vec![pb::Site {
                label: "HQ".into(),
                email: "Office@Shared.ro".into(),
                ..Default::default()
            }],
            ..partner("Alpha SRL", pb::PartnerKind::Customer)
        },
    )
    .await;
    let b = create(
        &mut s,
        pb::Partner {
            contacts: vec![pb::ContactPerson {
                name: "Maria".into(),
                email: "office@shared.RO".into(),
                ..Default::default()
            }],
            ..partner("Beta SRL", pb::PartnerKind::Lead)
        },
    )
    .await;
    let found = s
        .client
        .find_partners_by_email(as_sales(pb::FindPartnersByEmailRequest {
            email: "OFFICE@shared.ro".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, i32, String)> = found
        .matches
        .into_iter()
        .map(|m| (m.partner.unwrap().id, m.owner_kind, m.owner_id))
        .collect();
    assert_eq!(
        got,
        [
            (a.id, pb::EmailOwnerKind::Site as i32, a.sites[0].id.clone()),
            (
                b.id,
                pb::EmailOwnerKind::Contact as i32,
                b.contacts[0].id.clone()
            ),
        ]
    );
    let status = s
        .client
        .find_partners_by_email(as_sales(pb::FindPartnersByEmailRequest {
            email: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["email"]);
}

#[tokio::test]
async fn calls_need_a_valid_token_and_a_fitting_role() {
    let mut s = start().await;
    let status = s
        .client
        .list_partners(pb::ListPartnersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut forged = Request::new(pb::ListPartnersRequest::default());
    forged
        .metadata_mut()
        .insert("authorization", "Bearer not.a.token".parse().unwrap());
    let status = s.client.list_partners(forged).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // The parser's complaint is logged, never echoed.
    assert_eq!(status.message(), "invalid token");
    // The `service` role reads partners but does not change them.
    s.client
        .list_partners(authed(
            pb::ListPartnersRequest::default(),
            "sam",
            &["service"],
        ))
        .await
        .unwrap();
    let status = s
        .client
        .create_partner(authed(
            pb::CreatePartnerRequest {
                partner: Some(partner("X", pb::PartnerKind::Lead)),
                request_id: String::new(),
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn partner_events_reach_the_stream_with_the_callers_trace() {
    let mut s = start().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = as_sales(pb::CreatePartnerRequest {
        partner: Some(partner("Traced SRL", pb::PartnerKind::Lead)),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let created = s.client.create_partner(request).await.unwrap().into_inner();
    s.client
        .convert_lead(as_sales(pb::ConvertLeadRequest {
            id: created.id.clone(),
            etag: created.etag.clone(),
        }))
        .await
        .unwrap();

    let stream = crm_platform::redis_conn::stream_name(
        &s.settings.base.redis,
        crm_marketing::events::STREAM,
    );
    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(
        &s.settings.base.redis.url,
    ))
    .unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let mut envelopes = Vec::new();
    for _ in 0..100 {
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut redis, &stream)
                .await
                .unwrap();
        envelopes = reply
            .ids
            .iter()
            .map(|entry| {
                let bytes: Vec<u8> = entry.get("envelope").expect("envelope field");
                Envelope::decode(bytes.as_slice()).unwrap()
            })
            .collect();
        if envelopes.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(envelopes.len(), 2, "both events relayed, in order");
    let created_event = &envelopes[0];
    assert_eq!(created_event.r#type, "crm.events.v1.PartnerCreated");
    assert_eq!(created_event.producer, "marketing");
    // The envelope names who did it.
    assert_eq!(created_event.actor, "ana");
    assert_eq!(created_event.partner_id, created.id);
    assert!(
        created_event.traceparent.contains(trace_id),
        "the event continues the caller's trace: {}",
        created_event.traceparent
    );
    let payload: PartnerCreated = created_event.payload.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(payload.partner.unwrap().name, "Traced SRL");
    let updated: PartnerUpdated = envelopes[1].payload.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(updated.changed_fields, ["kind", "convert_time"]);
}

#[tokio::test]
async fn a_partner_has_at_most_one_head_office() {
    let mut s = start().await;
    let head_office = |label: &str| pb::Site {
        label: label.into(),
        head_office: true,
        ..Default::default()
    };
    let status = s
        .client
        .create_partner(as_sales(pb::CreatePartnerRequest {
            partner: Some(pb::Partner {
                sites: vec![head_office("Cluj"), head_office("Iasi")],
                ..partner("Two Heads SRL", pb::PartnerKind::Customer)
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["partner.sites[1].head_office"]);
    let created = create(
        &mut s,
        pb::Partner {
            sites: vec![
                pb::Site {
                    label: "Depot".into(),
                    ..Default::default()
                },
                head_office("Cluj"),
            ],
            ..partner("One Head SRL", pb::PartnerKind::Customer)
        },
    )
    .await;
    let flags: Vec<bool> = created.sites.iter().map(|s| s.head_office).collect();
    assert_eq!(flags, [false, true]);
}

/// An update holds its transaction's connection while it checks the competitors: the check must
/// run on that connection, or a busy service waits for a second one while holding the first.
#[tokio::test]
async fn an_update_needs_only_one_database_connection() {
    let mut s = start_with(|settings| settings.base.database.max_connections = 1).await;
    let rival = create(&mut s, partner("Rival SA", pb::PartnerKind::Competitor)).await;
    let customer = create(&mut s, partner("Customer SRL", pb::PartnerKind::Customer)).await;
    let updated = tokio::time::timeout(
        Duration::from_secs(5),
        s.client.update_partner(as_sales(pb::UpdatePartnerRequest {
            partner: Some(pb::Partner {
                id: customer.id.clone(),
                competitor_ids: vec![rival.id.clone()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["competitor_ids".into()],
            }),
            etag: customer.etag.clone(),
        })),
    )
    .await
    .expect("the update finishes without waiting for a second connection")
    .unwrap()
    .into_inner();
    assert_eq!(updated.competitor_ids, [rival.id]);
}

/// Page tokens hold the database's own sort key: names with upper-case letters beyond ASCII
/// (Romanian diacritics) are neither skipped nor repeated between pages.
#[tokio::test]
async fn paging_is_exact_for_names_with_diacritics() {
    let mut s = start().await;
    // İ and a final Σ are lower-cased differently by Rust and by PostgreSQL whatever its
    // locale; the names after them in the order would be skipped or repeated.
    let names = [
        "Ștefan SRL",
        "Șerban SA",
        "Țara Bârsei",
        "İstanbul Trade",
        "Isuzu Auto",
        "ΣΟΦΟΣ",
        "Ωmega SRL",
        "Îngeri",
        "stefan Ltd",
    ];
    for name in names {
        create(&mut s, partner(name, pb::PartnerKind::Lead)).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..20 {
        let page = s
            .client
            .list_partners(as_sales(pb::ListPartnersRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.partners.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "every partner exactly once, in pages: {seen:?}"
    );
}

/// Name searches fold case beyond ASCII, as Romanian names need.
#[tokio::test]
async fn name_searches_ignore_the_case_of_diacritics() {
    let mut s = start().await;
    create(&mut s, partner("ȘTEFAN AGRO SRL", pb::PartnerKind::Lead)).await;
    create(&mut s, partner("Stefan Ltd", pb::PartnerKind::Lead)).await;
    for (prefix, contains) in [("ștefan", ""), ("", "tefan agro"), ("", "ȘTEF")] {
        let found = s
            .client
            .list_partners(as_sales(pb::ListPartnersRequest {
                name_prefix: prefix.into(),
                name_contains: contains.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<String> = found.partners.into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["ȘTEFAN AGRO SRL"],
            "prefix {prefix:?}, contains {contains:?}"
        );
    }
}
