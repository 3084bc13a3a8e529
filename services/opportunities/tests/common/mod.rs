//! The opportunities service in-process on port 0, against its own fresh PostgreSQL database
//! and Redis stream prefix, with clients of every service and ways to feed it what other
//! services would publish (partners, campaigns, tasks, commands).

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::time::Duration;

use crm_opportunities::config::Settings;
use crm_platform::testing::{self, TestDatabase, redis_settings};
use crm_proto::{
    common,
    events::{self as ev, Envelope},
    marketing,
    opportunities::{
        self as pb, article_service_client::ArticleServiceClient,
        contract_service_client::ContractServiceClient,
        document_render_service_client::DocumentRenderServiceClient,
        invoice_service_client::InvoiceServiceClient,
        lost_reason_service_client::LostReasonServiceClient,
        number_series_service_client::NumberSeriesServiceClient,
        offer_service_client::OfferServiceClient,
        opportunity_service_client::OpportunityServiceClient,
        order_service_client::OrderServiceClient, payment_service_client::PaymentServiceClient,
    },
};
use prost::Message as _;
use sqlx::PgPool;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;
use uuid::Uuid;

#[allow(unused_imports, reason = "each test binary uses part of the harness")]
pub use crm_platform::testing::{as_service, authed, on_behalf};

/// A running opportunities service and its clients.
pub struct Service {
    pub opportunities: OpportunityServiceClient<Channel>,
    pub lost_reasons: LostReasonServiceClient<Channel>,
    pub articles: ArticleServiceClient<Channel>,
    pub series: NumberSeriesServiceClient<Channel>,
    pub offers: OfferServiceClient<Channel>,
    pub orders: OrderServiceClient<Channel>,
    pub contracts: ContractServiceClient<Channel>,
    pub invoices: InvoiceServiceClient<Channel>,
    pub payments: PaymentServiceClient<Channel>,
    pub render: DocumentRenderServiceClient<Channel>,
    pub settings: Settings,
    /// The service's own database, for checks and to seed what events would.
    pub pool: PgPool,
    redis: redis::aio::MultiplexedConnection,
    _db: TestDatabase,
    _blobs: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the service; `adjust` changes its settings first.
pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Service {
    let db = TestDatabase::create("opportunities").await;
    let mut settings = Settings::load(None).unwrap();
    testing::init_telemetry(&settings.base);
    testing::use_test_backing(&mut settings.base, &db, redis_settings());
    let blobs = tempfile::tempdir().unwrap();
    settings.base.blob.root = blobs.path().to_path_buf();
    // No marketing: partners are known only from the events the tests publish.
    settings.marketing.url = "http://127.0.0.1:9".into();
    settings.marketing.timeout_ms = 300;
    adjust(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crm_opportunities::run(settings.clone(), listener, async {
        let _ = stopped.await;
    }));
    testing::wait_serving(addr, "crm.opportunities.v1.OpportunityService").await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let pool = PgPool::connect(&format!(
        "{}?options=-csearch_path%3Dopportunities",
        db.url()
    ))
    .await
    .unwrap();
    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(
        &settings.base.redis.url,
    ))
    .unwrap();
    Service {
        opportunities: OpportunityServiceClient::new(channel.clone()),
        lost_reasons: LostReasonServiceClient::new(channel.clone()),
        articles: ArticleServiceClient::new(channel.clone()),
        series: NumberSeriesServiceClient::new(channel.clone()),
        offers: OfferServiceClient::new(channel.clone()),
        orders: OrderServiceClient::new(channel.clone()),
        contracts: ContractServiceClient::new(channel.clone()),
        invoices: InvoiceServiceClient::new(channel.clone()),
        payments: PaymentServiceClient::new(channel.clone()),
        render: DocumentRenderServiceClient::new(channel),
        settings,
        pool,
        redis: client.get_multiplexed_async_connection().await.unwrap(),
        _db: db,
        _blobs: blobs,
        _stop: stop,
    }
}

