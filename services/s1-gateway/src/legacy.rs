//! Seed 002 compatibility: the original platform's endpoints, unchanged paths,
//! methods, integer ids and parameters, so its clients (Postman collection,
//! dashboard) keep working. Enabled by `LEGACY_API` (default true).
//!
//! This is a thin translation layer and nothing more: each handler maps the
//! seed's parameters onto the same domain functions the `/v1` handlers use
//! (same validation, same events, same 503-unless-acknowledged rule) and maps
//! the answer back. Like the original, parameters a request omits are filled
//! with generated, plausible data, and writes answer `200` with
//! `correlation_id` and a `status_url` under `/status/{correlation_id}`.
//! Like the original, these endpoints take no token: turn them off
//! (`LEGACY_API=false`) where that matters.

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{Months, Utc};
use polystream_common::events::{
    Command, PaymentMethod, PaymentStatus, Plan, PreferencesUpdated, RecommendationsRequested,
    SubscriptionStatus, Theme, TitleCacheWarmRequested, TitleKind,
};
use polystream_common::problem::Problem;
use polystream_common::status::CommandStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::command::{Accepted, submit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidPath, ValidQuery, positive};
use crate::routes::accounts::{self, PaymentBody, RegisterUser, SubscriptionBody};
use crate::routes::catalog::{self, ViewBody, ViewsQuery};
use crate::routes::status::{StatusPath, WaitQuery};
use crate::state::AppState;

const STATUS: &str = "/status";

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/usuarios", post(criar_usuario))
        .route("/usuarios/{id}/assinatura", post(assinatura))
        .route("/usuarios/{id}/pagamento", post(pagamento))
        .route("/usuarios/{id}/config", post(config))
        .route("/historico-visualizacao", post(registrar_visualizacao))
        .route("/historico-visualizacao/{user_id}", get(historico))
        .route("/recomendacoes/gerar", post(gerar_recomendacoes))
        .route("/recomendacoes/{user_id}", get(recomendacoes))
        .route("/cache/conteudo/{id}", post(cachear).get(ler_cache))
        .route("/status/{correlation_id}", get(status))
}

/// Randomness for generated data, from the OS via UUID v4.
struct Gen(u128, u32);

