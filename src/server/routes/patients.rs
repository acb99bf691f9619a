//! Patient search for reception (name, email or phone; partial, case-insensitive).

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

use super::{PER_PAGE, clean_text, like_pattern, page_offset};
use crate::api::{Page, PatientSummary, Role};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiQuery, Caller};
use crate::server::policy::{Policy, Route, route};
use crate::server::store::patients;

const RECEPTION_DOCTOR: &[Role] = &[Role::Reception, Role::Doctor];

pub fn routes() -> Vec<Route> {
    vec![route(
        Method::GET,
        "/v1/patients",
        Policy::Roles(RECEPTION_DOCTOR),
        search,
    )]
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    page: Option<u32>,
}

/// Reception searches every patient; a doctor only the patients they have a booking with
/// (to name the patient of a report they upload).
async fn search(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Page<PatientSummary>>, AppError> {
    let (page, offset) = page_offset(q.page)?;
    let own = if caller.role == Role::Doctor {
        caller.id_str()
    } else {
        String::new()
    };
    let pat = like_pattern(&clean_text("q", q.q.as_deref().unwrap_or(""), 100, false)?);
    let total = patients::count(&st.db, pat.clone(), own.clone()).await?;
    let items = patients::page(&st.db, pat, own, i64::from(PER_PAGE), offset).await?;
    Ok(Json(Page {
        items,
        page,
        per_page: PER_PAGE,
        total: total.max(0) as u64,
    }))
}
