//! Staff and categories (T1): defaults, validation, uniqueness, roles, StaffChanged, the
//! caller's own record; the catalogue of post-sale services (T7) and the reminder settings (T8).

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 150_00 is 150.00"
)]

mod common;

use common::*;
use crm_proto::{common as cpb, events as ev, tasks as pb};
use tonic::Code;

#[tokio::test]
async fn a_staff_member_gets_the_default_working_time_and_is_announced() {
    let mut s = start().await;
    let created = s.staff_member("Ion Popescu", "ion").await;
    assert_eq!(created.available_minutes_per_day, Some(480));
    assert_eq!(created.work_start_minute, Some(540));
    assert_eq!(created.work_end_minute, Some(1020));
    assert_eq!(created.working_weekdays, [1, 2, 3, 4, 5]);
    assert!(created.active);
    assert_eq!(created.etag, "W/\"1\"");

    let (envelope, changed) = s
        .wait_message::<ev::StaffChanged>(TASKS, |e| e.staff.as_ref().unwrap().id == created.id)
        .await;
    assert!(changed.created);
    assert_eq!(envelope.actor, "mara");
    assert_eq!(changed.staff.unwrap().email, "ion.popescu@example.ro");

    // The user sees their own record.
    let me = s
        .staff
        .get_current_staff(authed(pb::GetCurrentStaffRequest {}, "ion", &["service"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.id, created.id);
    let err = s
        .staff
        .get_current_staff(authed(pb::GetCurrentStaffRequest {}, "nobody", &["sales"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_staff_are_refused_field_by_field() {
    let mut s = start().await;
    let err = s
        .staff
        .create_staff(manager(pb::CreateStaffRequest {
            staff: Some(pb::Staff {
                name: " ".into(),
                email: "not-an-email".into(),
                category_ids: vec!["x".into()],
                available_minutes_per_day: Some(2000),
                work_start_minute: Some(600),
                work_end_minute: Some(500),
                working_weekdays: vec![1, 8, 1],
                phone: "call me".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "staff.name",
            "staff.email",
            "staff.category_ids[0]",
            "staff.available_minutes_per_day",
            "staff.working_weekdays",
            "staff.phone",
            "staff.work_end_minute",
        ]
    );
    let err = s
        .staff
        .create_staff(manager(pb::CreateStaffRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["staff"]);
    // An unknown category is named too.
    let err = s
        .staff
        .create_staff(manager(pb::CreateStaffRequest {
            staff: Some(pb::Staff {
                name: "Ana".into(),
                category_ids: vec![uuid::Uuid::now_v7().to_string()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["staff.category_ids[0]"]);
}

#[tokio::test]
async fn only_managers_change_staff_and_user_names_are_unique() {
    let mut s = start().await;
    let err = s
        .staff
        .create_staff(sales(
            pb::CreateStaffRequest {
                staff: Some(pb::Staff {
                    name: "Ana".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let ion = s.staff_member("Ion", "ion").await;
    let err = s
        .staff
        .create_staff(manager(pb::CreateStaffRequest {
            staff: Some(pb::Staff {
                name: "Another Ion".into(),
                user_name: "ion".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // Updates: an allow-listed mask, a fresh etag; the id is not on the list.
    let err = s
        .staff
        .update_staff(manager(pb::UpdateStaffRequest {
            staff: Some(pb::Staff {
                id: ion.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["id"]),
            etag: ion.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["update_mask"]);
    let updated = s
        .staff
        .update_staff(manager(pb::UpdateStaffRequest {
            staff: Some(pb::Staff {
                id: ion.id.clone(),
                work_start_minute: Some(7 * 60),
                work_end_minute: Some(15 * 60),
                working_weekdays: vec![1, 2, 3, 4, 5, 6],
                ..Default::default()
            }),
            update_mask: mask(&["work_start_minute", "work_end_minute", "working_weekdays"]),
            etag: ion.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.work_start_minute, Some(420));
    assert_eq!(updated.working_weekdays, [1, 2, 3, 4, 5, 6]);
    assert_eq!(updated.etag, "W/\"2\"");
    // The old etag is stale now.
    let err = s
        .staff
        .update_staff(manager(pb::UpdateStaffRequest {
            staff: Some(pb::Staff {
                id: ion.id.clone(),
                name: "Ion P.".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: ion.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    // An end before the stored start is refused on update too.
    let err = s
        .staff
        .update_staff(manager(pb::UpdateStaffRequest {
            staff: Some(pb::Staff {
                id: ion.id.clone(),
                work_end_minute: Some(6 * 60),
                ..Default::default()
            }),
            update_mask: mask(&["work_end_minute"]),
            etag: updated.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["staff.work_end_minute"]);
}

#[tokio::test]
async fn categories_count_their_active_members_and_filter_staff() {
    let mut s = start().await;
    let team = s
        .staff
        .create_staff_category(manager(pb::CreateStaffCategoryRequest {
            category: Some(pb::StaffCategory {
                name: "Service tehnic".into(),
                description: "Intervenții la client".into(),
                ..Default::default()
            }),
            request_id: "team-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    // The same request id gives the same category.
    let again = s
        .staff
        .create_staff_category(manager(pb::CreateStaffCategoryRequest {
            category: Some(pb::StaffCategory {
                name: "Service tehnic".into(),
                ..Default::default()
            }),
            request_id: "team-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, team.id);
    // Another with the same name (any case) is refused.
    let err = s
        .staff
        .create_staff_category(manager(pb::CreateStaffCategoryRequest {
            category: Some(pb::StaffCategory {
                name: "SERVICE TEHNIC".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    for (name, user) in [("Vasile", "vasile"), ("Gheorghe", ""), ("Andrei", "andrei")] {
        s.staff
            .create_staff(manager(pb::CreateStaffRequest {
                staff: Some(pb::Staff {
                    name: name.into(),
                    user_name: user.into(),
                    category_ids: vec![team.id.clone()],
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap();
    }
    s.staff_member("Outsider", "out").await;
    let read = s
        .staff
        .get_staff_category(sales(
            pb::GetStaffCategoryRequest {
                id: team.id.clone(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.member_count, 3);
    // Members of the team, by name, two a page.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .staff
            .list_staff(sales(
                pb::ListStaffRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    category_id: team.id.clone(),
                    ..Default::default()
                },
                "ana",
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.staff.into_iter().map(|s| s.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["Andrei", "Gheorghe", "Vasile"]);
    // A token does not go with other filters.
    let first = s
        .staff
        .list_staff(sales(
            pb::ListStaffRequest {
                page_size: 1,
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    let err = s
        .staff
        .list_staff(sales(
            pb::ListStaffRequest {
                page_size: 1,
                page_token: first.next_page_token,
                name_contains: "a".into(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page_token"]);
}

#[tokio::test]
async fn post_sale_services_have_a_rate_an_article_and_unique_names() {
    let mut s = start().await;
    let article = uuid::Uuid::now_v7().to_string();
    let service = s
        .catalogue
        .create_post_sale_service(authed(
            pb::CreatePostSaleServiceRequest {
                post_sale_service: Some(pb::PostSaleService {
                    name: "Reparație la domiciliu".into(),
                    article_id: article.clone(),
                    hourly_rate: Some(cpb::Money {
                        units: 150_00,
                        currency_code: String::new(),
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "vasile",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(service.active);
    assert_eq!(service.hourly_rate.unwrap().currency_code, "RON");
    let err = s
        .catalogue
        .create_post_sale_service(manager(pb::CreatePostSaleServiceRequest {
            post_sale_service: Some(pb::PostSaleService {
                name: String::new(),
                article_id: "no".into(),
                hourly_rate: Some(cpb::Money {
                    units: -1,
                    currency_code: "XX".into(),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "post_sale_service.name",
            "post_sale_service.article_id",
            "post_sale_service.hourly_rate.currency_code",
            "post_sale_service.hourly_rate.units",
        ]
    );
    // Sales may read the catalogue but not change it.
    let err = s
        .catalogue
        .create_post_sale_service(sales(
            pb::CreatePostSaleServiceRequest {
                post_sale_service: Some(pb::PostSaleService {
                    name: "x".into(),
                    article_id: article,
                    hourly_rate: Some(cpb::Money::default()),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed = s
        .catalogue
        .list_post_sale_services(sales(
            pb::ListPostSaleServicesRequest {
                name_contains: "domiciliu".into(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.post_sale_services.len(), 1);

    // Without opportunities the coverage answers "unavailable", never an error.
    let coverage = s
        .catalogue
        .get_service_coverage(sales(
            pb::GetServiceCoverageRequest {
                partner_id: uuid::Uuid::now_v7().to_string(),
                post_sale_service_id: service.id.clone(),
                date: None,
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!coverage.available);
    assert!(coverage.coverage.is_none() && coverage.balance.is_none());
    assert!(
        coverage.unavailable_reason.contains("opportunities"),
        "{}",
        coverage.unavailable_reason
    );
}

#[tokio::test]
async fn reminder_settings_are_read_by_all_and_changed_by_admins() {
    let mut s = start().await;
    let current = s
        .reminders
        .get_reminder_settings(sales(pb::GetReminderSettingsRequest {}, "ana"))
        .await
        .unwrap()
        .into_inner();
    assert!(current.send_email && current.send_in_app);
    assert_eq!(
        (current.default_days_before, current.send_at_minute),
        (1, 540)
    );
    let err = s
        .reminders
        .update_reminder_settings(manager(pb::UpdateReminderSettingsRequest {
            settings: Some(pb::ReminderSettings::default()),
            update_mask: mask(&["send_email"]),
            etag: current.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s
        .reminders
        .update_reminder_settings(authed(
            pb::UpdateReminderSettingsRequest {
                settings: Some(pb::ReminderSettings {
                    default_days_before: 4,
                    send_at_minute: 1440,
                    ..Default::default()
                }),
                update_mask: mask(&["default_days_before", "send_at_minute"]),
                etag: current.etag.clone(),
            },
            "root",
            &["admin"],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["settings.default_days_before", "settings.send_at_minute"]
    );
    let updated = s
        .reminders
        .update_reminder_settings(authed(
            pb::UpdateReminderSettingsRequest {
                settings: Some(pb::ReminderSettings {
                    send_email: false,
                    default_days_before: 2,
                    ..Default::default()
                }),
                update_mask: mask(&["send_email", "default_days_before"]),
                etag: current.etag.clone(),
            },
            "root",
            &["admin"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.send_email && updated.send_in_app);
    assert_eq!(updated.default_days_before, 2);
    assert_ne!(updated.etag, current.etag);
}
