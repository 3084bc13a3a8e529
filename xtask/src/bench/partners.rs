//! The partner rows (marketing): CreatePartner, GetPartner and ListPartners through the gateway
//! and directly, with pgbench's single-row INSERT as the ceiling no create can beat. Loads the
//! partners every other row uses too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use anyhow::{Context as _, Result};
use crm_proto::{
    common::Money,
    marketing::{
        CreatePartnerRequest, GetPartnerRequest, ListPartnersRequest, Partner, PartnerKind,
        partner_service_client::PartnerServiceClient,
    },
};
use tonic::{Status, service::interceptor::InterceptedService, transport::Channel};

use super::{
    BearerAuth, BenchArgs, Endpoints, Operation, Row, RowSpec, SplitMix64, Worker,
    load_concurrently, pgbench, print_loaded,
};

/// Cities (with their county) that loaded partners are spread over; the list filter picks one.
const CITIES: [(&str, &str); 20] = [
    ("București", "București"),
    ("Cluj-Napoca", "Cluj"),
    ("Timișoara", "Timiș"),
    ("Iași", "Iași"),
    ("Constanța", "Constanța"),
    ("Craiova", "Dolj"),
    ("Brașov", "Brașov"),
    ("Galați", "Galați"),
    ("Ploiești", "Prahova"),
    ("Oradea", "Bihor"),
    ("Brăila", "Brăila"),
    ("Arad", "Arad"),
    ("Pitești", "Argeș"),
    ("Sibiu", "Sibiu"),
    ("Bacău", "Bacău"),
    ("Târgu Mureș", "Mureș"),
    ("Baia Mare", "Maramureș"),
    ("Buzău", "Buzău"),
    ("Botoșani", "Botoșani"),
    ("Satu Mare", "Satu Mare"),
];
const NAME_WORDS: [&str; 12] = [
    "Agro",
    "Tehno",
    "Construct",
    "Trans",
    "Medi",
    "Eco",
    "Nord",
    "Carpați",
    "Delta",
    "Vest",
    "Prod",
    "Serv",
];
const LIST_CITY: &str = "Cluj-Napoca";
const LIST_EMPLOYEES_MIN: i64 = 100;

type Client = PartnerServiceClient<InterceptedService<Channel, BearerAuth>>;

/// The loaded partners.
pub struct Partners {
    /// Every loaded partner's id.
    pub all: Arc<Vec<String>>,
    /// Those that may get opportunities and documents: leads and customers, not competitors.
    pub usable: Arc<Vec<String>>,
}

/// Creates `args.partners` partners directly against marketing with `args.concurrency` requests
/// in flight.
pub async fn load(endpoints: &Endpoints, args: &BenchArgs) -> Result<Partners> {
    let client: Client =
        PartnerServiceClient::with_interceptor(endpoints.marketing.clone(), endpoints.auth.clone());
    println!("xtask: loading {} partners…", args.partners);
    // One call alone first: if the API does not work at all, say why instead of measuring errors.
    let first = client
        .clone()
        .create_partner(create_request(0))
        .await
        .context("CreatePartner directly against marketing failed")?
        .into_inner();
    let started = Instant::now();
    let mut loaded = vec![(first.id, first.kind != PartnerKind::Competitor as i32)];
    loaded.extend(
        load_concurrently(
            args.partners.saturating_sub(1),
            args.concurrency,
            move |i| {
                let mut client = client.clone();
                async move {
                    let partner = client
                        .create_partner(create_request(i + 1))
                        .await
                        .context("CreatePartner failed while loading")?
                        .into_inner();
                    anyhow::Ok((partner.id, partner.kind != PartnerKind::Competitor as i32))
                }
            },
        )
        .await?,
    );
    print_loaded("partners", loaded.len(), started);
    Ok(Partners {
        all: Arc::new(loaded.iter().map(|(id, _)| id.clone()).collect()),
        usable: Arc::new(
            loaded
                .into_iter()
                .filter_map(|(id, usable)| usable.then_some(id))
                .collect(),
        ),
    })
}

