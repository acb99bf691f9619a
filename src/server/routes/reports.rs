//! Reports (DESIGN.md §2, §7, §8): open, missing chunks, commit with its ledger entries in one
//! transaction, lists, details and wrapped keys. Chunk upload and reads are in `chunks`.
//!
//! The server checks what it can without keys (manifest shape, the author's signature, the
//! chain head over the chunk ids, every chunk present) and never sees a plaintext or a usable
//! key: wrapped keys are opaque bytes to it.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use super::chunks::chunk_hex;
use super::{ms_to_utc, parse_uuid};
use crate::api::{
    COMMIT_GRANT_ID, CommitRequest, CommitResponse, MissingRequest, MissingResponse,
    OpenReportRequest, OpenReportResponse, ReportDetail, ReportKey, ReportList, ReportSummary,
    Role, codes,
};
use crate::ledger::{AccessWhat, Entry};
use crate::seal::{
    MAX_CHUNK_SIZE, Manifest, WRAPPED_DEK_LEN, chain_head, meta_hash, verify_manifest,
};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::ledger_store;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::reports::{
    self as store, Committed, ListOf, NewReport, ReportRow, any_booking, completed_visit,
    insert_commit_key, insert_open, load_report, mark_committed, may_read, present_chunks,
    public_ed25519, release_request, sealed_parts, stored_manifest, touch_and_count, user_name,
    wrapped_key,
};

/// Who may open, fill and commit a report: doctors, and (issue 16) stations under an order.
pub(super) const UPLOADERS: &[Role] = &[Role::Doctor, Role::Station];
const READERS: &[Role] = &[Role::Patient, Role::Doctor, Role::Reception];
pub(super) const KEY_READERS: &[Role] = &[Role::Patient, Role::Doctor];
/// Most chunk ids in one commit or one missing query (16 GiB at 4 KiB… plenty at 1 MiB).
const MAX_CHUNK_IDS: usize = 1 << 20;

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/v1/reports", Policy::Roles(UPLOADERS), open),
        route(
            Method::POST,
            "/v1/reports/{id}/missing",
            Policy::Roles(UPLOADERS),
            missing,
        )
        .with_body_limit(70 * MAX_CHUNK_IDS.min(1 << 16) + 1024),
        route(
            Method::POST,
            "/v1/reports/{id}/commit",
            Policy::Roles(UPLOADERS),
            commit,
        )
        .with_body_limit(70 * MAX_CHUNK_IDS.min(1 << 16) + 64 * 1024),
        route(Method::GET, "/v1/reports", Policy::Roles(READERS), list),
        route(
            Method::GET,
            "/v1/reports/{id}",
            Policy::Roles(KEY_READERS),
            detail,
        ),
        route(
            Method::GET,
            "/v1/reports/{id}/key",
            Policy::Roles(KEY_READERS),
            key,
        ),
    ]
}

/// Why `user` may not read `report`: their own report awaiting its release code says so (they
/// know it exists: it is in their list); for anyone else, as if there were no such report.
pub fn unreadable(report: &ReportRow, user: Uuid) -> AppError {
    if report.status == "committed" && report.patient_id == user && report.released_at.is_none() {
        return AppError::conflict(
            codes::NOT_RELEASED,
            "enter the code mailed to you first (`clinvault otp CODE`); then the report is yours to open",
        );
    }
    AppError::not_found("report")
}

/// Whether `caller` may open a report for `patient`: a doctor after a completed visit; a
/// station (issue 16) under a doctor's order in force, given as (order, doctor).
async fn upload_allowed(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    patient: Uuid,
) -> Result<Option<(Uuid, Uuid)>, AppError> {
    if caller.role == Role::Station {
        return match crate::server::store::stations::open_order(conn, caller.id, patient, now_ms())
            .await?
        {
            Some(order) => Ok(Some(order)),
            None => Err(AppError::new(
                StatusCode::FORBIDDEN,
                codes::NO_ORDER,
                "no open order lets this station upload for this patient; the patient's doctor \
                 creates one with `clinvault order create PATIENT --station NAME`",
            )),
        };
    }
    // Only for a patient this doctor has seen: a completed visit.
    if !completed_visit(conn, caller.id, patient).await? {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::NO_VISIT,
            "you can upload a report only for a patient whose visit you marked completed",
        ));
    }
    Ok(None)
}

