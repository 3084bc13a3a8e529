//! Proto ⇄ domain: turns request messages into validated domain values (every bad field named,
//! with its full path in the request) and domain values back into messages.

use crm_platform::error::FieldViolations;
use crm_platform::values::timestamp;
use crm_proto::{common::Money, marketing as pb};

use crate::domain::{
    partner::{Contact, Kind, Partner, PartnerDraft, Site, State},
    values::{self, CountryCode, Email, FiscalCode, NonNegativeMoney},
};

/// Most activities of interest a partner may have.
const MAX_ACTIVITIES: usize = 100;
/// Most competitors a partner may name.
const MAX_COMPETITORS: usize = 100;
/// Most sites a partner may have.
const MAX_SITES: usize = 100;
/// Most contact persons a partner may have.
const MAX_CONTACTS: usize = 500;

/// Parses the client-settable fields of `p`; `at` is the path of `p` in the request
/// (`partner`). Output-only fields are ignored.
pub fn partner_draft(
    p: &pb::Partner,
    at: &str,
    violations: &mut FieldViolations,
) -> Option<PartnerDraft> {
    let before = violations.violations().len();
    let kind = match pb::PartnerKind::try_from(p.kind) {
        Ok(pb::PartnerKind::Lead) => Some(Kind::Lead),
        Ok(pb::PartnerKind::Customer) => Some(Kind::Customer),
        Ok(pb::PartnerKind::Competitor) => Some(Kind::Competitor),
        Ok(pb::PartnerKind::Unspecified) => {
            violations.add(
                format!("{at}.kind"),
                "is required (lead, customer or competitor)",
            );
            None
        }
        Err(_) => {
            violations.add(
                format!("{at}.kind"),
                format!("{} is not a partner kind", p.kind),
            );
            None
        }
    };
    let name = violations.check(format!("{at}.name"), values::text(&p.name, 200, true));
    let country = violations.check(
        format!("{at}.country"),
        CountryCode::parse_or(&p.country, "RO"),
    );
    let fiscal_code = match (&country, p.fiscal_code.trim().is_empty()) {
        (_, true) => Some(None),
        (Some(country), false) => violations
            .check(
                format!("{at}.fiscal_code"),
                FiscalCode::parse(&p.fiscal_code, country.as_str()),
            )
            .map(Some),
        (None, false) => None,
    };
    let city = violations.check(format!("{at}.city"), values::text(&p.city, 100, false));
    let county = violations.check(format!("{at}.county"), values::text(&p.county, 100, false));
    let annual_turnover = match &p.annual_turnover {
        None => Some(None),
        Some(m) => violations
            .check(
                format!("{at}.annual_turnover"),
                NonNegativeMoney::parse(m.units, &m.currency_code),
            )
            .map(Some),
    };
    let employee_count = match p.employee_count {
        Some(n) if n < 0 => {
            violations.add(format!("{at}.employee_count"), "must not be negative");
            None
        }
        n => Some(n),
    };
    let activity_domain = violations.check(
        format!("{at}.activity_domain"),
        values::text(&p.activity_domain, 100, false),
    );
    for (field, count, max) in [
        (
            "activities_of_interest",
            p.activities_of_interest.len(),
            MAX_ACTIVITIES,
        ),
        ("competitor_ids", p.competitor_ids.len(), MAX_COMPETITORS),
        ("sites", p.sites.len(), MAX_SITES),
        ("contacts", p.contacts.len(), MAX_CONTACTS),
    ] {
        if count > max {
            violations.add(
                format!("{at}.{field}"),
                format!("has {count} items; at most {max} are allowed"),
            );
        }
    }
    let activities_of_interest: Vec<Option<String>> = p
        .activities_of_interest
        .iter()
        .enumerate()
        .map(|(i, a)| {
            violations.check(
                format!("{at}.activities_of_interest[{i}]"),
                values::text(a, 100, true),
            )
        })
        .collect();
    let competitor_ids: Vec<Option<uuid::Uuid>> = p
        .competitor_ids
        .iter()
        .enumerate()
        .map(|(i, id)| violations.check(format!("{at}.competitor_ids[{i}]"), values::uuid(id)))
        .collect();
    let sales_rep = violations.check(
        format!("{at}.sales_rep_staff_id"),
        values::optional_uuid(&p.sales_rep_staff_id),
    );
    let service_rep = violations.check(
        format!("{at}.service_rep_staff_id"),
        values::optional_uuid(&p.service_rep_staff_id),
    );
    let default_country = country
        .as_ref()
        .map_or("RO", CountryCode::as_str)
        .to_owned();
    let sites: Vec<Option<Site>> = p
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| site(s, &format!("{at}.sites[{i}]"), &default_country, violations))
        .collect();
    let contacts: Vec<Option<Contact>> = p
        .contacts
        .iter()
        .enumerate()
        .map(|(i, c)| contact(c, &format!("{at}.contacts[{i}]"), violations))
        .collect();
    if violations.violations().len() > before {
        return None;
    }
    Some(PartnerDraft {
        kind: kind?,
        name: name?,
        fiscal_code: fiscal_code?,
        city: city?,
        county: county?,
        country: country?,
        annual_turnover: annual_turnover?,
        employee_count: employee_count?,
        activity_domain: activity_domain?,
        activities_of_interest: activities_of_interest.into_iter().collect::<Option<_>>()?,
        competitor_ids: competitor_ids.into_iter().collect::<Option<_>>()?,
        sales_rep_staff_id: sales_rep?,
        service_rep_staff_id: service_rep?,
        sites: sites.into_iter().collect::<Option<_>>()?,
        contacts: contacts.into_iter().collect::<Option<_>>()?,
    })
}