/// Starts the service with its defaults.
pub async fn start() -> Service {
    start_with(|_| {}).await
}

/// A request of user "ana" with the `sales` role.
pub fn sales<T>(message: T) -> tonic::Request<T> {
    authed(message, "ana", &["sales"])
}

/// A file as the file service answers an upload by "ana" (the `sales` caller): its reference
/// with a valid upload token, so this service takes it as a new attachment.
pub fn uploaded_by_ana(
    blob_key: &str,
    file_name: &str,
    content_type: &str,
    size_bytes: i64,
) -> common::AttachmentRef {
    let mut file = common::AttachmentRef {
        blob_key: blob_key.into(),
        file_name: file_name.into(),
        content_type: content_type.into(),
        size_bytes,
        id: uuid::Uuid::now_v7().to_string(),
        upload_token: String::new(),
    };
    let tokens =
        crm_platform::files::UploadTokens::new(&crm_platform::auth::AuthSettings::development());
    file.upload_token = tokens.sign(
        &file,
        "ana",
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    file
}

/// A request of user "mara" with the `manager` role.
pub fn manager<T>(message: T) -> tonic::Request<T> {
    authed(message, "mara", &["manager"])
}

/// The fields an INVALID_ARGUMENT status names.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// RON money.
pub fn ron(units: i64) -> Option<common::Money> {
    Some(common::Money {
        units,
        currency_code: "RON".into(),
    })
}

/// EUR money.
pub fn eur(units: i64) -> Option<common::Money> {
    Some(common::Money {
        units,
        currency_code: "EUR".into(),
    })
}

/// A calendar date.
pub fn date(year: i32, month: i32, day: i32) -> Option<common::Date> {
    Some(common::Date { year, month, day })
}

/// Today in the company's zone (Europe/Bucharest).
pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Bucharest)
        .date_naive()
}

/// `day` as the proto message.
pub fn proto_date(day: chrono::NaiveDate) -> Option<common::Date> {
    Some(crm_platform::values::date_to_proto(day))
}

impl Service {
    /// Publishes `payload` on `stream` (name without prefix) as `producer`'s relay would: an
    /// envelope added with XADD, so the service's consumers see what a sibling sends.
    pub async fn publish<M: prost::Name>(
        &mut self,
        stream: &str,
        producer: &str,
        payload: &M,
    ) -> Uuid {
        let id = Uuid::now_v7();
        let envelope = Envelope {
            id: id.to_string(),
            r#type: M::full_name(),
            time: Some(std::time::SystemTime::now().into()),
            producer: producer.into(),
            partner_id: String::new(),
            traceparent: String::new(),
            tracestate: String::new(),
            payload: Some(prost_types::Any::from_msg(payload).unwrap()),
            actor: "ana".into(),
        };
        let stream = crm_platform::redis_conn::stream_name(&self.settings.base.redis, stream);
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg(crm_platform::events::ENVELOPE_FIELD)
            .arg(envelope.encode_to_vec())
            .arg(crm_platform::events::TYPE_FIELD)
            .arg(M::full_name())
            .query_async(&mut self.redis)
            .await
            .unwrap();
        id
    }

    /// Announces a partner as marketing would (`PartnerCreated`) and waits until the service
    /// has it in its directory.
    pub async fn partner(&mut self, name: &str, kind: marketing::PartnerKind) -> Uuid {
        let id = Uuid::now_v7();
        let partner = marketing::Partner {
            id: id.to_string(),
            kind: kind as i32,
            name: name.into(),
            fiscal_code: "RO18547290".into(),
            city: "Cluj-Napoca".into(),
            county: "Cluj".into(),
            country: "RO".into(),
            sites: vec![marketing::Site {
                id: Uuid::now_v7().to_string(),
                label: "Sediu".into(),
                address: "Calea Țării 14".into(),
                city: "Cluj-Napoca".into(),
                county: "Cluj".into(),
                country: "RO".into(),
                email: "office@example.ro".into(),
                head_office: true,
                ..Default::default()
            }],
            etag: "W/\"1\"".into(),
            ..Default::default()
        };
        self.publish(
            "crm.events.marketing",
            "marketing",
            &ev::PartnerCreated {
                partner: Some(partner),
            },
        )
        .await;
        self.wait_for("SELECT count(*) FROM partners WHERE id = $1", id, 1)
            .await;
        id
    }