async fn open(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<OpenReportRequest>,
) -> Result<Json<OpenReportResponse>, AppError> {
    if !(4096..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
        return Err(AppError::bad_request("chunk_size: 4096 to 16777216 bytes"));
    }
    crate::seal::expected_chunks(req.plaintext_len, req.chunk_size)
        .map_err(|e| AppError::bad_request(format!("plaintext_len: {e}")))?;
    let mut conn = st.db.acquire().await?;
    // Checked before the id, so that an id taken by another author answers like a free one.
    let order = upload_allowed(&mut conn, &caller, req.patient_id).await?;
    // A resumed upload opens the same report again: fine while it is open and the same.
    if let Some(r) = load_report(&mut conn, req.report_id).await? {
        if r.author_id != caller.id {
            // Answered like any report the caller cannot see.
            return Err(AppError::not_found("report"));
        }
        if r.status != "open" {
            return Err(AppError::conflict(
                codes::REPORT_NOT_OPEN,
                "this report is already committed",
            ));
        }
        if r.patient_id != req.patient_id
            || r.chunk_size != req.chunk_size
            || r.plaintext_len != req.plaintext_len
        {
            return Err(AppError::conflict(
                codes::REPORT_NOT_OPEN,
                "an open report with this id has another patient or size; start a new report",
            ));
        }
        let present = touch_and_count(&mut conn, r.id).await?;
        return Ok(Json(OpenReportResponse {
            report_id: r.id,
            chunks_present: u32::try_from(present).unwrap_or(u32::MAX),
        }));
    }
    let new = NewReport {
        id: req.report_id,
        author_id: caller.id,
        patient_id: req.patient_id,
        chunk_size: req.chunk_size,
        plaintext_len: i64::try_from(req.plaintext_len)
            .map_err(|_| AppError::bad_request("plaintext_len too large"))?,
        n_chunks: crate::seal::expected_chunks(req.plaintext_len, req.chunk_size).unwrap_or(0),
        now: now_ms(),
        order,
    };
    if !insert_open(&mut conn, &new).await? {
        // Taken: answered like any report the caller cannot see.
        return Err(AppError::not_found("report"));
    }
    Ok(Json(OpenReportResponse {
        report_id: req.report_id,
        chunks_present: 0,
    }))
}

/// The report, if the caller is its author and it is open; 404 for anyone else.
pub(super) async fn own_open_report(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
    caller: &Caller,
) -> Result<ReportRow, AppError> {
    let r = load_report(conn, id)
        .await?
        .filter(|r| r.author_id == caller.id)
        .ok_or_else(|| AppError::not_found("report"))?;
    if r.status != "open" {
        return Err(AppError::conflict(
            codes::REPORT_NOT_OPEN,
            "this report is committed; chunks can no longer be added",
        ));
    }
    Ok(r)
}

async fn missing(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<MissingRequest>,
) -> Result<Json<MissingResponse>, AppError> {
    if req.chunk_ids.len() > MAX_CHUNK_IDS {
        return Err(AppError::bad_request("too many chunk ids in one request"));
    }
    for c in &req.chunk_ids {
        chunk_hex(c)?;
    }
    let mut conn = st.db.acquire().await?;
    own_open_report(&mut conn, id, &caller).await?;
    let present = present_chunks(&mut conn, id).await?;
    Ok(Json(MissingResponse {
        missing: req
            .chunk_ids
            .into_iter()
            .filter(|c| !present.contains(c))
            .collect(),
    }))
}

fn bad_commit(why: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, codes::BAD_COMMIT, why)
}