fn optional_email(raw: &str) -> Result<Option<Email>, String> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        Email::parse(raw).map(Some)
    }
}

fn site(s: &pb::Site, at: &str, default_country: &str, v: &mut FieldViolations) -> Option<Site> {
    let id = v.check(format!("{at}.id"), values::optional_uuid(&s.id));
    let label = v.check(format!("{at}.label"), values::text(&s.label, 100, true));
    let address = v.check(
        format!("{at}.address"),
        values::text(&s.address, 300, false),
    );
    let city = v.check(format!("{at}.city"), values::text(&s.city, 100, false));
    let county = v.check(format!("{at}.county"), values::text(&s.county, 100, false));
    let country = v.check(
        format!("{at}.country"),
        CountryCode::parse_or(&s.country, default_country),
    );
    let email = v.check(format!("{at}.email"), optional_email(&s.email));
    let phone = v.check(format!("{at}.phone"), values::phone(&s.phone));
    Some(Site {
        id: id?,
        label: label?,
        address: address?,
        city: city?,
        county: county?,
        country: country?,
        email: email?,
        phone: phone?,
        head_office: s.head_office,
    })
}

fn contact(c: &pb::ContactPerson, at: &str, v: &mut FieldViolations) -> Option<Contact> {
    let id = v.check(format!("{at}.id"), values::optional_uuid(&c.id));
    let name = v.check(format!("{at}.name"), values::text(&c.name, 200, true));
    let role = v.check(format!("{at}.role"), values::text(&c.role, 100, false));
    let email = v.check(format!("{at}.email"), optional_email(&c.email));
    let phone = v.check(format!("{at}.phone"), values::phone(&c.phone));
    let site_id = v.check(format!("{at}.site_id"), values::optional_uuid(&c.site_id));
    Some(Contact {
        id: id?,
        name: name?,
        role: role?,
        email: email?,
        phone: phone?,
        site_id: site_id?,
    })
}

/// The message of a stored partner.
pub fn partner_to_proto(p: &Partner) -> pb::Partner {
    let d = &p.draft;
    pb::Partner {
        id: p.id.to_string(),
        kind: match d.kind {
            Kind::Lead => pb::PartnerKind::Lead,
            Kind::Customer => pb::PartnerKind::Customer,
            Kind::Competitor => pb::PartnerKind::Competitor,
        } as i32,
        name: d.name.clone(),
        fiscal_code: d
            .fiscal_code
            .as_ref()
            .map(|f| f.as_str().to_owned())
            .unwrap_or_default(),
        city: d.city.clone(),
        county: d.county.clone(),
        country: d.country.as_str().to_owned(),
        annual_turnover: d.annual_turnover.as_ref().map(|m| Money {
            units: m.units,
            currency_code: m.currency.clone(),
        }),
        employee_count: d.employee_count,
        activity_domain: d.activity_domain.clone(),
        activities_of_interest: d.activities_of_interest.clone(),
        competitor_ids: d.competitor_ids.iter().map(ToString::to_string).collect(),
        sales_rep_staff_id: d
            .sales_rep_staff_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        service_rep_staff_id: d
            .service_rep_staff_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        sites: d
            .sites
            .iter()
            .map(|s| pb::Site {
                id: s.id.map(|id| id.to_string()).unwrap_or_default(),
                label: s.label.clone(),
                address: s.address.clone(),
                city: s.city.clone(),
                county: s.county.clone(),
                country: s.country.as_str().to_owned(),
                email: s
                    .email
                    .as_ref()
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
                phone: s.phone.clone(),
                head_office: s.head_office,
            })
            .collect(),
        contacts: d
            .contacts
            .iter()
            .map(|c| pb::ContactPerson {
                id: c.id.map(|id| id.to_string()).unwrap_or_default(),
                name: c.name.clone(),
                role: c.role.clone(),
                email: c
                    .email
                    .as_ref()
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
                phone: c.phone.clone(),
                site_id: c.site_id.map(|id| id.to_string()).unwrap_or_default(),
            })
            .collect(),
        state: match p.state {
            State::Active => pb::PartnerState::Active,
            State::Archived => pb::PartnerState::Archived,
        } as i32,
        convert_time: p.convert_time.map(timestamp),
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
        creator: p.creator.clone(),
        etag: p.etag(),
    }
}

