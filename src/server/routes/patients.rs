//! Patient search for reception (name, email or phone; partial, case-insensitive).

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use sqlx::Row;

use super::{PER_PAGE, clean_text, like_pattern, page_offset, parse_uuid};
use crate::api::{Page, PatientSummary, Role};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiQuery, Caller};
use crate::server::policy::{Policy, Route, route};

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
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'patient' AND active = 1 AND \
         (name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' OR phone LIKE $1 ESCAPE '\\') \
         AND ($2 = '' OR id IN (SELECT patient_id FROM bookings WHERE doctor_id = $2))",
    )
    .bind(pat.clone())
    .bind(own.clone())
    .fetch_one(&st.db)
    .await?;
    let rows = sqlx::query(
        "SELECT id, name, email, phone FROM users WHERE role = 'patient' AND active = 1 AND \
         (name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' OR phone LIKE $1 ESCAPE '\\') \
         AND ($4 = '' OR id IN (SELECT patient_id FROM bookings WHERE doctor_id = $4)) \
         ORDER BY name_fold, id LIMIT $2 OFFSET $3",
    )
    .bind(pat)
    .bind(i64::from(PER_PAGE))
    .bind(offset)
    .bind(own)
    .fetch_all(&st.db)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(PatientSummary {
            id: parse_uuid(&r.try_get::<String, _>("id")?)?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            phone: r.try_get("phone")?,
        });
    }
    Ok(Json(Page {
        items,
        page,
        per_page: PER_PAGE,
        total: total.max(0) as u64,
    }))
}