    /// A customer partner the service knows.
    pub async fn customer(&mut self, name: &str) -> Uuid {
        self.partner(name, marketing::PartnerKind::Customer).await
    }

    /// Waits until `sql` (a count with `$1` = `id`) reaches `expected`.
    pub async fn wait_for(&self, sql: &'static str, id: Uuid, expected: i64) {
        for _ in 0..200 {
            let count: i64 = sqlx::query_scalar(sql)
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .unwrap();
            if count == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{sql} with {id} never reached {expected}");
    }

    /// The envelopes the service published so far on its stream, oldest first.
    pub async fn events(&mut self) -> Vec<Envelope> {
        let stream = crm_platform::redis_conn::stream_name(
            &self.settings.base.redis,
            "crm.events.opportunities",
        );
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut self.redis, &stream)
                .await
                .unwrap();
        reply
            .ids
            .iter()
            .map(|entry| {
                let bytes: Vec<u8> = entry.get("envelope").expect("envelope field");
                Envelope::decode(bytes.as_slice()).unwrap()
            })
            .collect()
    }

    /// Waits until an event of type `M` for which `matches` holds was published; returns it.
    pub async fn event<M: prost::Name + Default>(
        &mut self,
        matches: impl Fn(&M) -> bool,
    ) -> (Envelope, M) {
        for _ in 0..200 {
            for envelope in self.events().await {
                if envelope.r#type == M::full_name() {
                    let message: M = envelope.payload.as_ref().unwrap().to_msg().unwrap();
                    if matches(&message) {
                        return (envelope, message);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {} event matched", M::full_name());
    }

    /// How many events of type `M` were published.
    pub async fn count_events<M: prost::Name>(&mut self) -> usize {
        self.events()
            .await
            .iter()
            .filter(|e| e.r#type == M::full_name())
            .count()
    }

    /// An article with `code` at `price` RON (19% VAT), a service when `service`.
    pub async fn article(&mut self, code: &str, price: i64, service: bool) -> pb::Article {
        self.articles
            .create_article(sales(pb::CreateArticleRequest {
                article: Some(pb::Article {
                    code: code.into(),
                    name: format!("Articol {code}"),
                    unit: "buc".into(),
                    unit_price: ron(price),
                    vat_rate_bp: 1900,
                    kind: if service {
                        pb::ArticleKind::Service
                    } else {
                        pb::ArticleKind::Product
                    } as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// An opportunity of `partner` created by "ana".
    pub async fn opportunity(
        &mut self,
        partner: Uuid,
        potential: Option<common::Money>,
    ) -> pb::Opportunity {
        self.opportunities
            .create_opportunity(sales(pb::CreateOpportunityRequest {
                opportunity: Some(pb::Opportunity {
                    partner_id: partner.to_string(),
                    title: "Sisteme de irigații".into(),
                    owner_staff_id: Uuid::now_v7().to_string(),
                    potential_value: potential,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Moves an opportunity to `stage` by hand; the opportunity after.
    pub async fn move_to(
        &mut self,
        o: &pb::Opportunity,
        stage: pb::OpportunityStage,
    ) -> pb::Opportunity {
        self.opportunities
            .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
                id: o.id.clone(),
                etag: o.etag.clone(),
                stage: stage as i32,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

/// A document line of `article` for `quantity_milli`.
pub fn line(article: &pb::Article, quantity_milli: i64) -> pb::DocumentLine {
    pb::DocumentLine {
        article_id: article.id.clone(),
        quantity_milli,
        ..Default::default()
    }
}