impl Gen {
    fn new() -> Self {
        Self(Uuid::new_v4().as_u128(), 0)
    }
    fn below(&mut self, n: u64) -> u64 {
        if self.1 >= 100 {
            *self = Self::new();
        }
        self.1 += 12;
        let v = (self.0 & 0xFFF) as u64;
        self.0 >>= 12;
        v % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Felipe", "Gabriela", "Heitor", "Isabela", "João",
    "Larissa", "Marcos",
];
const LAST: &[&str] = &[
    "Silva",
    "Souza",
    "Oliveira",
    "Santos",
    "Pereira",
    "Costa",
    "Rodrigues",
    "Almeida",
    "Lima",
    "Gomes",
];

/// A CPF with valid check digits from nine digits.
pub fn cpf_from(base: [u32; 9]) -> String {
    let mut d: Vec<u32> = base.to_vec();
    for n in [9usize, 10] {
        let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
        let r = (sum * 10) % 11;
        d.push(if r == 10 { 0 } else { r });
    }
    d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ã' | 'á' | 'â' => 'a',
            'é' | 'ê' => 'e',
            'í' => 'i',
            'ó' | 'õ' | 'ô' => 'o',
            'ú' => 'u',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn ok(a: Accepted) -> Json<Accepted> {
    Json(a)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NovoUsuario {
    pub nome: Option<String>,
    pub email: Option<String>,
    pub cpf: Option<String>,
    pub senha: Option<String>,
}

/// Seed 002: create a user (generated name, email, CPF when omitted).
#[utoipa::path(post, path = "/usuarios", tag = "legacy (seed 002)", params(NovoUsuario),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn criar_usuario(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<NovoUsuario>,
) -> ApiResult<Json<Accepted>> {
    let mut g = Gen::new();
    let (first, last) = (g.pick(FIRST), g.pick(LAST));
    let tag = g.below(1_000_000_000);
    let cpf = q.cpf.unwrap_or_else(|| {
        let mut b = [0u32; 9];
        b.iter_mut().for_each(|x| *x = g.below(10) as u32);
        b[0] = 1 + g.below(9) as u32;
        cpf_from(b)
    });
    let u = RegisterUser {
        name: q.nome.unwrap_or_else(|| format!("{first} {last}")),
        email: q
            .email
            .unwrap_or_else(|| format!("{}.{}.{tag}@example.com", ascii(first), ascii(last))),
        // Without a password the account cannot log in, as in the seed.
        password: q.senha.unwrap_or_else(crate::auth::new_token),
        cpf: Some(cpf),
    };
    let fields = [
        ("name", "query.nome"),
        ("email", "query.email"),
        ("cpf", "query.cpf"),
        ("password_hash", "query.senha"),
    ];
    accounts::register(&state, u, false, STATUS, &fields)
        .await
        .map(ok)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// User id.
    pub id: i64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NovaAssinatura {
    /// basico|padrao|premium (or basic|standard|premium).
    pub plano: Option<String>,
}

/// Seed 002: subscribe a user (generated plan when omitted).
#[utoipa::path(post, path = "/usuarios/{id}/assinatura", tag = "legacy (seed 002)", params(IdPath, NovaAssinatura),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn assinatura(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovaAssinatura>,
) -> ApiResult<Json<Accepted>> {
    let id = positive("path.id", p.id)?;
    let plan = match q.plano.as_deref().map(ascii).as_deref() {
        None => [Plan::Basic, Plan::Standard, Plan::Premium][Gen::new().below(3) as usize],
        Some("basico" | "basic") => Plan::Basic,
        Some("padrao" | "standard") => Plan::Standard,
        Some("premium") => Plan::Premium,
        Some(_) => {
            return Err(ApiError::field(
                "query.plano",
                "must be basico, padrao or premium",
            ));
        }
    };
    let today = Utc::now().date_naive();
    let b = SubscriptionBody {
        plan,
        status: Some(SubscriptionStatus::Active),
        started_on: Some(today),
        renews_on: today.checked_add_months(Months::new(1)),
    };
    submit(
        &state,
        accounts::subscription_command(id, b),
        &[("user_id", "path.id")],
        STATUS,
    )
    .await
    .map(ok)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NovoPagamento {
    /// Amount in reais, e.g. 39.90.
    pub valor: Option<f64>,
    /// cartao_credito|cartao_debito|pix|boleto.
    pub forma_pagamento: Option<String>,
}

/// Seed 002: record a payment (generated amount and method when omitted).
#[utoipa::path(post, path = "/usuarios/{id}/pagamento", tag = "legacy (seed 002)", params(IdPath, NovoPagamento),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn pagamento(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovoPagamento>,
) -> ApiResult<Json<Accepted>> {
    let id = positive("path.id", p.id)?;
    let mut g = Gen::new();
    let amount_cents = match q.valor {
        None => [1990, 2990, 3990, 5590][g.below(4) as usize],
        Some(v) if v.is_finite() && v > 0.0 && v < 1e9 => (v * 100.0).round() as i64,
        Some(_) => return Err(ApiError::field("query.valor", "must be a positive amount")),
    };
    let method = match q.forma_pagamento.as_deref().map(ascii).as_deref() {
        None => [
            PaymentMethod::CreditCard,
            PaymentMethod::Pix,
            PaymentMethod::Boleto,
        ][g.below(3) as usize],
        Some("cartao_credito" | "cartao" | "credit_card" | "credito") => PaymentMethod::CreditCard,
        Some("cartao_debito" | "debit_card" | "debito") => PaymentMethod::DebitCard,
        Some("pix") => PaymentMethod::Pix,
        Some("boleto") => PaymentMethod::Boleto,
        Some(_) => {
            return Err(ApiError::field(
                "query.forma_pagamento",
                "must be cartao_credito, cartao_debito, pix or boleto",
            ));
        }
    };
    let payment_id = Uuid::now_v7();
    let b = PaymentBody {
        amount_cents,
        currency: Some("BRL".into()),
        method,
        status: Some(PaymentStatus::Approved),
        paid_at: None,
    };
    let mut a = submit(
        &state,
        accounts::payment_command(id, payment_id, b),
        &[("user_id", "path.id")],
        STATUS,
    )
    .await?;
    a.payment_id = Some(payment_id);
    Ok(ok(a))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NovaConfig {
    pub idioma: Option<String>,
    pub notificacoes: Option<bool>,
    /// claro|escuro|sistema (or light|dark|system).
    pub tema: Option<String>,
}

/// Seed 002: update preferences (generated when omitted).
#[utoipa::path(post, path = "/usuarios/{id}/config", tag = "legacy (seed 002)", params(IdPath, NovaConfig),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn config(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovaConfig>,
) -> ApiResult<Json<Accepted>> {
    let id = positive("path.id", p.id)?;
    let mut g = Gen::new();
    let theme = match q.tema.as_deref().map(ascii).as_deref() {
        None => [Theme::Light, Theme::Dark, Theme::System][g.below(3) as usize],
        Some("claro" | "light") => Theme::Light,
        Some("escuro" | "dark") => Theme::Dark,
        Some("sistema" | "system") => Theme::System,
        Some(_) => {
            return Err(ApiError::field(
                "query.tema",
                "must be claro, escuro or sistema",
            ));
        }
    };
    let c = Command::PreferencesUpdated(PreferencesUpdated {
        user_id: id,
        language: q
            .idioma
            .unwrap_or_else(|| g.pick(&["pt-BR", "en-US", "es-ES"]).to_owned()),
        notifications: q.notificacoes.unwrap_or(g.below(2) == 1),
        theme,
    });
    submit(
        &state,
        c,
        &[("user_id", "path.id"), ("language", "query.idioma")],
        STATUS,
    )
    .await
    .map(ok)
}

fn kind(tipo: &str) -> Option<TitleKind> {
    match ascii(tipo).as_str() {
        "filme" | "movie" => Some(TitleKind::Movie),
        "serie" | "series" => Some(TitleKind::Series),
        "documentario" | "documentary" => Some(TitleKind::Documentary),
        _ => None,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NovaVisualizacao {
    pub user_id: i64,
    pub conteudo_id: i64,
    /// Informational; the catalog is the source of a title's name.
    pub titulo: Option<String>,
    /// filme|série|documentário.
    pub tipo: Option<String>,
    /// Seconds watched.
    pub tempo_assistido: Option<u32>,
    /// Percent watched, 0–100.
    pub posicao: Option<f64>,
}

/// Seed 002: record a view (generated time and position when omitted).
#[utoipa::path(post, path = "/historico-visualizacao", tag = "legacy (seed 002)", params(NovaVisualizacao),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn registrar_visualizacao(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<NovaVisualizacao>,
) -> ApiResult<Json<Accepted>> {
    if let Some(t) = &q.tipo
        && kind(t).is_none()
    {
        return Err(ApiError::field(
            "query.tipo",
            "must be filme, série or documentário",
        ));
    }
    let mut g = Gen::new();
    let position_pct = q.posicao.unwrap_or_else(|| g.below(101) as f64);
    let b = ViewBody {
        title_id: q.conteudo_id,
        seconds_watched: q
            .tempo_assistido
            .unwrap_or_else(|| 60 + g.below(7000) as u32),
        position_pct,
        completed: None,
        watched_at: None,
    };
    let view_id = Uuid::now_v7();
    let fields = [
        ("user_id", "query.user_id"),
        ("title_id", "query.conteudo_id"),
        ("position_pct", "query.posicao"),
    ];
    let mut a = submit(
        &state,
        catalog::view_command(q.user_id, view_id, b),
        &fields,
        STATUS,
    )
    .await?;
    a.view_id = Some(view_id);
    Ok(ok(a))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserIdPath {
    pub user_id: i64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiltroHistorico {
    /// filme|série|documentário.
    pub tipo: Option<String>,
    pub concluido: Option<bool>,
    pub limit: Option<u32>,
}

/// Seed 002: a user's watch history, in the seed's field names.
#[utoipa::path(get, path = "/historico-visualizacao/{user_id}", tag = "legacy (seed 002)", params(UserIdPath, FiltroHistorico),
    responses((status = 200, body = Object), (status = 400, body = Problem)))]
pub async fn historico(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<UserIdPath>,
    ValidQuery(q): ValidQuery<FiltroHistorico>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.user_id", p.user_id)?;
    let kind = match q.tipo.as_deref() {
        None => None,
        Some(t) => Some(kind(t).ok_or_else(|| {
            ApiError::field("query.tipo", "must be filme, série or documentário")
        })?),
    };
    let views = catalog::views(
        &state,
        id,
        ViewsQuery {
            kind,
            completed: q.concluido,
            limit: q.limit,
        },
    )
    .await?;
    let tipo = |k: &Value| match k.as_str() {
        Some("movie") => json!("filme"),
        Some("series") => json!("série"),
        Some("documentary") => json!("documentário"),
        _ => k.clone(),
    };
    let historico: Vec<Value> = views
        .iter()
        .map(|v| json!({"user_id": v["user_id"], "conteudo_id": v["title_id"], "titulo": v["title"], "tipo": tipo(&v["kind"]),
            "tempo_assistido": v["seconds_watched"], "posicao": v["position_pct"], "data": v["watched_at"], "concluido": v["completed"]}))
        .collect();
    Ok(Json(
        json!({"user_id": id, "total": historico.len(), "historico": historico}),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GerarQuery {
    pub user_id: i64,
}

/// Seed 002: regenerate a user's recommendations.
#[utoipa::path(post, path = "/recomendacoes/gerar", tag = "legacy (seed 002)", params(GerarQuery),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn gerar_recomendacoes(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<GerarQuery>,
) -> ApiResult<Json<Accepted>> {
    let c = Command::RecommendationsRequested(RecommendationsRequested { user_id: q.user_id });
    submit(&state, c, &[("user_id", "query.user_id")], STATUS)
        .await
        .map(ok)
}

/// Seed 002: a user's recommendations, in the seed's field names.
#[utoipa::path(get, path = "/recomendacoes/{user_id}", tag = "legacy (seed 002)", params(UserIdPath),
    responses((status = 200, body = Object), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn recomendacoes(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<UserIdPath>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.user_id", p.user_id)?;
    let r = catalog::recommendations(&state, id).await?;
    Ok(Json(
        json!({"user_id": id, "data_geracao": r["generated_at"], "itens": r["items"]}),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConteudoPath {
    /// Title id.
    pub id: i64,
}

/// Seed 002: load a title into the cache.
#[utoipa::path(post, path = "/cache/conteudo/{id}", tag = "legacy (seed 002)", params(ConteudoPath),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn cachear(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<ConteudoPath>,
) -> ApiResult<Json<Accepted>> {
    let c = Command::TitleCacheWarmRequested(TitleCacheWarmRequested { title_id: p.id });
    submit(&state, c, &[("title_id", "path.id")], STATUS)
        .await
        .map(ok)
}

/// Seed 002: a title through the cache (`cache`: hit or miss).
#[utoipa::path(get, path = "/cache/conteudo/{id}", tag = "legacy (seed 002)", params(ConteudoPath),
    responses((status = 200, body = Object), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn ler_cache(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<ConteudoPath>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.id", p.id)?;
    let (dados, hit) = catalog::cached_title(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("conteúdo {id}")))?;
    Ok(Json(
        json!({"conteudo_id": id, "cache": if hit { "hit" } else { "miss" }, "dados": dados}),
    ))
}

/// Seed 002: a command's status (`?wait=` works here too).
#[utoipa::path(get, path = "/status/{correlation_id}", tag = "legacy (seed 002)", params(StatusPath, WaitQuery),
    responses((status = 200, body = CommandStatus), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn status(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<StatusPath>,
    ValidQuery(q): ValidQuery<WaitQuery>,
) -> ApiResult<Json<CommandStatus>> {
    crate::routes::status::lookup(&state, p.correlation_id, q.wait.unwrap_or(0))
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cpfs_are_valid() {
        for _ in 0..50 {
            let mut g = Gen::new();
            let mut b = [0u32; 9];
            b.iter_mut().for_each(|x| *x = g.below(10) as u32);
            b[0] = 1 + g.below(9) as u32;
            let cpf = cpf_from(b);
            assert!(
                polystream_common::events::is_cpf(&cpf) || b.iter().all(|x| *x == b[0]),
                "{cpf}"
            );
        }
        assert_eq!(cpf_from([5, 2, 9, 9, 8, 2, 2, 4, 7]), "52998224725");
    }

    #[test]
    fn seed_kinds_translate() {
        assert_eq!(kind("série"), Some(TitleKind::Series));
        assert_eq!(kind("Documentário"), Some(TitleKind::Documentary));
        assert_eq!(kind("filme"), Some(TitleKind::Movie));
        assert_eq!(kind("novela"), None);
    }
}
