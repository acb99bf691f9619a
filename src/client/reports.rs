//! Reports on the client (DESIGN.md §2, §5): the report and chunk calls, and what upload and
//! download share. Sealing and uploading with resume is in `upload`, downloading with every
//! check before the file appears in `download`, grants and codes in `grants`.
//!
//! Every key used is checked against the ledger first; the server's word alone never leads
//! to a wrap or an opened report.

use std::path::Path;

use bytes::Bytes;
use reqwest::Method;
use uuid::Uuid;

use super::{ApiClient, ClientError};
use crate::api::{
    CommitRequest, CommitResponse, MissingRequest, MissingResponse, OpenReportRequest,
    OpenReportResponse, ReportDetail, ReportKey, ReportList,
};

// The flows keep their old paths (`client::reports::upload`, …).
pub use super::download::{TransferOptions, VerifiedReport, download, verify, verify_report};
pub use super::grants::{WrapCheck, approve_and_wrap, check_grant_for_wrap, confirm_wrap};
pub use super::upload::{UploadOptions, UploadOutcome, upload};

pub(crate) fn integrity(what: impl std::fmt::Display) -> ClientError {
    ClientError::Integrity(what.to_string())
}

pub(crate) fn file_err(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.display().to_string(),
        source,
    }
}

impl ApiClient {
    pub async fn open_report(
        &self,
        req: &OpenReportRequest,
    ) -> Result<OpenReportResponse, ClientError> {
        self.post("/v1/reports", req).await
    }

    pub async fn put_chunk(
        &self,
        report: Uuid,
        chunk_id: &[u8; 32],
        body: Bytes,
    ) -> Result<(), ClientError> {
        self.call_raw(
            Method::PUT,
            &format!("/v1/reports/{report}/chunks/{}", hex::encode(chunk_id)),
            &[],
            Some(body),
        )
        .await
        .map(|_| ())
    }

    pub async fn missing_chunks(
        &self,
        report: Uuid,
        ids: &[[u8; 32]],
    ) -> Result<Vec<String>, ClientError> {
        let r: MissingResponse = self
            .post(
                &format!("/v1/reports/{report}/missing"),
                &MissingRequest {
                    chunk_ids: ids.iter().map(hex::encode).collect(),
                },
            )
            .await?;
        Ok(r.missing)
    }

    pub async fn commit_report(
        &self,
        report: Uuid,
        req: &CommitRequest,
    ) -> Result<CommitResponse, ClientError> {
        self.post(&format!("/v1/reports/{report}/commit"), req)
            .await
    }

    pub async fn reports(&self, patient: Option<Uuid>) -> Result<ReportList, ClientError> {
        let q: Vec<(&str, String)> = patient
            .map(|p| ("patient", p.to_string()))
            .into_iter()
            .collect();
        self.get("/v1/reports", &q).await
    }

    pub async fn report(&self, id: Uuid) -> Result<ReportDetail, ClientError> {
        self.get(&format!("/v1/reports/{id}"), &[]).await
    }

    pub async fn report_key(&self, id: Uuid) -> Result<ReportKey, ClientError> {
        self.get(&format!("/v1/reports/{id}/key"), &[]).await
    }

    /// Chunk `index` of a report, by its place in the signed order: the server checks the
    /// read rule and finds the chunk in one statement.
    /// Chunk `index` of `report`, refused unread when the server announces or sends more than
    /// `max_len` bytes: pass [`super::chunk_ciphertext_len`] of the index.
    pub async fn report_chunk(
        &self,
        report: Uuid,
        index: u32,
        max_len: usize,
    ) -> Result<Bytes, ClientError> {
        self.call_raw_limited(
            Method::GET,
            &format!("/v1/reports/{report}/chunks/{index}"),
            &[],
            None,
            max_len,
        )
        .await
    }

    pub async fn chunk(&self, chunk_id: &str, replica: Option<&str>) -> Result<Bytes, ClientError> {
        let q: Vec<(&str, String)> = replica
            .map(|r| ("replica", r.to_string()))
            .into_iter()
            .collect();
        self.call_raw(Method::GET, &format!("/v1/chunks/{chunk_id}"), &q, None)
            .await
    }
}

/// Where an upload stands, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub chunks_done: u32,
    pub chunks_total: u32,
}

/// Network blips and busy answers are retried a few times; refusals are not.
pub(crate) fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Network(_) => true,
        ClientError::Server { status, .. } => *status == 503 || *status == 429,
        _ => false,
    }
}
