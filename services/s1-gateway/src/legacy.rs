//! Seed 002 compatibility: the original platform's endpoints, unchanged paths,
//! methods, integer ids and parameters, so its clients (Postman collection,
//! dashboard) keep working. Enabled by `LEGACY_API` (default true).
//!
//! This is a thin translation layer and nothing more: each handler maps the
//! seed's parameters onto the same domain functions the `/v1` handlers use
//! (same validation, same events, same 503 and 504 when Kafka does not acknowledge) and maps
//! the answer back. Like the original, parameters a request omits are filled
//! with generated, plausible data. Every answer is a superset of the
//! original's: writes answer `200` with its `mensagem`, the echoed object,
//! `correlation_id` and a `status_url` under `/status/{correlation_id}`;
//! reads are asynchronous as in the original (their result is also recorded
//! as a final status), and `/status/{id}` carries the original's fields.
//! The original took no token. Here an endpoint that writes to or reads one
//! account needs that account's bearer token (or an admin's) unless
//! `LEGACY_API_ACCESS=open` restores the original's behaviour; registration,
//! the title cache and status stay open. In a cluster the operator serves
//! them only when the StreamingPlatform asks (`spec.legacyApi`).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use chrono::{Months, Utc};
use polystream_common::events::{
    Command, PaymentMethod, PaymentStatus, Plan, PreferencesUpdated, RecommendationsRequested,
    SubscriptionStatus, Theme, TitleCacheWarmRequested, TitleKind,
};
use polystream_common::instrument::{Store, store_op};
use polystream_common::problem::Problem;
use polystream_common::status::{CommandStatus, State as StatusState};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Caller;
use crate::command::{Accepted, submit};
use crate::config::LegacyAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ValidPath, ValidQuery, positive};
use crate::routes::accounts::{self, NewAccount, PaymentBody, SubscriptionBody};
use crate::routes::catalog::{self, ViewBody, ViewsQuery};
use crate::routes::status::{StatusPath, WaitQuery};
use crate::state::AppState;

const STATUS: &str = "/status";

/// Who may use an account through these endpoints (`LEGACY_API_ACCESS`):
/// with `token`, the caller authenticated by a bearer token; with `open`,
/// anyone, as in the original.
pub struct SeedAccess(Option<Caller>);

impl FromRequestParts<AppState> for SeedAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        match state.config.legacy_access {
            LegacyAccess::Open => Ok(Self(None)),
            LegacyAccess::Token => Caller::from_request_parts(parts, state)
                .await
                .map(|c| Self(Some(c))),
        }
    }
}

impl SeedAccess {
    /// The caller may touch account `user_id` (always, when open).
    pub fn may_access(&self, user_id: i64) -> ApiResult<()> {
        self.0.as_ref().map_or(Ok(()), |c| c.may_access(user_id))
    }
}

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(criar_usuario))
        .routes(routes!(assinatura))
        .routes(routes!(pagamento))
        .routes(routes!(config))
        .routes(routes!(registrar_visualizacao))
        .routes(routes!(historico))
        .routes(routes!(gerar_recomendacoes))
        .routes(routes!(recomendacoes))
        .routes(routes!(cachear, ler_cache))
        .routes(routes!(status))
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

/// The original's answer on top of Polystream's: `mensagem` and, when the
/// route echoes one, the object the original echoed under `key`.
pub fn seed_answer(a: &Accepted, mensagem: &str, echo: Option<(&str, Value)>) -> Value {
    let mut m = match serde_json::to_value(a) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("mensagem".into(), json!(mensagem));
    if let Some((k, v)) = echo {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

fn answer(a: &Accepted, mensagem: &str, echo: Option<(&str, Value)>) -> Json<Value> {
    Json(seed_answer(a, mensagem, echo))
}

/// The seed's names for Polystream's enums, to echo what a client sent.
fn plano(p: Plan) -> &'static str {
    match p {
        Plan::Basic => "basico",
        Plan::Standard => "padrao",
        Plan::Premium => "premium",
    }
}

fn forma(m: PaymentMethod) -> &'static str {
    match m {
        PaymentMethod::CreditCard => "cartao_credito",
        PaymentMethod::DebitCard => "cartao_debito",
        PaymentMethod::Pix => "pix",
        PaymentMethod::Boleto => "boleto",
    }
}