/// The partner rows, each through the gateway then directly.
pub async fn measure(
    endpoints: &Endpoints,
    partners: &Partners,
    args: &BenchArgs,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let serial = Arc::new(AtomicUsize::new(0));
    for operation in [
        Operation::CreatePartner,
        Operation::GetPartner,
        Operation::ListPartners,
    ] {
        for (path, channel) in [
            ("gateway", &endpoints.gateway),
            ("direct", &endpoints.marketing),
        ] {
            crate::process::check_interrupted()?;
            let client: Client =
                PartnerServiceClient::with_interceptor(channel.clone(), endpoints.auth.clone());
            let workers = (0..args.concurrency)
                .map(|worker| PartnerWorker {
                    operation,
                    client: client.clone(),
                    ids: partners.all.clone(),
                    random: SplitMix64(worker as u64 + 1),
                    serial: serial.clone(),
                })
                .collect();
            let spec = RowSpec {
                operation,
                path,
                ceiling: (operation == Operation::CreatePartner).then_some(pgbench::INSERT),
                target: None,
            };
            rows.push(super::measure(spec, workers, args.seconds).await);
        }
    }
    // The simplest read with one call in flight: the latency floor of any call on this machine,
    // to read the latency targets of other rows against (a p99 above it is the machine's).
    let client: Client =
        PartnerServiceClient::with_interceptor(endpoints.marketing.clone(), endpoints.auth.clone());
    let control = PartnerWorker {
        operation: Operation::GetPartner,
        client,
        ids: partners.all.clone(),
        random: SplitMix64(0xf1004),
        serial,
    };
    let spec = RowSpec {
        operation: Operation::GetPartner,
        path: "direct",
        ceiling: None,
        target: None,
    };
    rows.push(super::measure(spec, vec![control], args.seconds).await);
    Ok(rows)
}

struct PartnerWorker {
    operation: Operation,
    client: Client,
    ids: Arc<Vec<String>>,
    random: SplitMix64,
    /// Numbers new partners beyond the loaded ones, so names stay distinct.
    serial: Arc<AtomicUsize>,
}

impl Worker for PartnerWorker {
    async fn call(&mut self) -> Result<(), Status> {
        match self.operation {
            Operation::CreatePartner => {
                let i = 1_000_000 + self.serial.fetch_add(1, Ordering::Relaxed);
                self.client.create_partner(create_request(i)).await?;
            }
            Operation::GetPartner => {
                let id = self.ids[self.random.index(self.ids.len())].clone();
                self.client.get_partner(GetPartnerRequest { id }).await?;
            }
            _ => {
                self.client
                    .list_partners(ListPartnersRequest {
                        page_size: 50,
                        city: LIST_CITY.to_owned(),
                        employees_min: Some(LIST_EMPLOYEES_MIN),
                        ..Default::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// Partner number `i`: deterministic, varied data (name, city, kind, size, turnover).
fn create_request(i: usize) -> CreatePartnerRequest {
    let mut random = SplitMix64(i as u64);
    let (city, county) = CITIES[random.index(CITIES.len())];
    let word = NAME_WORDS[random.index(NAME_WORDS.len())];
    let kind = match random.below(10) {
        0 => PartnerKind::Competitor,
        1..=4 => PartnerKind::Lead,
        _ => PartnerKind::Customer,
    };
    let partner = Partner {
        kind: kind.into(),
        name: format!("{word} {city} SRL {i}"),
        city: city.to_owned(),
        county: county.to_owned(),
        country: "RO".to_owned(),
        employee_count: Some(1 + random.below(5_000) as i64),
        annual_turnover: Some(Money {
            // 10 000 to 100 000 000 RON, in bani.
            units: (1_000_000 + random.below(10_000_000_000)) as i64,
            currency_code: "RON".to_owned(),
        }),
        activity_domain: [
            "agriculture",
            "retail",
            "construction",
            "transport",
            "health",
        ][random.index(5)]
        .to_owned(),
        ..Default::default()
    };
    CreatePartnerRequest {
        partner: Some(partner),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}
