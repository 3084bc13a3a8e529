//! `ArticleService`: the catalogue of products and services (O7).

use crm_platform::values::{etag_of, timestamp};
use crm_proto::{
    common::DocumentKind,
    opportunities::{self as pb, article_service_server::ArticleService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::MoneyFields as _;
use super::{
    DOCUMENT_ROLES, EVERY_ROLE, Fields, OpportunitiesApi, Page, caller, check_version, convert,
    documents::owner_ref, like_literal,
};
use crate::{
    domain::{
        catalogue::{Article, Attachment, check_article_code},
        lines::{FULL_BP, MAX_UNIT_PRICE},
        money::Money,
    },
    error::{OpportunitiesError, Result},
    store::{
        self,
        articles::{Cursor, Filter},
    },
};

/// Most pictures of an article.
const MAX_PICTURES: usize = 20;
/// Fields UpdateArticle may change.
const UPDATABLE: &[&str] = &[
    "code",
    "name",
    "unit",
    "unit_price",
    "vat_rate_bp",
    "kind",
    "description",
    "pictures",
    "active",
];

fn to_proto(a: &Article) -> pb::Article {
    pb::Article {
        id: a.id.to_string(),
        code: a.code.clone(),
        name: a.name.clone(),
        unit: a.unit.clone(),
        unit_price: Some(convert::money(&a.price)),
        vat_rate_bp: a.vat_rate_bp,
        kind: if a.is_service {
            pb::ArticleKind::Service
        } else {
            pb::ArticleKind::Product
        } as i32,
        description: a.description.clone(),
        pictures: a.pictures.iter().map(convert::attachment).collect(),
        active: a.active,
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: etag_of(a.version),
    }
}

/// The fields of an article as given (all of them, for a create; the masked ones for an
/// update), checked.
#[derive(Default)]
struct ArticleFields {
    code: Option<String>,
    name: Option<String>,
    unit: Option<String>,
    price: Option<Money>,
    vat_rate_bp: Option<i32>,
    is_service: Option<bool>,
    description: Option<String>,
    pictures: Option<Vec<Attachment>>,
}

fn parse_fields(f: &mut Fields, a: &pb::Article, paths: &[&str]) -> ArticleFields {
    let mut out = ArticleFields::default();
    for path in paths {
        match *path {
            "code" => {
                let code = a.code.trim().to_owned();
                out.code =
                    f.0.check("article.code", check_article_code(&code))
                        .map(|()| code);
            }
            "name" => out.name = f.text("article.name", &a.name, 200, true),
            "unit" => out.unit = f.text("article.unit", &a.unit, 20, true),
            "unit_price" => {
                match f.money("article.unit_price", a.unit_price.as_ref(), MAX_UNIT_PRICE) {
                    Some(Some(price)) => out.price = Some(price),
                    Some(None) => f.add("article.unit_price", "is required"),
                    None => {}
                }
            }
            "vat_rate_bp" => {
                if (0..=FULL_BP).contains(&a.vat_rate_bp) {
                    out.vat_rate_bp = Some(a.vat_rate_bp);
                } else {
                    f.add("article.vat_rate_bp", "must be between 0 and 10000");
                }
            }
            "kind" => match pb::ArticleKind::try_from(a.kind) {
                Ok(pb::ArticleKind::Product) => out.is_service = Some(false),
                Ok(pb::ArticleKind::Service) => out.is_service = Some(true),
                _ => f.add("article.kind", "is required: PRODUCT or SERVICE"),
            },
            "description" => {
                out.description = f.text("article.description", &a.description, 4000, false);
            }
            "pictures" => {
                out.pictures = crm_platform::files::parse_attachments(
                    f,
                    "article.pictures",
                    &a.pictures,
                    MAX_PICTURES,
                    true,
                );
            }
            _ => {}
        }
    }
    out
}

impl OpportunitiesApi {
    async fn create_article(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreateArticleRequest,
    ) -> Result<pb::Article> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.article else {
            f.add("article", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let fields = parse_fields(
            &mut f,
            &given,
            &[
                "code",
                "name",
                "unit",
                "unit_price",
                "vat_rate_bp",
                "kind",
                "description",
                "pictures",
            ],
        );
        f.finish()?;
        let new_files = self.new_uploads(caller, "article.pictures", &given.pictures, &[])?;
        let now = self.clock.now();
        let article = Article {
            id: Uuid::now_v7(),
            code: fields.code.expect("checked"),
            name: fields.name.expect("checked"),
            unit: fields.unit.expect("checked"),
            price: fields.price.expect("checked"),
            vat_rate_bp: fields.vat_rate_bp.expect("checked"),
            is_service: fields.is_service.expect("checked"),
            description: fields.description.expect("checked"),
            pictures: fields.pictures.expect("checked"),
            // New articles are meant to be used: proto3 cannot tell "false" from "unset".
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "article",
                &caller.request_scope(),
                &request_id,
                article.id,
                now,
            )
            .await?
        {
            let existing = store::articles::get(&mut tx, existing)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("article", existing))?;
            return Ok(to_proto(&existing));
        }
        if !store::articles::insert(&mut tx, &article).await? {
            return Err(OpportunitiesError::AlreadyExists(format!(
                "an article with code {:?} exists",
                article.code
            )));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Article, article.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(to_proto(&article))
    }

    async fn update_article(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::UpdateArticleRequest,
    ) -> Result<pb::Article> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.article else {
            f.add("article", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("article.id", &given.id);
        let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let fields = parse_fields(&mut f, &given, &path_refs);
        f.finish()?;
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::articles::get(&mut tx, id)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("article", id))?;
        check_version("article", version.expect("checked"), current.version)?;
        let new_files = if paths.iter().any(|p| p == "pictures") {
            self.new_uploads(
                caller,
                "article.pictures",
                &given.pictures,
                &current.pictures,
            )?
        } else {
            Vec::new()
        };
        let mut updated = Article {
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        if let Some(v) = fields.code {
            updated.code = v;
        }
        if let Some(v) = fields.name {
            updated.name = v;
        }
        if let Some(v) = fields.unit {
            updated.unit = v;
        }
        if let Some(v) = fields.price {
            updated.price = v;
        }
        if let Some(v) = fields.vat_rate_bp {
            updated.vat_rate_bp = v;
        }
        if let Some(v) = fields.is_service {
            updated.is_service = v;
        }
        if let Some(v) = fields.description {
            updated.description = v;
        }
        if let Some(v) = fields.pictures {
            updated.pictures = v;
        }
        if paths.iter().any(|p| p == "active") {
            updated.active = given.active;
        }
        match store::articles::update(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(OpportunitiesError::StaleEtag("article")),
            Err(err) if store::articles::is_code_taken(&err) => {
                return Err(OpportunitiesError::AlreadyExists(format!(
                    "an article with code {:?} exists",
                    updated.code
                )));
            }
            Err(err) => return Err(err.into()),
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Article, updated.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(to_proto(&updated))
    }
}

#[tonic::async_trait]
impl ArticleService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_article(
        &self,
        request: Request<pb::CreateArticleRequest>,
    ) -> Result<Response<pb::Article>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::create_article(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_article(
        &self,
        request: Request<pb::GetArticleRequest>,
    ) -> Result<Response<pb::Article>, Status> {
        caller(&request, EVERY_ROLE)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let article = store::articles::get(&mut conn, id)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("article", id))?;
        Ok(Response::new(to_proto(&article)))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_get_articles(
        &self,
        request: Request<pb::BatchGetArticlesRequest>,
    ) -> Result<Response<pb::BatchGetArticlesResponse>, Status> {
        caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        if request.ids.is_empty() || request.ids.len() > 500 {
            f.add("ids", "must hold 1 to 500 ids");
        }
        let ids: Vec<Option<Uuid>> = request
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| f.id(&format!("ids[{i}]"), id))
            .collect();
        f.finish()?;
        let ids: Vec<Uuid> = ids.into_iter().flatten().collect();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let found = store::articles::get_many(&mut conn, &ids)
            .await
            .map_err(OpportunitiesError::from)?;
        let mut articles = Vec::with_capacity(ids.len());
        for id in &ids {
            let article = found
                .iter()
                .find(|a| a.id == *id)
                .ok_or_else(|| OpportunitiesError::not_found("article", id))?;
            articles.push(to_proto(article));
        }
        Ok(Response::new(pb::BatchGetArticlesResponse { articles }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_article(
        &self,
        request: Request<pb::UpdateArticleRequest>,
    ) -> Result<Response<pb::Article>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::update_article(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_articles(
        &self,
        request: Request<pb::ListArticlesRequest>,
    ) -> Result<Response<pb::ListArticlesResponse>, Status> {
        caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let prefix = f.text("code_prefix", &request.code_prefix, 50, false);
        let contains = f.text("name_contains", &request.name_contains, 200, false);
        let is_service = match pb::ArticleKind::try_from(request.kind) {
            Ok(pb::ArticleKind::Unspecified) => None,
            Ok(pb::ArticleKind::Product) => Some(false),
            Ok(pb::ArticleKind::Service) => Some(true),
            Err(_) => {
                f.add("kind", format!("{} is not an article kind", request.kind));
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            code_prefix: prefix.filter(|p| !p.is_empty()).map(|p| like_literal(&p)),
            name_contains: contains.filter(|p| !p.is_empty()).map(|p| like_literal(&p)),
            is_service,
            include_inactive: request.include_inactive,
        };
        let page: Page<Cursor> = Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::articles::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |(_, cursor)| cursor.clone());
        Ok(Response::new(pb::ListArticlesResponse {
            articles: rows.iter().map(|(a, _)| to_proto(a)).collect(),
            next_page_token,
        }))
    }
}