/// Copies the fields named by `paths` from `from` onto `onto` (both messages), for
/// UpdatePartner; the merged message is then parsed whole, so the same rules apply as on create.
pub fn apply_mask(onto: &mut pb::Partner, from: &pb::Partner, paths: &[String]) {
    for path in paths {
        match path.as_str() {
            "kind" => onto.kind = from.kind,
            "name" => onto.name.clone_from(&from.name),
            "fiscal_code" => onto.fiscal_code.clone_from(&from.fiscal_code),
            "city" => onto.city.clone_from(&from.city),
            "county" => onto.county.clone_from(&from.county),
            "country" => onto.country.clone_from(&from.country),
            "annual_turnover" => onto.annual_turnover.clone_from(&from.annual_turnover),
            "employee_count" => onto.employee_count = from.employee_count,
            "activity_domain" => onto.activity_domain.clone_from(&from.activity_domain),
            "activities_of_interest" => {
                onto.activities_of_interest
                    .clone_from(&from.activities_of_interest);
            }
            "competitor_ids" => onto.competitor_ids.clone_from(&from.competitor_ids),
            "sales_rep_staff_id" => onto.sales_rep_staff_id.clone_from(&from.sales_rep_staff_id),
            "service_rep_staff_id" => {
                onto.service_rep_staff_id
                    .clone_from(&from.service_rep_staff_id);
            }
            "sites" => onto.sites.clone_from(&from.sites),
            "contacts" => onto.contacts.clone_from(&from.contacts),
            // Paths are checked against UPDATABLE_FIELDS before merging.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named_with_its_path() {
        let p = pb::Partner {
            kind: 0,
            name: " ".into(),
            fiscal_code: "RO123".into(),
            annual_turnover: Some(Money {
                units: -5,
                currency_code: "RON".into(),
            }),
            employee_count: Some(-1),
            sites: vec![pb::Site {
                label: "HQ".into(),
                email: "not-an-email".into(),
                ..Default::default()
            }],
            contacts: vec![pb::ContactPerson {
                name: "Ana".into(),
                email: "ana@@x.ro".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut v = FieldViolations::new();
        assert!(partner_draft(&p, "partner", &mut v).is_none());
        let fields: Vec<&str> = v.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "partner.kind",
                "partner.name",
                "partner.fiscal_code",
                "partner.annual_turnover",
                "partner.employee_count",
                "partner.sites[0].email",
                "partner.contacts[0].email",
            ]
        );
    }

    #[test]
    fn lists_have_a_limit() {
        let p = pb::Partner {
            kind: pb::PartnerKind::Lead as i32,
            name: "Big".into(),
            sites: vec![
                pb::Site {
                    label: "Depot".into(),
                    ..Default::default()
                };
                101
            ],
            ..Default::default()
        };
        let mut v = FieldViolations::new();
        assert!(partner_draft(&p, "partner", &mut v).is_none());
        assert_eq!(v.violations()[0].field, "partner.sites");
    }

    #[test]
    fn a_valid_partner_round_trips() {
        let p = pb::Partner {
            kind: pb::PartnerKind::Customer as i32,
            name: "Agroserv SRL".into(),
            fiscal_code: "RO18547290".into(),
            city: "Cluj-Napoca".into(),
            annual_turnover: Some(Money {
                units: 100_000,
                currency_code: String::new(),
            }),
            ..Default::default()
        };
        let mut v = FieldViolations::new();
        let draft = partner_draft(&p, "partner", &mut v).unwrap();
        assert_eq!(draft.fiscal_code.unwrap().as_str(), "18547290");
        assert_eq!(draft.country.as_str(), "RO");
        assert_eq!(draft.annual_turnover.unwrap().currency, "RON");
    }
}