async fn commit(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<CommitRequest>,
) -> Result<Json<CommitResponse>, AppError> {
    let mut conn = st.db.acquire().await?;
    let report = load_report(&mut conn, id)
        .await?
        .filter(|r| r.author_id == caller.id)
        .ok_or_else(|| AppError::not_found("report"))?;
    if report.status == "committed" {
        // A retried commit whose answer was lost: the same manifest gets the same answer.
        let stored = stored_manifest(&mut conn, id).await?;
        if stored.as_deref() == Some(req.manifest.as_slice()) {
            let request = release_request(&mut conn, id).await?;
            return Ok(Json(CommitResponse {
                report_id: id,
                ledger_index: report.ledger_index.unwrap_or(0) as u64,
                release_request_id: request.as_deref().map(parse_uuid).transpose()?,
            }));
        }
        return Err(AppError::conflict(
            codes::REPORT_NOT_OPEN,
            "this report is already committed with another manifest",
        ));
    }

    // Everything the server can check without keys.
    let author_key = public_ed25519(&mut conn, caller.id).await?;
    let manifest = verify_manifest(&req.manifest, &req.signature, &author_key)
        .map_err(|e| bad_commit(format!("manifest: {e}")))?;
    manifest
        .validate()
        .map_err(|e| bad_commit(format!("manifest: {e}")))?;
    check_manifest_matches(&manifest, &report)?;
    if meta_hash(&req.meta) != manifest.meta_hash {
        return Err(bad_commit(
            "the metadata blob does not match the manifest's meta_hash",
        ));
    }
    if req.meta.len() > 64 * 1024 {
        return Err(bad_commit("the metadata blob is larger than 64 KiB"));
    }
    if req.chunk_ids.len() != manifest.n_chunks as usize {
        return Err(bad_commit(format!(
            "{} chunk ids listed, the manifest says {}",
            req.chunk_ids.len(),
            manifest.n_chunks
        )));
    }
    let mut ids = Vec::with_capacity(req.chunk_ids.len());
    for c in &req.chunk_ids {
        ids.push(chunk_hex(c)?);
    }
    if chain_head(&report.id.into_bytes(), &ids) != Some(manifest.head) {
        return Err(bad_commit(
            "the chunk ids, chained in order, do not give the manifest's head",
        ));
    }
    let mut unique = std::collections::HashSet::new();
    if !req.chunk_ids.iter().all(|c| unique.insert(c.as_str())) {
        return Err(bad_commit("a chunk id is listed twice"));
    }
    let present = present_chunks(&mut conn, id).await?;
    let absent = req
        .chunk_ids
        .iter()
        .filter(|c| !present.contains(*c))
        .count();
    if absent > 0 {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            codes::MISSING_CHUNKS,
            format!(
                "{absent} of the report's chunks are not uploaded yet; upload them and commit again"
            ),
        ));
    }
    let mut readers: Vec<Uuid> = req.wrapped_keys.iter().map(|w| w.reader_id).collect();
    readers.sort();
    // A station's report goes to the patient and the ordering doctor, never to the station.
    let second = report.for_doctor_id.unwrap_or(report.author_id);
    let mut want = vec![report.patient_id, second];
    want.sort();
    if readers != want {
        return Err(bad_commit(if report.for_doctor_id.is_some() {
            "wrapped keys must be given for exactly the patient and the ordering doctor"
        } else {
            "wrapped keys must be given for exactly the patient and the author"
        }));
    }
    if let Some((order, _)) = crate::server::store::stations::report_order(&mut conn, id).await?
        && !crate::server::store::stations::in_force(&mut conn, order, now_ms()).await?
    {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::NO_ORDER,
            "the order this report was opened under has expired; ask the doctor for a new one",
        ));
    }
    if req
        .wrapped_keys
        .iter()
        .any(|w| w.wrapped.len() != WRAPPED_DEK_LEN)
    {
        return Err(bad_commit(format!(
            "a wrapped key is {WRAPPED_DEK_LEN} bytes"
        )));
    }
    drop(conn);

    // One transaction: the report, its chunk order, its wrapped keys, the release code and
    // their ledger entries all land, or none does.
    let now = now_ms();
    let mut subjects = vec![report.patient_id.to_string(), report.author_id.to_string()];
    subjects.extend(report.for_doctor_id.map(|d| d.to_string()));
    let mut tx = st.db.begin().await?;
    let signature: [u8; 64] = req
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| bad_commit("signature: 64 bytes"))?;
    let ledger_index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::ReportCommitted {
            time_ms: now,
            report_id: report.id.into_bytes(),
            manifest_hash: manifest.digest(),
            signature,
        },
        &subjects,
    )
    .await?;
    let released = (!st.config.release_otp).then_some(now);
    let committed = Committed {
        now,
        manifest: &req.manifest,
        signature: &req.signature,
        meta: &req.meta,
        ledger_index: ledger_index as i64,
        released_at: released,
    };
    if !mark_committed(&mut tx, id, &committed).await? {
        return Err(AppError::conflict(
            codes::REPORT_NOT_OPEN,
            "this report was committed meanwhile",
        ));
    }
    crate::server::store::chunks::set_chunk_order(&mut tx, id, &req.chunk_ids).await?;
    for w in &req.wrapped_keys {
        let entry = Entry::KeyWrapped {
            time_ms: now,
            grant_id: COMMIT_GRANT_ID.into_bytes(),
            report_id: report.id.into_bytes(),
            reader_id: w.reader_id.into_bytes(),
            wrapper_id: caller.id.into_bytes(),
            wrapped_key_hash: sha256(&w.wrapped),
        };
        let index = ledger_store::append(&mut tx, &st.append_key, &entry, &subjects).await?;
        insert_commit_key(
            &mut tx,
            id,
            w.reader_id,
            &w.wrapped,
            caller.id,
            index as i64,
            now,
        )
        .await?;
    }
    let release = if st.config.release_otp {
        Some(
            super::otp::issue(
                &mut tx,
                &st,
                super::otp::NewCode {
                    purpose: "release",
                    report_id: report.id,
                    grant_id: None,
                    user_id: report.patient_id,
                    patient_id: report.patient_id,
                },
            )
            .await?,
        )
    } else {
        None
    };
    tx.commit().await?;
    tracing::info!(report = %id, ledger_index, "report committed");
    let release_request_id = match release {
        Some(code) => {
            let author = match report.for_doctor_id {
                Some(d) => format!(
                    "Station {} (for Dr {})",
                    caller.name,
                    user_name(&mut *st.db.acquire().await?, d).await?
                ),
                None => format!("Dr {}", caller.name),
            };
            let day = ms_to_utc(report.created_at)?
                .with_timezone(&st.tz)
                .format("%Y-%m-%d");
            super::otp::mail(
                &st,
                report.patient_id,
                "A new report is ready for you",
                format!(
                    "{author} has added a report for you, dated {day}.\n\n\
                     To open it, sign in to clinvault and enter this code:\n\n    {}\n\n\
                     ({}; the full request id is {}). The code works once and expires in 10 \
                     minutes; reception can send a new one. Nobody from the clinic will ever ask \
                     you for it.\n",
                    code.code.as_str(),
                    super::otp::new_request_words(&st, code.request_id, report.plaintext_len),
                    code.request_id
                ),
            )
            .await;
            Some(code.request_id)
        }
        None => None,
    };
    Ok(Json(CommitResponse {
        report_id: id,
        ledger_index,
        release_request_id,
    }))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn check_manifest_matches(m: &Manifest, r: &ReportRow) -> Result<(), AppError> {
    let mismatch = |what: &str| bad_commit(format!("the manifest's {what} is not this report's"));
    if m.report_id != r.id.into_bytes() {
        return Err(mismatch("report id"));
    }
    if m.patient_id != r.patient_id.into_bytes() {
        return Err(mismatch("patient"));
    }
    if m.author_id != r.author_id.into_bytes() {
        return Err(mismatch("author"));
    }
    if m.chunk_size != r.chunk_size || m.plaintext_len != r.plaintext_len {
        return Err(mismatch("size"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ListQuery {
    patient: Option<Uuid>,
}

async fn summary(
    conn: &mut sqlx::AnyConnection,
    r: &ReportRow,
    caller: &Caller,
) -> Result<ReportSummary, AppError> {
    let status = match (r.status.as_str(), r.released_at) {
        ("open", _) => "open",
        (_, None) => "awaiting_release",
        (_, Some(_)) => "released",
    };
    // Reception may see that a report exists, its author and date; nothing of its content.
    let details = caller.role != Role::Reception;
    Ok(ReportSummary {
        id: r.id,
        author_id: r.author_id,
        author_name: user_name(conn, r.author_id).await?,
        patient_id: r.patient_id,
        patient_name: user_name(conn, r.patient_id).await?,
        created_at: ms_to_utc(r.created_at)?,
        plaintext_len: if details { r.plaintext_len } else { 0 },
        n_chunks: if details { r.n_chunks } else { 0 },
        status: if details {
            status.into()
        } else {
            String::new()
        },
        readable: may_read(conn, r, caller.id).await?,
    })
}

/// Patients: their own committed reports. Doctors: what they wrote or were granted, or with
/// `?patient=` the committed reports of a patient they have a booking with (that they exist,
/// to ask consent). Reception: with `?patient=`, that reports exist (author and date).
async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ReportList>, AppError> {
    let mut conn = st.db.acquire().await?;
    let rows = match (caller.role, q.patient) {
        (Role::Patient, _) => store::list(&mut conn, ListOf::Patient(caller.id)).await?,
        (Role::Doctor, None) => store::list(&mut conn, ListOf::Doctor(caller.id)).await?,
        (Role::Doctor, Some(patient)) => {
            if !any_booking(&mut conn, caller.id, patient).await? {
                return Ok(Json(ReportList { reports: vec![] }));
            }
            store::list(&mut conn, ListOf::Patient(patient)).await?
        }
        (Role::Reception, Some(patient)) => {
            store::list(&mut conn, ListOf::Patient(patient)).await?
        }
        (Role::Reception, None) => {
            return Err(AppError::bad_request(
                "reception lists one patient's reports: ?patient=ID",
            ));
        }
        _ => return Err(AppError::forbidden("this role has no report list")),
    };
    let mut reports = Vec::with_capacity(rows.len());
    for r in &rows {
        reports.push(summary(&mut conn, r, &caller).await?);
    }
    Ok(Json(ReportList { reports }))
}

/// The report's verifiable parts, for its readers (404 for everyone else).
async fn detail(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<ReportDetail>, AppError> {
    let mut conn = st.db.acquire().await?;
    let r = load_report(&mut conn, id)
        .await?
        .ok_or_else(|| AppError::not_found("report"))?;
    if !may_read(&mut conn, &r, caller.id).await? {
        return Err(unreadable(&r, caller.id));
    }
    let sealed = sealed_parts(&mut conn, id).await?;
    let summary = summary(&mut conn, &r, &caller).await?;
    let ledger_index = r
        .ledger_index
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| AppError::damaged("this report", "committed report without ledger index"))?;
    let commit_entry = ledger_store::entry(&mut conn, ledger_index)
        .await?
        .ok_or_else(|| AppError::damaged("this report", "report's ledger entry missing"))?;
    Ok(Json(ReportDetail {
        summary,
        manifest: sealed.manifest,
        signature: sealed.signature,
        meta: sealed.meta,
        chunk_ids: sealed.chunk_ids,
        ledger_index,
        commit_entry,
    }))
}

/// The caller's wrapped key; serving it is recorded in the ledger (the patient sees it).
async fn key(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<ReportKey>, AppError> {
    let mut conn = st.db.acquire().await?;
    let r = load_report(&mut conn, id)
        .await?
        .ok_or_else(|| AppError::not_found("report"))?;
    if !may_read(&mut conn, &r, caller.id).await? {
        return Err(unreadable(&r, caller.id));
    }
    let row = wrapped_key(&mut conn, id, caller.id)
        .await?
        .ok_or_else(|| AppError::not_found("report"))?;
    let wrap_index = u64::try_from(row.ledger_index).map_err(AppError::internal)?;
    let wrap_entry = ledger_store::entry(&mut conn, wrap_index)
        .await?
        .ok_or_else(|| {
            AppError::damaged("this report's key", "wrapped key's ledger entry missing")
        })?;
    drop(conn);
    // One "key served" entry per reader, report and window: a reader verifying the same
    // report again and again does not bury the patient's trail.
    let served = format!("key-served:{id}:{}", caller.id);
    let fresh = match crate::server::ratelimit::check(&st, &served, KEY_SERVED_WINDOW_SECS, 1).await
    {
        Ok(()) => true,
        Err(e) if e.code == codes::RATE_LIMITED => false,
        Err(e) => return Err(e),
    };
    if fresh {
        let mut tx = st.db.begin().await?;
        ledger_store::append(
            &mut tx,
            &st.append_key,
            &Entry::ReportAccess {
                time_ms: now_ms(),
                report_id: id.into_bytes(),
                reader_id: caller.id.into_bytes(),
                what: AccessWhat::KeyServed,
            },
            &[
                r.patient_id.to_string(),
                r.author_id.to_string(),
                caller.id_str(),
            ],
        )
        .await?;
        tx.commit().await?;
        crate::server::ratelimit::record(&st, &served, KEY_SERVED_WINDOW_SECS).await?;
    }
    Ok(Json(ReportKey {
        wrapped: row.wrapped,
        wrap_index,
        wrap_entry,
        wrapper_id: row.wrapper_id,
        grant_id: row.grant_id,
    }))
}

/// A reader's repeated key fetches of one report within this window are recorded once.
pub const KEY_SERVED_WINDOW_SECS: u64 = 600;
