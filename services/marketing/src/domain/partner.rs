//! Partners (M1): what a valid partner is, the fields an update may change, and the lead →
//! customer conversion.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{CountryCode, Email, FiscalCode, NonNegativeMoney};

/// What a partner is to the company.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A prospective customer.
    Lead,
    /// A buying customer.
    Customer,
    /// A competing company.
    Competitor,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lead => "lead",
            Kind::Customer => "customer",
            Kind::Competitor => "competitor",
        }
    }

    /// Reads the stored name.
    pub fn from_db(name: &str) -> Option<Self> {
        match name {
            "lead" => Some(Kind::Lead),
            "customer" => Some(Kind::Customer),
            "competitor" => Some(Kind::Competitor),
            _ => None,
        }
    }
}

/// Whether a partner is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Shown in lists.
    Active,
    /// Hidden from default lists, history kept.
    Archived,
}

impl State {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Archived => "archived",
        }
    }

    /// Reads the stored name.
    pub fn from_db(name: &str) -> Option<Self> {
        match name {
            "active" => Some(State::Active),
            "archived" => Some(State::Archived),
            _ => None,
        }
    }
}

/// A partner's address. `id` is `None` only for a site not stored yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Its id once stored.
    pub id: Option<Uuid>,
    /// Short name ("Head office").
    pub label: String,
    /// Street address.
    pub address: String,
    /// City.
    pub city: String,
    /// County.
    pub county: String,
    /// Country.
    pub country: CountryCode,
    /// Email address, if any.
    pub email: Option<Email>,
    /// Phone number, or empty.
    pub phone: String,
    /// Whether it is the head office (at most one site is).
    pub head_office: bool,
}

/// A person at a partner. `id` is `None` only for a contact not stored yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Its id once stored.
    pub id: Option<Uuid>,
    /// Full name.
    pub name: String,
    /// Role at the partner.
    pub role: String,
    /// Email address, if any.
    pub email: Option<Email>,
    /// Phone number, or empty.
    pub phone: String,
    /// The site the person works at.
    pub site_id: Option<Uuid>,
}

/// Everything a client decides about a partner, validated field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerDraft {
    /// Lead, customer or competitor.
    pub kind: Kind,
    /// Company name.
    pub name: String,
    /// Fiscal code, if known.
    pub fiscal_code: Option<FiscalCode>,
    /// City of the head office.
    pub city: String,
    /// County of the head office.
    pub county: String,
    /// Country.
    pub country: CountryCode,
    /// Annual turnover, if known.
    pub annual_turnover: Option<NonNegativeMoney>,
    /// Number of employees, if known (never negative).
    pub employee_count: Option<i64>,
    /// Activity domain.
    pub activity_domain: String,
    /// The company's activities of interest to the partner.
    pub activities_of_interest: Vec<String>,
    /// Competitors present at the partner.
    pub competitor_ids: Vec<Uuid>,
    /// Sales representative (staff id).
    pub sales_rep_staff_id: Option<Uuid>,
    /// Service representative (staff id).
    pub service_rep_staff_id: Option<Uuid>,
    /// Addresses.
    pub sites: Vec<Site>,
    /// Contact persons.
    pub contacts: Vec<Contact>,
}

/// A stored partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// Its id.
    pub id: Uuid,
    /// What clients decide.
    pub draft: PartnerDraft,
    /// Active or archived.
    pub state: State,
    /// When a lead became a customer.
    pub convert_time: Option<DateTime<Utc>>,
    /// Created at.
    pub create_time: DateTime<Utc>,
    /// Last changed at.
    pub update_time: DateTime<Utc>,
    /// Who created it.
    pub creator: String,
    /// Who changed it last.
    pub updater: String,
    /// Incremented by every change.
    pub version: i64,
}

/// A rule broken by a draft: the field path under the draft (e.g. `sites[1].email`) and why.
pub type RuleViolation = (String, String);