fn tema(t: Theme) -> &'static str {
    match t {
        Theme::Light => "claro",
        Theme::Dark => "escuro",
        Theme::System => "sistema",
    }
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
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn criar_usuario(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<NovoUsuario>,
) -> ApiResult<Json<Value>> {
    let mut g = Gen::new();
    let (first, last) = (g.pick(FIRST), g.pick(LAST));
    let tag = g.below(1_000_000_000);
    let cpf = q.cpf.unwrap_or_else(|| {
        let mut b = [0u32; 9];
        b.iter_mut().for_each(|x| *x = g.below(10) as u32);
        b[0] = 1 + g.below(9) as u32;
        cpf_from(b)
    });
    let u = NewAccount {
        name: q.nome.unwrap_or_else(|| format!("{first} {last}")),
        email: q
            .email
            .unwrap_or_else(|| format!("{}.{}.{tag}@example.com", ascii(first), ascii(last)))
            // Trimmed as `register` stores it, so the echo is what is stored.
            .trim()
            .to_owned(),
        // Without a password the account cannot log in, as in the seed; it
        // gets none (hashing a throwaway secret cost a hash per call).
        password: q.senha,
        cpf: Some(cpf),
    };
    let fields = [
        ("name", "query.nome"),
        ("email", "query.email"),
        ("cpf", "query.cpf"),
        ("password_hash", "query.senha"),
    ];
    let mut echo =
        json!({"nome": u.name, "email": u.email, "cpf": u.cpf, "data_criacao": Utc::now()});
    let a = accounts::register(&state, u, false, STATUS, &fields).await?;
    echo["user_id"] = json!(a.user_id);
    Ok(answer(
        &a,
        "Usuário enviado para criação",
        Some(("usuario", echo)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// User id.
    #[param(minimum = 1)]
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
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn assinatura(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovaAssinatura>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.id", p.id)?;
    access.may_access(id)?;
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
    let renews_on = today.checked_add_months(Months::new(1));
    let b = SubscriptionBody {
        plan,
        status: Some(SubscriptionStatus::Active),
        started_on: Some(today),
        renews_on,
    };
    let a = submit(
        &state,
        accounts::subscription_command(id, b),
        &[("user_id", "path.id")],
        STATUS,
    )
    .await?;
    let echo = json!({"user_id": id, "plano": plano(plan), "inicio": today, "fim": renews_on});
    Ok(answer(
        &a,
        "Assinatura enviada para criação",
        Some(("assinatura", echo)),
    ))
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
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn pagamento(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovoPagamento>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.id", p.id)?;
    access.may_access(id)?;
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
    let a = submit(
        &state,
        accounts::payment_command(id, payment_id, b),
        &[("user_id", "path.id")],
        STATUS,
    )
    .await?;
    let echo = json!({"user_id": id, "valor": amount_cents as f64 / 100.0, "forma_pagamento": forma(method),
        "status": "aprovado", "data_pagamento": Utc::now()});
    Ok(answer(
        &a,
        "Pagamento enviado para registro",
        Some(("pagamento", echo)),
    ))
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
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn config(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidPath(p): ValidPath<IdPath>,
    ValidQuery(q): ValidQuery<NovaConfig>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.id", p.id)?;
    access.may_access(id)?;
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
    let p = PreferencesUpdated {
        user_id: id,
        language: q
            .idioma
            .unwrap_or_else(|| g.pick(&["pt-BR", "en-US", "es-ES"]).to_owned()),
        notifications: q.notificacoes.unwrap_or(g.below(2) == 1),
        theme,
    };
    let echo = json!({"idioma": p.language, "notificacoes": p.notifications, "tema": tema(theme)});
    let a = submit(
        &state,
        Command::PreferencesUpdated(p),
        &[("user_id", "path.id"), ("language", "query.idioma")],
        STATUS,
    )
    .await?;
    Ok(answer(
        &a,
        "Preferências enviadas para atualização",
        Some(("config", echo)),
    ))
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
    #[param(minimum = 1)]
    pub user_id: i64,
    #[param(minimum = 1)]
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
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn registrar_visualizacao(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidQuery(q): ValidQuery<NovaVisualizacao>,
) -> ApiResult<Json<Value>> {
    access.may_access(q.user_id)?;
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
    let seconds_watched = q
        .tempo_assistido
        .unwrap_or_else(|| 60 + g.below(7000) as u32);
    let b = ViewBody {
        title_id: q.conteudo_id,
        seconds_watched,
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
    let a = submit(
        &state,
        catalog::view_command(q.user_id, view_id, b),
        &fields,
        STATUS,
    )
    .await?;
    let echo = json!({"user_id": q.user_id, "conteudo_id": q.conteudo_id, "titulo": q.titulo, "tipo": q.tipo,
        "tempo_assistido": seconds_watched, "posicao": position_pct});
    Ok(answer(
        &a,
        "Visualização enviada para registro",
        Some(("visualizacao", echo)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserIdPath {
    #[param(minimum = 1)]
    pub user_id: i64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiltroHistorico {
    /// filme|série|documentário.
    pub tipo: Option<String>,
    pub concluido: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// What a seed read answers: the original's asynchronous acknowledgement and
/// Polystream's direct read together; the status URL carries the same result.
const READ_DOC: &str = "`mensagem`, `correlation_id`, `status_url` and the read itself; not found is a final `failed` status (`code` not_found), not a 404";

/// A read as the original's clients expect it: asynchronous, answered at a
/// status URL. There is no Kafka command, so the outcome is recorded at once
/// under a new correlation id. A missing user or title is a final `failed`
/// status; bad input and outages stay problem answers.
async fn seed_read(
    state: &crate::state::State,
    command_type: &str,
    mensagem: &str,
    read: ApiResult<Value>,
) -> ApiResult<Json<Value>> {
    let correlation_id = Uuid::now_v7();
    polystream_common::telemetry::set_correlation_id(&tracing::Span::current(), &correlation_id);
    let status = match read {
        Ok(v) => read_status(correlation_id, command_type, Ok(v)),
        Err(e) if e.0.status == 404 => read_status(
            correlation_id,
            command_type,
            Err(e.0.detail.clone().unwrap_or_else(|| e.0.title.clone())),
        ),
        Err(e) => return Err(e),
    };
    store_op(Store::Redis, "record_read", state.status.record(&status)).await?;
    let status_url = format!("{}{STATUS}/{correlation_id}", state.config.public_url);
    Ok(Json(read_body(&status, mensagem, &status_url)))
}

/// The final status of a read: its result, or a not-found failure.
pub fn read_status(
    correlation_id: Uuid,
    command_type: &str,
    read: Result<Value, String>,
) -> CommandStatus {
    let mut s = CommandStatus::pending(correlation_id, command_type);
    match read {
        Ok(v) => {
            s.state = StatusState::Completed;
            s.result = Some(v);
        }
        Err(reason) => {
            s.state = StatusState::Failed;
            s.code = Some("not_found".into());
            s.reason = Some(reason);
        }
    }
    s
}

/// The answer to a seed read: the result's own fields (Polystream's direct
/// read) plus the acknowledgement the original answered with.
pub fn read_body(s: &CommandStatus, mensagem: &str, status_url: &str) -> Value {
    let mut m = match &s.result {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    m.insert("mensagem".into(), json!(mensagem));
    m.insert("correlation_id".into(), json!(s.correlation_id));
    m.insert("status_url".into(), json!(status_url));
    m.insert("state".into(), json!(s.state));
    if let Some(code) = &s.code {
        m.insert("code".into(), json!(code));
    }
    if let Some(reason) = &s.reason {
        m.insert("reason".into(), json!(reason));
    }
    Value::Object(m)
}

async fn historico_read(
    state: &crate::state::State,
    id: i64,
    q: FiltroHistorico,
) -> ApiResult<Value> {
    let kind = match q.tipo.as_deref() {
        None => None,
        Some(t) => Some(kind(t).ok_or_else(|| {
            ApiError::field("query.tipo", "must be filme, série or documentário")
        })?),
    };
    let views = catalog::views(
        state,
        id,
        ViewsQuery {
            kind,
            completed: q.concluido,
            limit: q.limit,
        },
    )
    .await?;
    // Views name their user; only an empty history needs the user looked up.
    if views.is_empty() && !polystream_stores::users::exists(&state.pg, id).await? {
        return Err(ApiError::not_found(&format!("user {id}")));
    }
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
    Ok(json!({"user_id": id, "total": historico.len(), "historico": historico}))
}

/// Seed 002: a user's watch history, in the seed's field names.
#[utoipa::path(get, path = "/historico-visualizacao/{user_id}", tag = "legacy (seed 002)", params(UserIdPath, FiltroHistorico),
    responses((status = 200, description = READ_DOC, body = Object), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn historico(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidPath(p): ValidPath<UserIdPath>,
    ValidQuery(q): ValidQuery<FiltroHistorico>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.user_id", p.user_id)?;
    access.may_access(id)?;
    let read = historico_read(&state, id, q).await;
    seed_read(
        &state,
        "polystream.watch_history.read",
        "Consulta de histórico processada",
        read,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GerarQuery {
    #[param(minimum = 1)]
    pub user_id: i64,
}

/// Seed 002: regenerate a user's recommendations.
#[utoipa::path(post, path = "/recomendacoes/gerar", tag = "legacy (seed 002)", params(GerarQuery),
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn gerar_recomendacoes(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidQuery(q): ValidQuery<GerarQuery>,
) -> ApiResult<Json<Value>> {
    access.may_access(q.user_id)?;
    let c = Command::RecommendationsRequested(RecommendationsRequested { user_id: q.user_id });
    let a = submit(&state, c, &[("user_id", "query.user_id")], STATUS).await?;
    Ok(answer(&a, "Geração de recomendações solicitada", None))
}

/// Seed 002: a user's recommendations, in the seed's field names.
#[utoipa::path(get, path = "/recomendacoes/{user_id}", tag = "legacy (seed 002)", params(UserIdPath),
    responses((status = 200, description = READ_DOC, body = Object), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn recomendacoes(
    State(state): State<AppState>,
    access: SeedAccess,
    ValidPath(p): ValidPath<UserIdPath>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.user_id", p.user_id)?;
    access.may_access(id)?;
    let read = catalog::recommendations(&state, id)
        .await
        .map(|r| json!({"user_id": id, "data_geracao": r["generated_at"], "itens": r["items"]}));
    seed_read(
        &state,
        "polystream.recommendations.read",
        "Consulta de recomendações processada",
        read,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConteudoPath {
    /// Title id.
    #[param(minimum = 1)]
    pub id: i64,
}

/// Seed 002: load a title into the cache.
#[utoipa::path(post, path = "/cache/conteudo/{id}", tag = "legacy (seed 002)", params(ConteudoPath),
    responses((status = 200, description = "`Accepted` plus the original's `mensagem` and echoed object", body = Object), (status = 400, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub async fn cachear(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<ConteudoPath>,
) -> ApiResult<Json<Value>> {
    let c = Command::TitleCacheWarmRequested(TitleCacheWarmRequested { title_id: p.id });
    let a = submit(&state, c, &[("title_id", "path.id")], STATUS).await?;
    Ok(answer(
        &a,
        "Conteúdo enviado para cache",
        Some(("conteudo_id", json!(p.id))),
    ))
}

/// Seed 002: a title through the cache (`cache`: hit or miss).
#[utoipa::path(get, path = "/cache/conteudo/{id}", tag = "legacy (seed 002)", params(ConteudoPath),
    responses((status = 200, description = READ_DOC, body = Object), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn ler_cache(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<ConteudoPath>,
) -> ApiResult<Json<Value>> {
    let id = positive("path.id", p.id)?;
    let read = catalog::cached_title(&state, id).await.and_then(|found| {
        let (dados, hit) = found.ok_or_else(|| ApiError::not_found(&format!("conteúdo {id}")))?;
        Ok(json!({"conteudo_id": id, "cache": if hit { "hit" } else { "miss" }, "dados": dados}))
    });
    seed_read(
        &state,
        "polystream.title_cache.read",
        "Consulta de conteúdo em cache processada",
        read,
    )
    .await
}

/// Seed 002: a command's status (`?wait=` works here too), as the original
/// answered it (`status`: pendente|success|error, `message`, and once final
/// `original_event_type` and `timestamp`) on top of Polystream's fields. An id
/// not known (yet) is pending, as in the original.
#[utoipa::path(get, path = "/status/{correlation_id}", tag = "legacy (seed 002)", params(StatusPath, WaitQuery),
    responses((status = 200, description = "`CommandStatus` plus the original's `status`, `message`, `original_event_type`, `timestamp`", body = Object),
        (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn status(
    State(state): State<AppState>,
    ValidPath(p): ValidPath<StatusPath>,
    ValidQuery(q): ValidQuery<WaitQuery>,
) -> ApiResult<Json<Value>> {
    crate::routes::status::seed_lookup(&state, p.correlation_id, q.wait.unwrap_or(0))
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
    fn seed_answers_keep_polystreams_fields() {
        let a = Accepted {
            correlation_id: Uuid::now_v7(),
            status_url: "http://s1/status/x".into(),
            user_id: Some(7),
            title_id: None,
            payment_id: None,
            view_id: None,
            asset_id: None,
        };
        let v = seed_answer(
            &a,
            "Usuário enviado",
            Some(("usuario", json!({"user_id": 7}))),
        );
        assert_eq!(v["correlation_id"], a.correlation_id.to_string());
        assert_eq!(v["status_url"], "http://s1/status/x");
        assert_eq!(v["user_id"], 7);
        assert_eq!(v["mensagem"], "Usuário enviado");
        assert_eq!(v["usuario"]["user_id"], 7);
        assert!(seed_answer(&a, "x", None).get("usuario").is_none());
    }

    #[test]
    fn a_read_is_a_final_status_with_its_result_or_not_found() {
        let id = Uuid::now_v7();
        let ok = read_status(
            id,
            "polystream.recommendations.read",
            Ok(json!({"itens": [1]})),
        );
        assert_eq!(ok.state, StatusState::Completed);
        let body = read_body(&ok, "feito", "/status/x");
        assert_eq!(
            (
                &body["itens"],
                &body["mensagem"],
                &body["status_url"],
                &body["state"]
            ),
            (
                &json!([1]),
                &json!("feito"),
                &json!("/status/x"),
                &json!("completed")
            )
        );
        assert_eq!(body["correlation_id"], id.to_string());
        let missing = read_status(
            id,
            "polystream.title_cache.read",
            Err("conteúdo 9 not found".into()),
        );
        assert!(missing.is_final());
        assert_eq!(missing.code.as_deref(), Some("not_found"));
        let body = read_body(&missing, "feito", "/status/x");
        assert_eq!(
            (&body["state"], &body["code"]),
            (&json!("failed"), &json!("not_found"))
        );
    }

    #[test]
    fn echoes_use_the_seeds_words() {
        assert_eq!(plano(Plan::Standard), "padrao");
        assert_eq!(forma(PaymentMethod::CreditCard), "cartao_credito");
        assert_eq!(tema(Theme::Dark), "escuro");
    }

    #[test]
    fn seed_kinds_translate() {
        assert_eq!(kind("série"), Some(TitleKind::Series));
        assert_eq!(kind("Documentário"), Some(TitleKind::Documentary));
        assert_eq!(kind("filme"), Some(TitleKind::Movie));
        assert_eq!(kind("novela"), None);
    }
}