/// Checks the rules that span several fields of a draft for the partner `self_id` (if it exists
/// already) whose stored site ids are `known_site_ids` and contact ids `known_contact_ids`.
pub fn check_draft(
    draft: &PartnerDraft,
    self_id: Option<Uuid>,
    known_site_ids: &[Uuid],
    known_contact_ids: &[Uuid],
) -> Vec<RuleViolation> {
    let mut violations = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, activity) in draft.activities_of_interest.iter().enumerate() {
        if !seen.insert(activity.to_lowercase()) {
            violations.push((
                format!("activities_of_interest[{i}]"),
                format!("{activity:?} is listed twice"),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, competitor) in draft.competitor_ids.iter().enumerate() {
        if Some(*competitor) == self_id {
            violations.push((
                format!("competitor_ids[{i}]"),
                "a partner cannot be its own competitor".into(),
            ));
        } else if !seen.insert(*competitor) {
            violations.push((format!("competitor_ids[{i}]"), "is listed twice".into()));
        }
    }
    if let Some(second) = draft
        .sites
        .iter()
        .enumerate()
        .filter(|(_, site)| site.head_office)
        .nth(1)
        .map(|(i, _)| i)
    {
        violations.push((
            format!("sites[{second}].head_office"),
            "another site is already the head office".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, site) in draft.sites.iter().enumerate() {
        if let Some(id) = site.id {
            if !known_site_ids.contains(&id) {
                violations.push((
                    format!("sites[{i}].id"),
                    "is not a site of this partner (leave it empty for a new site)".into(),
                ));
            } else if !seen.insert(id) {
                violations.push((format!("sites[{i}].id"), "is listed twice".into()));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, contact) in draft.contacts.iter().enumerate() {
        if let Some(id) = contact.id {
            if !known_contact_ids.contains(&id) {
                violations.push((
                    format!("contacts[{i}].id"),
                    "is not a contact of this partner (leave it empty for a new contact)".into(),
                ));
            } else if !seen.insert(id) {
                violations.push((format!("contacts[{i}].id"), "is listed twice".into()));
            }
        }
        if let Some(site_id) = contact.site_id
            && !draft.sites.iter().any(|s| s.id == Some(site_id))
        {
            violations.push((
                format!("contacts[{i}].site_id"),
                "is not one of this partner's sites".into(),
            ));
        }
    }
    violations
}

/// The fields `UpdatePartner` may change, by their proto names.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "kind",
    "name",
    "fiscal_code",
    "city",
    "county",
    "country",
    "annual_turnover",
    "employee_count",
    "activity_domain",
    "activities_of_interest",
    "competitor_ids",
    "sales_rep_staff_id",
    "service_rep_staff_id",
    "sites",
    "contacts",
];

/// Why the lead → customer conversion was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// Only leads convert.
    #[error("the partner is a {0}, not a lead")]
    NotALead(&'static str),
}

impl Partner {
    /// The etag clients pass back on change: derived from the version, opaque to them.
    pub fn etag(&self) -> String {
        crm_platform::values::etag_of(self.version)
    }

    /// The next version of this partner, changed by `updater` at `at`; the caller then changes
    /// what the change is about. Id, creation and creator stay.
    pub fn next_version(&self, updater: &str, at: DateTime<Utc>) -> Partner {
        Partner {
            update_time: at,
            updater: updater.to_owned(),
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Turns a lead into a customer at `at`, keeping everything else.
    pub fn convert_lead(&mut self, at: DateTime<Utc>) -> Result<(), ConversionError> {
        if self.draft.kind != Kind::Lead {
            return Err(ConversionError::NotALead(self.draft.kind.as_str()));
        }
        self.draft.kind = Kind::Customer;
        self.convert_time = Some(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PartnerDraft {
        PartnerDraft {
            kind: Kind::Lead,
            name: "Agroserv".into(),
            fiscal_code: None,
            city: String::new(),
            county: String::new(),
            country: CountryCode::parse_or("", "RO").unwrap(),
            annual_turnover: None,
            employee_count: None,
            activity_domain: String::new(),
            activities_of_interest: vec![],
            competitor_ids: vec![],
            sales_rep_staff_id: None,
            service_rep_staff_id: None,
            sites: vec![],
            contacts: vec![],
        }
    }

    fn site(id: Option<Uuid>) -> Site {
        Site {
            id,
            label: "Head office".into(),
            address: String::new(),
            city: String::new(),
            county: String::new(),
            country: CountryCode::parse_or("", "RO").unwrap(),
            email: None,
            phone: String::new(),
            head_office: true,
        }
    }

    #[test]
    fn cross_field_rules() {
        let me = Uuid::now_v7();
        let known = Uuid::now_v7();
        let mut d = draft();
        d.activities_of_interest = vec!["Seeds".into(), "seeds".into()];
        d.competitor_ids = vec![me];
        d.sites = vec![site(Some(Uuid::now_v7())), site(Some(known))];
        d.contacts = vec![Contact {
            id: None,
            name: "Ana".into(),
            role: String::new(),
            email: None,
            phone: String::new(),
            site_id: Some(Uuid::now_v7()),
        }];
        let fields: Vec<String> = check_draft(&d, Some(me), &[known], &[])
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "activities_of_interest[1]",
                "competitor_ids[0]",
                "sites[1].head_office",
                "sites[0].id",
                "contacts[0].site_id"
            ]
        );
        assert!(check_draft(&draft(), None, &[], &[]).is_empty());
    }

    #[test]
    fn only_a_lead_converts() {
        let now = Utc::now();
        let mut p = Partner {
            id: Uuid::now_v7(),
            draft: draft(),
            state: State::Active,
            convert_time: None,
            create_time: now,
            update_time: now,
            creator: "ana".into(),
            updater: "ana".into(),
            version: 1,
        };
        p.convert_lead(now).unwrap();
        assert_eq!((p.draft.kind, p.convert_time), (Kind::Customer, Some(now)));
        assert_eq!(
            p.convert_lead(now),
            Err(ConversionError::NotALead("customer"))
        );
    }
}
